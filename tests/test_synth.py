"""`rare synth`: reproducible renders, labels inside the dictionary, the LMDB layout, and clear refusals."""
import string
from pathlib import Path

import cv2
import lmdb
import numpy as np
import pytest
from click.testing import CliRunner

from rare_portable.commands.synth_cmd import synth
from rare_portable.data.samples import DataError
from rare_portable.data.synth import (
    BUILTIN_LEXICON,
    SynthError,
    WordRenderer,
    make_plan,
    read_lexicon,
    render_samples,
    synthesize_lmdb,
)

EN_DICT = Path(__file__).parents[1] / "rare_portable" / "dicts" / "en_dict.txt"


@pytest.fixture(scope="module")
def default_plan():
    return make_plan(seed=7)


def encoded(plan, indices):
    renderer = WordRenderer(plan)
    return [renderer.encode(i) for i in indices]


def decode(image_bytes):
    image = cv2.imdecode(np.frombuffer(image_bytes, np.uint8), cv2.IMREAD_UNCHANGED)
    assert image is not None, "stored bytes do not decode as an image"
    return image


def read_raw_lmdb(path):
    env = lmdb.open(str(path), readonly=True, lock=False)
    with env.begin() as txn:
        entries = dict(txn.cursor())
    env.close()
    return entries


def test_same_seed_gives_identical_bytes_and_labels(default_plan):
    first = encoded(default_plan, range(25))
    again = encoded(make_plan(seed=7), range(25))  # a fresh plan and renderer: no shared state
    assert first == again


def test_different_seed_gives_different_samples(default_plan):
    seven = encoded(default_plan, range(25))
    eight = encoded(make_plan(seed=8), range(25))
    assert sum(a != b for a, b in zip(seven, eight)) >= 24
    assert [label for _, label in seven] != [label for _, label in eight]


def test_a_sample_does_not_depend_on_what_was_rendered_before(default_plan):
    in_sequence = encoded(default_plan, range(12))[11]
    alone = encoded(default_plan, [11])[0]
    assert alone == in_sequence


def test_worker_count_does_not_change_the_output(default_plan):
    count = 150  # three tasks, so two processes share the work
    serial = list(render_samples(default_plan, count, workers=1))
    parallel = list(render_samples(default_plan, count, workers=2))
    assert parallel == serial


def test_images_have_the_requested_height_and_visible_text():
    plan = make_plan(seed=1, height=24)
    for image_bytes, label in encoded(plan, range(60)):
        image = decode(image_bytes)
        assert image.ndim == 3 and image.shape[0] == 24 and image.shape[2] == 3
        assert image.shape[1] >= 4
        luminance = image.astype(np.float32) @ np.float32([0.114, 0.587, 0.299])  # BGR
        spread = np.percentile(luminance, 99) - np.percentile(luminance, 1)
        assert spread > 40, f"{label!r}: text barely differs from its background"


def test_default_labels_use_only_lower_case_letters_and_digits(default_plan):
    allowed = set(string.digits + string.ascii_lowercase)
    labels = [label for _, label in encoded(default_plan, range(200))]
    assert all(label and set(label) <= allowed for label in labels)
    lexicon = {w.lower() for w in BUILTIN_LEXICON.read_text(encoding="utf-8").split()}
    from_lexicon = sum(label in lexicon for label in labels)
    assert 150 <= from_lexicon < 200  # about 10% are random strings


def test_charset_filters_the_lexicon_and_random_strings():
    charset = ["a", "b", "c", "1"]
    words = ["abc", "cab", "abd", "zzz", "a1", "Bad"]
    plan = make_plan(seed=3, charset=charset, lexicon=words, random_fraction=0.5)
    labels = [label for _, label in encoded(plan, range(120))]
    assert all(set(label) <= set(charset) for label in labels)
    assert {"abc", "cab", "a1"} <= set(labels)
    assert plan.skipped_lexicon_words == 3  # abd, zzz and Bad ('bad' once lower-cased): 'd', 'z' are outside


