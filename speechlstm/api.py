"""The public API: `Recognizer` for clips and recordings, `Detector` for streams.

    from speechlstm import Recognizer, Detector
    r = Recognizer()                          # the shipped default, or a path / shipped name
    p = r.predict(samples, sample_rate=16000) # int16 or float, any rate, any length
    d = Detector()                            # the model's stored detector settings
    for e in d.push(chunk): ...               # any chunk size, int16 or float

The command line calls exactly these (`transcribe`, `score`, `live`), and so
does the Wyoming service, so a program, a script and a terminal get the same
answers from the same code. Audio of any rate, integer width or channel count
is converted as files are (audio.py); numpy + onnxruntime (+ soxr) only.
docs/api.md is the user's page, with examples that run as tests.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .audio import InvalidAudio, _int_to_float, to_mono_16k
from .config import DetectorConfig
from .detect.cascade import cascade, verifier_of
from .detect.stream import Detection, DetectorStats, StreamingDetector
from .runtime import OnnxRecognizer, model_name, resolve_model
from .transcribe import FileResult, batch_top_k, classify_waveform

__all__ = ["Detection", "Detector", "Prediction", "Recognizer"]

ModelSpec = str | os.PathLike | None


@dataclass(frozen=True)
class Prediction:
    """The answer for one clip or recording: the best label, its probability, the
    `top` (label, probability) pairs, every class's probability, and the length."""

    label: str
    score: float
    top: tuple[tuple[str, float], ...]
    probabilities: dict[str, float]
    duration_s: float

    def to_json(self) -> dict:
        return {
            "label": self.label,
            "score": round(self.score, 6),
            "top": [[lab, round(s, 6)] for lab, s in self.top],
            "duration_s": round(self.duration_s, 3),
        }


