"""Settings as text: configs to and from plain dicts and TOML, `--set` values,
and the layering of defaults, `--config`, `--set` and flags (config.py holds
the frozen dataclasses themselves).

Every run saves its resolved `RunConfig` (config.toml and inside each
checkpoint), and the feature and model configs travel into the ONNX metadata,
so inference rebuilds exactly the features the model was trained on.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from .config import DetectorConfig, RunConfig

SECTIONS = {f.name: f.type for f in fields(RunConfig)}


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain dict of a (nested) config dataclass: TOML-, JSON- and checkpoint-safe."""
    out = {}
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            value = to_dict(value)
        elif isinstance(value, tuple):
            value = [to_dict(v) if dataclasses.is_dataclass(v) else v for v in value]
        out[f.name] = value
    return out


# Levers that were measured, not kept, and removed, with the value that
# switched each off (None: a companion setting, meaningful only with its
# lever). A saved config (a run's config.toml, a checkpoint, a model's
# training summary) that holds one at that value reads as before; one that
# used it is refused by name, since training would now silently do something
# else. RETIRED_FIGURES says where each one's figures stay.
# (augment.speed, removed as an MFCC lever, came back for the embedding's
# copies: a saved config that used it trains with speed perturbation again.)
RETIRED_SETTINGS = {
    "augment.edge_negatives": 0.0,
    "augment.noise_bursts": 0.0,
    "train.mixup": 0.0,
    "train.ema_decay": 0.0,
    "train.swa_epochs": 0,
    "train.swa_lr_ratio": None,  # meaningful only with swa_epochs
    "train.domain_adversarial": 0.0,
    "data.unknown_weight": 1.0,
    # Issue 45: training windows drawn as the detector sees them (the live-mode
    # issue's lever 2), the teacher judging them (lever 5), and unlabelled
    # audio for feature distillation.
    "augment.detector_windows": 0.0,
    "augment.detector_shift_ms": None,  # meaningful only with detector_windows
    "augment.detector_neighbour": None,
    "train.window_teacher": "",
    "train.feature_distill_audio": (),
    "train.feature_distill_audio_batch": None,  # meaningful only with feature_distill_audio
}
RETIRED_FIGURES = {
    "augment.detector_windows": "docs/models/sc12.md",
    "train.window_teacher": "docs/models/embedding.md",
    "train.feature_distill_audio": "docs/models/embedding.md",
}


# Settings that moved, old dotted name -> new: a saved config (config.toml, a
# checkpoint, a --config file) or a --set item naming the old one means the
# new one. Issue 45 gave the embedding model its own [embedding] section.
RENAMED_SETTINGS = {
    "train.embedding_copies": "embedding.copies",
    "train.embedding_heads": "embedding.heads",
}


def _renamed(data: dict[str, Any]) -> dict[str, Any]:
    """A RunConfig's dict with RENAMED_SETTINGS moved to their new places; an
    old and a new name given different values are refused by both names."""
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for old, new in RENAMED_SETTINGS.items():
        (old_section, old_key), (new_section, new_key) = old.split("."), new.split(".")
        section = data.get(old_section)
        if not isinstance(section, dict) or old_key not in section:
            continue
        value = section.pop(old_key)
        target = data.setdefault(new_section, {})
        if not isinstance(target, dict):
            continue  # from_dict names the malformed section
        if new_key in target and target[new_key] != value:
            raise ValueError(
                f"setting {old}={value!r} (the old name of {new}) and {new}={target[new_key]!r} "
                f"disagree; keep {new} alone"
            )
        target[new_key] = value
    return data


def _retired_message(name: str) -> str:
    """Why a setting naming RETIRED_SETTINGS key `name` is refused."""
    figures = RETIRED_FIGURES.get(name, "docs/models/sc12.md")
    return f"this lever was removed (measured and not kept; {figures})"


def _is_off(value: Any, neutral: Any) -> bool:
    """`value` is the retired setting's off value (a TOML list reads as a tuple)."""
    return (tuple(value) if isinstance(value, list) else value) == neutral


def _retired(dotted: str) -> str | None:
    """The RETIRED_SETTINGS key `dotted` names (it may sit under a prefix)."""
    return next((k for k in RETIRED_SETTINGS if dotted == k or dotted.endswith("." + k)), None)


