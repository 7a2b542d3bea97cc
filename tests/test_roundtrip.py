"""`rare synth` -> LMDB tree -> `rare eval` on every runtime: identical per-dataset numbers.

Recipe weights (seed 7) make rare_tiny read short non-empty (wrong) words, so equal NED across runtimes
means equal strings, not every runtime reading nothing."""
import json

import pytest
from click.testing import CliRunner

from mindocr_recipe import recipe
from rare_portable import build_model, get_state
from rare_portable.cli import cli
from rare_portable.weights import write_state

BACKENDS = ["torch", "mindspore", "mindspore-graph", "onnxruntime", "mindir"]


@pytest.fixture(scope="module")
def synth_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth") / "evaluation"
    runner = CliRunner()
    for name, seed, count in (("set_a", 1, 24), ("set_b", 2, 13)):
        result = runner.invoke(cli, ["synth", "--output", str(root / name), "--count", str(count), "--seed", str(seed),
                                     "--workers", "1"])
        assert result.exit_code == 0, result.output
    return root


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    shapes = {k: v.shape for k, v in get_state(build_model("rare_tiny", "torch")).items()}
    weights = write_state({k: recipe(k, s, seed=7) for k, s in shapes.items()}, folder / "w.safetensors")
    runner = CliRunner()
    out = {"torch": weights, "mindspore": weights, "mindspore-graph": weights}
    for backend, fmt, name in (("onnxruntime", "onnx", "m.onnx"), ("mindir", "mindir", "m.mindir")):
        result = runner.invoke(cli, ["export", "-c", "rare_tiny", "-w", str(weights), "--format", fmt,
                                     "-o", str(folder / name)])
        assert result.exit_code == 0, result.output
        out[backend] = folder / name
    return out


def test_synth_lmdb_eval_agrees_on_every_runtime(synth_tree, artifacts, tmp_path):
    reports = {}
    for backend in BACKENDS:
        path = tmp_path / f"{backend}.json"
        result = CliRunner().invoke(cli, ["eval", "-c", "rare_tiny", "-w", str(artifacts[backend]), "--backend", backend,
                                          "--data", str(synth_tree), "--batch-size", "8", "--json", str(path)])
        assert result.exit_code == 0, result.output
        reports[backend] = json.loads(path.read_text())

    def numbers(report):
        return [(d["name"], d["samples"], d["acc"], d["norm_edit_distance"]) for d in report["datasets"]]

    ref = numbers(reports["torch"])
    assert [(name, n) for name, n, *_ in ref] == [("evaluation/set_a", 24), ("evaluation/set_b", 13)]
    assert any(0.0 < ned < 1.0 for *_, ned in ref), "recipe weights (seed 7) should read some characters"
    for backend in BACKENDS[1:]:
        assert numbers(reports[backend]) == ref, backend
