"""Exporters and the artifact runtimes: ONNX (standard and Lite flavour), MindIR, Ascend 310 config,
MindSpore Lite, and the conformance suite over all of them."""
import collections
import json
import subprocess
import sys

import numpy as np
import pytest

import rare_portable  # noqa: F401  (before onnx: it picks the protobuf backend MindSpore needs)
import onnx
from rare_portable.artifact import ArtifactError, read_onnx_spec
from exporters.ascend310 import convert_ascend310
from exporters.mindir_export import export_mindir
from exporters.onnx_export import ExportError, export_onnx
from rare_portable import build_model, load_config
from rare_portable.parity import compare, format_report, run_parity
from rare_portable.spec import SpecError
from rare_portable.tolerances import (CONFORMANCE_PROBS, CROSS_BATCH, EXPORT_SELF_CHECK, FP32_RUNTIME, LITE_SHARP,
                                      assert_within, max_abs_diff)
from runtimes import open_runtime
from rare_portable.mslite_bridge import availability

TPS = ["model.transform.name=STN_ON", "model.transform.loc_channels=[8,16,16,16,16,16]",
       "model.transform.loc_fc_hidden=32"]
LITE_MISSING = availability()
needs_lite = pytest.mark.skipif(LITE_MISSING is not None, reason=f"MindSpore Lite: {LITE_MISSING}")


def _batch(spec, n, seed=0):
    return spec.input.example_batch(n, seed)


def _recipe_net(backend, opts, tmp_path, sharp=False):
    """Weights that make the TPS warp and the decoder emit text, so comparisons mean something;
    `sharp`: a decoder driven as hard as a trained one."""
    from mindocr_recipe import recipe, sharp_decoder
    from rare_portable import get_state
    from rare_portable.weights import write_state

    path = tmp_path / ("sharp.safetensors" if sharp else "recipe.safetensors")
    if not path.exists():
        shapes = {k: v.shape for k, v in get_state(build_model("rare_tiny", "torch", opts=opts)).items()}
        state = {k: recipe(k, s, seed=3) for k, s in shapes.items()}
        write_state(sharp_decoder(state) if sharp else state, path)
    return build_model("rare_tiny", backend, opts=opts, weights=path), path


def _ops(path):
    return collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)


@pytest.mark.parametrize("opts", [[], TPS, TPS + ["model.transform.align_corners=true"]],
                         ids=["plain", "tps", "tps-align-corners"])
@pytest.mark.parametrize("flavour", ["standard", "lite"])
def test_onnx_export_matches_torch_and_carries_spec(opts, flavour, tmp_path):
    net, _ = _recipe_net("torch", opts, tmp_path)
    result = export_onnx(net, tmp_path / "m.onnx", flavour=flavour)
    assert_within(result.max_abs_diff, EXPORT_SELF_CHECK, f"{flavour} export's own check")
    assert result.ids_equal
    assert read_onnx_spec(result.path) == net.spec
    ops = _ops(result.path)
    model = onnx.load(str(result.path))
    assert model.opset_import[0].version == 17
    if flavour == "lite":
        # What MindSpore Lite 2.0 rejects (measured): GridSample, If, GreaterOrEqual, MaxPool dilations;
        # and its approximate kernels: Tanh, LSTM.
        assert not {"GridSample", "If", "GreaterOrEqual", "Expand", "OneHot", "Tanh", "LSTM"} & set(ops)
        assert all(a.name != "dilations" for n in model.graph.node if n.op_type == "MaxPool" for a in n.attribute)
    elif opts:
        assert ops["GridSample"] == 1
    # every decode step is in the graph: one ArgMax per step feeding the next
    assert ops["ArgMax"] >= net.spec.head.num_steps - 1
    rt = open_runtime("onnxruntime", None, result.path)
    x = _batch(net.spec, 5, seed=2)
    import torch
    with torch.inference_mode():
        ref = net(torch.from_numpy(x)).numpy()
    assert_within(max_abs_diff(rt.predict(x), ref), EXPORT_SELF_CHECK, f"{flavour} ONNX Runtime vs torch")


