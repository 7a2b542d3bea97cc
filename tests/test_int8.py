"""int8 ONNX from the CLI (`rare export --int8`), what the model records about how it was made, and the int8
tolerance class of `rare parity` (greedy words within INT8_MAX_WORD_DISAGREEMENT of the fp32 network)."""
import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import rare_portable  # noqa: F401  (before onnx: it picks the protobuf backend MindSpore needs)
import onnx
from rare_portable.artifact import INPUT_NAME
from rare_portable import build_model, get_state, load_config
from rare_portable.cli import cli
from rare_portable.commands.parity_cmd import RENDERED_WORDS_SEED
from rare_portable.data.lmdb import write_lmdb
from rare_portable.data.preprocess import batch
from rare_portable.data.synth import render_words
from rare_portable.labels import decode
from rare_portable.parity import FP32_TOLERANCE, INT8_MAX_WORD_DISAGREEMENT, compare_words, format_report
from rare_portable.parity import ParityReport
from rare_portable.weights import write_state
from runtimes import open_runtime

WORDS = 16


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """MindOCR's recipe weights: an untrained rare_tiny that still reads different text in different images."""
    from mindocr_recipe import recipe

    shapes = {k: v.shape for k, v in get_state(build_model("rare_tiny", "torch")).items()}
    return write_state({k: recipe(k, s, seed=7) for k, s in shapes.items()},
                       tmp_path_factory.mktemp("w") / "recipe.safetensors")


def rare(*args):
    return CliRunner(mix_stderr=False).invoke(cli, [str(a) for a in args])


def words_differing(int8_model, weights, count):
    """Rendered words parity checks, read by the int8 model on ONNX Runtime and by the PyTorch network,
    each run directly; (words that differ, max |diff| of probabilities)."""
    import onnxruntime as ort
    import torch

    spec = load_config("rare_tiny").spec
    images, _ = render_words(spec, count, RENDERED_WORDS_SEED)
    x = batch(images, spec.input)
    with torch.inference_mode():
        reference = build_model(spec, "torch", weights=weights)(torch.from_numpy(x)).numpy()
    probs = ort.InferenceSession(str(int8_model), providers=["CPUExecutionProvider"]).run(None, {INPUT_NAME: x})[0]
    texts, ref_texts = decode(probs, spec.charset), decode(reference, spec.charset)
    return sum(a[0] != b[0] for a, b in zip(texts, ref_texts)), float(np.abs(probs - reference).max())


def parity_report(weights, artifact, tmp_path, *extra):
    result = rare("parity", "-c", "rare_tiny", "-w", weights, "--backend", "torch", "--artifact", artifact,
                  "--words", WORDS, "--json", tmp_path / "parity.json", *extra)
    report = json.loads((tmp_path / "parity.json").read_text())
    (row,) = report["results"]["rendered words"]
    return result, report, row


def test_static_int8_export_records_how_it_was_made_and_parity_judges_its_words(weights, tmp_path):
    model = tmp_path / "tiny.int8.onnx"
    result = rare("export", "-c", "rare_tiny", "-w", weights, "--format", "onnx", "--int8", "static",
                  "--calibration-images", 24, "-o", model)
    assert result.exit_code == 0, result.output + result.stderr
    assert "int8 static (Conv in int8; calibrated on 24 words rendered" in result.output
    assert f"--backend torch --artifact {model}" in result.output

    stored = onnx.load(str(model))
    record = json.loads({p.key: p.value for p in stored.metadata_props}["rare_portable.int8"])
    assert record["method"] == "static" and record["quantized_ops"] == ["Conv"]
    assert record["calibration"]["images"] == 24 and "seed 7" in record["calibration"]["source"]
    assert any(i.data_type == onnx.TensorProto.INT8 for i in stored.graph.initializer)
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in stored.graph.node}

    differing, max_diff = words_differing(model, weights, WORDS)
    assert max_diff > FP32_TOLERANCE  # the fp32 class would fail it: only the int8 class can pass it
    result, report, row = parity_report(weights, model, tmp_path)
    assert row["backend"] == f"onnxruntime:{model.name}" and row["tolerance_class"] == "int8-static"
    assert len(row["words_differing"]) == differing
    assert row["word_disagreement"] == pytest.approx(differing / WORDS)
    passes = differing / WORDS <= INT8_MAX_WORD_DISAGREEMENT
    assert report["ok"] is passes and result.exit_code == (0 if passes else 1)
    assert "int8-static" in result.output and "at most 2.0% of words may differ" in result.output
    assert f"{differing} of {WORDS} words differ" in result.output


