"""The pretrained encoder (train/encoder.py): written as safetensors from a run, loaded
without running code, adopted by a new run for other words (frozen, fine-tuned or in
stages), resumable, and refused with a clear message when it does not fit."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from conftest import tiny_config

from speechlstm.testing.synth_audio import make_dataset

pytestmark = pytest.mark.train


@pytest.fixture(scope="module")
def encoder_file(trained_run, tmp_path_factory):
    from speechlstm.train.encoder import export_encoder

    return export_encoder(
        trained_run / "best.pt", tmp_path_factory.mktemp("enc") / "enc.safetensors"
    )


def _contents(path):
    """An encoder file's tensors (bytes) and header, whatever their order in the file."""
    import json
    import struct

    data = path.read_bytes()
    size = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8 : 8 + size]), data[8 + size :]


@pytest.fixture(scope="module")
def other_words(tmp_path_factory):
    """Words the encoder's run never heard."""
    return make_dataset(
        tmp_path_factory.mktemp("data") / "other", words=("left", "right", "stop"), speakers=8
    )


def _run_cfg(encoder: str, scale: float, freeze: int = 0, epochs: int = 2):
    cfg = tiny_config(epochs=epochs)
    return dataclasses.replace(
        cfg,
        train=dataclasses.replace(
            cfg.train, encoder=encoder, encoder_lr_scale=scale, freeze_epochs=freeze
        ),
    )


def _said(capsys) -> str:
    """What went to stderr, with the terminal's line wrapping undone."""
    return " ".join(capsys.readouterr().err.split())


def _classifier_weights(path):
    from speechlstm.train import checkpoint

    return {k.removeprefix("classifier."): v for k, v in checkpoint.load(path).model.items()}


def test_encoder_file_is_safetensors_with_its_settings(encoder_file, trained_run):
    import torch
    from safetensors import safe_open

    from speechlstm.train.encoder import PARTS, load_encoder

    with safe_open(str(encoder_file), framework="pt") as f:
        keys = list(f.keys())
        header = f.metadata()
        stored = {f.get_slice(k).get_dtype() for k in keys}
    assert keys and all(k.startswith(PARTS) for k in keys)
    assert not any(k.startswith("head.") for k in keys)  # the head is not part of it
    assert stored == {"F16"}  # half the bytes in the package
    enc = load_encoder(encoder_file)
    assert enc.model.hidden_size == tiny_config().model.hidden_size
    assert json.loads(header["info"])["labels"][:2] == ["down", "no"]
    weights = _classifier_weights(trained_run / "best.pt")
    for k, v in enc.tensors.items():  # stored in fp16, returned in fp32
        assert v.dtype == torch.float32, k
        assert (weights[k].half().float() == v).all(), k
        assert not (weights[k].float() - v).abs().gt(1e-3 * weights[k].abs() + 1e-6).any(), k


def test_frozen_encoder_stays_and_a_new_head_learns_other_words(
    encoder_file, other_words, tmp_path
):
    import torch

    from speechlstm.train.encoder import load_encoder
    from speechlstm.train.run import run_training

    enc = load_encoder(encoder_file)
    out = tmp_path / "frozen"
    report = run_training(
        other_words, out, _run_cfg(str(encoder_file), 0.0, epochs=6), show_progress=False
    )
    weights = _classifier_weights(out / "best.pt")
    for k, v in enc.tensors.items():  # rnn, pooling and input statistics untouched
        assert torch.equal(weights[k].float(), v), k
    assert report["labels"][:3] == ["left", "right", "stop"]
    assert report["test_accuracy"] > 0.5  # 5 classes: chance is 0.2
    saved = (out / "config.toml").read_text()
    assert f'encoder = "sha256:{enc.sha256}"' in saved


def test_fine_tuned_encoder_moves_less_than_the_head_and_stages_wait(
    encoder_file, other_words, tmp_path
):
    import torch

    from speechlstm.train.encoder import load_encoder
    from speechlstm.train.run import run_training

    enc = load_encoder(encoder_file)
    run_training(
        other_words, tmp_path / "tuned", _run_cfg(str(encoder_file), 0.1), show_progress=False
    )
    tuned = _classifier_weights(tmp_path / "tuned" / "last.pt")
    key = next(k for k in enc.tensors if k.startswith("rnn.") and "weight" in k)
    assert not torch.equal(tuned[key].float(), enc.tensors[key])  # it learns
    # In stages: frozen for the first epoch of one, so a 1-epoch run keeps it.
    run_training(
        other_words,
        tmp_path / "staged",
        _run_cfg(str(encoder_file), 0.1, freeze=1, epochs=1),
        show_progress=False,
    )
    staged = _classifier_weights(tmp_path / "staged" / "last.pt")
    assert torch.equal(staged[key].float(), enc.tensors[key])


