"""int8 ONNX models with ONNX Runtime's quantization tools.

`static` (the default) calibrates activation ranges on preprocessed word images (e.g. `rare synth`)
and writes QDQ int8 convolutions and matrix products, which ORT runs as integer kernels (VNNI where
the CPU has it); `dynamic` quantizes weights only and needs no calibration data. The spec metadata is
kept, and the result is its own tolerance class in `rare parity` (int8 is not fp32).
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from .artifact import ArtifactError
from .onnx_export import INPUT_NAME, read_onnx_spec

METHODS = ("static", "dynamic")
# Static: convolutions (~97% of rare_resnet34's FLOPs) and matrix products as QDQ int8.
# Dynamic: matrix products only; ORT has no CPU kernel for the ConvInteger that dynamic Conv becomes.
QUANTIZED_OPS = {"static": ["Conv", "MatMul"], "dynamic": ["MatMul"]}
# int8 tolerance class for parity: probabilities move by up to a few percent, so the suite checks
# greedy agreement instead: at most this fraction of decoded words may differ from the fp32 model.
INT8_MAX_WORD_DISAGREEMENT = 0.02


@dataclass(frozen=True)
class QuantizedExport:
    path: Path
    method: str


class _Calibration:
    """ORT's CalibrationDataReader over batches of preprocessed images."""

    def __init__(self, batches: Iterator[np.ndarray]):
        self._batches = iter(batches)

    def get_next(self):
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}


def quantize_onnx(model_path, output, method: str = "static", calibration: Optional[np.ndarray] = None,
                  batch_size: int = 16) -> QuantizedExport:
    """int8 copy of an exported fp32 ONNX model; `calibration` ([N, C, H, W] preprocessed) for `static`."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    model_path, output = Path(model_path), Path(output)
    if method not in METHODS:
        raise ArtifactError(f"unknown quantization method {method!r}; choose {' or '.join(METHODS)}")
    spec = read_onnx_spec(model_path)
    if method == "static" and (calibration is None or not len(calibration)):
        raise ArtifactError("static int8 needs calibration images (e.g. a few hundred from `rare synth`)")
    with tempfile.TemporaryDirectory(prefix="rare-int8-", dir=output.parent if output.parent.exists() else None) as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        onnx.save(_gemm_to_matmul(onnx.load(str(model_path))), str(prepared))
        staged = Path(tmp) / "int8.onnx"
        if method == "dynamic":
            quantize_dynamic(str(prepared), str(staged), weight_type=QuantType.QInt8,
                             op_types_to_quantize=QUANTIZED_OPS[method],
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        else:
            batches = (calibration[i:i + batch_size] for i in range(0, len(calibration), batch_size))
            quantize_static(str(prepared), str(staged), _Calibration(batches), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                            op_types_to_quantize=QUANTIZED_OPS[method],
                            calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        _copy_metadata(model_path, staged, method)
        output.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, output)
    read_onnx_spec(output, expected=spec)
    return QuantizedExport(path=output, method=method)


def _gemm_to_matmul(model):
    """Gemm(A, W, b, transB=1) -> MatMul(A, W^T) + b, one W^T per shared weight. ORT's quantizer rewrites
    each Gemm itself and transposes a weight shared by several Gemms (the 26 decode steps share the
    generator) once per node, which breaks the model ("Incompatible dimensions", onnxruntime 1.23)."""
    import onnx
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    transposed, nodes = {}, []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 and not attrs.get("transA", 0)
        if node.op_type != "Gemm" or not plain or node.input[1] not in inits:
            nodes.append(node)
            continue
        weight = node.input[1]
        if attrs.get("transB", 0):
            if weight not in transposed:
                w = numpy_helper.to_array(inits[weight]).T.copy()
                transposed[weight] = f"{weight}_T"
                graph.initializer.append(numpy_helper.from_array(w, transposed[weight]))
            weight = transposed[weight]
        product = f"{node.output[0]}_matmul" if len(node.input) > 2 else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], weight], [product], name=f"{node.name}_matmul"))
        if len(node.input) > 2:
            nodes.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=f"{node.name}_add"))
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model


def _copy_metadata(source: Path, target: Path, method: str) -> None:
    import onnx

    src, dst = onnx.load(str(source)), onnx.load(str(target))
    del dst.metadata_props[:]
    for prop in src.metadata_props:
        dst.metadata_props.add(key=prop.key, value=prop.value)
    dst.metadata_props.add(key="rare_portable.int8", value=method)
    onnx.save(dst, str(target))