def test_int8_calibrated_on_blank_images_fails_parity(weights, tmp_path):
    """A deliberately broken int8 model: activation ranges calibrated on blank pages clip real words."""
    blank = cv2.imencode(".png", np.full((32, 100, 3), 255, np.uint8))[1].tobytes()
    write_lmdb(tmp_path / "blank" / "pages", [(blank, "blank")] * 8)
    model = tmp_path / "broken.int8.onnx"
    result = rare("export", "-c", "rare_tiny", "-w", weights, "--format", "onnx", "--int8", "static",
                  "--calibration", tmp_path / "blank", "-o", model)
    assert result.exit_code == 0, result.output + result.stderr
    record = json.loads({p.key: p.value for p in onnx.load(str(model)).metadata_props}["rare_portable.int8"])
    assert record["calibration"] == {"source": f"{tmp_path / 'blank'} (LMDB): 8 of 8 images, evenly spaced",
                                     "images": 8}

    differing, _ = words_differing(model, weights, WORDS)
    assert differing / WORDS > INT8_MAX_WORD_DISAGREEMENT
    result, report, row = parity_report(weights, model, tmp_path)
    assert result.exit_code == 1 and not report["ok"] and "PARITY VIOLATED" in result.output
    assert row["tolerance_class"] == "int8-static" and len(row["words_differing"]) == differing
    assert f"{differing} of {WORDS} words differ from the reference" in row["violations"][0]
    result, report, _ = parity_report(weights, model, tmp_path, "--max-word-disagreement", 1.0)
    assert result.exit_code == 0 and report["ok"]  # the bound, not the class, decides


def test_dynamic_int8_needs_no_calibration_and_says_so(weights, tmp_path):
    model = tmp_path / "tiny.dyn.onnx"
    result = rare("export", "-c", "rare_tiny", "-w", weights, "--format", "onnx", "--int8", "dynamic", "-o", model)
    assert result.exit_code == 0, result.output + result.stderr
    assert "int8 dynamic (MatMul in int8; activation ranges per batch at run time)" in result.output
    runtime = open_runtime("onnxruntime", "rare_tiny", model)
    assert runtime.quantization["method"] == "dynamic" and runtime.quantization["calibration"] is None
    assert "MatMulInteger" in {n.op_type for n in onnx.load(str(model)).graph.node}
    assert open_runtime("onnxruntime", None, tmp_path / "tiny.dyn.onnx").predict(
        np.zeros((2, 3, 32, 100), np.float32)).shape == (2, 26, 38)


def test_int8_options_that_cannot_work_are_refused(weights, tmp_path):
    result = rare("export", "-c", "rare_tiny", "--format", "mindir", "--int8", "static", "-o", tmp_path / "m.mindir")
    assert result.exit_code == 1 and "--int8 needs --format onnx" in result.stderr
    result = rare("export", "-c", "rare_tiny", "--format", "onnx", "--int8", "dynamic", "--calibration", tmp_path,
                  "-o", tmp_path / "m.onnx")
    assert result.exit_code == 1 and "--calibration is for --int8 static" in result.stderr
    result = rare("export", "-c", "rare_tiny", "--format", "onnx", "--int8", "static", "--calibration", tmp_path,
                  "-o", tmp_path / "m.onnx")
    assert f"{tmp_path}: no LMDB dataset found" in str(result.exception)
    (tmp_path / "notes.txt").write_text("not a model")
    result = rare("parity", "-c", "rare_tiny", "--backend", "torch", "--artifact", tmp_path / "notes.txt")
    assert "notes.txt: not an exported artifact" in str(result.exception)


def test_int8_class_allows_the_share_of_differing_words_and_no_more():
    spec = load_config("rare_tiny").spec
    steps, classes = spec.head.num_steps, spec.num_classes
    ref = np.full((50, steps, classes), 0.1 / (classes - 2), np.float32)
    ref[:, 0, 5], ref[:, 1, 1] = 0.9, 0.9  # every sample reads one character, then STOP
    near = ref + 0.03  # int8-sized drift everywhere: no word changes
    one_off, two_off = near.copy(), near.copy()
    one_off[0, 0, 5], one_off[0, 0, 6] = 0.0, 0.95
    two_off[:2, 0, 5], two_off[:2, 0, 6] = 0.0, 0.95

    drift = compare_words("x", near, ref, spec, "int8-static", 0.02)
    assert drift.ok and drift.word_disagreement == 0.0 and drift.max_abs_diff > FP32_TOLERANCE
    one = compare_words("x", one_off, ref, spec, "int8-static", 0.02)
    assert one.ok and one.word_disagreement == 0.02
    assert one.words_differing == [{"sample": 0, "text": "4", "reference": "3"}]  # ids 6, 5 in 0-9a-z
    two = compare_words("x", two_off, ref, spec, "int8-static", 0.02)
    assert not two.ok and two.violations[0].startswith("2 of 50 words differ from the reference (4.0% > 2.0%")
    assert not compare_words("x", one_off, ref, spec, "int8-static", 0.0).ok

    report = ParityReport(config="rare_tiny", inputs={"set": 50}, tolerance=FP32_TOLERANCE,
                          max_word_disagreement=0.02, results={"set": [one, two]}, unavailable={})
    text = format_report(report)
    assert "int8: at most 2.0% of words may differ" in text
    assert "ok: 1 of 50 words differ (2.0% <= 2.0%)" in text and "PARITY VIOLATED" in text
