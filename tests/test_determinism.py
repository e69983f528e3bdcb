"""A clip's probabilities never depend on its company: alone, in any batch, in any
shard, through every command. Checked on the shipped int8 model, whose
activations are quantized with one scale per onnxruntime call (runtime.py runs
each clip in a call of its own)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from speechlstm.cli.main import app
from speechlstm.runtime import OnnxRecognizer, default_model_path
from speechlstm.testing.synth_audio import tone_word

SHIPPED = default_model_path()
pytestmark = pytest.mark.skipif(SHIPPED is None, reason="no shipped default model")


def _mixed_clips(n: int = 24, seed: int = 0) -> np.ndarray:
    """Tone words at many levels and loud noise: clips whose activation ranges
    differ by orders of magnitude, as a batch-wide quantization scale would feel."""
    rng = np.random.default_rng(seed)
    words = ("yes", "no", "up", "down", "left", "right", "stop")
    clips = []
    for i in range(n):
        if i % 5 == 4:
            clips.append(rng.uniform(-0.9, 0.9, 16000).astype(np.float32))
        else:
            gain = 10 ** rng.uniform(-2, 0.4)
            clips.append(np.clip(tone_word(words[i % 7], rng=rng) * gain, -1, 1))
    return np.stack(clips).astype(np.float32)


def test_probabilities_alone_equal_those_in_any_batch():
    rec = OnnxRecognizer(SHIPPED)
    clips = _mixed_clips()
    alone = np.stack([rec.predict(c[None])[0] for c in clips])
    np.testing.assert_array_equal(rec.predict(clips), alone)
    rng = np.random.default_rng(1)
    for size in (2, 7, 24):
        pick = rng.choice(len(clips), size, replace=False)
        np.testing.assert_array_equal(rec.predict(clips[pick]), alone[pick])


def _score(*args: str):
    return CliRunner().invoke(app, ["score", *args, "--no-progress"])


def test_sharded_and_merged_scores_equal_an_unsharded_run_row_for_row(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, clip in enumerate(_mixed_clips(30)):
        sf.write(corpus / f"c{i:02d}.wav", clip, 16000)
    whole = tmp_path / "whole.jsonl"
    assert _score(str(corpus), "-o", str(whole), "-f", "jsonl").exit_code == 0
    parts = []
    for k in range(3):
        part = tmp_path / f"part-{k}.jsonl"
        result = _score(str(corpus), "--shard", f"{k}/3", "-o", str(part), "-f", "jsonl")
        assert result.exit_code == 0, result.output
        parts.append(str(part))
    merged = tmp_path / "all.jsonl"
    assert _score("--merge", *parts, "-o", str(merged), "-f", "jsonl").exit_code == 0

    def rows(path):
        return sorted(json.loads(line)["path"] + line for line in path.read_text().splitlines())

    assert rows(merged) == rows(whole)


def test_transcribe_of_a_long_recording_equals_its_windows_scored_alone(tmp_path):
    from speechlstm.transcribe import classify_waveform, windows

    rec = OnnxRecognizer(SHIPPED)
    long = np.concatenate(list(_mixed_clips(6, seed=3))) * 0.5
    hop = 1600
    frames = windows(long, rec.clip_samples, hop)
    alone = np.stack([rec.predict(f[None])[0] for f in frames])
    picked = classify_waveform(rec, long, hop_ms=100.0)
    assert any(np.array_equal(picked, row) for row in alone)
