"""The typed model description: written by export, read back field by field."""

from __future__ import annotations

import json

import pytest

from speechlstm.config import DetectorConfig, FeatureConfig, ModelConfig
from speechlstm.modelmeta import (
    KEY_DETECTOR,
    KEY_FEATURES,
    KEY_LABELS,
    KEY_MODEL,
    DescriptionError,
    ModelDescription,
    TrainingSummary,
    from_props,
)

LABELS = ("yes", "no", "_unknown_", "_silence_")


def _props(**changes) -> dict[str, str]:
    detector = DetectorConfig(threshold=0.7, thresholds=(("no", 0.9),), gate=False)
    desc = ModelDescription(
        LABELS,
        FeatureConfig(),
        ModelConfig(hidden_size=96, frame_stack=2),
        detector,
        TrainingSummary(source="somewhere", test_accuracy=0.9, epochs_completed=3),
        n_params=1234,
    )
    props = desc.to_props()
    props.update(changes)
    return props


def test_round_trip_keeps_every_field():
    desc = from_props(_props())
    assert desc.labels == LABELS
    assert desc.model.hidden_size == 96 and desc.model.frame_stack == 2
    assert desc.detector.threshold_for("no") == 0.9 and desc.detector.threshold_for("yes") == 0.7
    assert desc.detector.gate is False
    assert desc.training.test_accuracy == 0.9 and desc.training.epochs_completed == 3
    assert desc.n_params == 1234 and desc.sample_rate == 16000 and desc.clip_samples == 16000


def test_detector_defaults_when_a_model_has_none():
    props = _props()
    del props[KEY_DETECTOR]
    assert from_props(props).detector == DetectorConfig()


def _features(**changes) -> str:
    return json.dumps({**json.loads(_props()[KEY_FEATURES]), **changes})


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        (KEY_LABELS, "[]", "speechlstm.labels"),
        (KEY_LABELS, '{"a": 1}', "speechlstm.labels"),
        (KEY_LABELS, '["yes", 3]', "speechlstm.labels[1]"),
        (KEY_LABELS, '["yes", "yes"]', "repeated yes"),
        (KEY_LABELS, '["ye\\u0007s", "no"]', "control characters"),
        (KEY_LABELS, "not json", "corrupt"),
        (KEY_FEATURES, _features(sample_rate=8000), "features.sample_rate=8000"),
        (KEY_FEATURES, _features(clip_ms=0), "features.clip_ms=0"),
        (KEY_FEATURES, _features(clip_ms=3_600_000), "features.clip_ms"),
        (KEY_FEATURES, _features(n_mels="forty"), "features.n_mels"),
        (KEY_FEATURES, _features(hop_ms=float("nan")), "features.hop_ms"),
        (KEY_FEATURES, _features(colour="red"), "features.colour"),
        (KEY_MODEL, json.dumps({"cell": "transformer"}), "model.cell"),
        (KEY_DETECTOR, json.dumps({"threshold": 1.5}), "threshold"),
        (KEY_DETECTOR, json.dumps({"hop_ms": 0}), "detector.hop_ms"),
        ("speechlstm.calibration", json.dumps({"temperature": 0}), "calibration.temperature"),
        ("speechlstm.calibration", json.dumps({"temperature": "hot"}), "calibration"),
        ("speechlstm.calibration", "[1]", "calibration.temperature"),
    ],
)
def test_malformed_fields_are_refused_by_name(key, value, named):
    with pytest.raises(DescriptionError, match=named.replace("[", r"\[").replace("]", r"\]")):
        from_props(_props(**{key: value}))


def test_a_model_without_our_metadata_is_not_ours():
    with pytest.raises(DescriptionError, match="not a speechlstm model"):
        from_props({"producer": "someone else"})


def test_runtime_refuses_a_label_count_that_does_not_match_the_output(onnx_model, tmp_path):
    onnx = pytest.importorskip("onnx")
    from speechlstm.runtime import ModelError, OnnxRecognizer

    proto = onnx.load(str(onnx_model))
    for entry in proto.metadata_props:
        if entry.key == KEY_LABELS:
            labels = json.loads(entry.value)
            entry.value = json.dumps(labels + ["extra"])
    bad = tmp_path / "bad.onnx"
    onnx.save(proto, str(bad))
    with pytest.raises(ModelError, match="labels but the model outputs"):
        OnnxRecognizer(bad)


def test_a_calibration_round_trips_and_is_absent_by_default():
    import dataclasses

    from speechlstm.modelmeta import KEY_CALIBRATION, from_props

    plain = from_props(_props())
    assert plain.temperature == 1.0 and KEY_CALIBRATION not in plain.to_props()
    calibrated = dataclasses.replace(plain, temperature=1.7)
    assert from_props(calibrated.to_props()).temperature == 1.7