@pytest.mark.parametrize("layers,inputs,hidden", [(1, 24, 8), (2, 128, 64)])
def test_lite_flavour_lstm_is_the_lstm(layers, inputs, hidden):
    """The step-by-step LSTM the lite flavour exports (both directions per matmul, tanh from sigmoid)
    against PyTorch's own kernel, in float64 so that only a wrong formula could differ."""
    import torch
    from rare_portable.nets.torch_rare import lstm_cells

    torch.manual_seed(layers)
    lstm = torch.nn.LSTM(inputs, hidden, layers, bidirectional=True).double()
    x = 3 * torch.randn(25, 3, inputs, dtype=torch.float64)
    with torch.no_grad():
        assert (lstm_cells(lstm, x, 25) - lstm(x)[0]).abs().max() < 1e-12


def test_flavour_is_chosen_when_the_network_is_built():
    """Exporters build a copy in the flavour they need and load the weights into it (timm's `set_exportable`
    pattern): the layers read the flavour once, and the caller's network is never switched."""
    from rare_portable import get_state
    from rare_portable.nets import build_network, rebuild
    from rare_portable.nets.common import LITE, export_flavour

    spec = load_config("rare_tiny", TPS).spec
    with export_flavour(LITE):
        lite = build_network(spec, "torch")
    net = build_model(spec, "torch", seed=1)
    assert (lite.neck.lstm_kernel, lite.transform.plan.grid_sample) == (False, False)
    copy = rebuild(net, LITE)
    assert (copy.neck.lstm_kernel, copy.transform.plan.grid_sample) == (False, False)
    assert (net.neck.lstm_kernel, net.transform.plan.grid_sample) == (True, True)
    assert all(np.array_equal(a, b) for a, b in zip(get_state(copy).values(), get_state(net).values()))


def test_onnx_errors_name_file_and_fix(tmp_path):
    net = build_model("rare_tiny", "torch", opts=TPS)
    with pytest.raises(ExportError, match="opset 15 is too old for the standard flavour"):
        export_onnx(net, tmp_path / "m.onnx", opset=15)
    path = export_onnx(net, tmp_path / "m.onnx").path
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ArtifactError, match="truncated.onnx: not a readable ONNX model"):
        open_runtime("onnxruntime", None, truncated)
    with pytest.raises(ArtifactError, match="its transform .* disagrees with the config"):
        open_runtime("onnxruntime", "rare_tiny", path)
    other_dict = load_config("rare_tiny", TPS + ["common.character_dict_path=en_dict.txt",
                                                 "common.num_classes=96", "model.head.out_channels=96"])
    with pytest.raises(ArtifactError, match="disagrees with the config"):
        open_runtime("onnxruntime", other_dict, path)
    rt = open_runtime("onnxruntime", None, path)
    with pytest.raises(SpecError, match="expected a float32 batch, got int64"):
        rt.predict(np.zeros((1, 3, 32, 100), np.int64))
    with pytest.raises(SpecError, match="input is 32x64, the model expects 32x100"):
        rt.predict(np.zeros((1, 3, 32, 64), np.float32))