@pytest.mark.slow
def test_a_run_from_an_encoder_resumes_to_the_same_weights(
    encoder_file, other_words, tmp_path, monkeypatch
):
    from test_train import _assert_same_weights, _interrupted_at, _weights

    from speechlstm.train.run import run_training
    from speechlstm.train.trainer import TrainingInterrupted

    cfg = _run_cfg(str(encoder_file), 0.1, freeze=1, epochs=3)
    run_training(other_words, tmp_path / "whole", cfg, show_progress=False)
    with pytest.raises(TrainingInterrupted):
        _interrupted_at(9, monkeypatch, other_words, tmp_path / "cut", cfg)
    run_training(other_words, tmp_path / "cut", cfg, resume=True, show_progress=False)
    _assert_same_weights(
        _weights(tmp_path / "whole" / "last.pt"), _weights(tmp_path / "cut" / "last.pt")
    )


def test_auto_adopts_the_shipped_encoders_shape_or_says_why_not(
    encoder_file, monkeypatch, capsys, tmp_path
):
    from speechlstm.config import RunConfig
    from speechlstm.train import encoder

    monkeypatch.setattr(encoder, "SHIPPED", tmp_path / "absent.safetensors")
    cfg, enc = encoder.resolve(RunConfig())
    assert enc is None and cfg.train.encoder == "none"
    assert "no pretrained encoder in this install" in _said(capsys)

    monkeypatch.setattr(encoder, "SHIPPED", encoder_file)
    cfg, enc = encoder.resolve(RunConfig())  # defaults: take the encoder's shape
    assert enc is not None and cfg.model.hidden_size == tiny_config().model.hidden_size
    assert cfg.train.encoder.startswith("sha256:")
    other = dataclasses.replace(RunConfig().model, hidden_size=40)
    cfg, enc = encoder.resolve(dataclasses.replace(RunConfig(), model=other))
    assert enc is None and cfg.model.hidden_size == 40  # the user's shape wins
    assert "training from scratch" in _said(capsys)
    explicit = dataclasses.replace(
        RunConfig(),
        model=other,
        train=dataclasses.replace(RunConfig().train, encoder=str(encoder_file)),
    )
    with pytest.raises(encoder.EncoderError, match="model.hidden_size 40 .encoder 24."):
        encoder.resolve(explicit)
    # A finished run's config.toml as --config names its encoder by digest only.
    recorded = dataclasses.replace(
        RunConfig(), train=dataclasses.replace(RunConfig().train, encoder="sha256:" + "0" * 64)
    )
    with pytest.raises(encoder.EncoderError, match="--encoder PATH or --from-scratch"):
        encoder.resolve(recorded)
    same = dataclasses.replace(
        RunConfig(),
        train=dataclasses.replace(
            RunConfig().train, encoder="sha256:" + encoder.load_encoder(encoder_file).sha256
        ),
    )
    assert encoder.resolve(same)[1] is not None  # the shipped file itself: fine
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not an encoder")
    monkeypatch.setattr(encoder, "SHIPPED", broken)
    cfg, enc = encoder.resolve(RunConfig())
    assert enc is None and "the shipped encoder cannot be used" in _said(capsys)


def test_files_that_are_not_encoders_are_refused_by_name(tmp_path, trained_run):
    import torch
    from safetensors.torch import save_file

    from speechlstm.train.encoder import EncoderError, load_encoder

    pickled = tmp_path / "evil.safetensors"
    torch.save({"x": torch.zeros(2)}, pickled)  # a pickle: must not be run
    with pytest.raises(EncoderError, match="evil.safetensors: not a safetensors encoder"):
        load_encoder(pickled)
    plain = tmp_path / "plain.safetensors"
    save_file({"rnn.w": torch.zeros(2)}, str(plain))
    with pytest.raises(EncoderError, match="not a speechlstm encoder"):
        load_encoder(plain)
    with pytest.raises(EncoderError, match="no such encoder file"):
        load_encoder(tmp_path / "missing.safetensors")


