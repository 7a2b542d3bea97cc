"""RecMetric values computed by hand from MindOCR's RecMetric rules (default dictionary 0-9a-z)."""
import pytest

from rare_portable.charset import Charset, load_charset
from rare_portable.metrics import RecMetric, rec_metric

ALNUM = load_charset(None)


def test_mindocr_docstring_example():
    # MindOCR rec_metrics.py __main__: label "ba xla la!" -> "baxlala!" -> lower -> "baxlala" (ood '!' dropped);
    # "balala" is one deletion away: 1/7. "ba" == "ba".
    result = rec_metric(["balala", "ba"], ["ba xla la!", "ba"], ALNUM)
    assert result["acc"] == pytest.approx(0.5)
    assert result["norm_edit_distance"] == pytest.approx(1 - (1 / 7) / 2)
    assert (result["correct"], result["total"]) == (1, 2)


def test_is_correct_judges_one_pair_by_the_same_rules():
    """The per-crop check the benchmarks use: the MindOCR example's pairs, one right and one wrong."""
    metric = RecMetric(ALNUM)
    assert metric.is_correct("ba", "ba") and metric.is_correct("BaXlaLa", "ba xla la!")
    assert not metric.is_correct("balala", "ba xla la!") and not metric.is_correct("a-b", "a-b")
    assert RecMetric(ALNUM, lower=False).is_correct("ABC", "abc") is False
    assert metric.total == 0  # a judgement, not an update


def test_out_of_dictionary_characters_are_removed_from_the_label_only():
    # label "a-b" -> "ab", prediction keeps '-': one deletion over length 3.
    result = rec_metric(["a-b"], ["a-b"], ALNUM)
    assert result["acc"] == 0.0
    assert result["norm_edit_distance"] == pytest.approx(1 - 1 / 3)


def test_filter_ood_off_keeps_label_symbols():
    assert rec_metric(["a-b"], ["a-b"], ALNUM, filter_ood=False)["acc"] == 1.0


def test_space_outside_the_dictionary_is_filtered_from_the_label_even_when_spaces_count():
    assert rec_metric(["ab"], ["a b"], ALNUM, ignore_space=False)["acc"] == 1.0
    assert rec_metric(["a b"], ["a b"], ALNUM, ignore_space=False)["acc"] == 0.0


def test_lower_false_compares_case():
    assert rec_metric(["ABC"], ["abc"], ALNUM)["acc"] == 1.0
    result = rec_metric(["ABC"], ["abc"], ALNUM, lower=False)
    assert result["acc"] == 0.0 and result["norm_edit_distance"] == pytest.approx(0.0)


def test_ignore_symbol_strips_both_sides_keeping_cjk():
    charset = Charset(chars=tuple("中文ab"), source="test")
    assert rec_metric(["中-文!"], ["中文"], charset, ignore_symbol=True)["acc"] == 1.0
    # MindOCR's pattern treats '^' as a kept character.
    assert rec_metric(["a^b"], ["ab"], charset, ignore_symbol=True)["acc"] == 0.0


def test_empty_prediction_against_a_word_is_distance_one():
    result = rec_metric(["", ""], ["abc", ""], ALNUM)
    assert result["acc"] == 0.5
    assert result["norm_edit_distance"] == pytest.approx(0.5)


def test_batches_accumulate_like_one_shot():
    preds, labels = ["hello", "w0rld", "x", "rare"], ["HELLO", "world", "xy", "r a r e"]
    metric = RecMetric(ALNUM)
    metric.update(preds[:1], labels[:1])
    metric.update(preds[1:], labels[1:])
    expected_distance = 1 - (0 + 1 / 5 + 1 / 2 + 0) / 4
    assert metric.result() == rec_metric(preds, labels, ALNUM)
    assert metric.result()["acc"] == 0.5
    assert metric.result()["norm_edit_distance"] == pytest.approx(expected_distance)


def test_no_samples_is_an_error_not_a_zero():
    with pytest.raises(ValueError, match="no samples were evaluated"):
        RecMetric(ALNUM).result()


def test_mismatched_lengths_are_rejected():
    with pytest.raises(ValueError, match="2 predictions for 1 labels"):
        RecMetric(ALNUM).update(["a", "b"], ["a"])
