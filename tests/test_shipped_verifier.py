"""The shipped verifier (`--verifier sc12`): our head from the package, the speech
embedding from the installed openwakeword wheel, composed at load time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples"


def _embedding_installed() -> bool:
    from speechlstm.embedding_files import EmbeddingUnavailable, find_model_files

    try:
        find_model_files()
    except EmbeddingUnavailable:
        return False
    return True


def _head() -> Path:
    from speechlstm.runtime import ASSETS_DIR
    from speechlstm.shipped_verifier import SHIPPED_VERIFIERS

    return ASSETS_DIR / SHIPPED_VERIFIERS["sc12"].head


needs_head = pytest.mark.skipif(not _head().is_file(), reason="the head is built by make verifier")
needs_embedding = pytest.mark.skipif(
    not _embedding_installed(), reason="openwakeword 0.4.0 (the embedding extra) is not installed"
)


def _cli(*args, env=None):
    import os

    return subprocess.run(
        [sys.executable, "-m", "speechlstm", *map(str, args)],
        capture_output=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


@needs_head
def test_the_shipped_head_holds_none_of_the_embeddings_weights():
    import onnx

    model = onnx.load(str(_head()))
    assert not [t.name for t in model.graph.initializer if t.name.startswith(("mel/", "emb/"))]
    assert _head().stat().st_size < 1_000_000  # our head and glue, not the 2.4 MB embedding


@needs_head
def test_without_the_embedding_one_line_names_the_install(tmp_path):
    clip = SAMPLES / "yes.wav"
    result = _cli(
        "transcribe",
        clip,
        "--verifier",
        "sc12",
        env={"SPEECHLSTM_EMBEDDING_DIR": str(tmp_path), "SPEECHLSTM_CACHE": str(tmp_path)},
    )
    err = result.stderr.decode()
    assert result.returncode == 2, err
    assert "pip install 'speechlstm[embedding]'" in err and len(err.strip().splitlines()) == 1


@needs_head
@needs_embedding
@pytest.mark.slow
def test_verifier_sc12_composes_once_and_judges(tmp_path):
    from speechlstm import Detector, Recognizer
    from speechlstm.shipped_verifier import pair_settings, verifier_path

    env = {"SPEECHLSTM_CACHE": str(tmp_path / "cache")}
    info = _cli("info", "--verifier", "sc12", env=env)
    assert info.returncode == 0, info.stderr
    assert b"licence:" in info.stdout and b"CC BY-NC-SA 4.0" in info.stdout
    assert b"runs behind sc12_mined" in info.stdout
    composed = list((tmp_path / "cache").glob("sc12.verifier-*.onnx"))
    assert len(composed) == 1
    # The verifier alone and as the ensemble's second model hear the sample words.
    verifier = Recognizer(composed[0])
    for word in ("yes", "no", "stop", "go"):
        assert verifier.predict_file(SAMPLES / f"{word}.wav").label == word
        row = json.loads(
            _cli(
                "transcribe", SAMPLES / f"{word}.wav", "--verifier", "sc12", "--json", env=env
            ).stdout
        )
        assert row["label"] == word
    # The pair's first-stage settings come with it.
    cfg, threshold = pair_settings("sc12")
    assert threshold == 0.8 and cfg is not None
    gap = np.zeros(16000, np.int16)
    words = [sf.read(SAMPLES / f"{w}.wav", dtype="int16")[0] for w in ("yes", "stop", "no")]
    stream = np.concatenate([gap, words[0], gap, words[1], gap, words[2], gap])
    import os

    os.environ["SPEECHLSTM_CACHE"] = env["SPEECHLSTM_CACHE"]
    try:
        d = Detector(verifier="sc12")
        assert d.configs[0].threshold == cfg.threshold
        # Behind its own first stage, the model the pair's settings were tuned with.
        assert d.models == ["sc12_mined"]
        assert [e.label for e in d.run([stream])] == ["yes", "stop", "no"]
        assert d.stats.verified >= 3
        # A model named keeps its place in front of the verifier.
        assert Detector("sc12", verifier="sc12").models == ["sc12"]
        # The CLI builds the same pair: a recording's detections name its first stage.
        recording = tmp_path / "three.wav"
        sf.write(recording, stream, 16000, subtype="PCM_16")
        out = _cli("transcribe", recording, "--verifier", "sc12", "--json", env=env)
        found = json.loads(out.stdout)["detections"]
        assert [(d["label"], d.get("model")) for d in found] == [
            ("yes", "sc12_mined"),
            ("stop", "sc12_mined"),
            ("no", "sc12_mined"),
        ], out.stderr
        assert verifier_path("sc12") == composed[0]  # from the cache, not composed again
    finally:
        del os.environ["SPEECHLSTM_CACHE"]


def test_the_pairs_first_stage_ships_with_its_own_settings():
    from speechlstm.config_text import load_detector_toml
    from speechlstm.runtime import OnnxRecognizer, resolve_model
    from speechlstm.shipped_verifier import first_stage

    assert first_stage("sc12", None) == "sc12_mined"
    assert first_stage("sc12", "lights.onnx") == "lights.onnx"
    assert first_stage("my.verifier.onnx", None) is None  # a verifier file: the default model
    assert first_stage(None, None) is None
    mined, default = (OnnxRecognizer(resolve_model(n)) for n in ("sc12_mined", "sc12"))
    assert mined.labels == default.labels  # the pair's settings name the same commands
    assert mined.description.detector == load_detector_toml(
        ROOT / "recipes" / "sc12_mined.detector.toml"
    )
    # Same audio, a different model: the mined rounds moved its weights.
    clip = sf.read(SAMPLES / "yes.wav", dtype="float32")[0][None, : mined.clip_samples]
    p_mined, p_default = mined.predict(clip)[0], default.predict(clip)[0]
    assert mined.labels[int(np.argmax(p_mined))] == "yes"
    assert not np.allclose(p_mined, p_default)
