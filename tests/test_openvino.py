"""The OpenVINO runtime: fp32 is set explicitly (OpenVINO would pick bf16 itself on a CPU with bf16 units) and
agrees with ONNX Runtime on the same file within the fp32 tolerance; `openvino-bf16` runs in bf16 where the CPU
has it and is held to the words by `rare parity` (its own class); the int8 file keeps its int8 class."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

import rare_portable  # noqa: F401  (before onnx: it picks the protobuf backend MindSpore needs)
from rare_portable import build_model, get_state
from rare_portable.cli import cli
from rare_portable.parity import BF16_MAX_WORD_DISAGREEMENT, FP32_TOLERANCE
from rare_portable.tolerances import FP32_RUNTIME, assert_within
from rare_portable.weights import write_state
from runtimes import open_runtime

ov = pytest.importorskip("openvino")  # in the `all` extra tox installs; without it the backend says how to add it


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A recipe-initialised rare_tiny (it reads different text in different images) and its ONNX export."""
    from mindocr_recipe import recipe

    folder = tmp_path_factory.mktemp("ov")
    shapes = {k: v.shape for k, v in get_state(build_model("rare_tiny", "torch")).items()}
    weights = write_state({k: recipe(k, s, seed=7) for k, s in shapes.items()}, folder / "recipe.safetensors")
    result = rare("export", "-c", "rare_tiny", "-w", weights, "--format", "onnx", "-o", folder / "tiny.onnx")
    assert result.exit_code == 0, result.output + result.stderr
    return weights, folder / "tiny.onnx"


def rare(*args):
    return CliRunner(mix_stderr=False).invoke(cli, [str(a) for a in args])


def test_fp32_is_explicit_and_matches_onnxruntime(exported):
    _, onnx_file = exported
    openvino = open_runtime("openvino", None, onnx_file)
    assert openvino.compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.f32
    assert openvino.precision == "fp32" and openvino.quantization is None
    x = np.random.default_rng(3).standard_normal((5, 3, 32, 100)).astype(np.float32)
    diff = np.abs(openvino.predict(x) - open_runtime("onnxruntime", None, onnx_file).predict(x)).max()
    assert_within(diff, FP32_RUNTIME, "OpenVINO vs ONNX Runtime")


def test_bf16_uses_the_cpus_bf16_units_where_it_has_them(exported):
    _, onnx_file = exported
    bf16 = open_runtime("openvino-bf16", None, onnx_file)
    has_bf16 = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert bf16.name == "openvino-bf16" and bf16.precision == "bf16"
    assert bf16.compiled.get_property("INFERENCE_PRECISION_HINT") == (ov.Type.bf16 if has_bf16 else ov.Type.f32)


def test_parity_puts_bf16_in_its_own_class(exported, tmp_path):
    weights, _ = exported
    result = rare("parity", "-c", "rare_tiny", "-w", weights, "--backend", "torch", "--backend", "openvino",
                  "--backend", "openvino-bf16", "--words", 16, "--json", tmp_path / "parity.json")
    assert result.exit_code == 0, result.output + result.stderr
    rows = {r["backend"]: r for rows in json.loads((tmp_path / "parity.json").read_text())["results"].values()
            for r in rows}
    assert rows["openvino"]["tolerance_class"] == "fp32" and rows["openvino"]["max_abs_diff"] < FP32_TOLERANCE
    bf16 = rows["openvino-bf16"]
    assert bf16["tolerance_class"] == "bf16" and bf16["max_word_disagreement"] == BF16_MAX_WORD_DISAGREEMENT
    assert bf16["word_disagreement"] <= BF16_MAX_WORD_DISAGREEMENT
    assert "bf16: at most 1.0% of words may differ" in result.output


def test_an_int8_file_keeps_its_int8_class_on_openvino(exported, tmp_path):
    weights, _ = exported
    int8 = tmp_path / "tiny_int8.onnx"
    result = rare("export", "-c", "rare_tiny", "-w", weights, "--format", "onnx", "--int8", "dynamic", "-o", int8)
    assert result.exit_code == 0, result.output + result.stderr
    runtime = open_runtime("openvino", None, int8)
    assert runtime.quantization is not None and runtime.quantization["method"] == "dynamic"
