"""The offline gate's rules (training/compare.py), on given per-image differences."""

from __future__ import annotations

import pytest

from training.bootstrap import Interval
from training.compare import KEEP, PROMOTE, GateSettings, SplitComparison, decide


def split(mean: float, low: float, high: float, images: int = 57, name="flickr8k[test]"):
    return SplitComparison(name, images, 0.30, 0.30 + mean, Interval(mean, low, high))


def test_a_challenger_is_promoted_only_when_its_interval_lies_above_the_margin():
    gate = GateSettings()
    decision, reasons = decide(split(0.12, 0.04, 0.20), None, gate)
    assert decision == PROMOTE and "lies above +0.000" in reasons[0]
    decision, reasons = decide(split(0.05, -0.01, 0.11), None, gate)
    assert decision == KEEP and "does not lie above" in reasons[0]
    stricter = GateSettings(min_gain=0.05)
    assert decide(split(0.12, 0.04, 0.20), None, stricter)[0] == KEEP


def test_held_out_feedback_can_only_veto():
    gate = GateSettings(max_feedback_loss=0.05)
    better = split(0.12, 0.04, 0.20)
    worse_on_feedback = split(-0.30, -0.45, -0.10, 30, "feedback[test]")
    decision, reasons = decide(better, worse_on_feedback, gate)
    assert decision == KEEP and "clearly worse on held-out feedback" in reasons[1]
    # Better on (perhaps poisoned) feedback never outweighs the curated split.
    decision, _ = decide(split(-0.10, -0.20, 0.0), split(0.5, 0.3, 0.7, 30, "feedback[test]"), gate)
    assert decision == KEEP
    assert decide(better, split(-0.02, -0.08, 0.04, 30, "feedback[test]"), gate)[0] == PROMOTE


def test_too_few_held_out_images_decide_nothing():
    decision, reasons = decide(split(0.3, 0.2, 0.4, images=12), None, GateSettings(min_images=30))
    assert decision == KEEP and "fewer than the 30" in reasons[0]


def test_thresholds_are_settings(monkeypatch):
    monkeypatch.setenv("CAPTIONER_GATE_MIN_GAIN", "0.02")
    monkeypatch.setenv("CAPTIONER_GATE_RESAMPLES", "500")
    gate = GateSettings()
    assert (gate.min_gain, gate.resamples) == (0.02, 500)
    monkeypatch.setenv("CAPTIONER_GATE_LEVEL", "1.5")
    with pytest.raises(ValueError, match="less than 1"):
        GateSettings()
