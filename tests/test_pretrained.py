"""The shipped model: loaded by name, the default of `rare predict`, reading real photographs, and its report
reproduced from its own weights on the real held-out words."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from rare_portable.cli import cli
from rare_portable.config import load_config
from rare_portable.evaluation import metric_options
from rare_portable.metrics import rec_metric
from rare_portable.pretrained import DEFAULT_MODEL, list_pretrained, pretrained_config, pretrained_weights

SHARED = Path(__file__).resolve().parents[2] / "shared"
REAL_WORDS = SHARED / "real_words"
REAL_VALIDATION = SHARED / "real_validation"
REPORT = pretrained_weights(DEFAULT_MODEL).with_suffix(".json")
# rare_small_en read 2026-12-02's crops as the report says; a floor a few words below it, so rounding in another
# CPU's kernels cannot fail it but weights that were not loaded (or a broken preprocessing) do.
REAL_WORDS_MARGIN = 2

needs_shared = pytest.mark.skipif(not REAL_WORDS.is_dir() or not REAL_VALIDATION.is_dir(),
                                  reason=f"{SHARED} (the project's shared data) is not beside this checkout")


def real_validation_crop(split, index, label):
    """One RGB crop of ../shared/real_validation, its label checked: the tests below name the sample they read."""
    from rare_portable.data.lmdb import LmdbDataset

    sample = LmdbDataset(REAL_VALIDATION / split)[index - 1]  # LMDB indices are 1-based
    assert sample.label == label
    return sample.image


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def run_main(*args):
    """Through `main`, as a user's shell runs it: exit codes and the one-line error."""
    return subprocess.run([sys.executable, "-c", "from rare_portable.cli import main; main()", *map(str, args)],
                          cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True)


def test_the_default_model_is_shipped_with_config_recipe_and_report():
    assert DEFAULT_MODEL in list_pretrained()
    folder = pretrained_weights(DEFAULT_MODEL).parent
    assert pretrained_config(DEFAULT_MODEL).is_file() and (folder / f"{DEFAULT_MODEL}.md").is_file()
    assert sum(p.stat().st_size for p in folder.iterdir()) < 25 * 2 ** 20
    report = json.loads(REPORT.read_text())
    assert set(report["real_holdout"]["datasets"]) == {"holdout/IC15_train", "holdout/IIIT5k_train", "holdout/SVT_train"}


@needs_shared
def test_predict_without_weights_reads_real_words(tmp_path):
    out = tmp_path / "rec_results.txt"
    result = run("predict", REAL_WORDS, "-o", out)
    assert result.exit_code == 0, result.output
    labels = dict(line.split("\t") for line in (REAL_WORDS / "labels.tsv").read_text().splitlines() if line)
    read = {name: json.loads(text) for name, text in (line.split("\t") for line in out.read_text().splitlines())}
    assert set(read) == set(labels)

    names = sorted(labels)
    correct = rec_metric([read[n] for n in names], [labels[n] for n in names],
                         load_config(DEFAULT_MODEL).spec.charset,
                         **metric_options(load_config(DEFAULT_MODEL)))["correct"]
    shipped = json.loads(REPORT.read_text())["real_words"]["correct"]
    assert correct >= shipped - REAL_WORDS_MARGIN, f"{correct} of 16 read; the shipped report says {shipped}"


@needs_shared
def test_the_shipped_model_reads_a_word_turned_either_way(tmp_path):
    """Its config reads crops over 1.5x taller than wide in every orientation (Rotate90IfVertical
    most_confident): a horizontal word it reads, turned on its side either way, reads the same."""
    import cv2

    word = cv2.imread(str(REAL_WORDS / "demo_7.png"))  # "underground", 40 x 236 pixels
    for name, flag in (("up.png", cv2.ROTATE_90_COUNTERCLOCKWISE), ("down.png", cv2.ROTATE_90_CLOCKWISE)):
        cv2.imwrite(str(tmp_path / name), cv2.rotate(word, flag))
    out = tmp_path / "rec_results.txt"
    result = run("predict", tmp_path, "-o", out)
    assert result.exit_code == 0, result.output
    read = {line.split("\t")[0]: json.loads(line.split("\t")[1]) for line in out.read_text().splitlines()}
    assert read == {"up.png": "underground", "down.png": "underground"}


