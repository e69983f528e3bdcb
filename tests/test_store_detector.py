"""Detector settings stored into an exported model (speechlstm/store_detector.py,
`speechlstm export MODEL.onnx -o NEW.onnx --detector FILE`): no checkpoint, no
torch; the graph answers as before and only the stored settings change."""

from __future__ import annotations

import hashlib

import numpy as np
from typer.testing import CliRunner

from speechlstm.cli.main import app
from speechlstm.testing.synth_audio import tone_word

runner = CliRunner()

TUNED = """[detector]
hop_ms = 80.0
smoothing_ms = 500.0
threshold = 0.77
refractory_ms = 900.0
peak_wait_ms = 200.0
gate = true
gate_dbfs = -50.0

[detector.thresholds]
"yes" = 0.73
"""


def test_export_stores_a_detector_in_an_exported_model(onnx_model, tmp_path):
    from speechlstm.runtime import OnnxRecognizer

    toml = tmp_path / "tuned.toml"
    toml.write_text(TUNED)
    before = hashlib.sha256(onnx_model.read_bytes()).hexdigest()
    out = tmp_path / "tuned.onnx"
    result = runner.invoke(
        app, ["export", str(onnx_model), "-o", str(out), "--detector", str(toml)]
    )
    assert result.exit_code == 0, result.output
    assert "threshold 0.77, smoothing 500 ms, per label yes 0.73" in result.output
    assert hashlib.sha256(onnx_model.read_bytes()).hexdigest() == before  # input untouched
    old, new = OnnxRecognizer(onnx_model), OnnxRecognizer(out)
    cfg = new.description.detector
    assert (cfg.threshold, cfg.smoothing_ms, cfg.hop_ms, cfg.gate_dbfs) == (0.77, 500, 80, -50)
    assert dict(cfg.thresholds) == {"yes": 0.73}
    assert old.description.detector != cfg
    # Everything else in the description, and every answer, is the same.
    assert new.description.labels == old.description.labels
    assert new.description.training == old.description.training
    clips = np.stack(
        [tone_word(w, rng=np.random.default_rng(i)) for i, w in enumerate(("yes", "no"))]
    )
    np.testing.assert_array_equal(new.predict(clips), old.predict(clips))
    # Again over its own output: fine; over the input, or over a file not ours: refused.
    again = runner.invoke(app, ["export", str(onnx_model), "-o", str(out), "--detector", str(toml)])
    assert again.exit_code == 0, again.output
    same = runner.invoke(app, ["export", str(out), "-o", str(out), "--detector", str(toml)])
    assert same.exit_code == 2 and "is the input model" in same.output
    notes = tmp_path / "notes.onnx"
    notes.write_text("mine")
    refused = runner.invoke(app, ["export", str(out), "-o", str(notes), "--detector", str(toml)])
    assert refused.exit_code == 2 and "--force" in refused.output
    assert notes.read_text() == "mine"


def test_an_exported_model_takes_only_a_detector(onnx_model, tmp_path):
    out = tmp_path / "x.onnx"
    missing = runner.invoke(app, ["export", str(onnx_model), "-o", str(out)])
    assert missing.exit_code == 2 and "--detector FILE" in missing.output
    toml = tmp_path / "tuned.toml"
    toml.write_text(TUNED)
    int8 = runner.invoke(
        app, ["export", str(onnx_model), "-o", str(out), "--detector", str(toml), "--int8"]
    )
    assert int8.exit_code == 2 and "need a checkpoint" in int8.output
    bad = tmp_path / "bad.toml"
    bad.write_text("[detector]\nthreshold = 7\n")
    wrong = runner.invoke(app, ["export", str(onnx_model), "-o", str(out), "--detector", str(bad)])
    assert wrong.exit_code == 2 and "threshold" in wrong.output
    assert not out.exists()
