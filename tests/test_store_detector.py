"""Detector settings stored into an exported model (speechlstm/store_detector.py,
`speechlstm store-detector MODEL.onnx FILE -o NEW.onnx`): no checkpoint, no
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


def test_store_detector_stores_a_detector_in_an_exported_model(onnx_model, tmp_path):
    from speechlstm.runtime import OnnxRecognizer

    toml = tmp_path / "tuned.toml"
    toml.write_text(TUNED)
    before = hashlib.sha256(onnx_model.read_bytes()).hexdigest()
    out = tmp_path / "tuned.onnx"
    result = runner.invoke(app, ["store-detector", str(onnx_model), str(toml), "-o", str(out)])
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
    again = runner.invoke(app, ["store-detector", str(onnx_model), str(toml), "-o", str(out)])
    assert again.exit_code == 0, again.output
    same = runner.invoke(app, ["store-detector", str(out), str(toml), "-o", str(out)])
    assert same.exit_code == 2 and "is the input model" in same.output
    notes = tmp_path / "notes.onnx"
    notes.write_text("mine")
    refused = runner.invoke(app, ["store-detector", str(out), str(toml), "-o", str(notes)])
    assert refused.exit_code == 2 and "--force" in refused.output
    assert notes.read_text() == "mine"
    forced = runner.invoke(
        app, ["store-detector", str(out), str(toml), "-o", str(notes), "--force"]
    )
    assert forced.exit_code == 0 and notes.read_bytes() == out.read_bytes()


def test_store_detector_writes_what_the_library_writes(onnx_model, tmp_path):
    """The command is the library's store_detector (what `export MODEL.onnx
    --detector` wrote before it had its own command): the same bytes."""
    from speechlstm.config_text import load_detector_toml
    from speechlstm.store_detector import store_detector

    toml = tmp_path / "tuned.toml"
    toml.write_text(TUNED)
    store_detector(onnx_model, tmp_path / "library.onnx", load_detector_toml(toml))
    out = tmp_path / "command.onnx"
    result = runner.invoke(app, ["store-detector", str(onnx_model), str(toml), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes() == (tmp_path / "library.onnx").read_bytes()


def test_export_of_an_exported_model_names_store_detector(onnx_model, tmp_path):
    """The old form, `export MODEL.onnx -o NEW --detector FILE`: one line naming
    the command that does it now, exit 2, nothing written (and no torch asked for)."""
    toml = tmp_path / "tuned.toml"
    toml.write_text(TUNED)
    out = tmp_path / "x.onnx"
    for extra, named in (
        ([], "DETECTOR.toml"),
        (["--detector", str(toml)], str(toml)),
        (["--detector", str(toml), "--int8"], str(toml)),
    ):
        old = runner.invoke(app, ["export", str(onnx_model), "-o", str(out), *extra])
        assert old.exit_code == 2 and "Traceback" not in old.output, old.output
        assert len(old.stderr.splitlines()) == 1
        assert f"speechlstm store-detector {onnx_model} {named} -o {out}" in old.stderr
    assert not out.exists()


def test_store_detector_refuses_bad_settings_and_takes_no_export_options(onnx_model, tmp_path):
    out = tmp_path / "x.onnx"
    missing = runner.invoke(app, ["store-detector", str(onnx_model), "-o", str(out)])
    assert missing.exit_code == 2 and "Missing argument 'detector'" in missing.output
    toml = tmp_path / "tuned.toml"
    toml.write_text(TUNED)
    int8 = runner.invoke(
        app, ["store-detector", str(onnx_model), str(toml), "-o", str(out), "--int8"]
    )
    assert int8.exit_code == 2 and "--int8" in int8.output
    bad = tmp_path / "bad.toml"
    bad.write_text("[detector]\nthreshold = 7\n")
    wrong = runner.invoke(app, ["store-detector", str(onnx_model), str(bad), "-o", str(out)])
    assert wrong.exit_code == 2 and "threshold" in wrong.output
    assert not out.exists()
