"""Label ids and decoding against hand-computed MindOCR RecAttnLabelEncode / RecAttnLabelDecode results.

Default dictionary 0-9a-z: GO=0, STOP=1, '0'..'9' -> 2..11, 'a'..'z' -> 12..37.
"""
import numpy as np
import pytest

from rare_portable.charset import Charset, load_charset
from rare_portable.labels import (
    NO_VALID_CHARS,
    OOD_CHARS_DROPPED,
    TOO_LONG,
    LabelStats,
    decode,
    decode_ids,
    encode,
)

ALNUM = load_charset(None)


def ids(*values):
    return np.array(values, dtype=np.int32)


def test_encode_is_go_chars_stop_then_zero_padding():
    encoded = encode("ab9", ALNUM, max_text_len=5, lower=True)
    assert encoded.dtype == np.int32
    np.testing.assert_array_equal(encoded, ids(0, 12, 13, 11, 1, 0, 0))


def test_a_label_of_exactly_max_text_len_fills_the_array():
    np.testing.assert_array_equal(encode("abcde", ALNUM, 5, lower=True), ids(0, 12, 13, 14, 15, 16, 1))


def test_lower_maps_upper_case_onto_the_lower_case_dictionary():
    np.testing.assert_array_equal(encode("AbZ", ALNUM, 4, lower=True), ids(0, 12, 13, 37, 1, 0))


def test_without_lower_upper_case_is_out_of_dictionary_and_dropped():
    stats = LabelStats(max_text_len=4)
    np.testing.assert_array_equal(encode("AbZ", ALNUM, 4, lower=False, stats=stats), ids(0, 13, 1, 0, 0, 0))
    assert stats.counts[OOD_CHARS_DROPPED] == 1


def test_out_of_dictionary_characters_are_dropped():
    np.testing.assert_array_equal(encode("a-b!", ALNUM, 5, lower=True), ids(0, 12, 13, 1, 0, 0, 0))


def test_too_long_label_becomes_the_empty_target_and_is_counted():
    # MindOCR: str2idx returns None, RecAttnLabelEncode turns it into [] -> [GO, STOP, 0...]; the sample stays.
    stats = LabelStats(max_text_len=3)
    np.testing.assert_array_equal(encode("abcd", ALNUM, 3, lower=True, stats=stats), ids(0, 1, 0, 0, 0))
    assert stats.counts[TOO_LONG] == 1 and stats.total == 1
    [warning] = stats.warnings()
    assert "1 of 1 labels longer than max_text_len=3" in warning


def test_length_limit_applies_to_the_label_as_written_not_the_kept_characters():
    # 7 characters, only 4 in the dictionary: MindOCR checks len(text) before filtering.
    stats = LabelStats(max_text_len=5)
    np.testing.assert_array_equal(encode("a-b-c-d", ALNUM, 5, lower=True, stats=stats), ids(0, 1, 0, 0, 0, 0, 0))
    assert stats.counts[TOO_LONG] == 1


@pytest.mark.parametrize("text", ["", "$%&"])
def test_label_without_dictionary_characters_becomes_the_empty_target(text):
    stats = LabelStats(max_text_len=3)
    np.testing.assert_array_equal(encode(text, ALNUM, 3, lower=True, stats=stats), ids(0, 1, 0, 0, 0))
    assert stats.counts[NO_VALID_CHARS] == 1


def test_clean_labels_produce_no_warnings():
    stats = LabelStats(max_text_len=25)
    for text in ["hello", "world", "42"]:
        encode(text, ALNUM, 25, lower=True, stats=stats)
    assert stats.total == 3 and stats.warnings() == []


def test_custom_dictionary_ids_follow_file_order():
    charset = Charset(chars=tuple("zAé"), source="test")
    np.testing.assert_array_equal(encode("éAz", charset, 3, lower=False), ids(0, 4, 3, 2, 1))


def _probs(steps, num_classes=38):
    """Probabilities whose argmax and max per step are given as (class id, probability) pairs."""
    probs = np.zeros((1, len(steps), num_classes), dtype=np.float32)
    for t, (class_id, p) in enumerate(steps):
        probs[0, t, :] = (1 - p) / (num_classes - 1)
        probs[0, t, class_id] = p
    return probs


def test_decode_stops_at_first_stop_and_averages_the_steps_before_it():
    # 'h' = 12 + 7 = 19, 'i' = 20; STOP's own probability (0.6) is not in the mean.
    probs = _probs([(19, 0.9), (20, 0.7), (1, 0.6), (21, 0.99), (0, 0.5)])
    [(text, confidence)] = decode(probs, ALNUM)
    assert text == "hi"
    assert confidence == pytest.approx(0.8)


def test_decode_without_stop_reads_nothing():
    [(text, confidence)] = decode(_probs([(19, 0.9), (20, 0.7)]), ALNUM)
    assert (text, confidence) == ("", 0.0)


def test_decode_immediate_stop_is_empty_with_zero_confidence():
    [(text, confidence)] = decode(_probs([(1, 0.95), (19, 0.9)]), ALNUM)
    assert (text, confidence) == ("", 0.0)


def test_go_before_stop_counts_in_confidence_but_never_appears_in_text():
    probs = _probs([(19, 0.9), (0, 0.5), (20, 0.7), (1, 0.6)])
    [(text, confidence)] = decode(probs, ALNUM)
    assert text == "hi"
    assert confidence == pytest.approx((0.9 + 0.5 + 0.7) / 3)


def test_decode_ids_takes_precomputed_argmax_and_max():
    results = decode_ids(
        np.array([[19, 20, 1, 0], [2, 11, 11, 1]]), ALNUM, step_probs=np.array([[0.5, 1.0, 0.2, 0], [1, 1, 0.7, 1]])
    )
    assert results[0] == ("hi", pytest.approx(0.75))
    assert results[1] == ("099", pytest.approx(0.9))
    assert decode_ids(np.array([[19, 1]]), ALNUM) == [("h", 0.0)]


def test_decode_lower_lowercases_the_text():
    charset = Charset(chars=tuple("AB"), source="test")
    assert decode_ids(np.array([[2, 3, 1]]), charset, lower=True) == [("ab", 0.0)]


def test_decode_rejects_probabilities_for_another_dictionary():
    with pytest.raises(ValueError, match=r"\[N, T, 38\].*got shape \[1, 2, 40\]"):
        decode(np.zeros((1, 2, 40)), ALNUM)


def test_encoded_ids_decode_back_to_the_kept_text():
    encoded = encode("Rare-2024", ALNUM, 25, lower=True)
    one_hot = np.eye(ALNUM.num_classes, dtype=np.float32)[encoded[1:]][None]
    assert decode(one_hot, ALNUM) == [("rare2024", 1.0)]