def test_mixed_case_draws_upper_case_and_lower_case_keeps_it_out():
    en_dict = EN_DICT.read_text(encoding="utf-8").split("\n")[:-1]
    lower = [label for _, label in encoded(make_plan(seed=2, charset=en_dict, case="lower"), range(150))]
    mixed = [label for _, label in encoded(make_plan(seed=2, charset=en_dict, case="mixed"), range(150))]
    assert not any(c.isupper() for label in lower for c in label)
    assert sum(label.isupper() for label in mixed) > 10
    assert sum(label[:1].isupper() and label[1:].islower() for label in mixed) > 10
    assert all(set(label) <= set(en_dict) for label in mixed)


def test_mixed_case_needs_upper_case_in_the_charset():
    with pytest.raises(SynthError, match="upper-case"):
        make_plan(case="mixed")


def test_characters_no_font_draws_are_named_in_the_error():
    with pytest.raises(SynthError) as raised:
        make_plan(charset="ab中文", lexicon=["ab中", "文"], random_fraction=0.0)
    message = str(raised.value)
    assert "中" in message and "文" in message and "--fonts" in message


def test_symbol_fonts_and_wrong_glyphs_are_left_out():
    en_dict = EN_DICT.read_text(encoding="utf-8").split("\n")[:-1]
    plan = make_plan(charset=en_dict, case="mixed")
    fonts = {Path(f.path).name: f.chars for f in plan.fonts}
    assert "cmsy10.ttf" not in fonts and "cmex10.ttf" not in fonts  # ASCII code points hold math symbols
    assert not any(name.startswith("STIXSiz") for name in fonts)  # only big brackets
    assert "DejaVuSans.ttf" in fonts and "<" in fonts["DejaVuSans.ttf"]
    assert "cmr10.ttf" in fonts and "<" not in fonts["cmr10.ttf"]  # TeX encoding: '<' is an inverted '!'
    assert set("abcXYZ019") <= fonts["cmr10.ttf"]


def test_lmdb_layout_is_one_based_with_a_sample_count(tmp_path, default_plan):
    out = tmp_path / "synth"
    result = synthesize_lmdb(out, default_plan, 12, workers=1)
    assert result.count == 12 and result.images_per_second > 0
    entries = read_raw_lmdb(out)
    assert entries[b"num-samples"] == b"12"
    assert len(entries) == 1 + 2 * 12
    assert b"image-000000000" not in entries and b"image-000000013" not in entries
    expected = encoded(default_plan, range(12))
    for index in range(1, 13):
        image_bytes = entries[b"image-%09d" % index]
        assert image_bytes.startswith(b"\x89PNG")
        assert decode(image_bytes).shape[0] == default_plan.height
        assert (image_bytes, entries[b"label-%09d" % index].decode("utf-8")) == expected[index - 1]


def test_jpeg_storage(tmp_path):
    plan = make_plan(seed=4, image_format="jpg")
    synthesize_lmdb(tmp_path / "jpg", plan, 3, workers=1)
    entries = read_raw_lmdb(tmp_path / "jpg")
    assert all(entries[b"image-%09d" % i].startswith(b"\xff\xd8") for i in (1, 2, 3))


def test_existing_lmdb_is_kept_unless_overwrite(tmp_path, default_plan):
    out = tmp_path / "synth"
    synthesize_lmdb(out, default_plan, 3, workers=1)
    with pytest.raises(DataError, match="overwrite"):
        synthesize_lmdb(out, default_plan, 5, workers=1)
    assert read_raw_lmdb(out)[b"num-samples"] == b"3"
    synthesize_lmdb(out, default_plan, 5, workers=1, overwrite=True)
    assert read_raw_lmdb(out)[b"num-samples"] == b"5"


