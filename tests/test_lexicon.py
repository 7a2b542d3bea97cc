"""LexiconCorrect: a reading that is not a word becomes the word the model nearly read, judged on hand-made
probabilities (0-9a-z: GO=0, STOP=1, 'a'..'z' -> 12..37), and the config, artifact and CLI around it."""
import sys

import cv2
import numpy as np
import pytest

from rare_portable.artifact import checked_spec
from rare_portable.charset import load_charset
from rare_portable.cli import main
from rare_portable.config import ConfigError, load_config
from rare_portable.labels import decode
from rare_portable.lexicon import Lexicon, LexiconError, load_lexicon
from rare_portable.spec import LexiconSpec, SpecError, spec_from_dict, spec_to_dict

ALNUM = load_charset(None)
STOP = 1


def cid(ch):
    return 12 + ord(ch) - ord("a")


def probs_for(steps, num_steps=8):
    """One sample's probabilities: each step a {character or STOP: probability} dict, the rest spread evenly."""
    probs = np.zeros((1, num_steps, ALNUM.num_classes), dtype=np.float32)
    for t in range(num_steps):
        chosen = steps[t] if t < len(steps) else {STOP: 0.9}
        chosen = {cid(k) if isinstance(k, str) else k: p for k, p in chosen.items()}
        probs[0, t, :] = (1 - sum(chosen.values())) / (ALNUM.num_classes - len(chosen))
        for k, p in chosen.items():
            probs[0, t, k] = p
    return probs