@pytest.mark.parametrize("fmt", ["onnx", "mindir"])
def test_an_export_its_runtime_disagrees_with_is_not_written(fmt, tmp_path, monkeypatch):
    """The exporters gate every artifact (the library, `rare export` and `rare parity` alike): when the runtime
    reading it back disagrees with the network beyond the fp32 runtime class (simulated here at 2e-3), the
    export raises naming the file and the class, and nothing lands at the output path."""
    import exporters.mindir_export as mindir_module
    import exporters.onnx_export as onnx_module

    output = tmp_path / f"m.{fmt}"
    if fmt == "onnx":
        monkeypatch.setattr(onnx_module, "compare_with_torch", lambda *args: (2e-3, True))
        export = lambda: export_onnx(build_model("rare_tiny", "torch"), output)  # noqa: E731
    else:
        monkeypatch.setattr(mindir_module, "compare_with_network", lambda *args: 2e-3)
        export = lambda: export_mindir(build_model("rare_tiny", "mindspore"), output)  # noqa: E731
    with pytest.raises(ExportError, match=rf"m\.{fmt}: .* 2\.00e-03 .*beyond the {FP32_RUNTIME.name} bound.*nothing "
                                          r"was written"):
        export()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_mindir_static_and_dynamic_batch(tmp_path):
    import mindspore as ms

    net, _ = _recipe_net("mindspore", TPS, tmp_path)
    x = _batch(net.spec, 3, seed=4)
    ref = net(ms.Tensor(x)).asnumpy()
    # The LSTM kernel, so the file computes exactly what the network does (the plain LSTM: test below).
    dynamic = export_mindir(net, tmp_path / "dyn.mindir", batch=None, lstm_kernel=True)
    static = export_mindir(net, tmp_path / "b1.mindir", batch=1, lstm_kernel=True)
    assert dynamic.max_abs_diff == 0.0 and static.max_abs_diff == 0.0
    assert static.input_name.endswith("images")
    rt = open_runtime("mindir", "rare_tiny", dynamic.path, opts=TPS)
    for n in (3, 1, 2, 3):  # MindSpore 2.8 needs a graph per batch size; the runtime keeps one each
        # other batch sizes round differently: 1.013e-6 measured on an Intel Xeon (AMX)
        assert_within(max_abs_diff(rt.predict(x[:n]), ref[:n]), CROSS_BATCH, f"dynamic MindIR, batch {n}")
    assert sorted(rt.cells) == [1, 3]  # 2 ran padded on the graph for 3: no third load
    rt1 = open_runtime("mindir", None, static.path)
    assert_within(max_abs_diff(rt1.predict(x[:1]), ref[:1]), CROSS_BATCH, "batch-1 MindIR")
    with pytest.raises(SpecError, match="exported for batch 1, got 3; re-export with --dynamic-batch"):
        rt1.predict(x)
    broken = tmp_path / "broken.mindir"
    broken.write_bytes(b"\x00garbage")
    (tmp_path / "broken.mindir.json").write_text((tmp_path / "b1.mindir.json").read_text())
    with pytest.raises(ArtifactError, match="broken.mindir"):
        open_runtime("mindir", None, broken)
    # The spec travels inside the file: a MindIR copied without its sidecar still runs ...
    (tmp_path / "lonely.mindir").write_bytes(static.path.read_bytes())
    lonely = open_runtime("mindir", None, tmp_path / "lonely.mindir")
    assert lonely.spec == rt1.spec
    assert_within(max_abs_diff(lonely.predict(x[:1]), ref[:1]), CROSS_BATCH, "MindIR without its sidecar")
    # ... and one without our record (another exporter's) needs the sidecar, and says so.
    from exporters.mindir_export import set_user_info
    from rare_portable.artifact import USER_INFO_KEY, parse_mindir

    model = parse_mindir(static.path)
    kept = [(e.key, e.value) for e in model.user_info if e.key != USER_INFO_KEY]
    del model.user_info[:]
    for key, value in kept:
        set_user_info(model, key, value)
    (tmp_path / "foreign.mindir").write_bytes(model.SerializeToString())
    with pytest.raises(ArtifactError, match="spec file foreign.mindir.json is missing"):
        open_runtime("mindir", None, tmp_path / "foreign.mindir")


def test_ascend310_config_and_command(tmp_path):
    mindir = export_mindir(build_model("rare_tiny", "mindspore"), tmp_path / "rare.mindir", batch=1)
    result = convert_ascend310(mindir.path, tmp_path / "ascend", precision_mode="enforce_fp32")
    assert result.config.read_text() == ("[ascend_context]\ninput_format=NCHW\ninput_shape=images:[1,3,32,100]\n"
                                         "precision_mode=enforce_fp32\n")
    assert result.command[:4] == ["converter_lite", "--fmk=MINDIR", "--saveType=MINDIR", "--optimize=ascend_oriented"]
    assert f"--configFile={result.config}" in result.command and not result.ran
    with pytest.raises(ArtifactError, match="converter_lite is not on PATH"):
        convert_ascend310(mindir.path, tmp_path / "ascend", run=True)
    with pytest.raises(ArtifactError, match="exported for batch 1; convert with --batch 1"):
        convert_ascend310(mindir.path, tmp_path / "ascend", batch=4)
    with pytest.raises(ArtifactError, match="re-export it with --dynamic-batch for --batch-sizes"):
        convert_ascend310(mindir.path, tmp_path / "ascend", batch_sizes=[1, 8])
    dynamic = export_mindir(build_model("rare_tiny", "mindspore"), tmp_path / "dyn.mindir", batch=None)
    config = convert_ascend310(dynamic.path, tmp_path / "ascend", batch_sizes=[1, 8, 32]).config.read_text()
    assert "input_shape=images:[-1,3,32,100]\ndynamic_dims=[1],[8],[32]\n" in config