def test_builtin_lexicon_is_a_few_thousand_distinct_words():
    words = read_lexicon(BUILTIN_LEXICON)
    assert len(words) >= 3000
    assert len(set(words)) == len(words)
    assert all(w.isalpha() and w.isascii() for w in words)
    assert any(w[0].isupper() for w in words)


def test_lexicon_errors_are_clear(tmp_path):
    with pytest.raises(SynthError, match="not found"):
        read_lexicon(tmp_path / "missing.txt")
    (tmp_path / "blank.txt").write_text("\n  \n", encoding="utf-8")
    with pytest.raises(SynthError, match="no words"):
        read_lexicon(tmp_path / "blank.txt")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(SynthError, match="UTF-8"):
        read_lexicon(tmp_path / "latin1.txt")


def test_cli_writes_lmdb_and_preview(tmp_path):
    out, preview = tmp_path / "lmdb", tmp_path / "preview.png"
    result = CliRunner().invoke(
        synth, ["--output", str(out), "--count", "6", "--seed", "5", "--height", "32", "--preview", str(preview)]
    )
    assert result.exit_code == 0, result.output
    assert "images/s" in result.output
    assert read_raw_lmdb(out)[b"num-samples"] == b"6"
    sheet = cv2.imread(str(preview))
    assert sheet is not None and sheet.shape[0] > 64


def test_cli_refuses_to_overwrite(tmp_path):
    out = tmp_path / "lmdb"
    assert CliRunner().invoke(synth, ["--output", str(out), "--count", "2"]).exit_code == 0
    again = CliRunner().invoke(synth, ["--output", str(out), "--count", "2"])
    assert again.exit_code == 1 and "--overwrite" in again.output
    forced = CliRunner().invoke(synth, ["--output", str(out), "--count", "4", "--overwrite"])
    assert forced.exit_code == 0, forced.output
    assert read_raw_lmdb(out)[b"num-samples"] == b"4"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--lexicon", "{tmp}/missing.txt"], "not found"),
        (["--lexicon", "{tmp}/empty.txt"], "no words"),
        (["--fonts", "{tmp}/no_fonts"], "holds no"),
        (["--charset", "{tmp}/missing_dict.txt"], "not found"),
        (["--case", "mixed"], "upper-case"),
        (["--lexicon", "{tmp}/chinese.txt", "--random-fraction", "0", "--charset", "ch_dict.txt"], "--fonts DIR"),
    ],
)
def test_cli_bad_input_is_a_clear_error(tmp_path, extra, message):
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    (tmp_path / "chinese.txt").write_text("中文\n", encoding="utf-8")
    (tmp_path / "no_fonts").mkdir()
    args = ["--output", str(tmp_path / "out"), "--count", "2"] + [a.format(tmp=tmp_path) for a in extra]
    result = CliRunner().invoke(synth, args)
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


def test_caseless_draws_upper_case_and_labels_it_lower_case():
    plan = make_plan(seed=4, case="caseless")  # MindOCR's 0-9a-z: no upper case in the dictionary
    renderer = WordRenderer(plan)
    drawn = [renderer._word_and_font(np.random.default_rng([plan.seed, i]))[0] for i in range(200)]
    labels = [label for _, label in encoded(plan, range(200))]
    assert sum(word.isupper() for word in drawn) > 40  # UPPER is drawn twice as often as each other case
    assert sum(word[:1].isupper() and word[1:].islower() for word in drawn) > 10
    assert labels == [word.lower() for word in drawn]
    assert all(set(label) <= set(string.digits + string.ascii_lowercase) for label in labels)


