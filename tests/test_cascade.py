"""The cascade (speechlstm/detect/cascade.py): model + verifier as one detector,
the verifier a decision behind the trigger. Its detections are the plain
detector's candidates as the verifier rules on them, its counts are the
rulings, and the detector itself knows nothing of a verifier."""

from __future__ import annotations

import numpy as np

from speechlstm.testing.synth_audio import STREAM_THRESHOLD, STREAM_TRUTH, tone_stream


def _parts(onnx_model, threshold=0.3, relabel=False):
    from speechlstm.detect.stream import DetectorConfig
    from speechlstm.detect.verify import Verifier
    from speechlstm.runtime import OnnxRecognizer

    rec = OnnxRecognizer(onnx_model, threads=1)
    verifier = Verifier(OnnxRecognizer(onnx_model, threads=1), threshold, rec.labels, relabel)
    return rec, verifier, DetectorConfig(threshold=STREAM_THRESHOLD)


def _by_hand(rec, verifier, cfg, stream):
    """The trigger's candidates (the detector alone), each ruled on by the
    verifier over the stream's audio ending where its window ends."""
    from speechlstm.detect.stream import StreamingDetector, detect_file

    out = []
    for d in detect_file(StreamingDetector(rec, cfg), stream):
        end = round(d.end_s * rec.sample_rate)
        clip = np.zeros(verifier.span, np.float32)
        piece = stream[max(0, end - verifier.span) : end]
        clip[verifier.span - len(piece) :] = piece
        label = verifier.ruling(d.label, clip)
        if label is not None:
            out.append((label, d.score, d.start_s, d.end_s))
    return out


def test_the_cascade_is_the_trigger_then_the_verifier(onnx_model):
    from speechlstm.detect.cascade import VerifiedDecision, cascade, verifier_of
    from speechlstm.detect.stream import detect_file

    stream = tone_stream()
    for threshold, relabel in ((0.3, False), (0.6, True), (0.9, False)):
        rec, verifier, cfg = _parts(onnx_model, threshold, relabel)
        det = cascade(rec, verifier, cfg, name="m")
        assert isinstance(det.decision, VerifiedDecision) and verifier_of(det) is verifier
        found = detect_file(det, stream)
        expected = _by_hand(rec, verifier, cfg, stream)
        assert [(d.label, d.score, d.start_s, d.end_s) for d in found] == expected
        assert {d.model for d in found} <= {"m"}
        assert det.stats.verified == len(STREAM_TRUTH)
        assert det.stats.detections == len(found) == det.stats.verified - det.stats.rejected
        # Chunked otherwise, the same rulings.
        again = detect_file(det, stream, chunk_samples=777)
        assert [(d.label, d.score, d.end_s) for d in again] == [
            (d.label, d.score, d.end_s) for d in found
        ]


def test_a_verifier_that_rejects_everything_reports_nothing(onnx_model):
    from speechlstm.detect.cascade import cascade
    from speechlstm.detect.stream import detect_file

    rec, verifier, cfg = _parts(onnx_model)
    verifier.ruling = lambda label, clip: None  # turns every candidate down
    det = cascade(rec, verifier, cfg)
    assert detect_file(det, tone_stream()) == []
    candidates = len(detect_file(cascade(rec, None, cfg), tone_stream()))
    assert candidates == len(STREAM_TRUTH)
    assert det.stats.verified == det.stats.rejected == candidates
    assert det.stats.detections == 0 and det.stats.relabelled == 0
    det.reset()  # a new stream: the rulings' counts start over with the detector's
    assert det.stats.verified == det.stats.rejected == det.stats.hops == 0


def test_without_a_verifier_the_cascade_is_the_plain_detector(onnx_model):
    from speechlstm.detect.cascade import cascade, verifier_of
    from speechlstm.detect.debounce import TriggerDetector
    from speechlstm.detect.hop_inference import WindowBatches
    from speechlstm.detect.stream import StreamingDetector, detect_file

    rec, _, cfg = _parts(onnx_model)
    det = cascade(rec, None, cfg)
    assert isinstance(det.decision, TriggerDetector) and verifier_of(det) is None
    # An MFCC model's hops are batched windows: the model's choice, not the detector's.
    assert isinstance(det.inference, WindowBatches)
    stream = tone_stream()
    assert detect_file(det, stream) == detect_file(StreamingDetector(rec, cfg), stream)
    assert det.stats.verified == 0


def test_a_verifier_at_another_rate_is_refused(onnx_model):
    import pytest

    from speechlstm.detect.cascade import cascade

    rec, verifier, cfg = _parts(onnx_model)
    verifier.rec = type("Other", (), {"sample_rate": 8000})()
    with pytest.raises(ValueError, match="another sample rate"):
        cascade(rec, verifier, cfg)