def test_mindir_without_the_lstm_kernel_converts_for_ascend_and_matches_pytorch(tmp_path):
    """The default MindIR holds no LSTM primitive, only operators MindSpore Lite lists for Ascend, and reads as
    PyTorch does within the fp32 tolerance; the kernel export is refused by `convert`, naming LSTM."""
    import torch

    from exporters.ascend310 import supported_ops, unsupported_primitives
    from rare_portable.artifact import parse_mindir, primitives

    net, weights = _recipe_net("mindspore", [], tmp_path, sharp=True)  # a decoder driven as hard as a trained one
    plain = export_mindir(net, tmp_path / "plain.mindir", batch=None)
    kernel = export_mindir(net, tmp_path / "kernel.mindir", batch=None, lstm_kernel=True)
    plain_ops, kernel_ops = (primitives(parse_mindir(e.path)) for e in (plain, kernel))
    assert "LSTM" in kernel_ops and "LSTM" not in plain_ops
    assert {"Conv2D", "MatMulExt", "Sigmoid"} <= set(plain_ops)
    assert unsupported_primitives(plain_ops) == [] and "LSTM" in unsupported_primitives(kernel_ops)
    version, names = supported_ops()
    assert version == "mindspore-lite 2.0-2.3.1" and len(names) == 75 and "LSTM" not in names
    assert json.loads((tmp_path / "plain.mindir.json").read_text())["lstm"] == "plain"

    torch_net = build_model("rare_tiny", "torch", weights=weights)
    x = _batch(net.spec, 4, seed=9)
    expected = torch_net(torch.from_numpy(x)).detach().numpy()
    probs = open_runtime("mindir", "rare_tiny", plain.path).predict(x)
    assert_within(max_abs_diff(probs, expected), FP32_RUNTIME, "plain-LSTM MindIR vs torch")
    np.testing.assert_array_equal(probs.argmax(-1), expected.argmax(-1))
    with pytest.raises(ArtifactError, match=r"does not support LSTM\b.*; re-export it without --lstm-kernel"):
        convert_ascend310(kernel.path, tmp_path / "ascend")


@pytest.mark.lite
@needs_lite
@pytest.mark.parametrize("opts,sharp", [([], False), (TPS, False), ([], True)], ids=["plain", "tps", "sharp"])
def test_mslite_model_matches_torch(opts, sharp, tmp_path):
    """`sharp`: a decoder as peaked as a trained one, where Lite's own Tanh and LSTM kernels put the
    probabilities 1.7e-4 off (measured on trained rare_tiny): the lite flavour does without them. This
    stress network amplifies all fp32 rounding (PyTorch fp32 itself is 1.8e-5 from float64 here, 3e-6
    on trained rare_tiny), and Lite's convolutions round more than PyTorch's (1.5e-4 from float64 on one
    sample), so it is held to LITE_SHARP (5e-4, over 3x that): the approximate kernels gave 9e-4."""
    import torch
    from exporters.mslite_export import export_mslite

    net, _ = _recipe_net("torch", opts, tmp_path, sharp=sharp)
    result = export_mslite(net, tmp_path / "m.ms")
    rt = open_runtime("mslite", "rare_tiny", result.path, opts=opts)
    for n in (2, 5, 1, 3):  # one Lite model per batch size: resizing a used model crashed Lite 2.0
        x = _batch(net.spec, n, seed=n)
        with torch.inference_mode():
            ref = net(torch.from_numpy(x)).numpy()
        got = rt.predict(x)
        assert_within(max_abs_diff(got, ref), LITE_SHARP if sharp else FP32_RUNTIME, f"Lite, batch {n}")
        np.testing.assert_array_equal(got.argmax(-1), ref.argmax(-1))
    assert rt.built == {1, 2, 5}  # 3 ran padded on the model for 5: no build (seconds each)


def test_compare_flags_real_differences_and_excuses_near_ties():
    spec = load_config("rare_tiny").spec
    steps, classes = spec.head.num_steps, spec.num_classes
    ref = np.full((2, steps, classes), 0.1 / (classes - 2), np.float32)
    ref[:, :, 1] = 0.05  # STOP
    ref[0, :, 5], ref[1, :, 7] = 0.85, 0.85
    ref[0, 3, 5], ref[0, 3, 6] = 0.45, 0.45 - 5e-5  # a near-tie at step 3 of sample 0
    same = compare("x", ref.copy(), ref, spec, 1e-4)
    assert same.ok and same.ids_identical and same.strings_identical
    tie = ref.copy()
    tie[0, 3, 5], tie[0, 3, 6] = 0.45 - 5e-5, 0.45
    tie[0, 4:, 5], tie[0, 4:, 9] = 0.05, 0.85  # the flip cascades into later steps
    result = compare("x", tie, ref, spec, 1e-4)
    assert result.ok and not result.ids_identical and result.near_ties == [
        {"sample": 0, "step": 3, "top2_gap": pytest.approx(5e-5, abs=1e-6)}]
    wrong = ref.copy()
    wrong[1, 2, 7], wrong[1, 2, 8] = 0.1, 0.8
    bad = compare("x", wrong, ref, spec, 1e-4)
    assert not bad.ok and any("greedy ids differ at step 2" in v for v in bad.violations)
    drift = ref + 3e-4
    assert not compare("x", drift, ref, spec, 1e-4).ok


