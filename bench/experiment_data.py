"""Data the experiments build before training (the "@" values of
bench/experiments.toml): real takes, real non-command words, synthesis levers
and the custom-words measurement encoders. Each is built once, into a
temporary name then renamed, so an interrupted build is redone, never used.

The custom-words protocol: nothing trained for that measurement may have seen
real clips of the ten command words. The takes come from training-list
speakers only; the measurement encoder is `make encoder`'s recipe with the
ten words left out of all its data (scripts/encoder.sh with EXCLUDE).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
from common import OUT_DIR, ROOT

from speechlstm.data.links import link_clip
from speechlstm.labels import SC12_WORDS

REAL = ROOT / "data/sc12_real"
SYNTH = ROOT / "data/synth_sc12"
DATA = ROOT / "data/exp"
ENCODER_RUNS = ROOT / "runs/exp"
# Measurement encoders (no command words): variant -> recipe changes.
ENCODER_VARIANTS = {
    "": (),
    "h128": ("model.hidden_size=128",),
    "h256": ("model.hidden_size=256",),
    "h384": ("model.hidden_size=384",),
}
SYNTH_LEVERS = {  # name: SynthConfig changes from the sc12 preset
    "voices20": {"max_voices": 20},
    "prosody5": {"rate_range": (0.95, 1.05), "pitch_range": (0.95, 1.05)},
    "nowarp": {"warps": (1.0,)},
    "allvoices": {"engines": (), "exclude_voices": ()},
    "clips1000": {"clips_per_word": 1000, "unknown_clips": 4000},
    "clips900": {"clips_per_word": 900, "unknown_clips": 3600},  # = data synth --clips 900
}


def listed(root: Path) -> set[str]:
    names = set()
    for name in ("validation_list.txt", "testing_list.txt"):
        names |= {line.strip() for line in (root / name).read_text().splitlines() if line.strip()}
    return names


def training_clips(word: str) -> list[Path]:
    held_out = listed(REAL)
    return sorted(p for p in (REAL / word).glob("*") if f"{word}/{p.name}" not in held_out)


def take_set(k: int, seed: int = 0) -> Path:
    """k real takes per command word, one per training-list speaker, as links."""
    out = DATA / f"takes_k{k}"
    if out.is_dir():
        return out
    rng = np.random.default_rng([seed, k])
    tmp = out.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for word in SC12_WORDS:
        by_speaker: dict[str, Path] = {}
        for clip in training_clips(word):
            by_speaker.setdefault(clip.name.split("_nohash_")[0], clip)
        speakers = sorted(by_speaker)
        if len(speakers) < k:
            raise SystemExit(f"{word}: only {len(speakers)} training speakers, need {k}")
        (tmp / word).mkdir(parents=True)
        for i in rng.choice(len(speakers), k, replace=False):
            clip = by_speaker[speakers[i]]
            link_clip(clip, tmp / word / clip.name)
    tmp.rename(out)
    return out


def real_unknown() -> Path:
    """The real training-list clips of the other Speech Commands words."""
    out = DATA / "real_unknown"
    if out.is_dir():
        return out
    tmp = out.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for folder in sorted(p for p in REAL.iterdir() if p.is_dir()):
        if folder.name in SC12_WORDS or folder.name.startswith("_"):
            continue
        (tmp / folder.name).mkdir(parents=True)
        for clip in training_clips(folder.name):
            link_clip(clip, tmp / folder.name / clip.name)
    tmp.rename(out)
    return out


def synth_real_noise(subset: Path) -> Path:
    """The sc12 preset (data/synth_sc12, linked) with the real subset's background
    noise recordings (running tap, dishes, exercise bike, ...) beside its generated
    noise: recordings of rooms and machines, no word in them, so the custom-words
    protocol still holds."""
    out = DATA / "synth_sc12_realnoise"
    if out.is_dir():
        return out
    tmp = out.with_suffix(".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for entry in sorted(SYNTH.iterdir()):
        if entry.name != "_background_noise_":
            (tmp / entry.name).symlink_to(entry.resolve())
    noise = tmp / "_background_noise_"
    noise.mkdir()
    for source in (SYNTH / "_background_noise_", subset / "_background_noise_"):
        for f in sorted(source.iterdir()):
            if f.is_file():
                link_clip(f, noise / f"{source.parent.name}_{f.name}")
    tmp.rename(out)
    return out


def synth_variant(name: str) -> Path:
    """The sc12 preset synthesized with one lever (resumes; skips what exists)."""
    from speechlstm.data.synth import sc12_config, synthesize_dataset

    out = DATA / f"synth_{name}"
    cfg = dataclasses.replace(sc12_config(300, 0), **SYNTH_LEVERS[name])
    print(f"synthesizing {out.name} ({SYNTH_LEVERS[name]})", flush=True)
    synthesize_dataset(cfg, out, show_progress=False)
    return out


def measurement_encoder(subset: Path, variant: str = "") -> Path:
    """`make encoder`'s recipe without the ten command words (scripts/encoder.sh)."""
    out = OUT_DIR / f"encoder_no_commands{'_' + variant if variant else ''}.safetensors"
    if out.is_file():
        return out
    env = {
        **os.environ,
        "SC": str(subset),
        "EXCLUDE": ",".join(SC12_WORDS),
        "MIX": str(DATA / "encoder_mix_nocmd"),
        "RUN": str(ENCODER_RUNS / f"encoder_nocmd{'_' + variant if variant else ''}"),
        "OUT": str(out),
        "SETS": " ".join(ENCODER_VARIANTS[variant]),
    }
    print(f"measurement encoder {variant or 'h96'} (no command words): scripts/encoder.sh")
    started = time.perf_counter()
    subprocess.run(["bash", str(ROOT / "scripts/encoder.sh")], check=True, env=env, cwd=ROOT)
    print(f"measurement encoder built in {time.perf_counter() - started:.0f} s", flush=True)
    return out
