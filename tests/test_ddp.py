"""Data-parallel training under torchrun on the CPU (gloo, 2 processes): it completes,
rank 0 alone writes, it agrees with one process, it resumes, and a dead rank ends
the job with an error instead of a hang."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.train

TORCHRUN = Path(sys.executable).parent / "torchrun"
TINY = ["--hidden", "24", "--layers", "1", "--batch-size", "16", "--lr", "0.01",
        "--threads", "1", "--no-cache", "--no-progress", "--set", "train.patience=0"]  # fmt: skip


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "SPEECHLSTM_DIST_TIMEOUT_S": "20"}


def _why(stderr: bytes) -> str:
    """A failed job's story: torchrun's summary names only the signal, so first
    the ranks' own last words (a C++ abort's "terminate called ... what()",
    our errors), then the tail."""
    lines = stderr.decode(errors="replace").splitlines()
    keys = ("terminate", "what()", "error", "gloo", "abort", "interrupted", "epoch ")
    said = [x for x in lines if any(k in x.lower() for k in keys)]
    return "\n".join(said[-40:]) + "\n--- tail ---\n" + "\n".join(lines[-25:])


def _torchrun(data: Path, out: Path, *extra: str, epochs: int = 8) -> subprocess.Popen:
    cmd = [str(TORCHRUN), "--standalone", "--nproc-per-node", "2", "-m", "speechlstm",
           "train", str(data), "--out", str(out), *extra]  # fmt: skip
    if "--resume" not in extra:
        cmd += ["--epochs", str(epochs), *TINY]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), start_new_session=True
    )


@pytest.fixture(scope="module")
def ddp_run(tone_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp") / "run"
    proc = _torchrun(tone_dataset, out)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, _why(stderr)
    return out, stdout.decode(), stderr.decode()


@pytest.mark.slow
def test_two_ranks_train_and_rank_zero_alone_writes(ddp_run):
    out, stdout, stderr = ddp_run
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["best.pt", "last.pt", "metrics.json", "curves.png", "confusion.png", "config.toml"]
    )
    assert stdout.count("test accuracy") == 1  # one report, from rank 0
    assert stderr.count("epoch 8/8") == 1 and "2 ranks" in " ".join(stderr.split())
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert len(history) == 8
    # Training loss and accuracy are summed over both ranks' halves of each batch.
    assert history[-1]["train_accuracy"] > history[0]["train_accuracy"]
    assert history[-1]["train_loss"] < history[0]["train_loss"]


def test_two_ranks_agree_with_one_process(ddp_run, trained_run):
    ddp = json.loads((ddp_run[0] / "metrics.json").read_text())
    one = json.loads((trained_run / "metrics.json").read_text())  # same recipe, one process
    assert ddp["test_accuracy"] >= 0.8 and one["test_accuracy"] >= 0.8
    assert abs(ddp["best_val_accuracy"] - one["best_val_accuracy"]) <= 0.2


def _started(data: Path, out: Path, epochs: int) -> subprocess.Popen:
    """A torchrun job that has finished its first epoch (last.pt written)."""
    proc = _torchrun(data, out, epochs=epochs)
    deadline = time.time() + 240
    while not (out / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.2)
    return proc


@pytest.mark.slow
def test_ctrl_c_stops_every_rank_and_resume_finishes(tone_dataset, tmp_path):
    out = tmp_path / "run"
    proc = _started(tone_dataset, out, epochs=30)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches torchrun and both ranks
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0
    text = stderr.decode()
    assert "continue with --resume" in " ".join(text.split())
    # torchrun prints its own traceback on SIGINT; none may come from our code.
    frames = [line for line in text.splitlines() if line.strip().startswith('File "')]
    assert not [f for f in frames if "/speechlstm/" in f or "/cli/" in f], frames
    from speechlstm.train import checkpoint

    stopped = checkpoint.load(out / "last.pt", resumable=True).train_state.epoch
    assert stopped < 30
    proc = _torchrun(tone_dataset, out, "--resume")
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, _why(stderr)
    assert len(json.loads((out / "metrics.json").read_text())["history"]) == 30


@pytest.mark.slow
def test_sigterm_stops_one_process_training_like_ctrl_c_and_keeps_the_work(tone_dataset, tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "speechlstm", "train", str(tone_dataset), "--out", str(out),
           "--epochs", "30", *TINY]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env())
    deadline = time.time() + 240
    while not (out / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)  # kill, a job scheduler
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert "continue with --resume" in " ".join(stderr.decode().split())
    from speechlstm.train import checkpoint

    assert checkpoint.load(out / "last.pt", resumable=True).train_state.epoch < 30


def _rank_pid(parent: int, rank: int) -> int | None:
    for child in Path("/proc").iterdir():
        if not child.name.isdigit():
            continue
        try:
            environ = (child / "environ").read_bytes().split(b"\0")
            ppid = int((child / "stat").read_text().split()[3])
        except (OSError, ValueError, IndexError):
            continue
        if ppid == parent and f"RANK={rank}".encode() in environ:
            return int(child.name)
    return None


@pytest.mark.slow
def test_a_dead_rank_ends_the_job_instead_of_hanging(tone_dataset, tmp_path):
    out = tmp_path / "run"
    proc = _started(tone_dataset, out, epochs=200)
    pid = _rank_pid(proc.pid, 1)
    assert pid is not None
    started = time.time()
    os.kill(pid, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert time.time() - started < 90  # the timeout, not forever
    text = " ".join(stderr.decode().split())
    # torchrun names the failed rank; the survivor says it lost contact.
    assert re.search(r"rank\s*:?\s*1\b", text) or "lost contact" in text, text[-1500:]
