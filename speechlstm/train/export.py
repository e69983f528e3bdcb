"""Checkpoint -> self-describing ONNX model (waveform in, probabilities out).

The dynamo exporter is the one that handles torchaudio's MFCC (complex STFT);
batch and length are dynamic. After writing, the ONNX model is run with
onnxruntime against PyTorch on several batch sizes and lengths, and export
fails if they disagree. `int8=True` cleans the graph with onnxscript's
optimizer (without that, onnxruntime quantizes only the final Linear) and
applies dynamic quantization, checked for top-1 agreement with fp32.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..config import DetectorConfig, FeatureConfig, RunConfig
from ..labels import check_labels
from ..modelmeta import (
    INPUT_NAME,
    OUTPUT_NAMES,
    ModelDescription,
    TrainingSummary,
    stamp,
)
from ..outputs import same_file
from ..runtime import is_our_model, open_session
from . import checkpoint
from .checkpoint import Checkpoint
from .features import ConvMelSpectrogram
from .model import Recognizer

FP32_TOLERANCE = 1e-4  # max |ORT - PyTorch| on probabilities
INT8_MIN_AGREEMENT = 0.99  # share of probe clips whose top-1 must match fp32
PROBE_CLIPS = 500
# (batch, length in model windows): one window, shorter and longer inputs.
PARITY_SHAPES = ((1, 1.0), (3, 1.0), (2, 0.5), (1, 1.5), (4, 2.0))


class ExportError(RuntimeError):
    """Export produced a model that does not match PyTorch, or could not be written."""


@dataclass(frozen=True)
class ExportResult:
    path: Path
    max_abs_diff: float  # fp32 parity: worst |ORT - PyTorch| over PARITY_SHAPES
    int8_agreement: float | None  # share of probe clips with equal top-1, when int8
    size_bytes: int
    calibration: object | None = None  # calibrate.Calibration, with --calibrate


def output_problem(
    out_path: Path, ckpt_path: Path, suffix: str, is_ours=None, force: bool = False
) -> str | None:
    """Why `out_path` cannot take what is exported from `ckpt_path` (None: it can).
    An existing file is replaced only when `is_ours(path)` recognises it (a model
    or encoder speechlstm wrote), or with `force`."""
    from ..files import FileRefused, check_output

    if out_path.is_dir():
        return f"{out_path}: is a folder; give the {suffix} file to write"
    if same_file(out_path, ckpt_path):
        return f"{out_path}: is the input checkpoint; refusing to overwrite it"
    try:
        check_output(out_path, is_ours, force, what=f"{suffix} file")
    except FileRefused as exc:
        return str(exc)
    return None


def describe(ckpt: Checkpoint, cfg: RunConfig) -> ModelDescription:
    """The typed description written into the ONNX file (modelmeta.py)."""
    summary = ckpt.summary
    return ModelDescription(
        labels=ckpt.labels,
        features=cfg.features,
        model=cfg.model,
        detector=cfg.detector,
        training=TrainingSummary(
            source=str(summary.get("source", ckpt.source)),
            clips=dict(summary.get("clips", {})),
            noise=str(summary.get("noise", "")),
            epochs_completed=int(summary.get("epochs_completed", 0)),
            best_epoch=int(summary.get("best_epoch", 0)),
            best_val_accuracy=summary.get("best_val_accuracy"),
            # From metrics.json (checkpoint.load_model); older checkpoints had it patched in.
            test_accuracy=summary.get("test_accuracy"),
            device=str(summary.get("device", "")),
            train=cfg.train,
            augment=cfg.augment,
            data=cfg.data,
        ),
        n_params=ckpt.n_params,
    )


def export(
    ckpt_path: str | Path,
    out_path: str | Path,
    int8: bool = False,
    min_agreement: float = INT8_MIN_AGREEMENT,
    detector: DetectorConfig | None = None,
    force: bool = False,
    calibrate: bool = False,
) -> ExportResult:
    """`detector`: the detector defaults to store in the model (tuned on a
    stream, speechlstm tune-detector --write) instead of the training config's.
    An existing `out_path` is replaced only if it is a speechlstm model, or `force`.
    `calibrate` fits a temperature on the run's validation split (calibrate.py)
    and stores it in the model's description."""
    out_path = Path(out_path)
    problem = output_problem(out_path, Path(ckpt_path), ".onnx", is_our_model, force)
    if problem:
        raise ExportError(problem)
    model, ckpt, cfg = checkpoint.load_model(ckpt_path)
    try:  # a model no inference command could load is never written
        check_labels(ckpt.labels, f"{ckpt_path}: its labels")
    except ValueError as exc:
        raise ExportError(str(exc)) from None
    if detector is not None:
        try:
            detector.check_labels(ckpt.labels, "--detector")
        except ValueError as exc:
            raise ExportError(str(exc)) from None
        cfg = replace(cfg, detector=detector)
    description = describe(ckpt, cfg)
    calibration = None
    if calibrate:
        from .calibrate import fit_temperature, validation_logits

        try:
            logits, targets = validation_logits(model, ckpt.source, cfg)
            calibration = fit_temperature(logits, targets)
        except (ValueError, OSError) as exc:
            raise ExportError(f"--calibrate: {exc}") from None
        description = replace(description, temperature=calibration.temperature)
    with work_folder(out_path) as tmp:
        fp32_path = Path(tmp) / "fp32.onnx"
        export_fp32(model, cfg, fp32_path, description)
        max_diff = check_parity(model, fp32_path)
        agreement = None
        final = fp32_path
        if int8:
            final = Path(tmp) / "int8.onnx"
            quantize_int8(fp32_path, final, replace(description, quantization="dynamic-int8"))
            probe, probe_name = probe_set(ckpt.source, cfg.features)
            agreement = int8_agreement(fp32_path, final, probe)
            if agreement < min_agreement:
                raise ExportError(
                    f"int8 model agrees with fp32 on only {agreement:.1%} of {len(probe)} "
                    f"probe clips ({probe_name}) "
                    f"(need {min_agreement:.0%}); ship the fp32 model instead"
                )
        move_into_place(final, out_path)
    return ExportResult(out_path, max_diff, agreement, out_path.stat().st_size, calibration)