class Recognizer:
    """One model, for clips and recordings.

    `model`: a path to a speechlstm ONNX model, the name of a shipped one
    (`"sc12"`, `"sc12_synthetic"`), or None for the shipped default.
    `threads`: onnxruntime threads for this model (0: onnxruntime's choice).
    Raises runtime.ModelError (a ValueError) naming the file for a model it cannot use.
    """

    def __init__(self, model: ModelSpec = None, *, threads: int = 1):
        self.path = resolve_model(model)
        self.name = model_name(model)
        self.runtime = OnnxRecognizer(self.path, threads=threads)
        self.description = self.runtime.description
        self.labels: tuple[str, ...] = self.runtime.labels
        self.sample_rate: int = self.runtime.sample_rate

    def __repr__(self) -> str:
        return f"Recognizer({str(self.path)!r}, labels={list(self.labels)})"

    def waveform(self, samples, sample_rate: int | None = None) -> np.ndarray:
        """`samples` (int or float, (n,) or (n, channels), at `sample_rate`, default
        the model's) as the model hears them: float32 mono at its rate.
        InvalidAudio for empty, too short or non-finite audio."""
        return to_mono_16k(np.asarray(samples), sample_rate or self.sample_rate, self.sample_rate)

    def predict(self, samples, sample_rate: int | None = None, top_k: int = 3) -> Prediction:
        """The label of a clip or recording of any length. A clip up to the model
        window (1 s) is classified once; a longer one by its strongest command
        window (a window every 100 ms), as `transcribe` and `score` answer."""
        wave = self.waveform(samples, sample_rate)
        return self._prediction(classify_waveform(self.runtime, wave), len(wave), top_k)

    def predict_many(
        self,
        clips: Iterable,
        sample_rate: int | None = None,
        top_k: int = 3,
        workers: int | None = None,
    ) -> list[Prediction]:
        """`predict` of each clip, in order, on `workers` cores at once (default:
        every core this process may use). Each answer is the clip's own: the same
        as `predict` of it alone (scoring.py runs one clip a model call)."""
        from .scoring import score_waves, usable_cores

        waves = [self.waveform(c, sample_rate) for c in clips]
        probs = score_waves(self.runtime, waves, workers or usable_cores())
        return [self._prediction(p, len(w), top_k) for p, w in zip(probs, waves)]

    def predict_file(self, path: str | os.PathLike, top_k: int = 3) -> Prediction:
        """`predict` of an audio file (WAV, FLAC, OGG...; any rate). InvalidAudio
        names the file and the reason when it cannot be used."""
        from .audio import is_large, load_audio, stream_audio
        from .transcribe import classify_stream

        if is_large(path):  # streamed: memory does not grow with the recording
            probs, n = classify_stream(self.runtime, stream_audio(path, self.sample_rate))
            return self._prediction(probs, n, top_k)
        wave = load_audio(path, self.sample_rate)
        return self._prediction(classify_waveform(self.runtime, wave), len(wave), top_k)

    def transcribe_file(
        self, path: str | os.PathLike, top_k: int = 1, detector: Detector | None = None
    ) -> FileResult:
        """What `speechlstm transcribe` prints for a file: its label, or, with a
        `detector`, a timeline for a recording longer than the window. Never raises
        for bad audio: the reason is in `FileResult.error`."""
        from .transcribe import transcribe_file

        return transcribe_file(self.runtime, path, top_k, _single(detector, self))

    def transcribe_stream(
        self,
        blocks: Iterable[np.ndarray],
        name: str = "-",
        top_k: int = 1,
        detector: Detector | None = None,
    ) -> FileResult:
        """`transcribe_file` of audio arriving in blocks (float32 at the model's
        rate, e.g. pcm.pcm_blocks of standard input): a clip up to the window is
        classified, a longer recording streamed through the detector, in memory
        bounded by one window however long it runs."""
        from .transcribe import transcribe_blocks

        return transcribe_blocks(self.runtime, blocks, name, top_k, _single(detector, self))

    def _prediction(self, probs: np.ndarray, n_samples: int, top_k: int) -> Prediction:
        top = tuple(batch_top_k(probs[None], self.labels, max(1, top_k))[0])
        return Prediction(
            top[0][0],
            top[0][1],
            top,
            {lab: float(p) for lab, p in zip(self.labels, probs)},
            n_samples / self.sample_rate,
        )


def _single(detector: Detector | None, recognizer: Recognizer) -> StreamingDetector | None:
    if detector is None:
        return None
    if len(detector.detectors) != 1 or detector.recognizers[0].path != recognizer.path:
        raise ValueError("transcribe takes a Detector built on the same single model")
    return detector.detectors[0]


