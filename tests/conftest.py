"""Shared fixtures.

Inference tests use `onnx_model`: a small template-matching model built with
`onnx.helper` (speechlstm/testing/tiny_onnx.py), so they run without torch. Tests that train or
export need torch (the train extra) and carry the `train` marker; the
inference-only environment runs `pytest -m "not train"` (make test-inference).
"""

from __future__ import annotations

import dataclasses
import importlib.util
from pathlib import Path

import pytest

from speechlstm.testing.synth_audio import make_dataset  # noqa: F401  (re-exported for tests)

# find_spec, not import: collecting tests must not load torch into this process.
HAVE_TORCH = importlib.util.find_spec("torch") is not None
# Fixtures that train or export: only tests marked `train` may use them.
TRAIN_FIXTURES = frozenset({"trained_run", "exported_model"})

# Kept for tests written before the marker: same meaning as pytest.mark.train.
needs_torch = pytest.mark.train


def pytest_collection_modifyitems(config, items):
    unmarked = [
        item.nodeid
        for item in items
        if TRAIN_FIXTURES & set(getattr(item, "fixturenames", ()))
        and item.get_closest_marker("train") is None
    ]
    if unmarked:
        raise pytest.UsageError(
            "tests using a training fixture must be marked @pytest.mark.train: "
            + ", ".join(unmarked)
        )
    if not HAVE_TORCH:
        skip = pytest.mark.skip(reason="needs torch (the train extra)")
        for item in items:
            if item.get_closest_marker("train") is not None:
                item.add_marker(skip)


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
def onnx_model(tmp_path_factory) -> Path:
    """A speechlstm model for inference tests, built without torch: it labels
    synth_audio's tone words (down, no, up, yes) and noise/silence (_silence_)."""
    from speechlstm.testing.tiny_onnx import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("models") / "tiny.onnx")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tone_dataset) -> Path:
    """One tiny training run shared by the export and training tests (marked `train`)."""
    from speechlstm.train.run import run_training

    out = tmp_path_factory.mktemp("runs") / "tiny"
    run_training(tone_dataset, out, tiny_config(), cache_dir=None, show_progress=False)
    return out


@pytest.fixture(scope="session")
def exported_model(trained_run, tmp_path_factory) -> Path:
    """`trained_run`'s best checkpoint exported to ONNX (marked `train`)."""
    from speechlstm.train.export import export

    path = tmp_path_factory.mktemp("models") / "trained.onnx"
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


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory):
    """The stand-in speech embedding (stand_in_embedding.py) installed for a
    test module: the embedding-model tests need neither the real files nor a download."""
    from stand_in_embedding import build_stand_in

    folder = build_stand_in(tmp_path_factory.mktemp("embedding"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SPEECHLSTM_EMBEDDING_DIR", str(folder))
        yield folder