@contextlib.contextmanager
def work_folder(out_path: Path):
    """A temporary folder beside `out_path` (same file system: the final move is
    atomic), removed afterwards; ExportError naming `out_path` when it cannot
    be made or a write in it fails for want of room (a full disk, a quota or
    a file-size limit): nothing is written then."""
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        holder = tempfile.TemporaryDirectory(dir=out_path.parent)
    except OSError as exc:
        raise ExportError(f"{out_path}: cannot write ({exc.strerror or exc})") from None
    with holder as tmp:
        try:
            yield tmp
        except OSError as exc:
            if exc.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
                raise
            raise ExportError(
                f"{out_path}: cannot write ({exc.strerror}); nothing was written"
            ) from None


def move_into_place(final: Path, out_path: Path) -> None:
    try:
        os.replace(final, out_path)  # same folder: atomic
    except OSError as exc:
        raise ExportError(f"{out_path}: cannot write ({exc.strerror or exc})") from None


class _Front(torch.nn.Module):
    """Waveform -> recurrent inputs: the first part of the exported graph.

    The mel spectrogram is computed as a two-stage DFT of grouped convolutions
    (features.ConvMelSpectrogram) rather than torchaudio's STFT: the same
    numbers, and onnxruntime runs it about 5x faster.
    """

    def __init__(self, model: Recognizer):
        super().__init__()
        self.features = model.features
        self.mel = ConvMelSpectrogram(model.features)
        self.classifier = model.classifier

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        log_mel = self.features.to_db(self.mel(waveform))
        return self.classifier.recurrent_inputs(self.features.cepstrum(log_mel))


class _Readout(torch.nn.Module):
    """Recurrent outputs -> (probabilities, logits): the last part."""

    def __init__(self, model: Recognizer):
        super().__init__()
        self.classifier = model.classifier

    def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.classifier.readout(hidden)
        return torch.softmax(logits, dim=-1), logits


