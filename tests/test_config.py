"""Config: TOML round trip, dotted overrides, and clear errors."""

from __future__ import annotations

import pytest

from speechlstm.config import RunConfig
from speechlstm.config_text import apply_overrides, load_toml, parse_set_option, save_toml


@pytest.mark.train  # save_toml writes a run's config.toml with tomli-w (the train extra)
def test_toml_round_trip_and_overrides(tmp_path):
    cfg = apply_overrides(
        RunConfig(),
        {
            "model.hidden_size": "64",
            "data.words": "a,b",
            "augment.spec_augment": "false",
            "train.lr": 0.01,
        },
    )
    assert cfg.model.hidden_size == 64 and cfg.data.words == ("a", "b")
    assert cfg.augment.spec_augment is False and cfg.train.lr == 0.01
    path = tmp_path / "c.toml"
    save_toml(cfg, path)
    assert load_toml(path) == cfg


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"model.hidden": "3"}, "unknown setting"),
        ({"model.hidden_size": "big"}, "not a valid int"),
        ({"model.cell": "tcn"}, "choose one of"),
        ({"nosection": "1"}, "section.key"),
        ({"augment.speed": "0.6"}, r"augment.speed=0.6: must be in \[0, 0.5\)"),
    ],
)
def test_bad_overrides_name_the_setting(overrides, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(RunConfig(), overrides)


def test_bad_toml_file(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[model]\nhidden_size = 'x'\n")
    with pytest.raises(ValueError, match="hidden_size"):
        load_toml(path)
    with pytest.raises(ValueError, match="does not exist"):
        load_toml(tmp_path / "none.toml")
    with pytest.raises(ValueError, match="expected section.key=value"):
        parse_set_option(["model.hidden_size"])


def test_detector_section_from_toml(tmp_path):
    from speechlstm.config import DetectorConfig
    from speechlstm.config_text import load_detector_toml

    path = tmp_path / "tuned.toml"
    path.write_text(
        "[detector]\nthreshold = 0.7\nsmoothing_ms = 500.0\nthresholds = [['no', 0.9]]\n"
        "gate = false\n"
    )
    cfg = load_detector_toml(path)
    assert cfg == DetectorConfig(
        threshold=0.7, smoothing_ms=500.0, thresholds=(("no", 0.9),), gate=False
    )
    path.write_text("[detector]\nthreshold = 1.5\n")
    with pytest.raises(ValueError, match="threshold"):
        load_detector_toml(path)
    path.write_text("[model]\nhidden_size = 3\n")
    with pytest.raises(ValueError, match="no \\[detector\\] section"):
        load_detector_toml(path)


def test_cli_detector_flags_override_the_model_defaults_only_when_given():
    from speechlstm.config import DetectorConfig

    stored = DetectorConfig(threshold=0.6, thresholds=(("no", 0.9),), smoothing_ms=500.0)
    assert stored.with_overrides(threshold=None, hop_ms=None) == stored
    changed = stored.with_overrides(threshold=0.75, gate=False)
    assert changed.threshold == 0.75 and changed.gate is False
    assert changed.smoothing_ms == 500.0
    assert changed.threshold_for("no") == 0.75  # the user's threshold is for every label
    assert stored.with_overrides(gate=False).threshold_for("no") == 0.9
    with pytest.raises(ValueError, match="hop_ms"):
        stored.with_overrides(hop_ms=0.0)


def test_settings_are_layered_base_file_set_flags(tmp_path):
    from speechlstm.config_text import layered_config

    recipe = tmp_path / "recipe.toml"
    recipe.write_text("[model]\nhidden_size = 12\n[train]\nepochs = 3\nlr = 0.5\n")
    cfg = layered_config(
        RunConfig(), recipe, ["train.epochs=4", "train.lr=0.2"], {"train.lr": 0.1, "x": None}
    )
    # The file over the defaults, --set over the file, a given flag over --set.
    assert (cfg.model.hidden_size, cfg.train.epochs, cfg.train.lr) == (12, 4, 0.1)
    assert layered_config(RunConfig(), None, [], {}) == RunConfig()


def test_a_resumed_run_may_change_only_the_resumable_settings(tmp_path):
    """The one resume rule: device, threads and patience change; any other
    setting or a --config file is refused before the checkpoint is read."""
    import dataclasses

    from speechlstm.config_text import RESUMABLE_SETTINGS, layered_config

    saved = dataclasses.replace(
        RunConfig(), train=dataclasses.replace(RunConfig().train, epochs=7, patience=3)
    )
    cfg = layered_config(lambda: saved, None, ["train.patience=0"], {"train.threads": 1}, True)
    assert (cfg.train.epochs, cfg.train.patience, cfg.train.threads) == (7, 0, 1)
    assert set(RESUMABLE_SETTINGS) == {"train.device", "train.threads", "train.patience"}

    def unread():
        raise AssertionError("a refused resume must not read the checkpoint")

    with pytest.raises(ValueError, match="leave out train.epochs, train.lr"):
        layered_config(unread, None, ["train.lr=0.1"], {"train.epochs": 9}, True)
    recipe = tmp_path / "recipe.toml"
    recipe.write_text("[train]\nthreads = 1\n")
    with pytest.raises(ValueError, match="leave out .*recipe.toml"):
        layered_config(unread, recipe, [], {}, True)