@pytest.mark.slow
def test_command_line_encoder_flags(encoder_file, trained_run, other_words, tmp_path):
    from typer.testing import CliRunner

    from speechlstm.cli.main import app
    from speechlstm.config_text import save_toml

    runner = CliRunner()
    both = runner.invoke(
        app, ["train", str(other_words), "--from-scratch", "--encoder", str(encoder_file)]
    )
    assert both.exit_code == 2 and "choose one" in both.stderr
    # The encoder has its own command; the old form names it, writing nothing.
    old = runner.invoke(
        app, ["export", str(trained_run / "best.pt"), "--as-encoder", "-o", str(tmp_path / "x")]
    )
    assert old.exit_code == 2 and "Traceback" not in old.output
    assert len(old.stderr.splitlines()) == 1 and "speechlstm export-encoder" in old.stderr
    assert not (tmp_path / "x").exists()
    out = tmp_path / "enc2.safetensors"
    ok = runner.invoke(app, ["export-encoder", str(trained_run / "best.pt"), "-o", str(out)])
    assert ok.exit_code == 0 and out.is_file(), ok.output
    # What the library (and so the old `export --as-encoder`) writes: the same
    # tensors and header (safetensors orders the header's keys as it likes).
    assert _contents(out) == _contents(encoder_file)
    # Only an encoder speechlstm wrote is replaced, unless --force.
    notes = tmp_path / "notes.safetensors"
    notes.write_text("mine")
    args = ["export-encoder", str(trained_run / "best.pt"), "-o", str(notes)]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "--force" in refused.stderr and notes.read_text() == "mine"
    assert runner.invoke(app, [*args, "--force"]).exit_code == 0
    assert _contents(notes) == _contents(encoder_file)
    save_toml(_run_cfg("auto", 0.1, epochs=1), tmp_path / "cfg.toml")
    args = ["train", str(other_words), "--config", str(tmp_path / "cfg.toml"), "--no-cache"]
    run = runner.invoke(app, args + ["--encoder", str(out), "--out", str(tmp_path / "r")])
    assert run.exit_code == 0, run.output
    assert "starting from the pretrained encoder" in run.stderr
    scratch = runner.invoke(app, args + ["--from-scratch", "--out", str(tmp_path / "s")])
    assert scratch.exit_code == 0, scratch.output
    assert 'encoder = "none"' in (tmp_path / "s" / "config.toml").read_text()
    exported = runner.invoke(
        app, ["export", str(tmp_path / "r" / "best.pt"), "-o", str(tmp_path / "r.onnx")]
    )
    assert exported.exit_code == 0, exported.output  # self-contained, as from scratch


def test_runs_from_an_encoder_store_the_transfer_detector_without_label_thresholds(
    encoder_file, monkeypatch, tmp_path
):
    from speechlstm.config import DetectorConfig, RunConfig
    from speechlstm.train import encoder

    tuned = tmp_path / "transfer.detector.toml"
    tuned.write_text(
        "[detector]\nthreshold = 0.93\nsmoothing_ms = 500.0\n"
        'thresholds = [["yes", 0.9]]\nrefractory_ms = 800.0\n'
    )
    monkeypatch.setattr(encoder, "SHIPPED", encoder_file)
    monkeypatch.setattr(encoder, "TRANSFER_DETECTOR", tuned)
    cfg, enc = encoder.resolve(RunConfig())
    assert enc is not None
    assert (cfg.detector.threshold, cfg.detector.smoothing_ms) == (0.93, 500.0)
    assert cfg.detector.thresholds == () and cfg.detector.refractory_ms == 800.0
    # A detector the user set is theirs; from scratch keeps the default.
    own = dataclasses.replace(RunConfig(), detector=DetectorConfig(threshold=0.7))
    assert encoder.resolve(own)[0].detector.threshold == 0.7
    scratch = dataclasses.replace(
        RunConfig(), train=dataclasses.replace(RunConfig().train, encoder="none")
    )
    assert encoder.resolve(scratch)[0].detector == DetectorConfig()
    # A broken or absent file: the default detector, not a failed run.
    tuned.write_text("[detector]\nthreshold = 7\n")
    assert encoder.resolve(RunConfig())[0].detector == DetectorConfig()
    monkeypatch.setattr(encoder, "TRANSFER_DETECTOR", tmp_path / "absent.toml")
    assert encoder.resolve(RunConfig())[0].detector == DetectorConfig()


def test_the_shipped_encoder_and_transfer_detector_load_and_are_adopted():
    import tomllib

    from speechlstm.config import DetectorConfig, RunConfig
    from speechlstm.train import encoder

    assert encoder.SHIPPED.is_file(), "make encoder writes speechlstm/assets/encoder.safetensors"
    shipped = encoder.load_encoder(encoder.SHIPPED)
    recipe_path = Path(__file__).resolve().parents[1] / "recipes" / "encoder.recipe.toml"
    recipe = tomllib.loads(recipe_path.read_text())
    for field in encoder.SHAPE_FIELDS:
        assert getattr(shipped.model, field) == recipe["model"][field], field
    cfg, enc = encoder.resolve(RunConfig(), say=lambda _: None)
    assert enc is not None and cfg.train.encoder == f"sha256:{shipped.sha256}"
    assert cfg.model.hidden_size == shipped.model.hidden_size
    # The stored detector is the shipped transfer detector, not the plain default.
    assert cfg.detector != DetectorConfig() and cfg.detector.thresholds == ()
    assert cfg.detector == encoder.transfer_detector(DetectorConfig())
