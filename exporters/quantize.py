"""int8 ONNX models with ONNX Runtime's quantization tools (`rare export --format onnx --int8 ...`).

`static` (the default) calibrates activation ranges on preprocessed word images (rendered by `rare synth`,
or read from an LMDB tree) and writes QDQ int8 convolutions, which ORT runs as integer kernels (VNNI where
the CPU has it); `dynamic` quantizes weights only and needs no calibration data. The spec metadata is
kept, and how the model was made is recorded beside it (`int8_record`); `rare parity` holds such a model
to its own tolerance class (greedy words, not fp32 probabilities).
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from rare_portable.artifact import INPUT_NAME, INT8_KEY, ArtifactError, output_folder, read_onnx_spec
from rare_portable.data.lmdb import LmdbDataset, find_lmdb_datasets
from rare_portable.data.preprocess import batch
from rare_portable.data.synth import render_words
from rare_portable.spec import ModelSpec


METHODS = ("static", "dynamic")
# Static: convolutions (~97% of rare_resnet34's FLOPs) as QDQ int8. The decoder's matrix products stay
# fp32: quantizing them too made 3.2% instead of 2.0% of 500 rendered words read differently from the fp32
# trained rare_tiny, for about 5% more speed (measured on 2 cores).
# Dynamic: matrix products only; ORT has no CPU kernel for the ConvInteger that dynamic Conv becomes.
QUANTIZED_OPS = {"static": ["Conv"], "dynamic": ["MatMul"]}
CALIBRATION_SEED = 7  # rendered calibration words; `rare parity` renders its words with another seed


class CalibrationError(ArtifactError):
    """Calibration images that cannot be had as asked; the message names the source and the fix."""


@dataclass(frozen=True)
class CalibrationSet:
    """Preprocessed images [N, C, H, W] and, for the int8 model's record, where they came from."""

    images: np.ndarray
    source: str


@dataclass(frozen=True)
class QuantizedExport:
    path: Path
    record: dict  # what INT8_KEY holds


def rendered_calibration(spec: ModelSpec, count: int, seed: int = CALIBRATION_SEED) -> CalibrationSet:
    images, _ = render_words(spec, count, seed)
    return CalibrationSet(batch(images, spec.input), f"{count} words rendered by `rare synth` (seed {seed})")


def lmdb_calibration(spec: ModelSpec, root, count: int) -> CalibrationSet:
    """Up to `count` images spread evenly over every LMDB under `root`, so no one dataset or part dominates."""
    datasets = [LmdbDataset(path) for path in find_lmdb_datasets(root)]
    try:
        offsets = np.cumsum([0] + [len(d) for d in datasets])
        total = int(offsets[-1])
        if not total:
            raise CalibrationError(f"{root}: its LMDBs hold no samples; calibrate on a dataset with word images")
        images, picked = [], np.unique(np.linspace(0, total - 1, min(count, total)).round().astype(int))
        for position in picked:
            which = int(np.searchsorted(offsets, position, side="right")) - 1
            sample = datasets[which][int(position - offsets[which])]
            if sample.skip is None:
                images.append(sample.image)
    finally:
        for dataset in datasets:
            dataset.close()
    if not images:
        raise CalibrationError(f"{root}: none of the {len(picked)} images sampled decodes; calibrate on readable images")
    return CalibrationSet(batch(images, spec.input), f"{root} (LMDB): {len(images)} of {total} images, evenly spaced")


class _Calibration:
    """ORT's CalibrationDataReader over batches of preprocessed images."""

    def __init__(self, batches: Iterator[np.ndarray]):
        self._batches = iter(batches)

    def get_next(self):
        batch = next(self._batches, None)
        return None if batch is None else {INPUT_NAME: batch}


def quantize_onnx(model_path, output, method: str = "static", calibration: Optional[CalibrationSet] = None,
                  batch_size: int = 16) -> QuantizedExport:
    """int8 copy of an exported fp32 ONNX model; `calibration` for `static`."""
    import onnx
    import onnxruntime
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static

    model_path, output = Path(model_path), Path(output)
    if method not in METHODS:
        raise ArtifactError(f"unknown quantization method {method!r}; choose {' or '.join(METHODS)}")
    spec = read_onnx_spec(model_path)
    if method == "static" and (calibration is None or not len(calibration.images)):
        raise CalibrationError("static int8 needs calibration images (e.g. a few hundred from `rare synth`)")
    record = {
        "method": method,
        "quantized_ops": QUANTIZED_OPS[method],
        "weights": "int8 per output channel" if method == "static" else "int8 per tensor",
        "activations": ("uint8, ranges from calibration (MinMax)" if method == "static"
                        else "uint8, ranges computed per batch at run time"),
        "calibration": ({"source": calibration.source, "images": len(calibration.images)}
                        if method == "static" else None),
        "onnxruntime": onnxruntime.__version__,
    }
    with tempfile.TemporaryDirectory(prefix="rare-int8-", dir=output.parent if output.parent.exists() else None) as tmp, \
            _quiet_quantizer(onnxruntime):
        prepared = Path(tmp) / "prepared.onnx"
        onnx.save(_gemm_to_matmul(onnx.load(str(model_path))), str(prepared))
        staged = Path(tmp) / "int8.onnx"
        if method == "dynamic":
            quantize_dynamic(str(prepared), str(staged), weight_type=QuantType.QInt8,
                             op_types_to_quantize=QUANTIZED_OPS[method],
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        else:
            images = calibration.images
            batches = (images[i:i + batch_size] for i in range(0, len(images), batch_size))
            quantize_static(str(prepared), str(staged), _Calibration(batches), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                            op_types_to_quantize=QUANTIZED_OPS[method],
                            calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
        _copy_metadata(model_path, staged, record)
        output_folder(output)
        os.replace(staged, output)
    read_onnx_spec(output, expected=spec)
    return QuantizedExport(path=output, record=record)


@contextmanager
def _quiet_quantizer(onnxruntime):
    """ORT's quantizer advises pre-processing on every call (we prepare the graph ourselves) and its
    calibration sessions warn about every initializer quantization left unused: noise on a user's terminal."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    onnxruntime.set_default_logger_severity(3)
    try:
        yield
    finally:
        root.setLevel(level)
        onnxruntime.set_default_logger_severity(2)  # ORT's default: warnings


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


def _copy_metadata(source: Path, target: Path, record: dict) -> None:
    import onnx

    src, dst = onnx.load(str(source)), onnx.load(str(target))
    del dst.metadata_props[:]
    for prop in src.metadata_props:
        dst.metadata_props.add(key=prop.key, value=prop.value)
    dst.metadata_props.add(key=INT8_KEY, value=json.dumps(record, ensure_ascii=False))
    onnx.save(dst, str(target))
