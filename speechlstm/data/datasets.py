"""Labelled datasets: discovery, speaker-disjoint splits, task mapping.

Three layouts are read:

- Speech Commands: one folder per word, `_background_noise_/`, and optional
  `validation_list.txt` / `testing_list.txt`. Without the lists, the dataset's
  own rule splits by a hash of the speaker id (the part of the file name before
  `_nohash_`): 10% validation, 10% test, the same split TensorFlow's recipe makes.
- A plain folder-per-label tree: the same rule, without lists.
- A CSV manifest `path,label[,split]` with paths relative to the CSV's folder.

This module needs only numpy: `evaluate` uses it on the inference side.
"""

from __future__ import annotations

import csv
import hashlib
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..labels import BACKGROUND_NOISE_DIR, SILENCE, Task

AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff"})
SPLITS = ("train", "validation", "test")
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "validation": "validation",
    "val": "validation",
    "valid": "validation",
    "dev": "validation",
    "test": "test",
    "testing": "test",
}

# TensorFlow speech_commands recipe: hash the speaker id so a speaker's clips all
# land in one split, and new clips of a speaker keep the same split.
_MAX_CLIPS_PER_CLASS = 2**27 - 1
_NOHASH_RE = re.compile(r"_nohash_.*$")


@dataclass(frozen=True)
class Clip:
    path: Path
    word: str  # the folder or manifest label, before task mapping
    split: str  # train | validation | test

    @property
    def speaker(self) -> str:
        return speaker_of(self.path)


@dataclass(frozen=True)
class DatasetIndex:
    root: Path
    kind: str  # speech-commands | folders | manifest
    clips: tuple[Clip, ...]
    noise_files: tuple[Path, ...]

    @property
    def words(self) -> list[str]:
        return sorted({c.word for c in self.clips})

    def split(self, name: str) -> list[Clip]:
        return [c for c in self.clips if c.split == name]

    def fingerprint(self) -> str:
        """The dataset by content, not by place: each clip's path relative to the
        root, its word, split and bytes, and the noise files'. A dataset moved
        or renamed keeps it (`train --resume` accepts it under its new name);
        other clips change it."""
        from ..files import FileRefused, open_regular

        digest = hashlib.blake2b(digest_size=16)
        clips = sorted(self.clips, key=lambda c: (c.split, c.word, str(c.path)))
        entries = [(f"{c.split}\0{c.word}", c.path) for c in clips]
        entries += [("noise", path) for path in sorted(self.noise_files)]
        for what, path in entries:
            rel = os.path.relpath(path, self.root)
            digest.update(f"{what}\0{rel}\0".encode("utf-8", "surrogateescape"))
            try:
                with open_regular(path, "audio file") as fh:
                    digest.update(hashlib.file_digest(fh, "blake2b").digest())
            except (OSError, FileRefused) as exc:
                digest.update(f"unreadable:{getattr(exc, 'errno', None) or exc}".encode())
        return digest.hexdigest()

    def summary(self) -> str:
        counts = Counter(c.split for c in self.clips)
        parts = ", ".join(f"{counts.get(s, 0)} {s}" for s in SPLITS)
        return (
            f"{self.kind} dataset at {self.root}: {len(self.words)} labels, {parts} clips, "
            f"{len(self.noise_files)} noise files"
        )


class DatasetError(ValueError):
    """A dataset that cannot be used; the message names the path and what is wrong."""


def speaker_of(path: Path) -> str:
    """Speaker id: the file name before `_nohash_` (Speech Commands), else the whole stem."""
    return _NOHASH_RE.sub("", Path(path).stem)


def hash_split(path: Path, validation_pct: float = 10.0, test_pct: float = 10.0) -> str:
    """The Speech Commands split rule (which_set): stable per speaker."""
    speaker = speaker_of(path)
    digest = hashlib.sha1(speaker.encode("utf-8", "surrogateescape")).hexdigest()
    pct = (int(digest, 16) % (_MAX_CLIPS_PER_CLASS + 1)) * (100.0 / _MAX_CLIPS_PER_CLASS)
    if pct < validation_pct:
        return "validation"
    if pct < validation_pct + test_pct:
        return "test"
    return "train"


def discover(source: str | Path) -> DatasetIndex:
    """Index a dataset folder or CSV manifest. Raises DatasetError with the reason."""
    src = Path(source)
    if not src.exists():
        raise DatasetError(f"{src}: no such file or folder")
    if not src.is_file() and not src.is_dir():
        from ..files import kind

        # A FIFO or a device as the data: reading it would hang, or never end.
        raise DatasetError(
            f"{src}: is {kind(src.stat().st_mode)}; expected a dataset folder or a .csv manifest"
        )
    if src.is_file():
        if src.suffix.lower() != ".csv":
            raise DatasetError(f"{src}: expected a dataset folder or a .csv manifest")
        return _from_manifest(src)
    return _from_folders(src)


