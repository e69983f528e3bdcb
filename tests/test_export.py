"""ONNX export: parity with PyTorch, metadata, int8, and refusing foreign models."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from speechlstm.testing.synth_audio import tone_word


@pytest.mark.train
@pytest.mark.slow
def test_exported_model_matches_pytorch_at_several_batches_and_lengths(trained_run, exported_model):
    import torch

    from speechlstm.runtime import OnnxRecognizer
    from speechlstm.train.checkpoint import load_model

    model, state, _ = load_model(trained_run / "best.pt")
    rec = OnnxRecognizer(exported_model)
    assert rec.labels == state.labels
    rng = np.random.default_rng(3)
    for batch, samples in [(1, 16000), (5, 16000), (2, 12345), (3, 40000)]:
        wave = (rng.standard_normal((batch, samples)) * 0.1).astype(np.float32)
        with torch.no_grad():
            expected = model(torch.from_numpy(wave))[0].numpy()
        got = rec.predict(wave)
        assert got.shape == (batch, len(rec.labels))
        assert np.abs(got - expected).max() < 1e-4
        np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)


@pytest.mark.train
def test_metadata_describes_the_model(exported_model):
    from speechlstm.runtime import read_model

    d = read_model(exported_model).description
    assert d.features.n_mfcc == 40 and d.features.hop_ms == 10.0
    assert d.model.cell == "lstm" and d.n_params > 0
    assert d.training.epochs_completed == 8
    assert 0.0 <= d.training.test_accuracy <= 1.0
    assert d.quantization == "none"


@pytest.mark.train
@pytest.mark.slow
def test_int8_export_agrees_with_fp32(trained_run, exported_model, tmp_path):
    import onnx

    from speechlstm.runtime import OnnxRecognizer
    from speechlstm.train.export import ExportError, export

    # The tiny test model is unsure of itself (top probabilities 0.4-0.7), so a
    # clip or two may flip; real models agree on 100% of 500 clips (README).
    result = export(
        trained_run / "best.pt", tmp_path / "tiny.int8.onnx", int8=True, min_agreement=0.9
    )
    assert result.int8_agreement >= 0.9
    ops = {node.op_type for node in onnx.load(str(result.path)).graph.node}
    assert "DynamicQuantizeLSTM" in ops and "LSTM" not in ops  # every recurrent layer
    fp32, int8 = OnnxRecognizer(exported_model), OnnxRecognizer(result.path)
    assert int8.description.quantization == "dynamic-int8"
    words = ["yes", "no", "up", "down"]
    clips = np.stack([tone_word(w, 1.0, offset_s=0.2) for w in words])
    assert (fp32.predict(clips).argmax(1) == int8.predict(clips).argmax(1)).all()
    # Below the required agreement, export refuses and writes nothing.
    with pytest.raises(ExportError, match="agrees with fp32 on only"):
        export(trained_run / "best.pt", tmp_path / "refused.onnx", int8=True, min_agreement=1.01)
    assert not (tmp_path / "refused.onnx").exists()


def test_foreign_onnx_model_is_refused(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from speechlstm.runtime import ModelError, OnnxRecognizer

    graph = helper.make_graph(
        [helper.make_node("Identity", ["waveform"], ["probabilities"])],
        "g",
        [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [1, 4])],
    )
    path = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ModelError, match="not a speechlstm model"):
        OnnxRecognizer(path)
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"\x00not a model")
    with pytest.raises(ModelError, match="cannot load"):
        OnnxRecognizer(garbage)


@pytest.mark.train
@pytest.mark.slow
def test_export_is_reproducible_byte_for_byte(trained_run, exported_model, tmp_path):
    from speechlstm.train.export import export

    again = export(trained_run / "best.pt", tmp_path / "again.onnx")
    assert again.path.read_bytes() == exported_model.read_bytes()


@pytest.mark.train
@pytest.mark.slow
def test_frame_stacking_exports_with_dynamic_length(tmp_path):
    import dataclasses

    from speechlstm.config import RunConfig
    from speechlstm.config_text import to_dict
    from speechlstm.runtime import OnnxRecognizer
    from speechlstm.train import checkpoint
    from speechlstm.train.export import export
    from speechlstm.train.model import Recognizer

    cfg = RunConfig()
    cfg = dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, frame_stack=3, hidden_size=8, num_layers=1)
    )
    model = Recognizer(cfg.features, cfg.model, 3)
    state = {"model": model.state_dict(), "config": to_dict(cfg), "labels": ["a", "b", "c"]}
    checkpoint.save_atomic(state, tmp_path / "fs3.pt")
    result = export(tmp_path / "fs3.pt", tmp_path / "fs3.onnx")  # raises unless parity holds
    assert result.max_abs_diff < 1e-4
    rec = OnnxRecognizer(result.path)
    for samples in (9000, 16000, 33333):
        assert rec.predict(np.zeros((2, samples), np.float32)).shape == (2, 3)


@pytest.mark.train
@pytest.mark.slow
def test_export_stores_tuned_detector_defaults(trained_run, tmp_path):
    from speechlstm.cli.main import app
    from speechlstm.runtime import read_model

    tuned = tmp_path / "tuned.toml"
    tuned.write_text("[detector]\nthreshold = 0.65\nthresholds = [['yes', 0.9]]\n")
    out = tmp_path / "tuned.onnx"
    result = CliRunner().invoke(
        app, ["export", str(trained_run / "best.pt"), "-o", str(out), "--detector", str(tuned)]
    )
    assert result.exit_code == 0, result.output
    detector = read_model(out).description.detector
    assert detector.threshold == 0.65 and detector.threshold_for("yes") == 0.9
    bad = tmp_path / "bad.toml"
    bad.write_text("[detector]\nrefractory_ms = -1\n")
    result = CliRunner().invoke(
        app, ["export", str(trained_run / "best.pt"), "-o", str(out), "--detector", str(bad)]
    )
    assert result.exit_code == 2 and "refractory_ms" in result.output


@pytest.mark.train
def test_int8_probe_tops_up_a_small_validation_split_with_the_other_clips(tmp_path):
    from speechlstm.config import FeatureConfig
    from speechlstm.testing.synth_audio import make_dataset
    from speechlstm.train.export import probe_set

    # 4 words x 10 speakers x 3 takes: 24 validation clips of 120.
    data = make_dataset(tmp_path / "d", noise=False)
    probe, name = probe_set(str(data), FeatureConfig(), n=100)
    assert probe.shape == (100, FeatureConfig().clip_samples)
    assert name == f"clips of {data}"
    few, few_name = probe_set(str(data), FeatureConfig(), n=20)  # validation suffices
    assert len(few) == 20 and few_name == f"validation clips of {data}"
    # The validation clips come first: the small probe is the large one's start.
    np.testing.assert_array_equal(few, probe[:20])
    tones, tones_name = probe_set(str(tmp_path / "gone"), FeatureConfig(), n=30)
    assert len(tones) == 30 and tones_name == "generated tones"


@pytest.mark.train
@pytest.mark.slow
def test_calibration_fits_a_temperature_that_lowers_the_nll_and_the_runtime_applies_it(
    trained_run, tmp_path
):
    import numpy as np

    from speechlstm.runtime import OnnxRecognizer
    from speechlstm.train.calibrate import fit_temperature, nll
    from speechlstm.train.export import export

    rng = np.random.default_rng(0)
    targets = rng.integers(0, 4, 500)
    logits = rng.standard_normal((500, 4)) * 0.5
    logits[np.arange(500), targets] += 1.0
    base = fit_temperature(logits, targets)
    sharp = logits * 5  # five times as confident: its best temperature is five times as high
    cal = fit_temperature(sharp, targets)
    assert cal.temperature == pytest.approx(5 * base.temperature, rel=0.01)
    assert cal.nll_after < cal.nll_before
    assert abs(nll(sharp, targets, cal.temperature) - cal.nll_after) < 1e-9

    plain = export(trained_run / "best.pt", tmp_path / "plain.onnx")
    result = export(trained_run / "best.pt", tmp_path / "cal.onnx", calibrate=True)
    c = result.calibration
    assert c is not None and c.nll_after <= c.nll_before and c.clips > 0
    rec, base = OnnxRecognizer(result.path), OnnxRecognizer(plain.path)
    assert rec.temperature == c.temperature and base.temperature == 1.0
    clips = rng.uniform(-0.3, 0.3, (6, 16000)).astype(np.float32)
    p, q = rec.predict(clips), base.predict(clips)
    assert np.allclose(p.sum(1), 1, atol=1e-5)
    assert (p.argmax(1) == q.argmax(1)).all()  # the same answers, other confidences
    if c.temperature != 1.0:
        assert not np.allclose(p, q)
