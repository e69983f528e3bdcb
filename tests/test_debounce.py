"""The detection decision (debounce.TriggerDetector) on hand-written score sequences:
no audio, no model."""

from __future__ import annotations

import numpy as np
import pytest

from speechlstm.config import DetectorConfig
from speechlstm.detect.debounce import Trigger, TriggerDetector

LABELS = ("yes", "no", "_unknown_", "_silence_")
BACKGROUND = (False, False, True, True)
HOP = 1600  # samples between updates (100 ms at 16 kHz)
YES, NO = 0, 1


def _trigger(threshold=0.8, refractory_hops=10, peak_wait_hops=2, thresholds=None):
    return TriggerDetector(
        LABELS,
        thresholds or [threshold] * len(LABELS),
        BACKGROUND,
        refractory_samples=refractory_hops * HOP,
        peak_wait_samples=peak_wait_hops * HOP,
    )


def _probs(**scores: float) -> np.ndarray:
    """A (classes,) vector: the given scores, the rest of the mass on _silence_."""
    p = np.zeros(len(LABELS))
    for label, score in scores.items():
        p[LABELS.index(label.replace("unknown", "_unknown_"))] = score
    p[3] = max(0.0, 1.0 - p.sum())
    return p


def _run(trigger, rows, first_hop=0) -> list[tuple[int, Trigger]]:
    """Feed rows at hops first_hop, first_hop + 1, ...: [(hop of the call, trigger)]."""
    out = []
    for i, p in enumerate(rows, start=first_hop):
        got = trigger.update(p, (i + 1) * HOP)  # the window of hop i ends at (i + 1) * HOP
        if got is not None:
            out.append((i, got))
    return out


def _word(label: str, scores) -> list[np.ndarray]:
    return [_probs(**{label: s}) for s in scores]


def test_a_rising_then_falling_word_fires_once_at_its_peak():
    rows = _word("yes", [0.1, 0.5, 0.85, 0.9, 0.95, 0.7, 0.3, 0.1, 0.05])
    got = _run(_trigger(peak_wait_hops=3), rows)
    # Armed at hop 2, rises to the peak at hop 4, reported on hop 5 when it falls.
    assert got == [(5, Trigger(YES, "yes", 0.95, 5 * HOP))]


def test_a_slow_rise_is_reported_within_peak_wait():
    rows = _word("no", [0.81, 0.82, 0.83, 0.84, 0.85, 0.86, 0.87, 0.88])
    got = _run(_trigger(peak_wait_hops=2), rows)
    # First over threshold at hop 0; followed for two hops, reported on the third.
    assert got == [(3, Trigger(NO, "no", 0.83, 3 * HOP))]


def test_a_flat_plateau_is_reported_on_the_next_hop():
    got = _run(_trigger(peak_wait_hops=5), _word("yes", [0.9] * 12))
    assert got == [(1, Trigger(YES, "yes", 0.9, 1 * HOP))]


def test_peak_wait_zero_reports_the_first_window_over_threshold():
    got = _run(_trigger(peak_wait_hops=0), _word("yes", [0.5, 0.85, 0.95, 0.99, 0.2]))
    assert got == [(2, Trigger(YES, "yes", 0.85, 2 * HOP))]


def test_a_second_word_inside_the_refractory_period_is_suppressed():
    word = [0.2, 0.9, 0.95, 0.4, 0.1]  # peak at its hop 2
    quiet = [0.0] * 3
    rows = _word("yes", word + quiet + word + quiet + word)  # words start at hops 0, 8, 16
    got = _run(_trigger(refractory_hops=12, peak_wait_hops=2), rows)
    # The first peaks at hop 2 (window end 3 * HOP); the second word (over
    # threshold at hops 9-10, 7-8 hops later) is inside the 12-hop refractory
    # period; the third (over threshold at hop 17, 15 hops later) is not.
    assert got == [
        (3, Trigger(YES, "yes", 0.95, 3 * HOP)),
        (19, Trigger(YES, "yes", 0.95, 19 * HOP)),
    ]


