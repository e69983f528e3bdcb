"""Evaluate a model on a labelled dataset: accuracy, per-class figures, confusions, calibration.

Dataset words are mapped onto the model's task (labels.Task.class_of): a word
the model knows is itself, `_silence_` clips are silence, anything else is
`_unknown_` when the model has that class (and skipped when it has not). When
the model has `_silence_` and the split holds no silence clips, silence is cut
from the dataset's background noise (the model's training `silence_share` of
the clips, seeded), as training does. Scoring hands over each clip's
probabilities, which are kept as they are.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import metrics
from .data.datasets import SPLITS, discover
from .labels import SILENCE, Task
from .runtime import OnnxRecognizer
from .scoring import score_paths

N_CALIBRATION_BINS = 10


@dataclass
class Evaluation:
    labels: tuple[str, ...]
    targets: np.ndarray  # (N,) class ids
    probs: np.ndarray  # (N, C)
    paths: list[str]
    errors: dict[str, str]  # files that could not be read
    skipped_words: dict[str, int]  # dataset words the model has no class for

    @property
    def predictions(self) -> np.ndarray:
        return self.probs.argmax(axis=1)


def evaluate(
    recognizer: OnnxRecognizer,
    source: str | Path,
    split: str = "test",
    workers: int = 1,
    batch_size: int = 8,
    progress=None,
    parallel_batches: int = 1,
) -> Evaluation:
    if split not in (*SPLITS, "all"):
        raise ValueError(f"split {split!r}: choose test, validation, train or all")
    index = discover(source)
    labels = recognizer.labels
    clips = list(index.clips) if split == "all" else index.split(split)
    if not clips:
        raise ValueError(f"{source}: the {split} split is empty")
    task = Task.from_labels(labels)
    class_id = {lab: i for i, lab in enumerate(labels)}
    chosen, targets, skipped = [], [], {}
    for clip in clips:
        cls = task.class_of(clip.word)
        if cls is None:
            skipped[clip.word] = skipped.get(clip.word, 0) + 1
            continue
        chosen.append(str(clip.path))
        targets.append(class_id[cls])
    probs, paths, kept, errors = [], [], [], {}
    for i, result in enumerate(
        score_paths(
            recognizer,
            chosen,
            batch_size=batch_size,
            workers=workers,
            parallel_batches=parallel_batches,
        )
    ):
        if progress:
            progress(1)
        if result.error is not None:
            errors[result.path] = result.error
            continue
        probs.append(result.probs)
        paths.append(result.path)
        kept.append(targets[i])
    if SILENCE in class_id and class_id[SILENCE] not in targets:
        share = recognizer.description.training.data.silence_share
        silence = _silence_clips(index, recognizer, max(1, round(share * len(kept))))
        probs.extend(recognizer.predict(silence))
        kept.extend([class_id[SILENCE]] * len(silence))
        paths.extend(f"<silence:{k}>" for k in range(len(silence)))
    return Evaluation(
        labels,
        np.asarray(kept, dtype=np.int64),
        np.asarray(probs, np.float32).reshape(len(kept), len(labels)),
        paths,
        errors,
        skipped,
    )


def _silence_clips(index, recognizer: OnnxRecognizer, n: int) -> np.ndarray:
    from .audio import int16_to_float
    from .data.prepare import load_noise, make_silence

    noise, _ = load_noise(index, None, recognizer.description.features)
    return int16_to_float(
        make_silence(noise, n, recognizer.clip_samples, np.random.default_rng([0, 2000]))
    )


def calibration(confidence: np.ndarray, correct: np.ndarray, bins: int = N_CALIBRATION_BINS):
    """Reliability bins (equal width over [0, 1]) and the expected calibration error."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        mask = which == b
        if not mask.any():
            continue
        acc, conf = float(correct[mask].mean()), float(confidence[mask].mean())
        rows.append(
            {
                "low": float(edges[b]),
                "high": float(edges[b + 1]),
                "count": int(mask.sum()),
                "accuracy": acc,
                "confidence": conf,
            }
        )
        ece += mask.mean() * abs(acc - conf)
    return rows, float(ece)