class Detector:
    """Commands in a stream, as they are spoken: push chunks, get detections.

    `models`: one model or a list (paths, shipped names, Recognizers); None is
    the shipped default. Every model hears the same audio through its own
    detector, with its own stored settings; each Detection names its model.
    `sample_rate`: the rate of the chunks pushed (default: the models', 16 kHz);
    any other is resampled as it streams.
    The settings below override each model's stored ones (None keeps them):
    `threshold` (every label), `hop_ms`, `smoothing_ms`, `refractory_ms`,
    `peak_wait_ms`, `gate` (the energy gate on or off) and `gate_dbfs`.
    `detector_file`: a [detector] TOML (`tune-detector --write`) to start from
    instead of the stored settings (or `detector_settings`, a DetectorConfig).
    `verifier`: a second model (path, shipped name or detect.verify.Verifier; or a
    list, one per model) that rules on each candidate, at `verifier_threshold`
    (default 0.5). A shipped verifier (`"sc12"`: our head on the speech
    embedding of the installed openwakeword 0.4.0, the `embedding` extra)
    brings the first-stage settings and threshold tuned for the pair, and
    its own first stage (`sc12_mined`) where `models` is None.
    `sensitivity` (0 to 1): one of the operating points stored with the
    settings (`tune-detector` stores points at 0.25 to 8 false alarms an hour
    of validation negatives): 0 the fewest false alarms, 1 the most commands;
    None keeps the stored settings (the tuner's choice at 1 an hour).
    """

    def __init__(
        self,
        models: ModelSpec | Recognizer | Sequence[ModelSpec | Recognizer] = None,
        *,
        sample_rate: int | None = None,
        threshold: float | None = None,
        hop_ms: float | None = None,
        smoothing_ms: float | None = None,
        refractory_ms: float | None = None,
        peak_wait_ms: float | None = None,
        gate: bool | None = None,
        gate_dbfs: float | None = None,
        detector_file: str | os.PathLike | None = None,
        detector_settings: DetectorConfig | None = None,
        verifier=None,
        verifier_threshold: float | None = None,
        sensitivity: float | None = None,
        threads: int = 1,
    ):
        specs = list(models) if isinstance(models, list | tuple) else [models]
        if not specs:
            raise ValueError("Detector needs at least one model")
        from .shipped_verifier import first_stage

        # A shipped verifier runs behind its own first stage where no model is named.
        if isinstance(verifier, str):
            specs = [first_stage(verifier, m) for m in specs]
        self.recognizers = [
            m if isinstance(m, Recognizer) else Recognizer(m, threads=threads) for m in specs
        ]
        names = [r.name for r in self.recognizers]
        # Two models of one name (two copies of `sc12.onnx`) are told apart by path.
        self.models = [str(r.path) if names.count(r.name) > 1 else r.name for r in self.recognizers]
        overrides = dict(
            threshold=threshold,
            hop_ms=hop_ms,
            smoothing_ms=smoothing_ms,
            refractory_ms=refractory_ms,
            peak_wait_ms=peak_wait_ms,
            gate=gate,
            gate_dbfs=gate_dbfs,
        )
        from .shipped_verifier import pair_settings

        pair_cfg, pair_threshold = pair_settings(verifier if isinstance(verifier, str) else None)
        base = detector_settings or pair_cfg
        if detector_file is not None:
            from .config_text import load_detector_toml

            base = load_detector_toml(detector_file)
        verifiers = verifier if isinstance(verifier, list) else [verifier] * len(specs)
        if len(verifiers) != len(specs):
            raise ValueError(f"{len(verifiers)} verifiers for {len(specs)} models")
        self.points = []  # the operating point each model runs at (None: its settings)
        self.detectors = []
        for rec, name, ver in zip(self.recognizers, self.models, verifiers):
            source = str(detector_file or ("the verifier's pair" if base else name))
            cfg, point = _settings_at(base or rec.description.detector, sensitivity, source)
            cfg.check_labels(rec.labels, source)
            cfg = cfg.with_overrides(**overrides)
            second = _verifier_at(ver, verifier_threshold, point, pair_threshold, rec, threads)
            self.points.append(point)
            self.detectors.append(cascade(rec.runtime, second, cfg, name=name))
        self.rate_hz = self.detectors[0].rate_hz  # what push() hands each model
        self.input_rate_hz = sample_rate or self.rate_hz
        self.reset()

    @property
    def configs(self) -> list[DetectorConfig]:
        """Each model's detector settings in force."""
        return [d.cfg for d in self.detectors]

    @property
    def verifiers(self) -> list:
        """Each model's second stage (verify.Verifier), None where it has none."""
        return [verifier_of(d) for d in self.detectors]

    @property
    def stats(self) -> DetectorStats:
        """Counts over every model: hops, model runs, detections, verifier rulings."""
        out = DetectorStats()
        for d in self.detectors:
            for key in ("hops", "inferences", "detections", "verified", "rejected", "relabelled"):
                setattr(out, key, getattr(out, key) + getattr(d.stats, key))
            for label, n in d.stats.per_label.items():
                out.per_label[label] = out.per_label.get(label, 0) + n
        return out

    def reset(self) -> None:
        """Start a new stream: buffers, smoothing, refractory periods and counts."""
        for d in self.detectors:
            d.reset()
        self.samples = 0  # input samples pushed since reset
        self._resampler = None
        if self.input_rate_hz != self.rate_hz:
            import soxr

            self._resampler = soxr.ResampleStream(
                self.input_rate_hz, self.rate_hz, 1, dtype="float32", quality="HQ"
            )

    def push(self, chunk) -> list[Detection]:
        """Feed a chunk of audio (int or float, (n,) or (n, channels), any length);
        returns the detections it completes, in stream order. InvalidAudio for
        NaN or infinite samples."""
        return self._feed(self._convert(chunk), last=False)

    def flush(self) -> list[Detection]:
        """End of stream: report a command still in progress at the very end."""
        found = self._feed(np.zeros(0, np.float32), last=True)
        for d in self.detectors:
            found += d.flush()
        return _ordered(found)

    def _feed(self, wave: np.ndarray, last: bool) -> list[Detection]:
        if self._resampler is not None:
            wave = np.clip(self._resampler.resample_chunk(wave, last=last), -1.0, 1.0)
        found: list[Detection] = []
        if wave.size:
            for d in self.detectors:
                found += d.push(wave)
        return _ordered(found)

    def _convert(self, chunk) -> np.ndarray:
        data = np.asarray(chunk)
        if data.ndim == 2:
            data = data.mean(axis=1) if data.dtype.kind == "f" else data
        elif data.ndim != 1:
            raise InvalidAudio(
                None, f"expected (samples,) or (samples, channels), got {data.shape}"
            )
        if data.dtype.kind in "iu":
            data = _int_to_float(data)
            if data.ndim == 2:
                data = data.mean(axis=1, dtype=np.float32)
        data = np.asarray(data, dtype=np.float32)
        if not np.isfinite(data).all():
            at = (self.samples + int(np.argmax(~np.isfinite(data)))) / self.input_rate_hz
            raise InvalidAudio(None, f"NaN or infinite samples at {at:.2f} s of the stream")
        self.samples += len(data)
        return np.clip(data, -1.0, 1.0)

    def run(self, blocks: Iterable) -> Iterator[Detection]:
        """Every detection of a stream of blocks, flushed at its end."""
        self.reset()
        for block in blocks:
            yield from self.push(block)
        yield from self.flush()