def _from_folders(root: Path) -> DatasetIndex:
    val_list = _read_list(root / "validation_list.txt")
    test_list = _read_list(root / "testing_list.txt")
    has_lists = val_list is not None or test_list is not None
    clips = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        if folder.name == BACKGROUND_NOISE_DIR or folder.name.startswith("."):
            continue
        if not folder.name.isprintable() or not _is_text(folder.name):
            raise DatasetError(
                f"{folder}: a label folder's name must be printable UTF-8 text (it becomes a label)"
            )
        for path in sorted(folder.iterdir()):
            if path.suffix.lower() not in AUDIO_SUFFIXES or not path.is_file():
                continue
            rel = f"{folder.name}/{path.name}"
            if has_lists:
                split = (
                    "validation"
                    if rel in (val_list or set())
                    else "test"
                    if rel in (test_list or set())
                    else "train"
                )
            else:
                split = hash_split(path)
            clips.append(Clip(path, folder.name, split))
    if not clips:
        raise DatasetError(
            f"{root}: no audio found; expected one folder per label holding "
            f"{'/'.join(sorted(s[1:] for s in AUDIO_SUFFIXES))} files, or a .csv manifest"
        )
    noise = _audio_files(root / BACKGROUND_NOISE_DIR)
    kind = "speech-commands" if has_lists or noise else "folders"
    return DatasetIndex(root, kind, tuple(clips), tuple(noise))


def _from_manifest(csv_path: Path) -> DatasetIndex:
    base = csv_path.parent
    clips, noise = [], []
    # surrogateescape: paths that are not UTF-8 keep their bytes (and open);
    # a label must be text, checked below.
    import io

    from ..files import FileRefused, open_regular

    try:
        raw = open_regular(csv_path, "manifest")
    except FileRefused as exc:
        raise DatasetError(str(exc)) from None
    with io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="") as fh:
        try:
            rows = list(csv.reader(fh))
        except csv.Error as exc:
            raise DatasetError(f"{csv_path}: not a readable CSV manifest ({exc})") from None
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["path", "label"]:
        rows = rows[1:]
    for line_no, row in enumerate(rows, start=1):
        if not row or not "".join(row).strip() or row[0].lstrip().startswith("#"):
            continue
        if len(row) < 2:
            raise DatasetError(f"{csv_path}:{line_no}: expected path,label[,split], got {row!r}")
        path = Path(row[0].strip())
        path = path if path.is_absolute() else base / path
        label = row[1].strip()
        if not label or not label.isprintable() or not _is_text(label):
            raise DatasetError(
                f"{csv_path}:{line_no}: label {label!r} is empty, not UTF-8 or not printable"
            )
        if label == BACKGROUND_NOISE_DIR:
            noise.append(path)
            continue
        if len(row) > 2 and row[2].strip():
            split = SPLIT_ALIASES.get(row[2].strip().lower())
            if split is None:
                raise DatasetError(
                    f"{csv_path}:{line_no}: split {row[2]!r} is not one of train, validation, test"
                )
        else:
            split = hash_split(path)
        clips.append(Clip(path, label, split))
    if not clips:
        raise DatasetError(f"{csv_path}: the manifest lists no clips")
    return DatasetIndex(base, "manifest", tuple(clips), tuple(noise))


def _read_list(path: Path) -> set[str] | None:
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8", errors="surrogateescape")
    return {line.strip() for line in text.splitlines() if line.strip()}


def _is_text(name: str) -> bool:
    """False for a name holding bytes that were not UTF-8 (surrogate escapes)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _audio_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)


@dataclass(frozen=True)
class SplitSpec:
    """One split under a task: the files, their class ids, and how many silence clips to make."""

    paths: tuple[Path, ...]
    targets: np.ndarray  # (N,) int64 class ids, aligned with paths
    n_generated_silence: int  # extra silence clips to cut from background noise


def task_split(index: DatasetIndex, task: Task, split: str, silence_share: float) -> SplitSpec:
    """Map a split's clips onto the task's classes.

    Files of words outside the task are dropped (or become `_unknown_` in open
    sets). When the task has `_silence_` and the split has no silence files,
    `silence_share` x (word clips) silence clips are made from background noise.
    """
    label_ids = {label: i for i, label in enumerate(task.labels)}
    paths, targets = [], []
    for clip in index.split(split):
        cls = task.class_of(clip.word)
        if cls is not None:
            paths.append(clip.path)
            targets.append(label_ids[cls])
    n_silence_files = sum(1 for t in targets if task.labels[t] == SILENCE)
    n_make = 0
    if task.silence and n_silence_files == 0:
        n_make = int(round(silence_share * len(paths)))
        if split == "train":
            n_make = max(n_make, 1)
    return SplitSpec(tuple(paths), np.asarray(targets, dtype=np.int64), n_make)


def check_speakers_disjoint(index: DatasetIndex) -> dict[str, set[str]]:
    """Speakers found in more than one split, by split pair (empty when disjoint)."""
    by_split = {s: {c.speaker for c in index.split(s)} for s in SPLITS}
    overlaps = {}
    for i, a in enumerate(SPLITS):
        for b in SPLITS[i + 1 :]:
            shared = by_split[a] & by_split[b]
            if shared:
                overlaps[f"{a}/{b}"] = shared
    return overlaps
