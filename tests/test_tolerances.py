"""The tolerance classes (rare_portable/tolerances.py): each bound is set from a measured value with a margin."""
import dataclasses

import numpy as np
import pytest

from rare_portable import parity, tolerances
from rare_portable.tolerances import MARGIN, Tolerance, all_tolerances, assert_allclose, assert_within

CLASSES = list(all_tolerances())


def test_the_module_defines_classes_with_distinct_names():
    assert len(CLASSES) >= 10
    names = [t.name for t in CLASSES]
    assert len(set(names)) == len(names), names
    assert MARGIN >= 3


@pytest.mark.parametrize("tolerance", CLASSES, ids=lambda t: t.name)
def test_every_bound_has_its_margin_over_the_measured_value(tolerance):
    assert tolerance.where and tolerance.why
    assert tolerance.measured >= 0 and tolerance.bound > 0 and tolerance.rtol >= 0
    if tolerance.gate:  # a word-level requirement: reported against, never widened to fit a measurement
        assert tolerance.name.endswith("word-disagreement") and tolerance.bound < 0.1
    else:
        assert tolerance.bound >= MARGIN * tolerance.measured, (
            f"{tolerance.name}: bound {tolerance.bound:g} < {MARGIN:g} x the measured {tolerance.measured:g}")


def test_tolerances_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        tolerances.FP32_RUNTIME.bound = 1.0


def test_parity_reads_its_bounds_from_the_classes():
    assert parity.FP32_TOLERANCE == tolerances.FP32_RUNTIME.bound
    assert parity.INT8_MAX_WORD_DISAGREEMENT == tolerances.INT8_WORD_DISAGREEMENT.bound
    assert parity.BF16_MAX_WORD_DISAGREEMENT == tolerances.BF16_WORD_DISAGREEMENT.bound


def test_assert_within_passes_at_the_bound_and_names_the_class_when_it_fails():
    t = Tolerance("demo-class", 1e-6, 2e-7, "a unit test", "to see the message")
    assert_within(1e-6, t)
    with pytest.raises(AssertionError) as failure:
        assert_within(1.013e-6, t, "batch 2")
    message = str(failure.value)
    assert message.startswith("batch 2: 1.013e-06 > 1e-06")
    assert "'demo-class'" in message and "measured worst of 2e-07: a unit test" in message
    with pytest.raises(AssertionError, match="demo-class"):
        assert_within(float("nan"), t)


def test_assert_allclose_uses_both_parts_and_names_the_class():
    t = Tolerance("demo-rel", 1e-4, 1e-5, "a unit test", "atol and rtol", rtol=1e-2)
    assert_allclose([100.5], [100.0], t)  # within 1e-4 + 1e-2 * 100
    with pytest.raises(AssertionError, match=r"logits: outside the bound of tolerance class 'demo-rel' .*1e-05"):
        assert_allclose(np.array([1.1]), np.array([1.0]), t, "logits")


def test_the_log_records_each_comparison(tmp_path, monkeypatch):
    log = tmp_path / "measured.tsv"
    monkeypatch.setenv("RARE_TOLERANCE_LOG", str(log))
    assert_within(3e-5, tolerances.FP32_RUNTIME, "here")
    assert log.read_text() == "fp32-runtime\t3e-05\there\n"
