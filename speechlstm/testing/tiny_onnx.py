"""A small, real speechlstm model built with `onnx.helper`: no torch, no training run.

It recognises the tone "words" of synth_audio.py (yes: rising sweep, no: falling
sweep, up: high tone, down: low tone) by matching spectrogram templates, and it
honours the model contract exactly as an exported model does: input `waveform`
float32 (batch, samples), dynamic batch and length; outputs `probabilities` and
`logits` (batch, classes); the speechlstm metadata.

    waveform (B, N) -> zero-pad, keep the first 1 s           (B, 16000)
      -> framed DFT: Conv1d, stride HOP_SAMPLES, with Hann-windowed cos/sin
         kernels at FREQS_HZ                                  (B, 2K, T)
      -> magnitude, divided by the clip's energy (+ ENERGY_FLOOR, so that
         near-silence stays near zero)                        (B, K, T)
      -> correlation with each word's unit-norm template at SPEAKER_SCALES
         pitches (Conv1d over time)                           (B, words x scales, T')
      -> max over time and pitch: a match in [0, 1]           (B, words)
      -> logits: GAIN * (match - MATCH_AT_EVEN_ODDS); _silence_ 0 -> softmax

A clean word matches its own template at 0.8-0.99 and the others below 0.3;
noise and silence match nothing, so `_silence_` wins. The templates are the
graph's own front-end run on clean tone words (see `_templates`), so nothing
is duplicated in numpy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from speechlstm.testing.synth_audio import SR, tone_word

WORDS = ("down", "no", "up", "yes")  # sorted, as the trainer orders word classes
LABELS = (*WORDS, "_silence_")
CLIP_SAMPLES = SR  # the 1 s window of the default FeatureConfig
FRAME_SAMPLES = 400  # 25 ms DFT frames
HOP_SAMPLES = 200  # 12.5 ms
FREQS_HZ = np.arange(100.0, 2000.0 + 1, 25.0)  # covers every word's first harmonics
TEMPLATE_FRAMES = 28  # 0.35 s of the 0.6 s word: partial words still match in part
SPEAKER_SCALES = np.linspace(0.8, 1.2, 9)  # make_dataset's speakers span 0.8-1.2
ENERGY_FLOOR = 100.0  # added to the clip's spectral energy before normalising
GAIN = 20.0
MATCH_AT_EVEN_ODDS = 0.5  # a word whose match is 0.5 ties with _silence_
OPSET = 17


def model_props(labels: tuple[str, ...] = LABELS) -> dict[str, str]:
    """The speechlstm metadata of the tiny model (key -> JSON string).

    The feature/model configs are the defaults: they are what `speechlstm info`
    shows, while the runtime uses only the sample rate and window length.
    """
    from speechlstm.config import FeatureConfig, ModelConfig
    from speechlstm.modelmeta import ModelDescription, TrainingSummary

    source = "speechlstm/testing/tiny_onnx.py (spectrogram templates, not trained)"
    training = TrainingSummary(source=source)
    return ModelDescription(labels, FeatureConfig(), ModelConfig(), training=training).to_props()


def build_tiny_model(path: str | Path) -> Path:
    """Write the template-matching model to `path` and return it."""
    import onnx
    from onnx import helper

    templates = _templates()  # (words x scales, K, TEMPLATE_FRAMES)
    n_words = len(WORDS)
    # logits = match @ weight + bias: words scaled and shifted, _silence_ fixed at 0.
    weight = np.zeros((n_words, len(LABELS)), np.float32)
    weight[np.arange(n_words), np.arange(n_words)] = GAIN
    bias = np.zeros(len(LABELS), np.float32)
    bias[:n_words] = -GAIN * MATCH_AT_EVEN_ODDS
    nodes, inits = _front_end()
    inits += [
        _const("templates", templates),
        _const("match_shape", np.array([0, n_words, len(SPEAKER_SCALES)], np.int64)),
        _const("weight", weight),
        _const("bias", bias),
    ]
    nodes += [
        helper.make_node("Conv", ["spectrogram", "templates"], ["correlation"]),
        helper.make_node("ReduceMax", ["correlation"], ["best_time"], axes=[2], keepdims=0),
        helper.make_node("Reshape", ["best_time", "match_shape"], ["per_scale"]),
        helper.make_node("ReduceMax", ["per_scale"], ["match"], axes=[2], keepdims=0),
        helper.make_node("MatMul", ["match", "weight"], ["scaled"]),
        helper.make_node("Add", ["scaled", "bias"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    outputs = [
        helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, ["batch", len(LABELS)])
        for name in ("probabilities", "logits")
    ]
    model = _model(nodes, inits, outputs)
    helper.set_model_props(model, model_props())
    onnx.checker.check_model(model, full_check=True)
    path = Path(path)
    onnx.save(model, str(path))
    return path


def _front_end():
    """Nodes and initializers from `waveform` to the normalised magnitude
    spectrogram `spectrogram` (B, K, T)."""
    from onnx import helper

    n = np.arange(FRAME_SAMPLES)
    window = np.hanning(FRAME_SAMPLES)
    phase = 2 * np.pi * FREQS_HZ[:, None] * n / SR  # (K, FRAME_SAMPLES)
    dft = np.concatenate([np.cos(phase) * window, np.sin(phase) * window])[:, None, :]
    k = len(FREQS_HZ)
    pair_sum = np.zeros((k, 2 * k, 1), np.float32)  # cos^2 + sin^2 per frequency
    pair_sum[np.arange(k), np.arange(k), 0] = 1
    pair_sum[np.arange(k), k + np.arange(k), 0] = 1
    inits = [
        _const("pads", np.array([0, 0, 0, CLIP_SAMPLES], np.int64)),
        _const("starts", np.array([0], np.int64)),
        _const("ends", np.array([CLIP_SAMPLES], np.int64)),
        _const("axis1", np.array([1], np.int64)),
        _const("dft", dft),
        _const("pair_sum", pair_sum),
        _const("floor", np.array(ENERGY_FLOOR, np.float32)),
    ]
    nodes = [
        helper.make_node("Pad", ["waveform", "pads"], ["padded"]),
        helper.make_node("Slice", ["padded", "starts", "ends", "axis1"], ["clip"]),
        helper.make_node("Unsqueeze", ["clip", "axis1"], ["clip3"]),  # (B, 1, 16000)
        helper.make_node("Conv", ["clip3", "dft"], ["parts"], strides=[HOP_SAMPLES]),
        helper.make_node("Mul", ["parts", "parts"], ["parts_sq"]),
        helper.make_node("Conv", ["parts_sq", "pair_sum"], ["power"]),  # (B, K, T)
        helper.make_node("Sqrt", ["power"], ["magnitude"]),
        helper.make_node("ReduceSumSquare", ["magnitude"], ["energy"], axes=[1, 2]),
        helper.make_node("Add", ["energy", "floor"], ["energy_floored"]),
        helper.make_node("Sqrt", ["energy_floored"], ["norm"]),
        helper.make_node("Div", ["magnitude", "norm"], ["spectrogram"]),
    ]
    return nodes, inits


def _templates() -> np.ndarray:
    """Each word at each speaker pitch through the front-end: its loudest
    TEMPLATE_FRAMES frames, unit norm. (words x scales, K, TEMPLATE_FRAMES)"""
    import onnx
    import onnxruntime as ort
    from onnx import helper

    nodes, inits = _front_end()
    out = helper.make_tensor_value_info("spectrogram", onnx.TensorProto.FLOAT, None)
    session = ort.InferenceSession(
        _model(nodes, inits, [out]).SerializeToString(), providers=["CPUExecutionProvider"]
    )
    clips = np.stack(
        [
            tone_word(word, scale, offset_s=0.2, rng=np.random.default_rng(0))
            for word in WORDS
            for scale in SPEAKER_SCALES
        ]
    )
    specs = session.run(["spectrogram"], {"waveform": clips})[0]  # (n, K, T)
    templates = []
    for spec in specs:
        energy = np.convolve((spec**2).sum(axis=0), np.ones(TEMPLATE_FRAMES), mode="valid")
        start = int(np.argmax(energy))
        template = spec[:, start : start + TEMPLATE_FRAMES]
        templates.append(template / np.linalg.norm(template))
    return np.stack(templates).astype(np.float32)


def _model(nodes, inits, outputs):
    import onnx
    from onnx import helper

    float32 = onnx.TensorProto.FLOAT
    waveform = helper.make_tensor_value_info("waveform", float32, ["batch", "samples"])
    graph = helper.make_graph(nodes, "speechlstm_tiny_tones", [waveform], outputs, inits)
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="speechlstm-tests"
    )
    model.ir_version = 8  # opset 17's IR: loads in any onnxruntime >= 1.13
    return model


def _const(name: str, value: np.ndarray):
    from onnx import numpy_helper

    value = np.asarray(value)
    if value.dtype == np.float64:
        value = value.astype(np.float32)
    return numpy_helper.from_array(value, name)
