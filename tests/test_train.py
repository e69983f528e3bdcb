"""Training: learns, is reproducible, resumes to the same weights, checkpoints are safe,
and the terminal shows one line per epoch."""

from __future__ import annotations

import dataclasses
import functools
import json

import pytest
from conftest import tiny_config

pytestmark = pytest.mark.train


def _weights(path):
    from speechlstm.train import checkpoint

    return checkpoint.load(path).model


def _assert_same_weights(a, b):
    import torch

    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _interrupted_at(step: int, monkeypatch, data, out, cfg) -> None:
    """Train until a Ctrl-C at training step `step` (raises TrainingInterrupted)."""
    from speechlstm.train.run import run_training
    from speechlstm.train.trainer import Trainer

    real_step, calls = Trainer._step, {"n": 0}

    def flaky_step(self, idx, seed):
        calls["n"] += 1
        if calls["n"] == step:
            raise KeyboardInterrupt
        return real_step(self, idx, seed)

    with monkeypatch.context() as m:
        m.setattr(Trainer, "_step", flaky_step)
        run_training(data, out, cfg, show_progress=False)


def test_trained_run_writes_reports_and_learns(trained_run):
    for name in (
        "best.pt",
        "last.pt",
        "metrics.json",
        "curves.png",
        "confusion.png",
        "config.toml",
    ):
        assert (trained_run / name).is_file(), name
    report = json.loads((trained_run / "metrics.json").read_text())
    assert len(report["history"]) == 8
    assert report["test_accuracy"] >= 0.8  # four tone contours are easy to tell apart
    assert set(report["per_class"]) == {"down", "no", "up", "yes", "_silence_"}
    cm = report["confusion_matrix"]
    assert sum(map(sum, cm)) == report["test_clips"]
    assert report["n_params"] > 0
    # Gradient health: a mean norm per layer group for every epoch, all finite and nonzero.
    for record in report["history"]:
        norms = record["grad_norm"]
        assert set(norms) == {"input_norm", "rnn.0", "pool", "head"}
        assert all(0.0 < v < 1e3 for v in norms.values()), norms
        assert record["clipped_steps"] >= 0


@pytest.mark.slow
def test_same_seed_same_weights_and_resume_matches(tmp_path, tone_dataset, monkeypatch):
    from speechlstm.train.run import run_training
    from speechlstm.train.trainer import TrainingInterrupted

    cfg = tiny_config(epochs=3)
    run_training(tone_dataset, tmp_path / "a", cfg, show_progress=False)
    run_training(tone_dataset, tmp_path / "b", cfg, show_progress=False)
    _assert_same_weights(_weights(tmp_path / "a/last.pt"), _weights(tmp_path / "b/last.pt"))

    # Interrupt mid-epoch (as Ctrl-C would), then resume: same final weights.
    with pytest.raises(TrainingInterrupted, match="--resume"):
        _interrupted_at(6, monkeypatch, tone_dataset, tmp_path / "c", cfg)
    assert (tmp_path / "c/last.pt").is_file()
    with pytest.raises(ValueError, match="already holds a run"):
        run_training(tone_dataset, tmp_path / "c", cfg, show_progress=False)
    run_training(tone_dataset, tmp_path / "c", cfg, resume=True, show_progress=False)
    resumed = _weights(tmp_path / "c/last.pt")
    # BatchNorm's running statistics and batch counter are compared too.
    assert {"input_norm.running_mean", "input_norm.num_batches_tracked"} <= {
        k.split("classifier.", 1)[-1] for k in resumed
    }
    _assert_same_weights(_weights(tmp_path / "a/last.pt"), resumed)
    history_a = json.loads((tmp_path / "a/metrics.json").read_text())["history"]
    history_c = json.loads((tmp_path / "c/metrics.json").read_text())["history"]
    assert [h["val_accuracy"] for h in history_a] == [h["val_accuracy"] for h in history_c]


