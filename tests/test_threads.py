"""CPU threads on a shared machine (threads.py): passive OpenMP waits and a thread
count taken from the cores free now, re-measured each epoch."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import time

import pytest
from conftest import tiny_config

from speechlstm.train import threads


def test_pinned_count_is_kept_and_a_launcher_count_is_left_alone(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads.auto_threads(3, 2) == 3
    monkeypatch.setattr(threads, "free_cores", lambda *a, **k: 16)
    assert threads.auto_threads(0, 8) == 8  # no more than torch's own default
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # torchrun gives each rank 1
    assert threads.auto_threads(0, 8) is None
    assert threads.auto_threads(2, 8) == 2


@pytest.mark.skipif(
    not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
    reason="needs Linux and at least 2 usable cores",
)
@pytest.mark.slow
def test_a_busy_process_takes_a_core_from_the_count():
    usable = len(os.sched_getaffinity(0))
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        free = threads.free_cores(sample_s=0.5)
    finally:
        busy.kill()
        busy.wait()
    assert 1 <= free <= usable - 1


@pytest.mark.train
def test_automatic_threads_follow_the_free_cores_each_epoch(
    tmp_path, tone_dataset, monkeypatch, capsys
):
    import torch

    from speechlstm.train import trainer
    from speechlstm.train.run import run_training

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(trainer, "TORCH_DEFAULT_THREADS", 2)
    counts = iter([2, 1, 1])  # free at start, then a job starts beside the run
    monkeypatch.setattr(threads, "free_cores", lambda *a, **k: next(counts))
    cfg = tiny_config(epochs=3)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, threads=0))
    before = torch.get_num_threads()
    try:
        run_training(tone_dataset, tmp_path / "run", cfg, show_progress=False)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert "threads: 2 -> 1 (cores free now)" in capsys.readouterr().err