def shipped_reading(crop, spec=None, **lexicon) -> str:
    """What the shipped model reads in `crop` on torch: with `spec` (default: its config's), and with those fields of
    the spec's lexicon changed (e.g. `max_skipped=0`)."""
    import dataclasses

    from runtimes import open_runtime

    spec = spec or load_config(DEFAULT_MODEL).spec
    if lexicon:
        spec = dataclasses.replace(spec, lexicon=dataclasses.replace(spec.lexicon, **lexicon))
    return open_runtime("torch", spec, DEFAULT_MODEL).recognise([crop], lower=True)[0][0]


@needs_shared
def test_the_shipped_model_reads_an_unsure_crop_again_padded():
    """Its config reads a crop again with its edges repeated when unsure (RereadPadded): IIIT5K's held-out sample
    1560, "Customers", cut close at its left and right, reads "gustomgrs" as it is."""
    import dataclasses

    crop = real_validation_crop("IIIT5k_train", 1560, "Customers")
    spec = dataclasses.replace(load_config(DEFAULT_MODEL).spec, lexicon=None)  # the rule alone (the lexicon fixes it too)
    assert spec.input.reread_padded == (0.25, 0.9)
    once = dataclasses.replace(spec, input=dataclasses.replace(spec.input, reread_padded=None))
    assert shipped_reading(crop, once) != "customers"
    assert shipped_reading(crop, spec) == "customers"


@needs_shared
def test_the_shipped_model_reads_a_near_miss_as_the_word_it_nearly_read():
    """Its config corrects readings that are not words (LexiconCorrect): real_words' demo_1.png, "Available", reads
    "avallable" without the lexicon; with it, the likeliest word a letter away."""
    import dataclasses

    from rare_portable.data.preprocess import decode_image

    crop = decode_image((REAL_WORDS / "demo_1.png").read_bytes(), "demo_1.png")
    spec = load_config(DEFAULT_MODEL).spec
    assert spec.lexicon is not None and spec.lexicon.words == "en"
    assert shipped_reading(crop, dataclasses.replace(spec, lexicon=None)) == "avallable"
    assert shipped_reading(crop) == "available"


@needs_shared
def test_the_shipped_model_puts_back_a_character_it_skipped():
    """SVT_train sample 128, "MARKET": the model stops after "marke" (a reading that is not a word); the lexicon,
    allowed a skipped character, reads the word the last step nearly read."""
    crop = real_validation_crop("SVT_train", 128, "MARKET")
    assert load_config(DEFAULT_MODEL).spec.lexicon.max_skipped == 1
    assert shipped_reading(crop, max_skipped=0) == "marke"
    assert shipped_reading(crop) == "market"


@needs_shared
def test_the_shipped_model_weighs_a_skipped_last_letter_against_stopping():
    """real_words' demo_6.png, "MERRY" with its Y cut at the edge: the model stops after "merr" with STOP at only
    0.56; "merry" takes the step's "y", and the reading pays for its STOP there, so the two are weighed over the
    same steps."""
    from rare_portable.data.preprocess import decode_image

    crop = decode_image((REAL_WORDS / "demo_6.png").read_bytes(), "demo_6.png")
    assert shipped_reading(crop) == "merry"