def from_dict(cls: type, data: dict[str, Any], where: str = "", retired: str = "refuse") -> Any:
    """Build `cls` from a plain dict, refusing unknown keys and coercing simple types.

    A retired setting at its neutral value is dropped; at another value it is
    refused (`retired="refuse"`) or dropped too (`"drop"`: a model's training
    summary, which only `info` shows)."""
    hints = typing.get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    data = _renamed(data) if cls is RunConfig else dict(data)
    for key in sorted(set(data) - known):
        # A moved setting read within its old section alone (a model's training
        # summary) has no place here: it belongs to another section now.
        if any(
            f"{where}{key}" == old or f"{where}{key}".endswith("." + old)
            for old in RENAMED_SETTINGS
        ):
            del data[key]
    for key in sorted(set(data) - known):
        name = _retired(f"{where}{key}")
        if name is None:
            continue
        neutral = RETIRED_SETTINGS[name]
        if retired == "drop" or neutral is None or _is_off(data[key], neutral):
            del data[key]
        else:
            raise ValueError(
                f"setting {where}{key}={data[key]!r}: {_retired_message(name)}; leave it out"
            )
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown setting {where}{unknown[0]}; known: {', '.join(sorted(known))}")
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ValueError(f"setting {where}{name}: expected a [{where}{name}] table")
            kwargs[name] = from_dict(hint, value, where=f"{where}{name}.", retired=retired)
        else:
            kwargs[name] = _coerce(hint, value, f"{where}{name}")
    return cls(**kwargs)