def _ordered(found: list[Detection]) -> list[Detection]:
    """Detections of several models in stream order (a stable sort: one model's
    own order is kept)."""
    return sorted(found, key=lambda d: d.end_s) if len(found) > 1 else found


def _settings_at(cfg: DetectorConfig, sensitivity: float | None, source: str):
    """(settings, operating point) at `sensitivity`; the settings as they are
    (and no point) without one; a ValueError naming `source`."""
    if sensitivity is None:
        return cfg, None
    try:
        return cfg.at_sensitivity(sensitivity)
    except ValueError as exc:
        raise ValueError(f"{source}: {exc}") from None


def _verifier_at(verifier, given: float | None, point, pair_threshold, rec, threads: int):
    """The second stage at its threshold: the one given, else the operating
    point's, else the shipped pair's, else 0.5. A ready Verifier is copied to
    take a point's threshold."""
    from_point = given is None and point is not None and point.verifier_threshold
    threshold = given if given is not None else None
    if threshold is None:
        threshold = point.verifier_threshold if from_point else (pair_threshold or 0.5)
    second = _verifier(verifier, threshold, rec, threads)
    if second is not None and from_point and second.threshold != threshold:
        import copy

        second = copy.copy(second)
        second.threshold = threshold
    return second


def _verifier(verifier, threshold: float, recognizer: Recognizer, threads: int):
    """The second stage for one model: None, a ready verify.Verifier, or a model
    to load as one."""
    if verifier is None:
        return None
    from .detect.verify import Verifier

    if isinstance(verifier, Verifier):
        return verifier
    from .shipped_verifier import resolve_verifier

    second = OnnxRecognizer(resolve_verifier(verifier), threads=threads)
    return Verifier(second, threshold, commands=recognizer.labels)