@needs_shared
def test_the_shipped_model_reads_a_frequent_word_for_a_rare_one_it_half_read():
    """SVT_train sample 108, "AND": the model reads "ait", a word of the lexicon but a rare one; allowed to weigh a
    word read against the near words (word_margin), the lexicon reads the frequent word it nearly read."""
    assert load_config(DEFAULT_MODEL).spec.lexicon.word_margin == 1.0
    crop = real_validation_crop("SVT_train", 108, "AND")
    assert shipped_reading(crop, word_margin=None) == "ait"
    assert shipped_reading(crop) == "and"


@needs_shared
def test_the_shipped_lexicon_holds_less_frequent_words_too(tmp_path):
    """SVT_train sample 64, "TIMBERLINE", read "limherline": the 69,162nd word of the shipped lexicon (the 100,000
    most frequent English words since 2026-12-07), which the 50,000 it held before did not have."""
    from rare_portable.lexicon import lexicon_path

    crop = real_validation_crop("SVT_train", 64, "TIMBERLINE")
    first = tmp_path / "first_50000.txt"
    first.write_text("\n".join(lexicon_path("en").read_text(encoding="utf-8").splitlines()[:50000]), encoding="utf-8")
    assert shipped_reading(crop, words=str(first)) == "limherline"
    assert shipped_reading(crop) == "timberline"


@needs_shared
def test_the_shipped_lexicon_takes_a_word_up_to_e6_times_less_likely():
    """SVT_train sample 11, "SUBWAY", read "subwal": with the ratio before 2026-12-07 (e^4) the reading stays, with
    the shipped one (e^6) the lexicon reads the word."""
    assert load_config(DEFAULT_MODEL).spec.lexicon.max_log_ratio == 6.0
    crop = real_validation_crop("SVT_train", 11, "SUBWAY")
    assert shipped_reading(crop, max_log_ratio=4.0) == "subwal"
    assert shipped_reading(crop) == "subway"


@needs_shared
def test_report_is_reproduced_on_the_held_out_real_words(tmp_path):
    """The IIIT5K held-out block (samples 1501-2000, never trained on), split as the recipe splits it."""
    split = run("lmdb", "split", REAL_VALIDATION / "IIIT5k_train", "--hold-out", 0.25, "-o", tmp_path)
    assert split.exit_code == 0, split.output
    report_path = tmp_path / "eval.json"
    result = run("eval", "-w", DEFAULT_MODEL, "--data", tmp_path / "holdout", "--json", report_path)
    assert result.exit_code == 0, result.output
    measured = json.loads(report_path.read_text())["datasets"][0]
    shipped = json.loads(REPORT.read_text())["real_holdout"]["datasets"]["holdout/IIIT5k_train"]
    assert measured["samples"] == shipped["samples"] == 500
    assert abs(measured["correct"] - shipped["correct"]) <= 2  # fp32 rounding may flip a near-tie or two


def test_unknown_model_name_is_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "rec_results.txt"
    image = tmp_path / "a.png"
    image.write_bytes(b"")
    result = run_main("predict", tmp_path, "-w", "rare_nosuch_en", "-o", out)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "rare_nosuch_en" in lines[0] and DEFAULT_MODEL in lines[0]
    assert not out.exists()


def test_weights_whose_dictionary_does_not_match_the_config_are_one_line(tmp_path):
    en_dict = ["--opt", "common.character_dict_path=mindocr/utils/dict/en_dict.txt", "--opt", "common.num_classes=96",
               "--opt", "model.head.out_channels=96"]  # the shipped model reads 0-9a-z: 38 classes
    result = run_main("eval", "-w", DEFAULT_MODEL, *en_dict, "--data", tmp_path, "--json", tmp_path / "x.json")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "dictionary" in lines[0] and "rare_small_en" in lines[0]
    assert not (tmp_path / "x.json").exists()


def test_a_shipped_name_needs_an_export_for_artifact_runtimes(tmp_path):
    result = run_main("eval", "-w", DEFAULT_MODEL, "--backend", "onnxruntime", "--data", tmp_path)
    assert result.returncode == 2 and "rare export -w rare_small_en" in result.stderr
