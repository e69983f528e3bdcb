"""Detector settings stored into a model already exported: `speechlstm
store-detector MODEL.onnx tuned.toml -o NEW.onnx`, for when the checkpoint is gone
(a model someone shared; the shipped default, whose stream truth was
corrected after its export). Only the description's detector changes; the
graph and its weights are copied as they are, so `score` and `transcribe` of
clips answer exactly as before.

numpy + onnx only: the inference install can do it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .config import DetectorConfig
from .modelmeta import ModelDescription, stamp


class StoreError(ValueError):
    """A model or output that cannot take the detector (the message says why)."""


def store_detector(
    model_path: Path, out_path: Path, detector: DetectorConfig, force: bool = False
) -> ModelDescription:
    """Write `model_path` with `detector` as its stored settings to `out_path`
    (never over the input; an existing file only if speechlstm wrote it, or
    with `force`). Returns the new description."""
    import onnx

    from .files import FileRefused, check_output, write_atomic
    from .outputs import same_file
    from .runtime import ModelError, is_our_model, read_model

    try:
        description = read_model(model_path).description
    except (ModelError, OSError) as exc:
        raise StoreError(str(exc)) from None
    if out_path.is_dir():
        raise StoreError(f"{out_path}: is a folder; give the .onnx file to write")
    if same_file(out_path, model_path):
        raise StoreError(
            f"{out_path}: is the input model; write a new file (and move it over if you wish)"
        )
    try:
        check_output(out_path, is_our_model, force, what="model file")
    except FileRefused as exc:
        raise StoreError(str(exc)) from None
    try:
        detector.check_labels(description.labels, "--detector")
    except ValueError as exc:
        raise StoreError(str(exc)) from None
    proto = onnx.load(str(model_path))
    changed = dataclasses.replace(description, detector=detector)
    stamp(proto, changed)
    try:
        write_atomic(out_path, proto.SerializeToString())
    except OSError as exc:
        raise StoreError(f"{out_path}: cannot write ({exc.strerror or exc})") from None
    return changed
