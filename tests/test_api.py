"""The public API (speechlstm.Recognizer, speechlstm.Detector): the same answers
as the command line, any chunking, any input type and rate, several models."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from speechlstm.testing.synth_audio import (
    SR,
    STREAM_THRESHOLD,
    STREAM_TRUTH,
    tone_stream,
    tone_word,
)

ROOT = Path(__file__).resolve().parents[1]


def _cli(*args, stdin=None):
    return subprocess.run(
        [sys.executable, "-m", "speechlstm", *map(str, args)],
        input=stdin,
        capture_output=True,
        timeout=120,
    )


def _as_int16(wave: np.ndarray) -> np.ndarray:
    return np.round(np.clip(wave, -1, 1) * 32767).astype(np.int16)


@pytest.fixture(scope="module")
def stream_wav(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """The tone stream as a 16-bit WAV, and the int16 samples it holds."""
    pcm = _as_int16(tone_stream())
    path = tmp_path_factory.mktemp("api") / "stream.wav"
    sf.write(path, pcm, SR, subtype="PCM_16")
    return path, pcm


def _live_json(model, path, *extra) -> list[dict]:
    result = _cli(
        "live",
        "-m",
        model,
        "--input",
        path,
        "--fast",
        "--json",
        "--threshold",
        STREAM_THRESHOLD,
        *extra,
    )
    assert result.returncode == 0, result.stderr.decode()
    return [json.loads(line) for line in result.stdout.decode().splitlines()]


def _key(d) -> tuple:
    return (d.label, round(d.start_s, 3), round(d.end_s, 3), round(d.score, 4), d.model)


def _row_key(row: dict) -> tuple:
    return (row["label"], row["start_s"], row["end_s"], row["score"], row["model"])


@pytest.mark.slow
def test_recognizer_gives_transcribes_answer_for_int16_float_and_other_rates(onnx_model, tmp_path):
    from speechlstm import Recognizer

    rec = Recognizer(onnx_model)
    for word in ("yes", "no", "up", "down"):
        clip = tone_word(word, 1.0)
        pcm = _as_int16(clip)
        path = tmp_path / f"{word}.wav"
        sf.write(path, pcm, SR, subtype="PCM_16")
        row = json.loads(_cli("transcribe", "-m", onnx_model, "--json", "-k", "3", path).stdout)
        from_int = rec.predict(pcm, sample_rate=SR)
        assert from_int.label == row["label"] == word
        assert abs(from_int.score - row["score"]) < 1e-6
        assert [lab for lab, _ in from_int.top] == [lab for lab, _ in row["top"]]
        # float32 in [-1, 1] of the same samples: the same answer.
        as_float = rec.predict(pcm.astype(np.float32) / 32768, sample_rate=SR)
        assert as_float.label == word and abs(as_float.score - from_int.score) < 1e-6
        # 44.1 kHz stereo, resampled and averaged as a file would be.
        hi = soxr.resample(clip, SR, 44100).astype(np.float32)
        stereo = rec.predict(np.stack([hi, hi], axis=1), sample_rate=44100)
        assert stereo.label == word and abs(stereo.score - from_int.score) < 0.05
        assert set(stereo.probabilities) == set(rec.labels)


def test_recognizer_long_input_is_judged_by_its_strongest_window(onnx_model):
    from speechlstm import Recognizer

    rec = Recognizer(onnx_model)
    quiet = np.random.default_rng(1).standard_normal(SR * 3).astype(np.float32) * 0.003
    quiet[SR + 4000 : 2 * SR + 4000] += tone_word("up", 1.0)
    p = rec.predict(quiet)
    assert p.label == "up" and p.duration_s == pytest.approx(3.0)


def test_predict_many_matches_each_clip_alone(onnx_model):
    from speechlstm import Recognizer

    rec = Recognizer(onnx_model)
    rng = np.random.default_rng(3)
    words = ["yes", "no", "up", "down"] * 6
    clips = [tone_word(w, float(rng.uniform(0.85, 1.15)), rng=rng) for w in words]
    clips.append(np.zeros(SR // 2, np.float32) + 0.001)  # shorter than the window
    many = rec.predict_many(clips, workers=2)
    for clip, got in zip(clips, many):
        alone = rec.predict(clip)
        assert got.label == alone.label
        diff = max(abs(got.probabilities[k] - alone.probabilities[k]) for k in rec.labels)
        assert diff <= 1e-6


@pytest.mark.parametrize("chunk", [160, 512, 1280, 4000])
@pytest.mark.parametrize("dtype", ["int16", "float32"])
def test_detector_push_equals_live_input_whatever_the_chunks(onnx_model, stream_wav, chunk, dtype):
    from speechlstm import Detector

    path, pcm = stream_wav
    expected = [_row_key(r) for r in _live_json(onnx_model, path)]
    assert [k[0] for k in expected] == [w for _, w in STREAM_TRUTH]
    samples = pcm if dtype == "int16" else pcm.astype(np.float32) / 32768
    d = Detector(onnx_model, threshold=STREAM_THRESHOLD)
    found = []
    for start in range(0, len(samples), chunk):
        found += d.push(samples[start : start + chunk])
    found += d.flush()
    assert [_key(x) for x in found] == expected


def test_detector_resamples_its_input_rate(onnx_model, stream_wav):
    from speechlstm import Detector

    _, pcm = stream_wav
    hi = soxr.resample(pcm.astype(np.float32) / 32768, SR, 48000).astype(np.float32)
    d = Detector(onnx_model, sample_rate=48000, threshold=STREAM_THRESHOLD)
    found = list(d.run(hi[i : i + 960] for i in range(0, len(hi), 960)))
    assert [x.label for x in found] == [w for _, w in STREAM_TRUTH]
    for det, (start_s, _) in zip(found, STREAM_TRUTH):
        assert start_s - 0.5 <= det.start_s <= start_s + 1.0


def test_reset_starts_a_new_stream(onnx_model, stream_wav):
    from speechlstm import Detector

    _, pcm = stream_wav
    d = Detector(onnx_model, threshold=STREAM_THRESHOLD)
    first = list(d.run([pcm]))
    d.push(pcm[: SR * 3])  # half a stream, then start over
    d.reset()
    assert list(d.run([pcm])) == first


def test_several_models_hear_one_stream_and_name_themselves(onnx_model, stream_wav, tmp_path):
    from speechlstm import Detector

    path, pcm = stream_wav
    a, b = tmp_path / "lights.onnx", tmp_path / "kitchen.onnx"
    a.write_bytes(onnx_model.read_bytes())
    b.write_bytes(onnx_model.read_bytes())
    d = Detector([a, b], threshold=STREAM_THRESHOLD)
    assert d.models == ["lights", "kitchen"]
    found = list(d.run([pcm]))
    # The same labels from both models: both reported, each naming its model.
    assert [x.label for x in found if x.model == "lights"] == [w for _, w in STREAM_TRUTH]
    assert [x.label for x in found if x.model == "kitchen"] == [w for _, w in STREAM_TRUTH]
    assert [x.end_s for x in found] == sorted(x.end_s for x in found)
    rows = _live_json(a, path, "-m", b)
    assert sorted(_row_key(r) for r in rows) == sorted(_key(x) for x in found)


def test_detector_refuses_non_finite_samples(onnx_model):
    from speechlstm import Detector
    from speechlstm.audio import InvalidAudio

    d = Detector(onnx_model)
    bad = np.zeros(1600, np.float32)
    bad[800] = np.nan
    d.push(np.zeros(SR, np.float32))
    with pytest.raises(InvalidAudio, match=r"NaN or infinite samples at 1\.05 s"):
        d.push(bad)


def test_unknown_model_names_are_refused_with_the_shipped_names(tmp_path):
    from speechlstm import Recognizer
    from speechlstm.runtime import ModelError

    with pytest.raises(ModelError, match="sc12_synthetic"):
        Recognizer(tmp_path / "nope.onnx")


def test_package_root_imports_nothing_heavy():
    code = (
        "import sys, speechlstm\n"
        "heavy = ('numpy', 'onnxruntime', 'torch', 'speechlstm.train')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
        "from speechlstm import Recognizer, Detector\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy[1:])))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["[]", "[]"]


def _api_examples() -> list[str]:
    text = (ROOT / "docs" / "api.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_docs_api_examples_run(tmp_path, monkeypatch):
    """Every Python example in docs/api.md runs, in order, in one namespace."""
    examples = _api_examples()
    assert len(examples) >= 4
    monkeypatch.chdir(ROOT)
    namespace: dict = {"__name__": "docs_api"}
    for block in examples:
        exec(compile(block, "docs/api.md", "exec"), namespace)  # noqa: S102


def test_transcribe_with_a_verifier_averages_the_two_models_on_a_clip():
    """The ensemble for clips: `transcribe --verifier` answers with the mean of the
    first model's and the verifier's probabilities (here the two shipped models)."""
    from speechlstm import Recognizer

    first, second = Recognizer("sc12"), Recognizer("sc12_synthetic")
    clip = ROOT / "data" / "samples" / "stop.wav"
    want = 0.5 * (
        np.array([first.predict_file(clip).probabilities[k] for k in first.labels])
        + np.array([second.predict_file(clip).probabilities[k] for k in first.labels])
    )
    row = json.loads(
        _cli("transcribe", clip, "--verifier", "sc12_synthetic", "--json", "-k", "12").stdout
    )
    got = dict(row["top"])
    assert row["label"] == first.labels[int(np.argmax(want))]
    for label, p in zip(first.labels, want / want.sum()):
        assert abs(got[label] - p) < 1e-5
    alone = json.loads(_cli("transcribe", clip, "--json").stdout)
    assert alone["score"] != row["score"]