@pytest.mark.slow
def test_an_early_stopped_run_resumed_without_patience_trains_on_as_if_it_never_stopped(
    tmp_path, tone_dataset
):
    """`--resume --set train.patience=0`: the continuation ends where a run that
    never stopped ends, weights and history; any other setting is refused."""
    from speechlstm.train.run import run_training

    full = tiny_config(epochs=5)
    stopping = dataclasses.replace(full, train=dataclasses.replace(full.train, patience=1))
    run_training(tone_dataset, tmp_path / "stopped", stopping, show_progress=False)
    stopped = json.loads((tmp_path / "stopped/metrics.json").read_text())["history"]
    assert len(stopped) < 5, "the tiny run was meant to stop early; the test needs a new patience"
    resume = functools.partial(
        run_training, tone_dataset, tmp_path / "stopped", stopping, resume=True, show_progress=False
    )
    with pytest.raises(ValueError, match="leave out train.lr"):
        resume(resume_settings={"train.lr": "0.1"})
    resume(resume_settings={"train.patience": "0"})
    run_training(tone_dataset, tmp_path / "never", full, show_progress=False)
    _assert_same_weights(
        _weights(tmp_path / "never/last.pt"), _weights(tmp_path / "stopped/last.pt")
    )
    history = [
        json.loads((tmp_path / d / "metrics.json").read_text())["history"]
        for d in ("never", "stopped")
    ]
    assert len(history[1]) == 5
    assert [h["val_accuracy"] for h in history[0]] == [h["val_accuracy"] for h in history[1]]


def test_checkpoint_cannot_run_code(tmp_path):
    import torch

    from speechlstm.train import checkpoint

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"format": 1, "model": Evil(), "config": {}, "labels": []}, tmp_path / "evil.pt")
    with pytest.raises(checkpoint.CheckpointError, match="evil.pt"):
        checkpoint.load(tmp_path / "evil.pt")
    assert not marker.exists()