def dynamo_export(module: torch.nn.Module, example: torch.Tensor, names: tuple, dims: dict):
    # The exporter warns that torchvision (which we do not use) is missing.
    logging.getLogger("torch.onnx._internal.exporter._registration").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter is chatty about internals
        program = torch.onnx.export(
            module,
            (example,),
            dynamo=True,
            input_names=[names[0]],
            output_names=list(names[1]),
            dynamic_shapes=(dims,),
            verbose=False,
        )
    program.optimize()
    return program.model_proto


def export_fp32(
    model: Recognizer, cfg: RunConfig, path: Path, description: ModelDescription
) -> None:
    """Export the model in three parts and join them into one graph.

    Tracing the whole model fails: the frame count is derived from the sample
    count through the STFT (and frame stacking), and torch.export cannot trace
    a recurrence over that derived length (nor, for the cells written from
    their equations, a Python loop over a dynamic length at all). So:
      front   waveform -> `frames` (MFCC, input norm, stacking): dynamo
      rnn     `frames` -> `hidden`: built operator by operator (onnx_rnn.py)
      readout `hidden` -> probabilities, logits (pooling, Linear): dynamo
    and onnx.compose joins them on `frames` and `hidden`.
    """
    import onnx
    import onnx.compose

    from .onnx_rnn import recurrent_model

    fc = cfg.features
    batch = torch.export.Dim("batch")
    wave = torch.zeros(2, fc.clip_samples)
    front_module = _Front(model)
    front = dynamo_export(
        front_module,
        wave,
        (INPUT_NAME, ("frames",)),
        {0: batch, 1: torch.export.Dim("samples", min=fc.n_fft)},
    )
    classifier = model.classifier
    with torch.no_grad():
        frames = front_module(wave)
        hidden = classifier.rnn(frames)
    opset = next(o.version for o in front.opset_import if o.domain in ("", "ai.onnx"))
    rnn = recurrent_model(classifier.rnn, cfg.model.cell, frames.shape[-1], opset, front.ir_version)
    readout = dynamo_export(
        _Readout(model),
        hidden,
        ("hidden", OUTPUT_NAMES),
        {0: batch, 1: torch.export.Dim("steps", min=2)},
    )
    parts = []
    for prefix, part in (("front/", front), ("rnn/", rnn), ("head/", readout)):
        parts.append(
            onnx.compose.add_prefix(part, prefix, rename_inputs=False, rename_outputs=False)
        )
    proto = onnx.compose.merge_models(parts[0], parts[1], io_map=[("frames", "frames")])
    proto = onnx.compose.merge_models(proto, parts[2], io_map=[("hidden", "hidden")])
    stamp(proto, description)
    proto.producer_name = "speechlstm"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))


@torch.no_grad()
def check_parity(model: Recognizer, path: Path, shapes=PARITY_SHAPES, seed: int = 0) -> float:
    """Worst |ORT - PyTorch| on probabilities; raises ExportError above FP32_TOLERANCE."""
    sess = open_session(path)
    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    clip_samples = model.features.cfg.clip_samples
    for batch, windows in shapes:
        samples = round(windows * clip_samples)
        wave = (torch.rand(batch, samples, generator=gen) * 2 - 1) * 0.3
        expected, _ = model(wave)
        got = sess.run([OUTPUT_NAMES[0]], {INPUT_NAME: wave.numpy()})[0]
        diff = float(np.abs(got - expected.numpy()).max())
        worst = max(worst, diff)
        if not diff <= FP32_TOLERANCE:
            raise ExportError(
                f"ONNX output differs from PyTorch by {diff:.2e} at batch {batch}, "
                f"{samples} samples (tolerance {FP32_TOLERANCE:.0e})"
            )
    return worst


