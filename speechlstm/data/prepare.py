"""Turn a dataset on disk into in-memory training arrays (numpy only).

discover -> task mapping -> decoded sample banks (cached) -> + silence clips
cut from background noise -> SplitData per split, plus the noise bank for
augmentation. Extra sources (`DataConfig.extra`, `train --add`) add to the
training split and the noise bank only.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..audio import InvalidAudio, float_to_int16, load_head
from ..config import DataConfig, FeatureConfig
from ..labels import SILENCE, Task, make_task
from ..progress import note, progress_bar
from .bank import load_bank
from .datasets import SPLITS, DatasetIndex, SplitSpec, discover, task_split
from .noise import default_noise_bank

# Noise recordings are tiled or cut to this length so they stack into one array.
NOISE_SECONDS = 60.0
# Share of generated silence clips that are digital zeros (a muted microphone).
ZERO_SILENCE_SHARE = 0.1


@dataclass
class SplitData:
    audio: np.ndarray  # (N, clip_samples) int16
    targets: np.ndarray  # (N,) int64
    paths: list[str]  # N entries; generated silence clips are "<silence:k>"
    # (N,) bool: the clip came from an extra source (`train --add`); None when
    # there are none. The sampler uses it for `data.extra_share`.
    from_extra: np.ndarray | None = None


@dataclass
class Prepared:
    index: DatasetIndex
    task: Task
    splits: dict[str, SplitData]
    noise: np.ndarray  # (n_noise, noise_samples) float32
    noise_source: str
    errors: dict[str, str]  # files that could not be decoded, with the reason

    def counts(self) -> dict[str, int]:
        return {name: len(s.targets) for name, s in self.splits.items()}

    @functools.cached_property
    def fingerprint(self) -> str:
        """The source dataset by content (DatasetIndex.fingerprint)."""
        return self.index.fingerprint()


def prepare(
    source: str | Path,
    data_cfg: DataConfig,
    feature_cfg: FeatureConfig,
    seed: int,
    noise_dir: str | Path | None = None,
    cache_dir: Path | None = None,
    workers: int = 4,
    show_progress: bool | None = None,
) -> Prepared:
    index = discover(source)
    task = make_task(data_cfg.task, list(data_cfg.words), index.words)
    extras = [discover(extra) for extra in data_cfg.extra]
    noise, noise_source = load_noise(index, noise_dir, feature_cfg, extras)
    specs = {s: task_split(index, task, s, data_cfg.silence_share) for s in SPLITS}
    primary_train = {str(p) for p in specs["train"].paths}
    if extras:
        specs["train"] = add_extra_sources(specs["train"], extras, task)
    total = sum(len(spec.paths) for spec in specs.values())
    errors: dict[str, str] = {}
    splits = {}
    with progress_bar("decoding", total, enabled=show_progress, unit="clips") as advance:
        for i, (name, spec) in enumerate(specs.items()):
            paths, targets = list(spec.paths), spec.targets
            if name == "train" and data_cfg.unknown_share > 0:
                paths, targets = _cap_unknown(paths, targets, task, data_cfg.unknown_share, seed)
            bank = load_bank(
                paths,
                feature_cfg.clip_samples,
                feature_cfg.sample_rate,
                cache_dir,
                workers=workers,
                progress=advance,
            )
            errors.update(bank.errors)
            audio, targets = bank.audio[bank.ok], targets[bank.ok]
            kept_paths = [str(p) for p, ok in zip(paths, bank.ok) if ok]
            if spec.n_generated_silence:
                rng = np.random.default_rng([seed, 1000 + i])
                silence = make_silence(
                    noise, spec.n_generated_silence, feature_cfg.clip_samples, rng
                )
                audio = np.concatenate([audio, silence])
                targets = np.concatenate(
                    [targets, np.full(len(silence), task.labels.index(SILENCE), dtype=np.int64)]
                )
                kept_paths += [f"<silence:{k}>" for k in range(len(silence))]
            from_extra = None
            if name == "train" and extras:
                from_extra = np.array(
                    [not p.startswith("<silence:") and p not in primary_train for p in kept_paths]
                )
            splits[name] = SplitData(audio, targets, kept_paths, from_extra)
    if errors:
        note(
            f"skipped {len(errors)} file(s) that could not be decoded, e.g. "
            f"{next(iter(errors))}: {next(iter(errors.values()))}"
        )
    return Prepared(index, task, splits, noise, noise_source, errors)


def add_extra_sources(train: SplitSpec, extras: list[DatasetIndex], task: Task) -> SplitSpec:
    """The training split plus every clip of the extra sources that maps onto
    the task (all their splits: none of them is used to select or report)."""
    label_ids = {label: i for i, label in enumerate(task.labels)}
    paths, targets = list(train.paths), train.targets.tolist()
    for extra in extras:
        for clip in extra.clips:
            cls = task.class_of(clip.word)
            if cls is not None:
                paths.append(clip.path)
                targets.append(label_ids[cls])
    return SplitSpec(tuple(paths), np.asarray(targets, dtype=np.int64), train.n_generated_silence)


def load_noise(
    index: DatasetIndex,
    noise_dir: str | Path | None,
    feature_cfg: FeatureConfig,
    extras: list[DatasetIndex] = (),
) -> tuple[np.ndarray, str]:
    """Background noise for silence clips and augmentation: --noise DIR, else the
    dataset's `_background_noise_/` and the extra sources', else generated
    white/pink/brown/hum noise."""
    if noise_dir is not None:
        folder = Path(noise_dir)
        files = sorted(p for p in folder.rglob("*") if p.is_file()) if folder.is_dir() else []
        if not files:
            raise ValueError(f"--noise {folder}: no audio files found there")
        source = str(folder)
    else:
        files, source = list(index.noise_files), f"{index.root}/_background_noise_"
        for extra in extras:
            if extra.noise_files:
                files += list(extra.noise_files)
                source += f" + {extra.root}/_background_noise_"
    length = max(feature_cfg.clip_samples, int(NOISE_SECONDS * feature_cfg.sample_rate))
    waves = []
    for path in files:
        try:
            # Only the first `length` samples are used: a long file is read no further.
            wave = load_head(path, length, feature_cfg.sample_rate)
        except InvalidAudio as exc:
            note(f"noise file skipped: {exc}")
            continue
        waves.append(np.resize(wave, length))  # tiles short recordings, cuts long ones
    if not waves:
        waves = [np.resize(w, length) for w in default_noise_bank()]
        source = "generated (white, pink, brown, hum)"
    return np.stack(waves).astype(np.float32), source


def make_silence(noise: np.ndarray, n: int, clip_samples: int, rng: np.random.Generator):
    """`n` silence clips (int16): random noise segments at a random level in [0, 1]."""
    out = np.zeros((n, clip_samples), dtype=np.int16)
    for k in range(n):
        if rng.random() < ZERO_SILENCE_SHARE:
            continue
        row = noise[rng.integers(len(noise))]
        start = rng.integers(0, row.shape[0] - clip_samples + 1)
        out[k] = float_to_int16(row[start : start + clip_samples] * rng.random())
    return out


def _cap_unknown(paths, targets, task: Task, share: float, seed: int):
    """Keep at most `share` x (target-word clips) `_unknown_` clips, chosen at random."""
    if not task.unknown:
        return paths, targets
    unknown_id = task.labels.index("_unknown_")
    is_unknown = targets == unknown_id
    n_keep = int(round(share * int((~is_unknown).sum())))
    unknown_idx = np.flatnonzero(is_unknown)
    if len(unknown_idx) <= n_keep:
        return paths, targets
    rng = np.random.default_rng([seed, 7])
    drop = set(rng.choice(unknown_idx, size=len(unknown_idx) - n_keep, replace=False).tolist())
    keep = [i for i in range(len(paths)) if i not in drop]
    return [paths[i] for i in keep], targets[keep]