def _tiny_checkpoint(weight):
    from speechlstm.config import RunConfig
    from speechlstm.train.checkpoint import Checkpoint

    return Checkpoint(model={"w": weight}, config=RunConfig(), labels=("a",))


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    import torch

    from speechlstm.train import checkpoint

    path = tmp_path / "last.pt"
    checkpoint.save(_tiny_checkpoint(torch.ones(2)), path)

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        checkpoint.save(_tiny_checkpoint(torch.zeros(2)), path)
    assert torch.equal(checkpoint.load(path).model["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind


def test_checkpoint_round_trips_and_names_what_is_wrong(trained_run, tmp_path):
    import dataclasses

    import torch

    from speechlstm.train import checkpoint

    ckpt = checkpoint.load(trained_run / "last.pt", resumable=True)
    assert set(ckpt.labels) == {"down", "no", "up", "yes", "_silence_"}
    assert ckpt.train_state.epoch == 8 and len(ckpt.train_state.history) == 8
    assert ckpt.config.model.hidden_size == 24 and ckpt.n_params > 0
    checkpoint.save(ckpt, tmp_path / "copy.pt")
    again = checkpoint.load(tmp_path / "copy.pt", resumable=True)
    assert dataclasses.asdict(again.train_state) == dataclasses.asdict(ckpt.train_state)
    assert (again.config, again.labels, again.summary) == (ckpt.config, ckpt.labels, ckpt.summary)

    # The final report leaves checkpoints alone; export finds the test accuracy in metrics.json.
    assert "test_accuracy" not in ckpt.summary
    best = checkpoint.load(trained_run / "best.pt")
    report = json.loads((trained_run / "metrics.json").read_text())
    assert best.summary["epochs_completed"] == report["best_epoch"]
    summary = checkpoint.run_summary(trained_run / "best.pt", best)
    assert summary["epochs_completed"] == 8
    assert summary["test_accuracy"] == round(report["test_accuracy"], 4)
    last_summary = checkpoint.run_summary(trained_run / "last.pt", ckpt)
    assert ("test_accuracy" in last_summary) == (report["best_epoch"] == 8)  # only tested weights
    assert checkpoint.run_summary(tmp_path / "copy.pt", ckpt) is None  # no metrics.json beside

    state = checkpoint.to_state(ckpt)
    for broken, match in [
        ({k: v for k, v in state.items() if k != "labels"}, "lacks 'labels'"),
        ({**state, "config": {"model": {"cells": "lstm"}}}, "'config' does not parse"),
        ({**state, "train_state": {"epochs": 3}}, "'train_state.epochs'"),
        ({**state, "extra": 1}, "unknown checkpoint key 'extra'"),
    ]:
        checkpoint.save_atomic(broken, tmp_path / "broken.pt")
        with pytest.raises(checkpoint.CheckpointError, match=f"broken.pt.*{match}"):
            checkpoint.load(tmp_path / "broken.pt")
    export_only = {k: state[k] for k in ("model", "config", "labels")}
    checkpoint.save_atomic(export_only, tmp_path / "weights.pt")
    weights = checkpoint.load(tmp_path / "weights.pt")  # enough to export
    assert weights.optimizer is None and weights.train_state is None
    for key, tensor in ckpt.model.items():
        assert torch.equal(weights.model[key], tensor), key
    with pytest.raises(checkpoint.CheckpointError, match="weights.pt.*lacks 'optimizer'"):
        checkpoint.load(tmp_path / "weights.pt", resumable=True)


def test_epoch_end_helpers():
    from speechlstm.train.checkpoint import TrainState
    from speechlstm.train.history import close_epoch, epoch_record, format_epoch, should_stop

    s = TrainState(step_in_epoch=4, loss_sum=8.0, correct=30, seen=40, grad_norm_sums={"head": 2.0})
    record = epoch_record(s, {"loss": 1.5, "accuracy": 0.5}, lr=1e-3, clips_per_s=99.94)
    assert record["train_loss"] == 0.2 and record["train_accuracy"] == 0.75
    assert record["grad_norm"] == {"head": 0.5} and record["clips_per_s"] == 99.9
    after = close_epoch(s, record)
    assert (after.epoch, after.best_epoch, after.bad_epochs, after.seen) == (1, 1, 0, 0)
    assert after.history == [record] and s.history == []  # the old state is untouched
    worse = close_epoch(after, {**record, "epoch": 2, "val_accuracy": 0.4})
    assert (worse.epoch, worse.best_epoch, worse.bad_epochs) == (2, 1, 1)
    assert should_stop(1, patience=1) and not should_stop(1, patience=2)
    assert not should_stop(5, patience=0)  # 0 disables early stopping
    line = format_epoch(record, epochs=8, improved=True)
    assert line.startswith("epoch 1/8:") and line.endswith("100 clips/s") and " * " in line
    assert len(format_epoch({**record, "clips_per_s": 12345.0}, 100, True)) < 80


def test_terminal_shows_one_line_per_epoch_and_grad_norms_only_when_verbose(tmp_path, tone_dataset):
    from typer.testing import CliRunner

    from speechlstm.cli.main import app
    from speechlstm.config_text import save_toml

    save_toml(tiny_config(epochs=2), tmp_path / "tiny.toml")
    runner = CliRunner()
    base = ["train", str(tone_dataset), "--config", str(tmp_path / "tiny.toml"), "--no-cache"]
    for verbose in (False, True):
        out = tmp_path / f"run-{verbose}"
        args = base + ["--out", str(out)] + (["--verbose"] if verbose else [])
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        lines = result.stderr.splitlines()
        epoch_lines = [line for line in lines if line.startswith("epoch ")]
        assert len(epoch_lines) == 2, result.stderr
        assert all(line.endswith("clips/s") for line in epoch_lines)  # not wrapped
        grad_lines = [line for line in lines if "gradient norm" in line]
        assert len(grad_lines) == (2 if verbose else 0), result.stderr
        history = json.loads((out / "metrics.json").read_text())["history"]
        assert all(record["grad_norm"] for record in history)  # recorded either way


def test_lr_schedule_warms_up_then_decays():
    from speechlstm.train.optim import lr_factor

    values = [lr_factor(s, 100, 10, 0.05) for s in range(100)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(values[10:], values[11:]))
    assert values[-1] == pytest.approx(0.05, abs=1e-3)


def test_balanced_order_draws_classes_equally():
    import numpy as np

    from speechlstm.train.sampling import balanced_order

    targets = np.array([0] * 900 + [1] * 90 + [2] * 10)
    picks = targets[balanced_order(targets, 30000, np.random.default_rng(0))]
    shares = np.bincount(picks) / len(picks)
    assert np.allclose(shares, 1 / 3, atol=0.02)


@pytest.mark.gpu
def test_training_on_cuda_with_bf16_autocast(tone_dataset, tmp_path):
    import dataclasses

    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine")
    from speechlstm.train.run import run_training

    cfg = tiny_config(epochs=2)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, device="cuda"))
    report = run_training(tone_dataset, tmp_path / "gpu", cfg, show_progress=False)
    assert report["summary"]["device"].startswith("cuda")
    assert len(report["history"]) == 2


