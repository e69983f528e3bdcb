"""`speechlstm export` of an embedding run (`train --frontend embedding`): one
self-contained ONNX model, waveform in, probabilities out, with Google's speech
embedding inside (its stages: detect/embedding_stream.py).

The mel and embedding graphs are openWakeWord 0.4.0's files, taken from the
installed package at export time and joined to glue built operator by
operator and to the BiLSTM head; everything is at opset 13, the embedding
files' own, so nothing of theirs is converted. The head goes through torch's
TorchScript exporter: its 16 steps are fixed, which that exporter turns into
one ONNX LSTM node (the dynamo path would need the hand-built recurrence
export.py uses for dynamic lengths).

The result carries the embedding's weights, so its description says where they
come from and under what terms (`speechlstm info` shows it); the shipped
default model never has this front-end.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch

from ..config import DetectorConfig, FeatureConfig, ModelConfig, TrainConfig
from ..detect.embedding_stream import (
    CONTEXT_SAMPLES,
    EMBED_DIM,
    EMBEDDING_FRAMES,
    INT16_SCALE,
    MEL_FRAMES,
    MEL_INPUT,
    MEL_WINDOWS,
    N_FRAMES,
    STRIDE_FRAMES,
    STRIDE_SAMPLES,
    WINDOW_FRAMES,
)
from ..modelmeta import INPUT_NAME, OUTPUT_NAMES, ModelDescription, TrainingSummary
from ..runtime import open_session
from .embedding import find_model_files
from .embedding_model.model_file import MODEL_FILE, EmbeddingModel
from .export import (
    FP32_TOLERANCE,
    ExportError,
    ExportResult,
    is_our_model,
    move_into_place,
    output_problem,
    stamp,
    work_folder,
)

OPSET = 13
IR_VERSION = 7
CLIP_SAMPLES = 16_000
CREDIT = (
    "Front-end: Google's speech_embedding model as bundled in openwakeword 0.4.0 "
    "(melspectrogram.onnx, embedding_model.onnx). openWakeWord's README names it "
    "Apache-2.0 (Google) and also places its bundled models under CC BY-NC-SA 4.0: "
    "treat this file as non-commercial unless you have checked otherwise."
)
# The detector of a stream of embedding frames: one decision per 80 ms frame.
DETECTOR = DetectorConfig(hop_ms=STRIDE_SAMPLES * 1000 / 16_000)


def embedding_model_path(path: str | Path) -> Path | None:
    """The embedding-model file `path` names (the file, or a run folder holding
    it), or None."""
    path = Path(path)
    if path.is_dir() and (path / MODEL_FILE).is_file():
        return path / MODEL_FILE
    return path if path.name.endswith(".safetensors") and path.is_file() else None


# The export command's name for it (cli/train_cmd.py, moved by another change).
teacher_path = embedding_model_path


def _glue_model(name: str, nodes, inputs, outputs, initializers=()):
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, name, inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model)
    return model


def _pre():
    """waveform (1, S) in [-1, 1] -> mel_input (1, 32000): int16 range, centred."""
    from onnx import TensorProto, helper, numpy_helper

    pad = (CONTEXT_SAMPLES - CLIP_SAMPLES) // 2
    return _glue_model(
        "pre",
        [
            helper.make_node("Mul", [INPUT_NAME, "pre_scale"], ["pre_scaled"]),
            helper.make_node("Pad", ["pre_scaled", "pre_pads"], [MEL_INPUT], mode="constant"),
        ],
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [1, CLIP_SAMPLES])],
        [helper.make_tensor_value_info(MEL_INPUT, TensorProto.FLOAT, [1, CONTEXT_SAMPLES])],
        [
            numpy_helper.from_array(np.array(INT16_SCALE, np.float32), "pre_scale"),
            numpy_helper.from_array(np.array([0, pad, 0, pad], np.int64), "pre_pads"),
        ],
    )


def _mid(mel_out: str, n_mel_frames: int):
    """mel model output (1, 1, F, 32) -> mel_frames (1, F, 32), scaled as openWakeWord
    scales it, -> mel_windows (16, 76, 32, 1)."""
    from onnx import TensorProto, helper, numpy_helper

    starts = np.arange(0, n_mel_frames - WINDOW_FRAMES + 1, STRIDE_FRAMES)
    index = (starts[:, None] + np.arange(WINDOW_FRAMES)[None, :]).astype(np.int64)
    return _glue_model(
        "mid",
        [
            helper.make_node("Squeeze", [mel_out, "mid_ax1"], ["mid_sq"]),
            helper.make_node("Div", ["mid_sq", "mid_ten"], ["mid_div"]),
            helper.make_node("Add", ["mid_div", "mid_two"], [MEL_FRAMES]),
            helper.make_node("Squeeze", [MEL_FRAMES, "mid_ax0"], ["mid_frames"]),
            helper.make_node("Gather", ["mid_frames", "mid_index"], ["mid_windows"], axis=0),
            helper.make_node("Unsqueeze", ["mid_windows", "mid_ax3"], [MEL_WINDOWS]),
        ],
        [helper.make_tensor_value_info(mel_out, TensorProto.FLOAT, [1, 1, n_mel_frames, 32])],
        [
            helper.make_tensor_value_info(MEL_WINDOWS, TensorProto.FLOAT, [len(starts), 76, 32, 1]),
            helper.make_tensor_value_info(MEL_FRAMES, TensorProto.FLOAT, [1, n_mel_frames, 32]),
        ],
        [
            numpy_helper.from_array(np.array([1], np.int64), "mid_ax1"),
            numpy_helper.from_array(np.array([0], np.int64), "mid_ax0"),
            numpy_helper.from_array(np.array([3], np.int64), "mid_ax3"),
            numpy_helper.from_array(np.array(10.0, np.float32), "mid_ten"),
            numpy_helper.from_array(np.array(2.0, np.float32), "mid_two"),
            numpy_helper.from_array(index, "mid_index"),
        ],
    )


def _post(emb_out: str):
    """embedding output (16, 1, 1, 96) -> embedding_frames (1, 16, 96); the raw
    output is named too, so a stream can run the embedding stage alone."""
    from onnx import TensorProto, helper, numpy_helper

    raw = EMBEDDING_FRAMES + "_raw"
    return _glue_model(
        "post",
        [
            helper.make_node("Identity", [emb_out], [raw]),
            helper.make_node("Reshape", [raw, "post_shape"], [EMBEDDING_FRAMES]),
        ],
        [helper.make_tensor_value_info(emb_out, TensorProto.FLOAT, [N_FRAMES, 1, 1, EMBED_DIM])],
        [helper.make_tensor_value_info(EMBEDDING_FRAMES, TensorProto.FLOAT, [1, N_FRAMES, 96])],
        [numpy_helper.from_array(np.array([1, N_FRAMES, EMBED_DIM], np.int64), "post_shape")],
    )


class _Head(torch.nn.Module):
    def __init__(self, head):
        super().__init__()
        self.head = head

    def forward(self, frames: torch.Tensor):
        logits = self.head(frames)
        return torch.softmax(logits, dim=-1), logits


def _head_model(trained: EmbeddingModel, tmp: Path):
    import onnx

    path = tmp / "head.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation and LSTM batch notes: batch is 1 here
        torch.onnx.export(
            _Head(trained.head).eval(),
            (torch.zeros(1, N_FRAMES, EMBED_DIM),),
            str(path),
            dynamo=False,
            opset_version=OPSET,
            input_names=[EMBEDDING_FRAMES],
            output_names=list(OUTPUT_NAMES),
        )
    # The exporter restores the wrapper's mode afterwards, recursively: keep eval.
    trained.head.eval()
    model = onnx.load(str(path))
    model.ir_version = IR_VERSION
    return model


def _prefixed(model, prefix: str, inputs: dict[str, str], outputs: dict[str, str]):
    """`model` with every name prefixed, then its graph inputs and outputs renamed
    to the given names (so parts join on them)."""
    import onnx.compose

    model = onnx.compose.add_prefix(model, prefix)
    renames = {prefix + k: v for k, v in {**inputs, **outputs}.items()}
    for node in model.graph.node:
        node.input[:] = [renames.get(n, n) for n in node.input]
        node.output[:] = [renames.get(n, n) for n in node.output]
    for value in list(model.graph.input) + list(model.graph.output):
        value.name = renames.get(value.name, value.name)
    model.ir_version = IR_VERSION
    return model


def build_graph(trained: EmbeddingModel, mel_path: Path, embed_path: Path, tmp: Path):
    """The whole graph as one ModelProto (no metadata yet)."""
    import onnx
    import onnx.compose

    mel = onnx.load(str(mel_path))
    emb = onnx.load(str(embed_path))
    mel = _prefixed(mel, "mel/", {mel.graph.input[0].name: MEL_INPUT}, {})
    emb = _prefixed(emb, "emb/", {emb.graph.input[0].name: MEL_WINDOWS}, {})
    mel_out, emb_out = mel.graph.output[0].name, emb.graph.output[0].name
    n_mel = int(np.ceil(CONTEXT_SAMPLES / 160 - 3))
    head = onnx.compose.add_prefix(
        _head_model(trained, tmp), "head/", rename_inputs=False, rename_outputs=False
    )
    head.ir_version = IR_VERSION
    proto = onnx.compose.merge_models(_pre(), mel, io_map=[(MEL_INPUT, MEL_INPUT)])
    proto = onnx.compose.merge_models(
        proto,
        _mid(mel_out, n_mel),
        io_map=[(mel_out, mel_out)],
        outputs=[MEL_WINDOWS, MEL_FRAMES],
    )
    proto = onnx.compose.merge_models(
        proto, emb, io_map=[(MEL_WINDOWS, MEL_WINDOWS)], outputs=[emb_out, MEL_FRAMES]
    )
    proto = onnx.compose.merge_models(proto, _post(emb_out), io_map=[(emb_out, emb_out)])
    proto = onnx.compose.merge_models(
        proto, head, io_map=[(EMBEDDING_FRAMES, EMBEDDING_FRAMES)], outputs=list(OUTPUT_NAMES)
    )
    # The stages' tensors typed in the graph, so a stream can cut it there
    # (embedding_stream.stage_sessions).
    from onnx import TensorProto, helper

    shapes = {
        MEL_INPUT: [1, CONTEXT_SAMPLES],
        MEL_FRAMES: [1, n_mel, 32],
        MEL_WINDOWS: [N_FRAMES, WINDOW_FRAMES, 32, 1],
        EMBEDDING_FRAMES + "_raw": [N_FRAMES, 1, 1, EMBED_DIM],
        EMBEDDING_FRAMES: [1, N_FRAMES, EMBED_DIM],
    }
    kept = [v for v in proto.graph.value_info if v.name not in shapes]
    del proto.graph.value_info[:]
    proto.graph.value_info.extend(kept)
    for name, shape in shapes.items():
        proto.graph.value_info.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
    proto.producer_name = "speechlstm"
    onnx.checker.check_model(proto)
    return proto


def describe(trained: EmbeddingModel, detector: DetectorConfig | None) -> ModelDescription:
    report_path = trained.path.parent / "metrics.json"
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    # metrics.json named its settings "teacher" before issue 45.
    settings = report.get("embedding", report.get("teacher", {}))
    return ModelDescription(
        labels=tuple(trained.labels),
        features=FeatureConfig(clip_ms=CLIP_SAMPLES // 16),
        model=ModelConfig(
            hidden_size=trained.cfg.hidden_size,
            num_layers=1,
            dropout=trained.cfg.dropout,
            pooling="mean",
        ),
        detector=detector or DETECTOR,
        training=TrainingSummary(
            source=str(trained.path.parent),
            clips=dict(report.get("clips", {})),
            epochs_completed=int(settings.get("epochs", 0)),
            best_epoch=int(report.get("best_epoch", 0)),
            best_val_accuracy=report.get("best_val_accuracy"),
            test_accuracy=report.get("test_accuracy"),
            device="cpu",
            train=TrainConfig(
                epochs=trained.cfg.epochs,
                batch_size=trained.cfg.batch_size,
                lr=trained.cfg.lr,
                weight_decay=trained.cfg.weight_decay,
                label_smoothing=trained.cfg.label_smoothing,
                seed=trained.seed,
            ),
        ),
        n_params=sum(p.numel() for p in trained.head.parameters()),
        frontend="embedding",
        frontend_credit=CREDIT,
    )


@torch.no_grad()
def check_parity(trained: EmbeddingModel, path: Path, n: int = 4, seed: int = 0) -> float:
    """Worst |ONNX - (embedding + head)| on probabilities of random int16 clips."""
    rng = np.random.default_rng(seed)
    clips = (rng.uniform(-0.3, 0.3, (n, CLIP_SAMPLES)) * 32767).astype(np.int16)
    frames = trained.embedder.embed(clips)
    trained.head.eval()
    expected = torch.softmax(trained.head(torch.from_numpy(frames)), dim=-1).numpy()
    sess = open_session(path)
    worst = 0.0
    for clip, want in zip(clips, expected):
        wave = (clip.astype(np.float32) / INT16_SCALE)[None]
        got = sess.run([OUTPUT_NAMES[0]], {INPUT_NAME: wave})[0][0]
        worst = max(worst, float(np.abs(got - want).max()))
    if not worst <= FP32_TOLERANCE:
        raise ExportError(
            f"the exported embedding model differs from its torch head by {worst:.2e} "
            f"(tolerance {FP32_TOLERANCE:.0e})"
        )
    return worst


def export_embedding(
    source: str | Path,
    out_path: str | Path,
    detector: DetectorConfig | None = None,
    force: bool = False,
) -> ExportResult:
    """An embedding-model run (or its teacher.safetensors) -> one ONNX model with
    the embedding front-end inside, checked against the torch head."""
    import onnx

    path = embedding_model_path(source)
    if path is None:
        raise ExportError(f"{source}: not an embedding run (no {MODEL_FILE})")
    out_path = Path(out_path)
    problem = output_problem(out_path, path, ".onnx", is_our_model, force)
    if problem:
        raise ExportError(problem)
    trained = EmbeddingModel(path)
    if detector is not None:
        try:
            detector.check_labels(trained.labels, "--detector")
        except ValueError as exc:
            raise ExportError(str(exc)) from None
    mel_path, embed_path = find_model_files()
    with work_folder(out_path) as tmp:
        proto = build_graph(trained, mel_path, embed_path, Path(tmp))
        stamp(proto, describe(trained, detector))
        final = Path(tmp) / "model.onnx"
        onnx.save(proto, str(final))
        worst = check_parity(trained, final)
        move_into_place(final, out_path)
    return ExportResult(out_path, worst, None, out_path.stat().st_size)