def report(ev: Evaluation) -> dict:
    cm = metrics.confusion_matrix(ev.targets, ev.predictions, len(ev.labels))
    pairs = [
        (int(cm[i, j]), ev.labels[i], ev.labels[j])
        for i in range(len(ev.labels))
        for j in range(len(ev.labels))
        if i != j and cm[i, j]
    ]
    pairs.sort(key=lambda p: (-p[0], p[1], p[2]))
    confidence = ev.probs.max(axis=1) if len(ev.probs) else np.zeros(0)
    bins, ece = calibration(confidence, ev.predictions == ev.targets)
    return {
        "clips": int(len(ev.targets)),
        "accuracy": metrics.accuracy(cm),
        "balanced_accuracy": metrics.balanced_accuracy(cm),
        "per_class": metrics.per_class(cm, ev.labels),
        "most_confused": [{"true": t, "predicted": p, "count": c} for c, t, p in pairs[:10]],
        "confusion_matrix": cm.tolist(),
        "labels": list(ev.labels),
        "expected_calibration_error": ece,
        "reliability": bins,
        "errors": ev.errors,
        "skipped_words": ev.skipped_words,
    }


REPORT_FILES = ("report.json", "report.md", "confusion.png", "reliability.png")
# The files report.json lists by content hash: a PNG or a page in the folder is
# ours only if our report names it with these very bytes (a photo a user saved
# as confusion.png is a PNG too).
LISTED_FILES = REPORT_FILES[1:]


def _sha256(path: Path) -> str | None:
    from .files import FileRefused, read_capped

    try:
        return hashlib.sha256(read_capped(path, 64 << 20, "report file")).hexdigest()
    except FileRefused:
        return None


def _our_report(path: Path) -> dict | None:
    """report.json's content if it is a report evaluate wrote, else None."""
    from .files import FileRefused, read_capped

    try:
        rep = json.loads(read_capped(path, 64 << 20, "report file"))
    except (FileRefused, ValueError):
        return None
    if isinstance(rep, dict) and {"accuracy", "confusion_matrix", "labels"} <= rep.keys():
        return rep
    return None


def is_our_report_file(path: Path) -> bool:
    """A report file evaluate wrote (so a later evaluate may replace it): report.json
    by its content, the others by report.json's list of what it wrote."""
    if path.name == REPORT_FILES[0]:
        return _our_report(path) is not None
    rep = _our_report(path.parent / REPORT_FILES[0])
    listed = (rep or {}).get("files")
    if not isinstance(listed, dict):
        return False
    digest = _sha256(path)
    return digest is not None and listed.get(path.name) == digest


def check_report_dir(out_dir: Path, force: bool = False) -> None:
    """Before the evaluation starts: the folder can be written, and each report file
    in it is one of ours (or `force`). FileRefused names the problem."""
    from .files import FileRefused, check_output

    if out_dir.exists() and not out_dir.is_dir():
        raise FileRefused(f"{out_dir}: is not a folder; --report-dir needs one")
    folder = out_dir
    while not folder.exists() and folder.parent != folder:
        folder = folder.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        raise FileRefused(f"{out_dir}: cannot write the report there ({folder} is not writable)")
    for name in REPORT_FILES:
        check_output(out_dir / name, is_our_report_file, force, what="report file")


def write_report(rep: dict, out_dir: Path, title: str, force: bool = False) -> list[Path]:
    """report.md and the plots, then report.json listing them by hash (last: until
    it is written, the previous report's list does not vouch for the new files)."""
    from .files import write_atomic
    from .plots import plot_confusion, plot_reliability

    check_report_dir(out_dir, force)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / n for n in REPORT_FILES]
    write_atomic(written[1], markdown(rep, title))
    plot_confusion(
        np.asarray(rep["confusion_matrix"]),
        rep["labels"],
        written[2],
        title=f"{title}: accuracy {rep['accuracy']:.3f}",
    )
    plot_reliability(rep["reliability"], written[3], rep["expected_calibration_error"])
    files = {p.name: _sha256(p) for p in written[1:]}
    write_atomic(written[0], json.dumps({**rep, "files": files}, indent=2))
    return written


def markdown(rep: dict, title: str) -> str:
    lines = [
        f"# {title}",
        "",
        f"- clips: {rep['clips']}",
        f"- accuracy: {rep['accuracy']:.4f}",
        f"- balanced accuracy: {rep['balanced_accuracy']:.4f}",
        f"- expected calibration error: {rep['expected_calibration_error']:.4f}",
        f"- unreadable files: {len(rep['errors'])}",
        "",
        "| class | precision | recall | F1 | support |",
        "|---|---|---|---|---|",
    ]
    for label, m in rep["per_class"].items():
        lines.append(
            f"| {label} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} "
            f"| {m['support']} |"
        )
    lines += ["", "Most confused (true -> predicted):", ""]
    lines += [f"- {p['true']} -> {p['predicted']}: {p['count']}" for p in rep["most_confused"]]
    return "\n".join(lines) + "\n"