def test_a_font_family_shares_one_unit_of_weight(tmp_path):
    dejavu = Path(make_plan().fonts[0].path).parent
    family = tmp_path / "family"
    family.mkdir()
    for i in range(4):  # four copies of one face: one folder, so together they weigh as much as one font
        (family / f"face{i}.ttf").write_bytes((dejavu / "DejaVuSans.ttf").read_bytes())
    plan = make_plan(font_dirs=[family])
    weights = {Path(f.path).parent: 0.0 for f in plan.fonts}
    for font in plan.fonts:
        weights[Path(font.path).parent] += font.weight
    assert weights[family] == pytest.approx(1.0) and weights[dejavu] == pytest.approx(1.0)
    renderer = WordRenderer(plan)
    rng = np.random.default_rng(0)
    everything = (1 << len(plan.fonts)) - 1
    picks = [Path(plan.fonts[renderer._pick_font(rng, everything)].path).parent for _ in range(2000)]
    assert 0.4 < picks.count(family) / len(picks) < 0.6


def test_photo_backgrounds_render_and_a_missing_photo_is_named(tmp_path):
    plan = make_plan(seed=1, photo_fraction=1.0)
    assert plan.photos, "matplotlib's sample photographs at least"
    images = [WordRenderer(plan).render(i)[0] for i in range(20)]
    assert all(image.shape[0] == 32 and image.dtype == np.uint8 for image in images)
    assert np.mean([image.std() for image in images]) > 20  # text on texture, not blank canvases
    with pytest.raises(SynthError, match="nope.png not found"):
        make_plan(photo_fraction=0.5, photos=[tmp_path / "nope.png"])


def test_frequent_words_are_words(monkeypatch):
    from rare_portable.data import resources

    words = resources.frequent_words(500)
    assert len(words) == 500 and len(set(words)) == 500
    assert {"the", "and", "people"} <= set(words) and all(w.isalpha() for w in words)
    every = resources.frequent_words(None)  # the whole list, most frequent first (scripts/make_lexicon.py --count 0)
    assert every[:500] == words and len(every) > 200_000
    monkeypatch.setitem(__import__("sys").modules, "wordfreq", None)  # as if not installed
    with pytest.raises(resources.ResourceError, match=r"rare-portable\[synth\]"):
        resources.frequent_words(10)


def test_cli_top_words_and_photos(tmp_path):
    out = tmp_path / "lmdb"
    result = CliRunner().invoke(synth, ["--output", str(out), "--count", "8", "--case", "caseless",
                                        "--top-words", "2000", "--photo-fraction", "0.5", "--random-fraction", "0"])
    assert result.exit_code == 0, result.output
    labels = [v.decode() for k, v in read_raw_lmdb(out).items() if k.startswith(b"label-")]
    assert len(labels) == 8 and all(label.islower() for label in labels)
    both = CliRunner().invoke(synth, ["--output", str(tmp_path / "x"), "--count", "2", "--top-words", "5",
                                      "--lexicon", str(BUILTIN_LEXICON)])
    assert both.exit_code == 2 and "not both" in both.output


def test_font_survey_is_cached_and_redone_for_a_changed_font(tmp_path, monkeypatch):
    from rare_portable.data.synth import fonts as synth_module

    monkeypatch.setenv("RARE_CACHE_DIR", str(tmp_path / "cache"))
    fonts = tmp_path / "fonts"
    fonts.mkdir()
    dejavu = Path(make_plan().fonts[0].path).parent / "DejaVuSans.ttf"
    (fonts / "face.ttf").write_bytes(dejavu.read_bytes())
    first = make_plan(font_dirs=[fonts])
    assert (tmp_path / "cache" / "font_survey.json").is_file()
    calls = []
    real_survey = synth_module.survey_font
    monkeypatch.setattr(synth_module, "survey_font", lambda *a: calls.append(a[0]) or real_survey(*a))
    again = make_plan(font_dirs=[fonts])
    assert calls == [] and again.fonts == first.fonts
    (fonts / "face.ttf").write_bytes(dejavu.read_bytes() + b"\0")  # another size: surveyed afresh
    make_plan(font_dirs=[fonts])
    assert [Path(p).name for p in calls] == ["face.ttf"]