def read_toml(path: str | Path, what: str) -> dict[str, Any]:
    """A settings file's TOML: a regular file (a FIFO or /dev/zero is refused, not
    waited on or read forever) of at most files.MAX_SETTINGS_BYTES, parsed."""
    from .files import FileRefused, read_text_capped

    if not Path(path).exists() and not Path(path).is_symlink():
        raise ValueError(f"{what} {path} does not exist")
    try:
        return tomllib.loads(read_text_capped(path, what=what))
    except FileRefused as exc:
        raise ValueError(str(exc)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{what} {path}: {exc}") from None
    except RecursionError:
        raise ValueError(f"{what} {path}: nested too deeply to be settings") from None


def load_toml(path: str | Path) -> RunConfig:
    return from_dict(RunConfig, read_toml(path, "config file")).validate()


def load_detector_toml(path: str | Path) -> DetectorConfig:
    """The [detector] section of a TOML file (a run's config.toml, or the
    settings speechlstm tune-detector --write writes)."""
    data = read_toml(path, "detector file")
    if not isinstance(data.get("detector"), dict):
        raise ValueError(f"detector file {path}: no [detector] section")
    cfg = from_dict(DetectorConfig, data["detector"], where="detector.")
    cfg.validate()
    return cfg


def save_toml(
    cfg: RunConfig, path: str | Path, only: dict[str, tuple[str, ...] | None] | None = None
) -> None:
    """Write `cfg` as TOML; `only` (section -> its keys, None: all of them)
    keeps the sections, and keys, that a run used: config.toml says what ran."""
    import tomli_w

    data = to_dict(cfg)
    if only is not None:
        data = {
            name: table if only[name] is None else {k: table[k] for k in only[name]}
            for name, table in data.items()
            if name in only
        }
    Path(path).write_text(tomli_w.dumps(data))


def apply_overrides(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Return `cfg` with dotted `section.key` values replaced (CLI flags and --set)."""
    sections = {name: getattr(cfg, name) for name in SECTIONS}
    for dotted, value in overrides.items():
        if value is None:
            continue
        dotted = RENAMED_SETTINGS.get(dotted, dotted)
        section, _, key = dotted.partition(".")
        if section not in sections or not key:
            raise ValueError(
                f"setting {dotted!r} must be section.key with section one of {', '.join(SECTIONS)}"
            )
        current = sections[section]
        hints = typing.get_type_hints(type(current))
        if key not in hints:
            name = _retired(dotted)
            if name:
                raise ValueError(f"setting {dotted!r}: {_retired_message(name)}")
            known = ", ".join(f.name for f in fields(current))
            raise ValueError(f"unknown setting {dotted!r}; {section} has: {known}")
        sections[section] = dataclasses.replace(
            current, **{key: _coerce(hints[key], value, dotted)}
        )
    return RunConfig(**sections).validate()


# What a resumed run may change: where and how fast it runs, and when it stops
# (an early-stopped run continued with `--set train.patience=0` trains on to
# its last epoch, as if it had never stopped). Everything else would make the
# continuation another run than the one its checkpoint began.
RESUMABLE_SETTINGS = ("train.device", "train.threads", "train.patience")


def layered_config(
    base: RunConfig | Callable[[], RunConfig],
    config_file: str | Path | None,
    settings: list[str],
    flags: dict[str, Any],
    resume: bool = False,
) -> RunConfig:
    """A run's settings, layered: `base`, then the `--config` file, then the
    `--set section.key=value` items, then the named flags (None: not given, so a
    `--set` value for the same key holds). Every command that layers settings
    comes here.

    `base` is the defaults (`RunConfig()`) for a new run; on `--resume` it is the
    checkpoint's config, and `resume` applies the one rule of what a resumed run
    may change (RESUMABLE_SETTINGS; no file). A callable base is read only once
    the command line has passed that rule: a refused resume reads nothing.
    A `--config` file is a whole recipe, its missing settings the defaults, so
    it stands in for a new run's base."""
    from_file = load_toml(config_file) if config_file else None
    overrides = given_settings(settings, flags)
    if resume:
        refuse_on_resume(config_file, overrides)
    if from_file is None:
        from_file = base() if callable(base) else base
    return apply_overrides(from_file, overrides)


def refuse_on_resume(config_file: str | Path | None, overrides: dict[str, Any]) -> None:
    """Raise ValueError unless a resumed run's new settings are all RESUMABLE_SETTINGS
    (and it has no `--config`): it continues with the settings saved in it."""
    changed = sorted(k for k in overrides if k not in RESUMABLE_SETTINGS)
    if config_file or changed:
        raise ValueError(
            "--resume continues the run with the settings saved in it; leave out "
            + ", ".join(([str(config_file)] if config_file else []) + changed)
            + " (or start a new run with another --out)"
        )


def given_settings(settings: list[str], flags: dict[str, Any]) -> dict[str, Any]:
    """The settings a command line gives: `--set` items, then the named flags
    that were given (None: not given)."""
    overrides: dict[str, Any] = parse_set_option(settings)
    overrides.update({k: v for k, v in flags.items() if v is not None})
    return overrides


def parse_set_option(items: list[str]) -> dict[str, str]:
    """`["model.hidden_size=256", ...]` to a dict; the values are coerced later."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r}: expected section.key=value")
        out[key.strip()] = value.strip()
    return out


def _coerce(hint: Any, value: Any, name: str) -> Any:
    origin = typing.get_origin(hint)
    try:
        if hint is bool:
            if isinstance(value, str):
                lowered = value.lower()
                if lowered in ("1", "true", "yes", "on"):
                    return True
                if lowered in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if hint in (int, float):
            if isinstance(value, bool):
                raise ValueError(value)
            number = hint(value)
            if hint is int and isinstance(value, float) and value != number:
                raise ValueError(value)
            return number
        if hint is str:
            return str(value)
        if hint == tuple[tuple[str, float], ...]:
            return _label_values(value)
        args = typing.get_args(hint)
        if origin is tuple and args and dataclasses.is_dataclass(args[0]):
            if not isinstance(value, list | tuple) or not all(isinstance(v, dict) for v in value):
                raise ValueError(value)
            return tuple(from_dict(args[0], v, where=f"{name}.") for v in value)
        if origin is tuple:
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(v).strip() for v in items if str(v).strip())
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"setting {name}: {value!r} is not a valid {_type_name(hint)}") from None
    raise ValueError(f"setting {name}: unsupported type {hint}")


def _label_values(value: Any) -> tuple[tuple[str, float], ...]:
    """Per-label numbers from "yes:0.7,no:0.9", a TOML table or [[label, value], ...]."""
    if isinstance(value, str):
        pairs = [item.split(":") for item in value.split(",") if item.strip()]
    elif isinstance(value, dict):
        pairs = list(value.items())
    else:
        pairs = [tuple(item) for item in value]
    out = []
    for pair in pairs:
        if len(pair) != 2:
            raise ValueError(pair)
        label, number = str(pair[0]).strip(), pair[1]
        if not label or isinstance(number, bool):
            raise ValueError(pair)
        out.append((label, float(number)))
    return tuple(out)


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))