def test_it_re_arms_only_after_the_scores_fall_below_threshold():
    trigger = _trigger(refractory_hops=2, peak_wait_hops=0)
    # Far longer over threshold than the refractory period, and the best label
    # changes: still one utterance, one report.
    rows = _word("yes", [0.9] * 10) + _word("no", [0.9] * 10)
    assert _run(trigger, rows) == [(1, Trigger(YES, "yes", 0.9, 1 * HOP))]
    assert not trigger.armed
    # One hop below threshold re-arms; the next word fires.
    rows = _word("no", [0.79, 0.9, 0.9])
    assert _run(trigger, rows, first_hop=20) == [(22, Trigger(NO, "no", 0.9, 22 * HOP))]


def test_per_label_thresholds():
    trigger = _trigger(thresholds=[0.95, 0.5, 0.5, 0.5], peak_wait_hops=0)
    assert _run(trigger, _word("yes", [0.2, 0.9, 0.94, 0.9, 0.2])) == []
    rows = _word("no", [0.2, 0.6, 0.55, 0.2])
    assert _run(trigger, rows, first_hop=5) == [(7, Trigger(NO, "no", 0.6, 7 * HOP))]


def test_background_labels_never_fire():
    trigger = _trigger(threshold=0.5)
    rows = [_probs(unknown=0.99)] * 5 + [_probs()] * 5 + [_probs(unknown=0.6, yes=0.3)] * 5
    assert _run(trigger, rows) == [] and trigger.flush() is None
    # The foreground class is chosen among commands only: "yes" under a
    # stronger _unknown_ still fires on its own threshold.
    rows = [_probs(unknown=0.4, yes=0.55)] * 3
    assert _run(trigger, rows, first_hop=15) == [(16, Trigger(YES, "yes", 0.55, 16 * HOP))]
    # A vocabulary of background classes only: nothing to report, ever.
    only_background = TriggerDetector(["_unknown_", "_silence_"], [0.1, 0.1], [True, True], 0, 0)
    assert only_background.update(np.array([0.9, 0.1]), HOP) is None


def test_flush_reports_a_candidate_still_rising_at_the_end():
    trigger = _trigger(peak_wait_hops=5)
    assert _run(trigger, _word("yes", [0.3, 0.85, 0.9])) == []
    assert trigger.flush() == Trigger(YES, "yes", 0.9, 3 * HOP)
    assert trigger.flush() is None


def test_reset_clears_candidate_refractory_and_arming():
    trigger = _trigger(refractory_hops=100, peak_wait_hops=5)
    _run(trigger, _word("yes", [0.85, 0.9]))
    assert trigger.candidate is not None
    trigger.reset()
    assert trigger.candidate is None and trigger.flush() is None
    # Fired and disarmed, inside a long refractory period...
    assert _run(trigger, _word("yes", [0.9, 0.9])) == [(1, Trigger(YES, "yes", 0.9, 1 * HOP))]
    assert not trigger.armed
    trigger.reset()
    # ...after reset the same position fires again at once.
    assert trigger.armed
    assert _run(trigger, _word("yes", [0.9, 0.9])) == [(1, Trigger(YES, "yes", 0.9, 1 * HOP))]


def test_from_config_converts_milliseconds_to_samples():
    cfg = DetectorConfig(
        threshold=0.7, thresholds=(("no", 0.9),), refractory_ms=1000.0, peak_wait_ms=200.0
    )
    trigger = TriggerDetector.from_config(LABELS, BACKGROUND, cfg, rate_hz=16000)
    assert trigger.refractory_samples == 16000 and trigger.peak_wait_samples == 3200
    assert trigger.thresholds.tolist() == [0.7, 0.9, 0.7, 0.7]
    assert trigger.foreground.tolist() == [YES, NO]


def test_inconsistent_settings_are_refused():
    with pytest.raises(ValueError, match="4 labels but 3 thresholds"):
        TriggerDetector(LABELS, [0.5] * 3, BACKGROUND, 0, 0)
    with pytest.raises(ValueError, match="refractory_samples=-1"):
        TriggerDetector(LABELS, [0.5] * 4, BACKGROUND, -1, 0)