def test_balanced_order_takes_the_extra_share_of_each_class():
    import numpy as np

    from speechlstm.train.sampling import balanced_order

    targets = np.array([0] * 100 + [0] * 900 + [1] * 50)
    extra = np.array([False] * 100 + [True] * 900 + [False] * 50)
    idx = balanced_order(targets, 40000, np.random.default_rng(0), extra, extra_share=0.25)
    class0 = idx[targets[idx] == 0]
    assert abs(len(class0) / len(idx) - 0.5) < 0.02  # classes still balanced
    assert abs(extra[class0].mean() - 0.25) < 0.02  # by count it would be 0.9
    # Class 1 has no extra clips: it keeps its primary ones.
    assert not extra[idx[targets[idx] == 1]].any()


def test_pitch_warp_moves_energy_up_or_down_and_keeps_shape():
    import torch

    from speechlstm.train.augment import pitch_warp

    log_mel = torch.full((64, 5, 40), -60.0)
    log_mel[:, :, 20] = 0.0  # one loud band
    warped = pitch_warp(log_mel, 0.1, torch.Generator().manual_seed(0))
    assert warped.shape == log_mel.shape
    peaks = warped[:, 0].argmax(-1)
    assert set(peaks.tolist()) - {20} and peaks.min() >= 18 and peaks.max() <= 22
    assert torch.equal(pitch_warp(log_mel, 0.0, torch.Generator()), log_mel)


@pytest.mark.slow
def test_distillation_and_all_augmentations_train_resume_and_export(
    tmp_path, tone_dataset, trained_run, monkeypatch
):
    import dataclasses

    from speechlstm.runtime import OnnxRecognizer
    from speechlstm.train import checkpoint
    from speechlstm.train.export import export
    from speechlstm.train.run import run_training
    from speechlstm.train.trainer import TrainingInterrupted

    base = tiny_config(epochs=2)
    cfg = dataclasses.replace(
        base,
        augment=dataclasses.replace(base.augment, pitch=0.1, reverb_prob=0.5, spec_augment=True),
        train=dataclasses.replace(
            base.train, teacher=(str(trained_run / "best.pt"),), distill_weight=0.5
        ),
    )
    report = run_training(tone_dataset, tmp_path / "a", cfg, show_progress=False)
    assert 0.0 <= report["test_accuracy"] <= 1.0
    last = checkpoint.load(tmp_path / "a/last.pt", resumable=True)
    assert last.ema is None and last.weights is last.model

    # Interrupted and resumed: the same weights.
    with pytest.raises(TrainingInterrupted):
        _interrupted_at(5, monkeypatch, tone_dataset, tmp_path / "b", cfg)
    run_training(tone_dataset, tmp_path / "b", cfg, resume=True, show_progress=False)
    resumed = checkpoint.load(tmp_path / "b/last.pt")
    _assert_same_weights(last.model, resumed.model)

    result = export(tmp_path / "a/best.pt", tmp_path / "a.onnx")
    assert result.max_abs_diff < 1e-4
    assert list(OnnxRecognizer(result.path).labels) == list(last.labels)


def test_removed_levers_read_as_before_when_off_and_are_refused_when_used(tmp_path):
    from speechlstm.config import RunConfig
    from speechlstm.config_text import apply_overrides, from_dict, load_toml, to_dict

    old = to_dict(RunConfig())
    old["train"] |= {"mixup": 0.0, "ema_decay": 0.0, "swa_epochs": 0, "swa_lr_ratio": 0.1}
    old["augment"] |= {"edge_negatives": 0.0, "noise_bursts": 0.0}
    old["data"] |= {"unknown_weight": 1.0}
    assert from_dict(RunConfig, old) == RunConfig()  # an old config.toml or checkpoint
    old["train"]["ema_decay"] = 0.999
    with pytest.raises(ValueError, match="train.ema_decay=0.999: this lever was removed"):
        from_dict(RunConfig, old)
    assert from_dict(RunConfig, old, retired="drop") == RunConfig()  # a model's summary
    (tmp_path / "old.toml").write_text("[augment]\nedge_negatives = 0.1\n")
    with pytest.raises(ValueError, match="augment.edge_negatives"):
        load_toml(tmp_path / "old.toml")
    with pytest.raises(ValueError, match="removed"):
        apply_overrides(RunConfig(), {"train.mixup": "0.4"})


# The levers issue 45 removed: each key, a value that used it, and the page
# that keeps its figures.
REMOVED_45 = [
    ("augment.detector_windows", "0.2", "docs/models/sc12.md"),
    ("train.window_teacher", '"teacher.safetensors"', "docs/models/embedding.md"),
    ("train.feature_distill_audio", '["stream.wav"]', "docs/models/embedding.md"),
]