def test_parity_suite_over_every_runtime(tmp_path):
    """rare_tiny with TPS, recipe weights: every fp32 runtime (mslite where provisioned) within 1e-4."""
    _, weights = _recipe_net("torch", TPS, tmp_path)
    spec = load_config("rare_tiny", TPS).spec
    report = run_parity(spec, weights, {"random": _batch(spec, 4, seed=9)}, workdir=tmp_path / "work")
    ran = {r.backend for r in report.results["random"]}
    expected = {"mindspore", "mindspore-graph", "onnxruntime", "mindir", "openvino"} | (
        {"mslite"} if LITE_MISSING is None else set())
    assert ran == expected, report.unavailable
    assert report.ok, format_report(report)
    if LITE_MISSING is not None:
        assert "mslite" in report.unavailable


@pytest.mark.parametrize("backend", ["onnxruntime", "mindir"])
def test_exported_rare_resnet34_matches_mindocr(backend, mindocr_record, tmp_path):
    opts, record, ckpt = mindocr_record("rare_resnet34")
    if backend == "onnxruntime":
        artifact = export_onnx(build_model("rare_resnet34", "torch", weights=ckpt), tmp_path / "r34.onnx").path
    else:
        artifact = export_mindir(build_model("rare_resnet34", "mindspore", weights=ckpt), tmp_path / "r34.mindir",
                                 batch=None).path
    probs = open_runtime(backend, "rare_resnet34", artifact).predict(record["x"])
    assert_within(max_abs_diff(probs, record["eval_probs"]), CONFORMANCE_PROBS, f"{backend} artifact")
    np.testing.assert_array_equal(probs.argmax(-1), record["eval_probs"].argmax(-1))


def test_cli_export_convert_parity(tmp_path):
    def rare(*args):
        return subprocess.run([sys.executable, "-c", "from rare_portable.cli import main; main()", *args],
                              capture_output=True, text=True, cwd=tmp_path)

    run = rare("export", "-c", "rare_tiny", "--format", "onnx", "-o", "m.onnx")
    assert run.returncode == 0, run.stderr
    assert "identical greedy ids" in run.stdout
    run = rare("export", "-c", "rare_tiny", "--format", "mindir", "--static-batch", "-o", "m.mindir")
    assert run.returncode == 0, run.stderr
    run = rare("convert", "m.mindir", "-o", "ascend")
    assert run.returncode == 0 and "converter_lite --fmk=MINDIR" in run.stdout
    assert "not on PATH" in run.stdout and not run.stderr.strip()
    run = rare("export", "-c", "rare_tiny", "--format", "mindir", "--lstm-kernel", "-o", "k.mindir")
    assert run.returncode == 0 and "kernel LSTM" in run.stdout
    run = rare("convert", "k.mindir", "-o", "ascend")
    assert run.returncode == 2 and "does not support LSTM" in run.stderr
    run = rare("export", "-c", "rare_tiny", "--format", "onnx", "-o", "m.mindir")
    assert run.returncode == 1 and "a onnx file ends in .onnx" in run.stderr
    for fmt, name in (("onnx", "x.onnx"), ("mindir", "x.mindir")):  # a folder that cannot be made: one line, exit 2
        run = rare("export", "-c", "rare_tiny", "--format", fmt, "-o", f"/proc/nonexistent/{name}")
        assert run.returncode == 2 and run.stderr.strip().splitlines() == [
            f"Error: /proc/nonexistent/{name}: cannot create the folder /proc/nonexistent (No such file or directory); "
            f"choose an output path in a folder you can write to"], run.stderr
    run = rare("parity", "-c", "rare_tiny", "--backend", "onnxruntime", "--backend", "mindspore", "--words", "4",
               "--json", "report.json")
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ok"] and {r["backend"] for r in report["results"]["rendered words"]} == {"onnxruntime", "mindspore"}
