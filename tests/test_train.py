"""Training: learns, is reproducible, resumes to the same weights, checkpoints are safe."""

from __future__ import annotations

import json

import pytest
from conftest import needs_torch, tiny_config

pytestmark = needs_torch


def _weights(path):
    from speechlstm import checkpoint

    return checkpoint.load(path)["model"]


def _assert_same_weights(a, b):
    import torch

    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


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


def test_same_seed_same_weights_and_resume_matches(tmp_path, tone_dataset, monkeypatch):
    from speechlstm.train import Trainer, TrainingInterrupted, run_training

    cfg = tiny_config(epochs=3)
    run_training(tone_dataset, tmp_path / "a", cfg, show_progress=False)
    run_training(tone_dataset, tmp_path / "b", cfg, show_progress=False)
    _assert_same_weights(_weights(tmp_path / "a/last.pt"), _weights(tmp_path / "b/last.pt"))

    # Interrupt mid-epoch (as Ctrl-C would), then resume: same final weights.
    real_step, calls = Trainer._step, {"n": 0}

    def flaky_step(self, idx, seed):
        calls["n"] += 1
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return real_step(self, idx, seed)

    monkeypatch.setattr(Trainer, "_step", flaky_step)
    with pytest.raises(TrainingInterrupted, match="--resume"):
        run_training(tone_dataset, tmp_path / "c", cfg, show_progress=False)
    monkeypatch.setattr(Trainer, "_step", real_step)
    assert (tmp_path / "c/last.pt").is_file()
    with pytest.raises(ValueError, match="already holds a run"):
        run_training(tone_dataset, tmp_path / "c", cfg, show_progress=False)
    run_training(tone_dataset, tmp_path / "c", cfg, resume=True, show_progress=False)
    _assert_same_weights(_weights(tmp_path / "a/last.pt"), _weights(tmp_path / "c/last.pt"))
    history_a = json.loads((tmp_path / "a/metrics.json").read_text())["history"]
    history_c = json.loads((tmp_path / "c/metrics.json").read_text())["history"]
    assert [h["val_accuracy"] for h in history_a] == [h["val_accuracy"] for h in history_c]


def test_checkpoint_cannot_run_code(tmp_path):
    import torch

    from speechlstm import checkpoint

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"format": 1, "model": Evil(), "config": {}, "labels": []}, tmp_path / "evil.pt")
    with pytest.raises(checkpoint.CheckpointError, match="evil.pt"):
        checkpoint.load(tmp_path / "evil.pt")
    assert not marker.exists()


def test_atomic_save_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    import torch

    from speechlstm import checkpoint

    path = tmp_path / "last.pt"
    checkpoint.save_atomic({"model": {"w": torch.ones(2)}, "config": {}, "labels": ["a"]}, path)

    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        checkpoint.save_atomic({"model": {}, "config": {}, "labels": []}, path)
    assert torch.equal(checkpoint.load(path)["model"]["w"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind


def test_lr_schedule_warms_up_then_decays():
    from speechlstm.train import lr_factor

    values = [lr_factor(s, 100, 10, 0.05) for s in range(100)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(values[10:], values[11:]))
    assert values[-1] == pytest.approx(0.05, abs=1e-3)


def test_balanced_order_draws_classes_equally():
    import numpy as np

    from speechlstm.train import balanced_order

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
    from speechlstm.train import run_training

    cfg = tiny_config(epochs=2)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, device="cuda"))
    report = run_training(tone_dataset, tmp_path / "gpu", cfg, show_progress=False)
    assert report["summary"]["device"].startswith("cuda")
    assert len(report["history"]) == 2