@pytest.mark.parametrize(("key", "value", "figures"), REMOVED_45)
def test_a_config_using_a_lever_of_issue_45_is_refused_by_name(tmp_path, key, value, figures):
    from speechlstm.config import RunConfig
    from speechlstm.config_text import apply_overrides, load_toml

    section, name = key.split(".")
    path = tmp_path / "old.toml"
    path.write_text(f"[{section}]\n{name} = {value}\n")
    with pytest.raises(ValueError, match=f"{key}=.*lever was removed.*not kept") as err:
        load_toml(path)
    assert figures in str(err.value)
    with pytest.raises(ValueError, match=f"'{key}'.*removed"):
        apply_overrides(RunConfig(), {key: "1"})


def test_a_config_from_before_issue_45_with_its_levers_off_reads_as_before(tmp_path):
    import tomli_w

    from speechlstm.config import RunConfig
    from speechlstm.config_text import from_dict, load_toml, to_dict

    old = to_dict(RunConfig())  # a run's config.toml as saved then, levers off
    old["augment"] |= {
        "detector_windows": 0.0,
        "detector_shift_ms": 400.0,
        "detector_neighbour": 0.5,
    }
    old["train"] |= {
        "window_teacher": "",
        "feature_distill_audio": [],
        "feature_distill_audio_batch": 32,
    }
    (tmp_path / "old.toml").write_text(tomli_w.dumps(old))
    assert load_toml(tmp_path / "old.toml") == RunConfig()
    assert from_dict(RunConfig, old) == RunConfig()  # a checkpoint's config
    # A model's training summary names the levers it used; `info` still reads it.
    old["train"]["window_teacher"] = "teacher.safetensors"
    assert from_dict(RunConfig, old, retired="drop") == RunConfig()


def test_teacher_with_other_labels_is_refused(tmp_path, trained_run):
    import torch

    from speechlstm.train.distill import load_teachers

    with pytest.raises(ValueError, match="labels"):
        load_teachers((str(trained_run / "best.pt"),), ["yes", "no"], torch.device("cpu"))


def test_set_value_survives_flags_left_out(tmp_path, tone_dataset):
    from typer.testing import CliRunner

    from speechlstm.cli.main import app

    out = tmp_path / "run"
    result = CliRunner().invoke(
        app,
        [
            "train", str(tone_dataset), "--out", str(out), "--epochs", "1",
            "--set", "train.batch_size=8", "--set", "model.hidden_size=8",
            "--set", "model.num_layers=1", "--set", "train.label_smoothing=0.05",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    text = (out / "config.toml").read_text()
    assert "batch_size = 8" in text and "hidden_size = 8" in text
    assert "label_smoothing = 0.05" in text
    assert "epochs = 1" in text


def test_deferred_step_statistics_equal_per_step_ones(tmp_path, tone_dataset, monkeypatch):
    """A GPU run syncs its loss, accuracy and gradient norms every 50 steps, not
    every step: the records (and a resume from inside a batch of them) are the same."""
    from speechlstm.train import trainer
    from speechlstm.train.run import run_training
    from speechlstm.train.trainer import TrainingInterrupted

    cfg = tiny_config(epochs=2)
    run_training(tone_dataset, tmp_path / "each", cfg, show_progress=False)
    monkeypatch.setattr(trainer, "flush_interval", lambda device: 7)
    run_training(tone_dataset, tmp_path / "every7", cfg, show_progress=False)
    with pytest.raises(TrainingInterrupted):
        _interrupted_at(5, monkeypatch, tone_dataset, tmp_path / "cut", cfg)
    run_training(tone_dataset, tmp_path / "cut", cfg, resume=True, show_progress=False)
    records = [
        json.loads((tmp_path / name / "metrics.json").read_text())["history"]
        for name in ("each", "every7", "cut")
    ]
    for key in ("train_loss", "train_accuracy", "grad_norm", "clipped_steps"):
        assert [r[key] for r in records[0]] == [r[key] for r in records[1]], key
        assert [r[key] for r in records[0]] == [r[key] for r in records[2]], key
    _assert_same_weights(
        _weights(tmp_path / "each" / "last.pt"), _weights(tmp_path / "cut" / "last.pt")
    )
