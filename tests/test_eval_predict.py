"""`rare eval` and `rare predict` end to end on small LMDBs and folders written here.

An untrained rare_tiny never emits STOP, so it reads every image as "" (asserted below). Labels made of
characters outside the dictionary are filtered to "" by MindOCR's metric, so those count as correct:
that gives each dataset a known, non-trivial accuracy to check the per-dataset numbers and both means.
"""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import lmdb
import numpy as np
import pytest
from click.testing import CliRunner

from rare_portable import build_model, save_weights
from rare_portable.cli import cli
from rare_portable.config import ConfigError
from rare_portable.data.lmdb import write_lmdb
from runtimes import open_runtime

ROOT = Path(__file__).resolve().parent.parent
# Labels per dataset; '#', '%' and '$' are outside 0-9a-z, so only those samples are read correctly.
TREE = {"a": ["hello", "#", "world", "%"], "b": ["$", "cat", "dog"]}


def word_png(word: str) -> bytes:
    image = np.full((32, 14 * len(word) + 10, 3), 255, np.uint8)
    cv2.putText(image, word, (4, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 0, 0), 2)
    return cv2.imencode(".png", image)[1].tobytes()


def put_raw(path, entries):
    """Overwrite keys of an existing LMDB (None deletes), to break what the writer made correctly."""
    env = lmdb.open(str(path))
    with env.begin(write=True) as txn:
        for key, value in entries.items():
            if value is None:
                txn.delete(key.encode())
            else:
                txn.put(key.encode(), value)
    env.close()


def words_lmdb(path, labels):
    write_lmdb(path, [(word_png(w), w) for w in labels])
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return save_weights(build_model("rare_tiny", "torch", seed=0), tmp_path_factory.mktemp("w") / "tiny.safetensors")


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "evaluation"
    for name, labels in TREE.items():
        words_lmdb(root / name, labels)
    return root


def rare(*args):
    return CliRunner(mix_stderr=False).invoke(cli, [str(a) for a in args])


def run_eval(weights, *args, backend="torch"):
    return rare("eval", "-c", "rare_tiny", "-w", weights, "--backend", backend, *args)


def expected_acc(labels):
    """What an all-"" reader scores: labels with no 0-9a-z character are filtered to "" and match."""
    return sum(not any(c.isalnum() for c in label) for label in labels) / len(labels)


def test_untrained_tiny_reads_empty_text(weights):
    runtime = open_runtime("torch", "rare_tiny", weights)
    images = [cv2.imdecode(np.frombuffer(word_png(w), np.uint8), cv2.IMREAD_COLOR) for w in TREE["a"]]
    assert [text for text, _ in runtime.recognise(images)] == [""] * len(images)