@pytest.fixture
def words(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("hello\nhelps\nworld\nhell\ncafé\n", encoding="utf-8")
    return str(path)


def lexicon(words, **kwargs):
    # The hand-made probabilities spread what a step leaves evenly (0.0027 a class beside 0.9), which the default
    # ratio, e^6, would let through; e^4 keeps the margins each test is built on.
    kwargs.setdefault("max_log_ratio", 4.0)
    return Lexicon(LexiconSpec(words=words, **kwargs), ALNUM)


def hcllo(e_probability):
    """'hcllo' read, with 'e' the runner-up at the second step."""
    return probs_for([{"h": 0.9}, {"c": 0.6, "e": e_probability}, {"l": 0.9}, {"l": 0.9}, {"o": 0.8}, {STOP: 0.9}])


def test_a_reading_near_a_word_becomes_that_word(words):
    [(text, confidence)] = decode(hcllo(0.35), ALNUM, lexicon=lexicon(words))
    assert text == "hello"
    # the word's own characters at their steps: h .9, e .35, l .9, l .9, o .8
    assert confidence == pytest.approx((0.9 + 0.35 + 0.9 + 0.9 + 0.8) / 5, rel=1e-5)


def test_a_word_the_model_finds_too_unlikely_is_not_taken(words):
    # log(0.6 / 0.01) = 4.1 > 4: the model is surer of its own reading than the lexicon may overrule
    assert decode(hcllo(0.01), ALNUM, lexicon=lexicon(words)) == decode(hcllo(0.01), ALNUM)
    [(text, _)] = decode(hcllo(0.01), ALNUM, lexicon=lexicon(words, max_log_ratio=5.0))
    assert text == "hello"


def test_without_a_lexicon_or_with_a_word_read_nothing_changes(words):
    assert decode(hcllo(0.35), ALNUM)[0][0] == "hcllo"
    world = probs_for([{"w": 0.5, "h": 0.4}, {"o": 0.9}, {"r": 0.9}, {"l": 0.9}, {"d": 0.9}, {STOP: 0.9}])
    assert decode(world, ALNUM, lexicon=lexicon(words))[0][0] == "world"


def test_more_substitutions_than_allowed_keep_the_reading(words):
    # 'hcllu' is two characters off 'hello'
    two_off = probs_for([{"h": 0.9}, {"c": 0.5, "e": 0.4}, {"l": 0.9}, {"l": 0.9}, {"u": 0.5, "o": 0.4}, {STOP: 0.9}])
    assert decode(two_off, ALNUM, lexicon=lexicon(words, max_substitutions=1))[0][0] == "hcllu"
    assert decode(two_off, ALNUM, lexicon=lexicon(words, max_substitutions=2))[0][0] == "hello"


def test_a_character_the_model_skipped_is_put_back(words):
    # 'hllo': at step 1 the model, having read 'h', gave 'e' 0.3 and read the next 'l' instead
    hllo = probs_for([{"h": 0.9}, {"l": 0.6, "e": 0.3}, {"l": 0.9}, {"o": 0.8}, {STOP: 0.9}])
    [(text, confidence)] = decode(hllo, ALNUM, lexicon=lexicon(words))
    assert text == "hello"
    # h at 0, e at 1 (skipped there), then l l o one step early: l .6 at 1, l .9 at 2, o .8 at 3
    assert confidence == pytest.approx((0.9 + 0.3 + 0.6 + 0.9 + 0.8) / 5, rel=1e-5)
    assert decode(hllo, ALNUM, lexicon=lexicon(words, max_skipped=0))[0][0] == "hllo"
    # 'worl' stopped where 'd' had 0.3: the word's last character goes where STOP was read
    worl = probs_for([{"w": 0.9}, {"o": 0.9}, {"r": 0.9}, {"l": 0.9}, {STOP: 0.6, "d": 0.3}])
    assert decode(worl, ALNUM, lexicon=lexicon(words))[0][0] == "world"
    # the skip counts as one of max_substitutions: 'hlla' needs it and a substitution
    hlla = probs_for([{"h": 0.9}, {"l": 0.6, "e": 0.3}, {"l": 0.9}, {"a": 0.6, "o": 0.3}, {STOP: 0.9}])
    assert decode(hlla, ALNUM, lexicon=lexicon(words))[0][0] == "hello"
    assert decode(hlla, ALNUM, lexicon=lexicon(words, max_substitutions=1))[0][0] == "hlla"


def test_only_words_as_long_or_one_longer_and_spelled_are_candidates(words):
    # 'hel' + 'l' is 'hell', but at step 3 the model gave 'l' only what every other class got: no skip there.
    # (Scored at step 2, where 'l' was read, the skipped 'l' would count that step's probability twice.)
    assert decode(probs_for([{"h": 0.9}, {"e": 0.9}, {"l": 0.5, "p": 0.4}, {STOP: 0.9}]), ALNUM,
                  lexicon=lexicon(words))[0][0] == "hel"
    # 'hellos' is one longer than 'hello', never shorter: a character read too many stays
    assert decode(probs_for([{"h": 0.9}, {"e": 0.9}, {"l": 0.9}, {"l": 0.9}, {"o": 0.9}, {"s": 0.5, STOP: 0.4}]),
                  ALNUM, lexicon=lexicon(words))[0][0] == "hellos"
    assert "café" not in lexicon(words).words  # é is not in 0-9a-z


def test_a_dictionary_line_of_several_characters_spells_no_word(words, tmp_path):
    chars = tmp_path / "dict.txt"
    chars.write_text("\n".join(["he", *"abcdefghijklmnopqrstuvwxyz"]) + "\n", encoding="utf-8")
    charset = load_charset(str(chars))
    assert {"hello", "world", "hell", "helps"} == set(Lexicon(LexiconSpec(words=words), charset).words)


def test_the_likeliest_near_word_wins_weighed_by_its_rank(tmp_path):
    path = tmp_path / "words.txt"
    path.write_text("cat\ncot\n", encoding="utf-8")
    # cot is 1.5 times likelier than cat, but Zipf's prior makes cat, listed first, twice as likely a word
    cxt = probs_for([{"c": 0.9}, {"x": 0.5, "o": 0.3, "a": 0.2}, {"t": 0.9}, {STOP: 0.9}])
    assert decode(cxt, ALNUM, lexicon=lexicon(str(path), prior="none"))[0][0] == "cot"
    assert decode(cxt, ALNUM, lexicon=lexicon(str(path)))[0][0] == "cat"
    # the prior only ranks words the model allows: 'xot' is too unlikely a 'cat' however frequent
    xot = probs_for([{"x": 0.9}, {"o": 0.9}, {"t": 0.9}, {STOP: 0.9}])
    assert decode(xot, ALNUM, lexicon=lexicon(str(path)))[0][0] == "xot"


def new_and_nem(tmp_path, nem_rank):
    """A lexicon with 'new' first and 'nem' at `nem_rank` (the words between are too long to be near either)."""
    path = tmp_path / "words.txt"
    fillers = ["longfiller" + "".join(chr(97 + int(d)) for d in f"{i:03d}") for i in range(nem_rank - 2)]
    path.write_text("\n".join(["new", *fillers, "nem"]) + "\n", encoding="utf-8")
    return str(path)


def test_a_rare_word_read_gives_way_to_a_frequent_near_one(tmp_path):
    # 'nem' is a word too, 1.25 times likelier than 'new' by its last step, but 100 times rarer
    nem = probs_for([{"n": 0.9}, {"e": 0.9}, {"m": 0.5, "w": 0.4}, {STOP: 0.9}])
    assert decode(nem, ALNUM, lexicon=lexicon(new_and_nem(tmp_path, 100)))[0][0] == "new"
    assert decode(nem, ALNUM, lexicon=lexicon(new_and_nem(tmp_path, 100), word_margin=None))[0][0] == "nem"
    # 2 times rarer: 'new' is 2 / 1.25 = 1.6 times likelier x prior, short of e^1 = 2.7
    assert decode(nem, ALNUM, lexicon=lexicon(new_and_nem(tmp_path, 2)))[0][0] == "nem"
    assert decode(nem, ALNUM, lexicon=lexicon(new_and_nem(tmp_path, 2), word_margin=0.0))[0][0] == "new"
    # a word read surely stays however rare: 'w' is e^6.8 times less likely than 'm', past max_log_ratio
    sure = probs_for([{"n": 0.9}, {"e": 0.9}, {"m": 0.9, "w": 0.001}, {STOP: 0.9}])
    assert decode(sure, ALNUM, lexicon=lexicon(new_and_nem(tmp_path, 100)))[0][0] == "nem"


def test_words_one_longer_and_of_the_reading_length_are_scored_over_the_same_steps(tmp_path):
    # 'hel', where the model half wanted another 'l' (0.45) instead of STOP (0.5): 'hell' (h e l, then l at the
    # STOP step: .9 .9 .5 .45) against 'hep' (.9 .9 .4, and it stops there: .5); without STOP's cost 'hep' would win
    path = tmp_path / "words.txt"
    path.write_text("hep\nhell\n", encoding="utf-8")
    hel = probs_for([{"h": 0.9}, {"e": 0.9}, {"l": 0.5, "p": 0.4}, {STOP: 0.5, "l": 0.45}])
    assert decode(hel, ALNUM, lexicon=lexicon(str(path), prior="none"))[0][0] == "hell"


def test_a_reading_with_go_inside_is_kept(words):
    # GO (0) between characters: the text is 'hcllo' but its characters are off their steps
    probs = probs_for([{"h": 0.9}, {0: 0.6}, {"c": 0.6, "e": 0.35}, {"l": 0.9}, {"l": 0.9}, {"o": 0.8}, {STOP: 0.9}])
    assert decode(probs, ALNUM, lexicon=lexicon(words))[0][0] == "hcllo"


def test_lower_applies_after_the_correction(words, tmp_path):
    en = load_charset("en_dict.txt")
    upper = tmp_path / "upper.txt"
    upper.write_text("HELLO\n", encoding="utf-8")
    index = {c: i + 2 for i, c in enumerate(en.chars)}
    probs = np.full((1, 7, en.num_classes), 1e-4, dtype=np.float32)
    for t, (best, runner_up) in enumerate([("H", None), ("C", "E"), ("L", None), ("L", None), ("O", None)]):
        probs[0, t, index[best]] = 0.6
        if runner_up:
            probs[0, t, index[runner_up]] = 0.35
    probs[0, 5, STOP] = probs[0, 6, STOP] = 0.9
    assert decode(probs, en, lower=True, lexicon=Lexicon(LexiconSpec(words=str(upper)), en))[0][0] == "hello"


def test_the_shipped_english_lexicon_loads_for_the_default_dictionary():
    shipped = load_lexicon(LexiconSpec(), ALNUM)
    assert len(shipped.words) > 45000
    assert {"street", "hotel", "exit", "the"} <= shipped.words
    assert all(w.isascii() and w.isalpha() and w.islower() for w in shipped.words)


def test_bad_lexicons_are_one_clear_error(tmp_path):
    with pytest.raises(LexiconError, match="missing.txt not found.*shipped lexicon \\(en\\)"):
        Lexicon(LexiconSpec(words=str(tmp_path / "missing.txt")), ALNUM)
    (tmp_path / "greek.txt").write_text("αβγ\n", encoding="utf-8")
    with pytest.raises(LexiconError, match="none of its words can be spelled"):
        Lexicon(LexiconSpec(words=str(tmp_path / "greek.txt")), ALNUM)
    with pytest.raises(SpecError, match="max_substitutions"):
        LexiconSpec(max_substitutions=0)
    for ratio in (0, "four", True):
        with pytest.raises(SpecError, match="max_log_ratio must be > 0"):
            LexiconSpec(max_log_ratio=ratio)
    with pytest.raises(SpecError, match="max_substitutions"):
        LexiconSpec(max_substitutions=1.5)
    for skipped in (2, True):
        with pytest.raises(SpecError, match="max_skipped must be 0 or 1"):
            LexiconSpec(max_skipped=skipped)
    with pytest.raises(SpecError, match="prior must be zipf .* or none, got 'frequency'"):
        LexiconSpec(prior="frequency")
    for margin in (-1.0, "one", True):
        with pytest.raises(SpecError, match="word_margin must be >= 0, or null to keep every word read"):
            LexiconSpec(word_margin=margin)


def test_the_config_sets_it_and_artifacts_follow_the_config(tmp_path):
    config = load_config("rare_tiny", ["postprocess.lexicon={words: en, max_log_ratio: 6}"])
    assert config.spec.lexicon == LexiconSpec(words="en", max_log_ratio=6.0)
    assert "en lexicon" in config.spec.reading_rules()[-1]
    assert spec_from_dict(spec_to_dict(config.spec)) == config.spec
    plain = load_config("rare_tiny").spec
    assert plain.lexicon is None
    stored = spec_to_dict(plain)
    assert spec_from_dict(stored).lexicon is None  # an artifact from before LexiconCorrect
    # an artifact's runtime decodes as the run's config says, whatever the export's config said
    assert checked_spec(tmp_path / "model.onnx", plain, config.spec).lexicon == config.spec.lexicon
    assert checked_spec(tmp_path / "model.onnx", config.spec, plain).lexicon is None
    with pytest.raises(ConfigError, match="postprocess.lexicon takes max_log_ratio, max_skipped, "
                                          "max_substitutions, prior, word_margin, words, not 'ratio'"):
        load_config("rare_tiny", ["postprocess.lexicon={ratio: 3}"])


def test_the_cli_refuses_a_missing_lexicon_before_reading(tmp_path, monkeypatch, capsys):
    images = tmp_path / "images"
    images.mkdir()
    cv2.imwrite(str(images / "word.png"), np.full((32, 100, 3), 255, dtype=np.uint8))
    missing = tmp_path / "nowhere.txt"
    monkeypatch.setattr(sys, "argv", ["rare", "predict", str(images), "-w", "rare_small_en", "-o",
                                      str(tmp_path / "out"), "--opt", f"postprocess.lexicon={{words: {missing}}}"])
    with pytest.raises(SystemExit) as stopped:
        main()
    (line,) = capsys.readouterr().err.splitlines()
    assert stopped.value.code == 2 and line.startswith(f"Error: lexicon {missing} not found"), line
    assert not (tmp_path / "out").exists()


def test_a_reading_with_a_digit_is_kept_where_no_word_has_one(words, tmp_path):
    # 'h3llo': a digit, which no word of the lexicon has, marks a code or a number, however near a word it is
    h3llo = probs_for([{"h": 0.9}, {3 + 2: 0.5, "e": 0.45}, {"l": 0.9}, {"l": 0.9}, {"o": 0.8}, {STOP: 0.9}])
    assert decode(h3llo, ALNUM, lexicon=lexicon(words))[0][0] == "h3llo"
    with_digits = tmp_path / "codes.txt"
    with_digits.write_text("hello\nb52\n", encoding="utf-8")
    assert decode(h3llo, ALNUM, lexicon=lexicon(str(with_digits)))[0][0] == "hello"
