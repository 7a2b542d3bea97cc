"""ONNX from the PyTorch network (MindSpore cannot export this graph: "make_list ... not supported").

Two flavours from the same weights and math:
- `standard`: GridSample for the TPS sampler (opset >= 16), for ONNX Runtime and friends.
- `lite`: what MindSpore Lite 2.0's ONNX parser takes (measured): bilinear sampling from
  Floor/Clip/GatherElements instead of GridSample, MaxPool without the default `dilations`; and
  since Lite's Tanh and LSTM kernels are approximations (1e-4 and 1.7e-4 off float64), the LSTM as
  step-by-step matmuls and tanh as 2 sigmoid(2x) - 1.
Both decode all `num_steps` greedy steps (a `break` at STOP would be baked into the trace);
post-processing cuts at STOP. The spec rides along in the model's metadata.
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rare_portable import __version__
from rare_portable.artifact import FLAVOUR_KEY, INPUT_NAME, OUTPUT_NAME, SPEC_KEY, VERSION_KEY, output_folder
from rare_portable.files import temp_beside
from rare_portable.nets import rebuild
from rare_portable.nets.common import LITE, STANDARD
from rare_portable.spec import ModelSpec, spec_to_dict

from .check import ExportError, require_faithful

FLAVOURS = ("standard", "lite")
MIN_OPSET = {"standard": 16, "lite": 13}  # GridSample arrived in opset 16
BUILD_FLAVOUR = {"standard": STANDARD, "lite": LITE}  # the network each flavour is traced from


@dataclass(frozen=True)
class OnnxExport:
    path: Path
    flavour: str
    opset: int
    max_abs_diff: float  # probabilities, ONNX Runtime vs the PyTorch network, on a random batch
    ids_equal: bool


def _strip_default_dilations(model) -> None:
    """Lite 2.0: "pooling op not support dilations now", even for [1, 1]."""
    for node in model.graph.node:
        if node.op_type == "MaxPool":
            keep = [a for a in node.attribute if not (a.name == "dilations" and all(v == 1 for v in a.ints))]
            del node.attribute[:]
            node.attribute.extend(keep)


def _tanh_from_sigmoid(model) -> None:
    """Lite 2.0's Tanh is off by up to 1e-4 near |x| = 5 (its Sigmoid by 1e-6), which a trained decoder
    carries to 2e-4 on its probabilities: each Tanh becomes 2 sigmoid(2x) - 1, the same function."""
    from onnx import helper, numpy_helper

    nodes = []
    for node in model.graph.node:
        if node.op_type != "Tanh":
            nodes.append(node)
            continue
        (x,), (y,) = node.input, node.output
        name = node.name or y
        nodes += [helper.make_node("Mul", [x, "rare_two"], [f"{name}/2x"], name=f"{name}/2x"),
                  helper.make_node("Sigmoid", [f"{name}/2x"], [f"{name}/sigmoid"], name=f"{name}/sigmoid"),
                  helper.make_node("Mul", [f"{name}/sigmoid", "rare_two"], [f"{name}/2s"], name=f"{name}/2s"),
                  helper.make_node("Sub", [f"{name}/2s", "rare_one"], [y], name=f"{name}/minus_1")]
    if len(nodes) != len(model.graph.node):
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        model.graph.initializer.extend([numpy_helper.from_array(np.array(2, np.float32), "rare_two"),
                                        numpy_helper.from_array(np.array(1, np.float32), "rare_one")])


def export_onnx(net, output, flavour: str = "standard", opset: int = 17, dynamic_batch: bool = True,
                batch: int = 1, simplify: bool = False) -> OnnxExport:
    """Export a PyTorch RARE network, check it with onnx.checker and against PyTorch on ONNX Runtime (an
    ExportError, and nothing at `output`, when they disagree beyond the fp32 runtime tolerance)."""
    import onnx
    import torch

    if flavour not in FLAVOURS:
        raise ExportError(f"unknown ONNX flavour {flavour!r}; choose {' or '.join(FLAVOURS)}")
    if opset < MIN_OPSET[flavour]:
        raise ExportError(f"opset {opset} is too old for the {flavour} flavour; use >= {MIN_OPSET[flavour]}")
    spec: ModelSpec = net.spec
    if spec.input.keep_ratio and not spec.input.padding:
        raise ExportError("keep-ratio without padding gives every image its own width; export with "
                          "--opt for RecResizeNormForInfer padding: True (a fixed width) instead")
    output = Path(output)
    net = net.eval()
    exported = rebuild(net, BUILD_FLAVOUR[flavour])  # a copy built in the flavour: `net` itself stays as it is
    # Trace with 2 images when the batch is dynamic, so nothing specialises on a batch of 1.
    x = torch.from_numpy(spec.input.example_batch(2 if dynamic_batch else batch))
    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    output_folder(output)
    tmp = temp_beside(output, ".onnx")
    try:
        with torch.inference_mode(), warnings.catch_warnings():
            # The input-shape check in forward() is Python on traced sizes: fine to bake in, say nothing.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(exported, (x,), tmp, dynamo=False, opset_version=opset, input_names=[INPUT_NAME],
                              output_names=[OUTPUT_NAME], dynamic_axes=axes, do_constant_folding=True)
        model = onnx.load(tmp)
        if simplify:
            model = _simplify(model)
        if flavour == "lite":
            _strip_default_dilations(model)
            _tanh_from_sigmoid(model)
        meta = {SPEC_KEY: json.dumps(spec_to_dict(spec), ensure_ascii=False), FLAVOUR_KEY: flavour,
                VERSION_KEY: __version__}
        del model.metadata_props[:]
        for key, value in meta.items():
            model.metadata_props.add(key=key, value=value)
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, tmp)
        diff, same = compare_with_torch(net, Path(tmp), spec, 3 if dynamic_batch else batch)
        require_faithful(output, "ONNX Runtime", "PyTorch", diff)
        os.replace(tmp, output)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return OnnxExport(path=output, flavour=flavour, opset=opset, max_abs_diff=diff, ids_equal=same)


def _simplify(model):
    try:
        import onnxslim
    except ImportError:
        raise ExportError("--simplify needs onnxslim: pip install -c constraints.txt onnxslim") from None
    return onnxslim.slim(model)


def compare_with_torch(net, path: Path, spec: ModelSpec, batch: int):
    """(max |diff| of probabilities, greedy ids equal): ONNX Runtime on `path` vs the PyTorch network."""
    import onnxruntime as ort
    import torch

    x = spec.input.example_batch(batch, seed=1)
    with torch.inference_mode():
        ref = net(torch.from_numpy(x)).numpy()
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {INPUT_NAME: x})[0]
    return float(np.abs(got - ref).max()), bool((got.argmax(-1) == ref.argmax(-1)).all())