def test_eval_reports_each_lmdb_of_a_tree_and_both_means(weights, tree, tmp_path):
    result = run_eval(weights, "--data", tree, "--batch-size", 3, "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.output + result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    accs = {name: expected_acc(labels) for name, labels in TREE.items()}
    rows = {d["name"]: d for d in report["datasets"]}
    assert list(rows) == ["evaluation/a", "evaluation/b"]
    for name, labels in TREE.items():
        row = rows[f"evaluation/{name}"]
        assert (row["entries"], row["samples"], row["skipped"], row["error"]) == (len(labels), len(labels), 0, None)
        assert row["acc"] == pytest.approx(accs[name])
        assert row["norm_edit_distance"] == pytest.approx(accs[name])  # "" vs a word is distance 1
        assert row["images_per_second"] > 0
    unweighted = sum(accs.values()) / len(accs)
    weighted = sum(accs[n] * len(TREE[n]) for n in TREE) / sum(map(len, TREE.values()))
    assert unweighted != pytest.approx(weighted)
    assert report["mean"] == {"acc": pytest.approx(unweighted), "norm_edit_distance": pytest.approx(unweighted),
                              "datasets": 2}
    assert report["weighted_mean"] == {"acc": pytest.approx(weighted), "norm_edit_distance": pytest.approx(weighted),
                                       "samples": 7}
    assert report["metric"] == {"ignore_space": True, "filter_ood": True, "lower": True, "ignore_symbol": False}
    assert report["backend"] == "torch" and report["batch_size"] == 3
    assert report["reading"] == [] and "read: each crop once, as it is\n" in result.output

    table = {line.split("  ")[0].strip(): line.split() for line in result.output.splitlines()}
    assert table["evaluation/a"][1:5] == ["4", "0", f"{accs['a']:.4f}", f"{accs['a']:.4f}"]
    assert table["evaluation/b"][1:5] == ["3", "0", f"{accs['b']:.4f}", f"{accs['b']:.4f}"]
    assert table["mean of 2 datasets (MindOCR)"][-2:] == [f"{unweighted:.4f}"] * 2
    assert table["mean weighted by samples"][-3:] == ["7", f"{weighted:.4f}", f"{weighted:.4f}"]


def test_eval_says_how_the_shipped_model_reads_beyond_mindocrs_way(tree, tmp_path):
    """The shipped config reads tall crops every way and unsure crops again, and corrects readings that are not
    words: the figures are not MindOCR's one reading per crop, and the output says so."""
    result = rare("eval", "-w", "rare_small_en", "--data", tree, "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.output + result.stderr
    assert json.loads((tmp_path / "r.json").read_text())["reading"] == [
        "crops over 1.5x taller than wide also read turned each way, the most confident reading kept",
        "readings less confident than 0.9 read again with the edges repeated 0.25x the height, the more confident kept",
        "readings that are not words of the en lexicon become the likeliest word within 2 characters (one of them a "
        "character skipped), when at most e^6 times less likely, weighed by 1/rank (Zipf); readings that are words "
        "give way to a near word over e^1 times likelier"]
    assert "read: each crop once, as it is; crops over 1.5x taller" in result.output


def test_metric_options_come_from_the_config(weights, tree, tmp_path):
    """filter_ood off: '#' no longer matches the empty prediction, so nothing is correct."""
    result = run_eval(weights, "--data", tree, "--opt", "metric.filter_ood=false", "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["metric"]["filter_ood"] is False
    assert report["mean"]["acc"] == 0.0


@pytest.mark.parametrize("backend", ["mindspore", "mindspore-graph"])
def test_mindspore_gives_torchs_numbers(weights, tree, tmp_path, backend):
    reports = {}
    for name in ("torch", backend):
        result = run_eval(weights, "--data", tree, "--json", tmp_path / f"{name}.json", backend=name)
        assert result.exit_code == 0, result.stderr
        reports[name] = json.loads((tmp_path / f"{name}.json").read_text())
    def numbers(report):
        return [{k: v for k, v in d.items() if k != "images_per_second"} for d in report["datasets"]]

    assert numbers(reports[backend]) == numbers(reports["torch"])
    assert reports[backend]["mean"] == reports["torch"]["mean"]
    assert reports[backend]["weighted_mean"] == reports["torch"]["weighted_mean"]
    assert reports[backend]["backend"] == backend


def test_broken_datasets_are_counted_and_the_rest_evaluated(weights, tmp_path):
    root = tmp_path / "broken"
    words_lmdb(root / "1_good", ["#", "cat"])
    put_raw(words_lmdb(root / "2_undecodable", ["#", "%", "dog"]), {"image-000000002": b"not an image"})
    put_raw(words_lmdb(root / "3_no_label", ["#", "cow"]), {"label-000000001": None})
    put_raw(words_lmdb(root / "4_short", ["#"]), {"num-samples": b"3"})
    write_lmdb(root / "5_empty", [])
    not_lmdb = tmp_path / "not_an_lmdb"
    not_lmdb.mkdir()
    (not_lmdb / "notes.txt").write_text("hello")

    result = run_eval(weights, "--data", root, "--data", not_lmdb, "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.stderr
    rows = {d["name"]: d for d in json.loads((tmp_path / "r.json").read_text())["datasets"]}
    counts = {name: (d["entries"], d["samples"], d["skipped"], d["skip_reasons"]) for name, d in rows.items()}
    assert counts == {
        "broken/1_good": (2, 2, 0, {}),
        "broken/2_undecodable": (3, 2, 1, {"image does not decode": 1}),
        "broken/3_no_label": (2, 1, 1, {"label key missing": 1}),
        "broken/4_short": (3, 1, 2, {"image and label keys missing": 2}),
        "broken/5_empty": (0, 0, 0, {}),
        "not_an_lmdb": (0, 0, 0, {}),
    }
    assert rows["broken/2_undecodable"]["acc"] == 0.5
    assert "image-000000002" in rows["broken/2_undecodable"]["skip_messages"][0]
    assert "label-000000001" in rows["broken/3_no_label"]["skip_messages"][0]
    assert "num-samples is 3" in rows["broken/4_short"]["skip_messages"][0]
    assert "no LMDB dataset found" in rows["not_an_lmdb"]["error"]
    assert rows["not_an_lmdb"]["acc"] is None and rows["broken/5_empty"]["acc"] is None
    assert "2_undecodable: 1 skipped (1 image does not decode)" in result.stderr
    assert "not_an_lmdb: not evaluated" in result.stderr and "5_empty: empty" in result.stderr
    assert "mean of 4 datasets (MindOCR)" in result.output  # scored datasets only


def test_nothing_readable_fails_naming_path_and_key(weights, tmp_path):
    put_raw(words_lmdb(tmp_path / "labels_gone", ["cat"]), {"label-000000001": None})
    result = run_eval(weights, "--data", tmp_path / "labels_gone", "--json", tmp_path / "r.json")
    assert result.exit_code == 1
    assert "no sample could be evaluated" in result.stderr
    assert f"{tmp_path / 'labels_gone'} image-000000001: no label-000000001 key" in result.stderr
    assert not (tmp_path / "r.json").exists()


def test_missing_data_path_fails_naming_it(weights, tmp_path):
    """A typo in a path (e.g. of ../shared/real_validation) stops before any model runs: one line, exit 2."""
    result = subprocess.run(
        [sys.executable, "-c", "from rare_portable.cli import main; main()", "eval", "-c", "rare_tiny", "-w",
         str(weights), "--data", str(tmp_path / "nowhere"), "--json", str(tmp_path / "r.json")],
        cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and f"--data {tmp_path / 'nowhere'}: no such file" in result.stderr
    assert not (tmp_path / "r.json").exists()


def test_limit_reads_only_the_first_entries(weights, tree, tmp_path):
    result = run_eval(weights, "--data", tree / "a", "--limit", 2, "--json", tmp_path / "r.json")
    assert result.exit_code == 0, result.stderr
    (row,) = json.loads((tmp_path / "r.json").read_text())["datasets"]
    assert (row["name"], row["entries"], row["samples"], row["acc"]) == ("a", 2, 2, 0.5)


@pytest.fixture
def image_folder(tmp_path):
    """MindOCR's RecDataset layout: images and an `image_path<TAB>text` label file."""
    images = tmp_path / "images"
    images.mkdir()
    for i, word in enumerate(["#", "tea", "%"]):
        (images / f"w{i}.png").write_bytes(word_png(word))
    (images / "broken.png").write_bytes(b"\x89PNG but not really")
    label_file = tmp_path / "gt.txt"
    label_file.write_text("w0.png\t#\nw1.png\ttea\nw2.png\t%\nbroken.png\tmug\nmissing.png\tcup\n")
    return images, label_file


def test_eval_reads_image_folders_with_a_label_file(weights, image_folder, tmp_path):
    images, label_file = image_folder
    by_flag = run_eval(weights, "--data", images, "--label-file", label_file, "--json", tmp_path / "flag.json")
    by_config = run_eval(weights, "--data", images, "--opt", f"eval.dataset.label_file={label_file}",
                         "--opt", "eval.dataset.dataset_root=", "--json", tmp_path / "config.json")
    for result, name in ((by_flag, "flag"), (by_config, "config")):
        assert result.exit_code == 0, result.stderr
        (row,) = json.loads((tmp_path / f"{name}.json").read_text())["datasets"]
        assert (row["entries"], row["samples"], row["skipped"]) == (5, 3, 2)
        assert row["skip_reasons"] == {"image does not decode": 1, "image file missing": 1}
        assert row["acc"] == pytest.approx(2 / 3)


def test_predictions_file_names_every_read_sample_and_whether_it_counts(weights, tree, image_folder, tmp_path):
    """One TSV row per read sample: LMDB indices or label-file lines (skipped lines absent), the label, the
    all-"" reading, and correct exactly where the metric filters the label to ""."""
    import csv

    def rows(*args):
        result = run_eval(weights, *args, "--predictions", tmp_path / "p.tsv")
        assert result.exit_code == 0, result.stderr
        with (tmp_path / "p.tsv").open(encoding="utf-8", newline="") as f:
            table = list(csv.reader(f, delimiter="\t"))
        assert table[0] == ["backend", "dataset", "index", "label", "predicted", "confidence", "correct"]
        assert all(0.0 <= float(row[5]) <= 1.0 for row in table[1:])
        return [row[:5] + row[6:] for row in table[1:]]

    assert rows("--data", tree) == [["torch", f"evaluation/{name}", str(i), label, "", "0" if label.isalnum() else "1"]
                                    for name, labels in TREE.items() for i, label in enumerate(labels, 1)]
    images, label_file = image_folder
    assert [row[2:] for row in rows("--data", images, "--label-file", label_file)] == [
        ["1", "#", "", "1"], ["2", "tea", "", "0"], ["3", "%", "", "1"]]  # lines 4-5 do not read


def test_label_files_must_pair_with_data_folders(weights, image_folder):
    images, label_file = image_folder
    result = run_eval(weights, "--data", images, "--data", images, "--label-file", label_file)
    assert result.exit_code == 2
    assert "1 label file(s) for 2 --data folder(s)" in result.stderr


def test_user_errors_surface_as_exceptions_in_the_group(weights, tree):
    result = rare("eval", "-c", "no_such_config", "-w", weights, "--data", tree)
    assert isinstance(result.exception, ConfigError)


def test_user_errors_are_one_line_through_main(weights, tree):
    proc = subprocess.run(
        [sys.executable, "-c", "from rare_portable.cli import main; main()", "eval", "-c", "no_such_config",
         "-w", str(weights), "--data", str(tree)],
        cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("Error: config no_such_config not found") and proc.stderr.count("\n") == 1
    assert "Traceback" not in proc.stderr


# --- predict ---------------------------------------------------------------------------------------


def test_predict_writes_mindocr_rec_results_for_a_folder(weights, image_folder, tmp_path):
    images, label_file = image_folder
    (images / "sub").mkdir()
    (images / "sub" / "z.jpg").write_bytes(cv2.imencode(".jpg", np.full((30, 80, 3), 200, np.uint8))[1].tobytes())
    out = tmp_path / "out"
    out.mkdir()
    result = rare("predict", images, "-c", "rare_tiny", "-w", weights, "--output", out)
    assert result.exit_code == 0, result.stderr
    lines = (out / "rec_results.txt").read_text(encoding="utf-8").splitlines()
    assert lines == ['sub/z.jpg\t""', 'w0.png\t""', 'w1.png\t""', 'w2.png\t""']
    assert [json.loads(line.split("\t", 1)[1]) for line in lines] == [""] * 4  # MindOCR's eval_rec.py parse
    assert "broken.png" in result.stderr and "do not decode" in result.stderr
    assert "wrote 4 result(s)" in result.output and "1 unreadable image(s) skipped" in result.output


def test_predict_with_scores_and_explicit_files(weights, image_folder, tmp_path):
    images, _ = image_folder
    target = tmp_path / "preds.txt"
    result = rare("predict", images / "w1.png", images / "w0.png", "-c", "rare_tiny", "-w", weights,
                  "--score", "--output", target, "--backend", "mindspore")
    assert result.exit_code == 0, result.stderr
    rows = [line.split("\t") for line in target.read_text().splitlines()]
    assert [(name, text) for name, text, _ in rows] == [("w1.png", '""'), ("w0.png", '""')]
    assert all(0.0 <= float(score) <= 1.0 for _, _, score in rows)


def test_predict_fails_when_no_image_reads(weights, image_folder, tmp_path):
    images, _ = image_folder
    result = rare("predict", images / "broken.png", "-c", "rare_tiny", "-w", weights, "--output", tmp_path / "r.txt")
    assert result.exit_code == 1
    assert "none of the 1 image(s) could be read" in result.stderr
    assert not (tmp_path / "r.txt").exists()


def test_predict_on_an_lmdb_points_to_eval(weights, tree, tmp_path):
    result = rare("predict", tree, "-c", "rare_tiny", "-w", weights, "--output", tmp_path / "r.txt")
    assert result.exit_code == 1 and f"{tree} holds LMDB data: rare eval --data {tree} --predictions" in result.stderr
    assert not (tmp_path / "r.txt").exists()


# --- width-sorted batches (keep-ratio configs) -------------------------------------------------------


@pytest.fixture(scope="module")
def reading_weights(tmp_path_factory):
    """MindOCR's recipe weights: untrained, yet reading different text in different images."""
    from mindocr_recipe import recipe
    from rare_portable import get_state
    from rare_portable.weights import write_state

    shapes = {k: v.shape for k, v in get_state(build_model("rare_tiny", "torch")).items()}
    return write_state({k: recipe(k, s, seed=7) for k, s in shapes.items()},
                       tmp_path_factory.mktemp("w") / "recipe.safetensors")


def test_width_sorted_batches_keep_input_order_in_predict_and_eval(keep_ratio_config, reading_weights, tmp_path):
    """Images of many widths, batched by width: each result still belongs to its own image."""
    from rare_portable.data.preprocess import decode_image

    rng = np.random.default_rng(5)
    folder = tmp_path / "words"
    folder.mkdir()
    for i, width in enumerate(rng.integers(20, 200, 9)):
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(1, 256, (32, int(width), 3), dtype=np.uint8))
    names = sorted(p.name for p in folder.iterdir())
    runtime = open_runtime("torch", keep_ratio_config, reading_weights)
    alone = {name: runtime.recognise([decode_image((folder / name).read_bytes(), name)])[0][0] for name in names}
    assert len(set(alone.values())) > 1  # different readings, so a mix-up would show

    result = rare("predict", folder, "-c", keep_ratio_config, "-w", reading_weights, "--batch-size", 4,
                  "--output", tmp_path / "r.txt")
    assert result.exit_code == 0, result.stderr
    rows = [line.split("\t") for line in (tmp_path / "r.txt").read_text().splitlines()]
    assert rows == [[name, json.dumps(text)] for name, text in alone.items()]

    labelled = [((folder / name).read_bytes(), text) for name, text in alone.items() if text]
    write_lmdb(tmp_path / "lmdb", labelled)
    result = rare("eval", "-c", keep_ratio_config, "-w", reading_weights, "--data", tmp_path / "lmdb",
                  "--batch-size", 4, "--json", tmp_path / "e.json")
    assert result.exit_code == 0, result.stderr
    (row,) = json.loads((tmp_path / "e.json").read_text())["datasets"]
    assert (row["samples"], row["acc"]) == (len(labelled), 1.0)


# --- several backends side by side -------------------------------------------------------------------


def test_eval_runs_backends_side_by_side_and_counts_words_that_differ(reading_weights, tmp_path):
    """torch and ONNX Runtime on the same export agree word for word; an ONNX file of other weights is
    counted as disagreeing, with examples; two candidate files in --artifacts are refused, named."""
    from mindocr_recipe import recipe
    from exporters.onnx_export import export_onnx
    from rare_portable import get_state
    from rare_portable.data.preprocess import decode_image
    from rare_portable.weights import write_state

    rng = np.random.default_rng(11)
    images = [cv2.imencode(".png", rng.integers(1, 256, (32, int(w), 3), dtype=np.uint8))[1].tobytes()
              for w in rng.integers(40, 160, 12)]
    runtime = open_runtime("torch", "rare_tiny", reading_weights)
    readings = [runtime.recognise([decode_image(png, str(i))])[0][0] for i, png in enumerate(images)]
    write_lmdb(tmp_path / "data" / "noise", [(png, text or "x") for png, text in zip(images, readings)])
    artifacts = tmp_path / "exports"
    export_onnx(build_model("rare_tiny", "torch", weights=reading_weights), artifacts / "same.onnx")
    shapes = {k: v.shape for k, v in get_state(build_model("rare_tiny", "torch")).items()}
    other = write_state({k: recipe(k, s, seed=8) for k, s in shapes.items()}, tmp_path / "other.safetensors")
    export_onnx(build_model("rare_tiny", "torch", weights=other), tmp_path / "other.onnx")

    result = rare("eval", "-c", "rare_tiny", "-w", reading_weights, "--backend", "torch", "--backend", "onnxruntime",
                  "--artifacts", artifacts, "--data", tmp_path / "data", "--json", tmp_path / "same.json")
    assert result.exit_code == 0, result.stderr
    report = json.loads((tmp_path / "same.json").read_text())
    assert [b["backend"] for b in report["backends"]] == ["torch", "onnxruntime"]
    expected = sum(bool(text) for text in readings) / len(readings)  # "" was stored as "x"
    assert [b["datasets"][0]["acc"] for b in report["backends"]] == [expected, expected]
    assert report["agreement"] == [{"backend": "onnxruntime", "reference": "torch", "compared": 12, "differ": 0,
                                    "examples": []}]
    assert "onnxruntime vs torch: 0 of 12 words differ" in result.stdout

    result = rare("eval", "-c", "rare_tiny", "-w", reading_weights, "--backend", "torch", "--backend", "onnxruntime",
                  "-w", f"onnxruntime={tmp_path / 'other.onnx'}", "--data", tmp_path / "data",
                  "--json", tmp_path / "other.json")
    assert result.exit_code == 0, result.stderr
    (disagreement,) = json.loads((tmp_path / "other.json").read_text())["agreement"]
    assert disagreement["differ"] > 0 and disagreement["examples"]
    first = disagreement["examples"][0]
    assert first["dataset"] == "data/noise" and first["torch"] == readings[first["index"] - 1]  # LMDB index, 1-based
    assert first["onnxruntime"] != first["torch"]

    export_onnx(build_model("rare_tiny", "torch", weights=other), artifacts / "other.onnx")
    result = rare("eval", "-c", "rare_tiny", "-w", reading_weights, "--backend", "torch", "--backend", "onnxruntime",
                  "--artifacts", artifacts, "--data", tmp_path / "data")
    assert result.exit_code == 2 and "2 .onnx files" in result.stderr and "other.onnx, same.onnx" in result.stderr
    assert "-w onnxruntime=FILE" in result.stderr
