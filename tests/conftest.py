from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from synth_audio import make_dataset  # noqa: F401  (re-exported for tests)

try:
    import torch  # noqa: F401

    HAVE_TORCH = True
except ImportError:  # the inference-only install
    HAVE_TORCH = False

needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="torch not installed (train extra)")


def tiny_config(epochs: int = 8):
    """A recipe small enough to train in seconds on two cores."""
    from speechlstm.config import RunConfig

    cfg = RunConfig()
    return dataclasses.replace(
        cfg,
        model=dataclasses.replace(cfg.model, hidden_size=24, num_layers=1, dropout=0.0),
        train=dataclasses.replace(
            cfg.train,
            epochs=epochs,
            batch_size=16,
            lr=1e-2,
            warmup_epochs=0.5,
            patience=0,
            threads=2,
        ),
        augment=dataclasses.replace(cfg.augment, spec_augment=False, noise_prob=0.3),
    )


@pytest.fixture(scope="session")
def tone_dataset(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data") / "tones")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tone_dataset) -> Path:
    """One tiny training run shared by the export and CLI tests."""
    if not HAVE_TORCH:
        pytest.skip("torch not installed (train extra)")
    from speechlstm.train import run_training

    out = tmp_path_factory.mktemp("runs") / "tiny"
    run_training(tone_dataset, out, tiny_config(), cache_dir=None, show_progress=False)
    return out


@pytest.fixture(scope="session")
def onnx_model(trained_run, tmp_path_factory) -> Path:
    from speechlstm.export import export

    path = tmp_path_factory.mktemp("models") / "tiny.onnx"
    export(trained_run / "best.pt", path)
    return path


@pytest.fixture(scope="session")
def virtual_mic(tmp_path_factory):
    """A PulseAudio virtual microphone, started for the session and stopped after."""
    from virtual_mic import VirtualMic, missing

    reason = missing()
    if reason:
        pytest.skip(reason)
    mic = VirtualMic(tmp_path_factory.mktemp("pulse")).start()
    yield mic
    mic.stop()


@pytest.fixture
def quiet_mic(virtual_mic):
    """The session's virtual microphone with nothing left playing from earlier tests."""
    virtual_mic.silence()
    yield virtual_mic
    virtual_mic.silence()