def quantize_int8(fp32_path: Path, out_path: Path, description: ModelDescription) -> None:
    import onnx
    import onnxscript
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Fold the LSTM's per-direction weights into the constant W/R tensors that
    # DynamicQuantizeLSTM needs; the default size limits stop short of a 2x128 layer.
    cleaned = onnxscript.optimizer.optimize(
        onnx.load(str(fp32_path)), input_size_limit=1 << 24, output_size_limit=1 << 24
    )
    clean_path = out_path.with_suffix(".clean.onnx")
    onnx.save(cleaned, str(clean_path))
    # The MFCC front-end stays fp32: its mel matmul sees power spectra spanning
    # ~12 decades, which 8-bit activations flatten into garbage after the log.
    front = [n.name for n in cleaned.graph.node if n.name.startswith("front/")]
    if not front:
        raise ExportError("cannot find the front-end nodes to keep in fp32")
    with _quiet_root_logger():  # quantize_dynamic logs a pre-processing hint we already follow
        quantize_dynamic(
            str(clean_path), str(out_path), weight_type=QuantType.QInt8, nodes_to_exclude=front
        )
    proto = onnx.load(str(out_path))
    stamp(proto, description)
    onnx.save(proto, str(out_path))


@contextlib.contextmanager
def _quiet_root_logger():
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def probe_waveforms(clip_samples: int, sample_rate: int, n: int = 200, seed: int = 0) -> np.ndarray:
    """Varied, speech-like probe inputs: harmonic tones with formant-ish sweeps in noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(clip_samples) / sample_rate
    out = np.zeros((n, clip_samples), dtype=np.float32)
    for i in range(n):
        f0 = rng.uniform(80, 300)
        sweep = f0 * (1 + rng.uniform(-0.3, 0.3) * t)
        tone = sum(np.sin(2 * np.pi * k * np.cumsum(sweep) / sample_rate) / k for k in range(1, 6))
        start = rng.integers(0, clip_samples // 2)
        length = rng.integers(clip_samples // 5, clip_samples // 2)
        env = np.zeros(clip_samples)
        env[start : start + length] = np.hanning(length)[: clip_samples - start]
        noise = rng.standard_normal(clip_samples) * rng.uniform(0.0, 0.05)
        out[i] = np.clip(tone * env * rng.uniform(0.05, 0.5) + noise, -1, 1)
    return out


def probe_set(
    source: str | None, features: FeatureConfig, n: int = PROBE_CLIPS
) -> tuple[np.ndarray, str]:
    """Clips to compare int8 with fp32 on: the training dataset's validation
    clips when it is still on disk (real inputs, the ones that matter), topped
    up from its other clips to `n` (a small validation split makes one flip
    in 70 look like a broken model), else generated speech-like tones."""
    from ..audio import InvalidAudio, fix_length, load_head
    from ..data.datasets import DatasetError, discover

    try:
        index = discover(source) if source else None
    except DatasetError:
        index = None
    if index is not None:
        rng = np.random.default_rng(0)
        validation = index.split("validation")
        held = {c.path for c in validation}
        others = [c for c in index.clips if c.path not in held]
        clips = [validation[i] for i in rng.permutation(len(validation))]
        clips += [others[i] for i in rng.permutation(len(others))]
        waves, topped_up = [], False
        for i, clip in enumerate(clips):
            if len(waves) >= n:
                break
            try:
                wave = load_head(clip.path, features.clip_samples, features.sample_rate)
            except InvalidAudio:
                continue
            waves.append(fix_length(wave, features.clip_samples))
            topped_up = topped_up or i >= len(validation)
        if len(waves) >= 20:
            name = "clips" if topped_up else "validation clips"
            return np.stack(waves), f"{name} of {source}"
    return probe_waveforms(features.clip_samples, features.sample_rate, n), "generated tones"


def int8_agreement(fp32_path: Path, int8_path: Path, probe: np.ndarray) -> float:
    """Top-1 agreement, each clip in a call of its own as the runtime runs it
    (int8 activation scales are per call: a batch would measure another model)."""
    a = open_session(fp32_path).run([OUTPUT_NAMES[0]], {INPUT_NAME: probe})[0]
    int8 = open_session(int8_path)
    b = np.concatenate([int8.run([OUTPUT_NAMES[0]], {INPUT_NAME: row[None]})[0] for row in probe])
    return float((a.argmax(1) == b.argmax(1)).mean())
