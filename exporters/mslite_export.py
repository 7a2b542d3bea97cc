"""MindSpore Lite models: the `lite` ONNX flavour converted by Lite 2.0's own Converter.

Lite 2.0 cannot read the MindIR that MindSpore 2.8+ writes (IR v3), so the route is ONNX -> Lite.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rare_portable.artifact import output_folder, write_sidecar

from .check import require_faithful
from .onnx_export import export_onnx


@dataclass(frozen=True)
class LiteExport:
    path: Path
    onnx_max_abs_diff: float
    max_abs_diff: float  # probabilities, Lite running the model vs the PyTorch network, on an example batch
    lite_version: str


def torch_probs(net, batch: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return net(torch.from_numpy(batch)).numpy()


def export_mslite(net, output, opset: int = 17) -> LiteExport:
    """PyTorch network -> lite-flavour ONNX (checked against PyTorch) -> Lite model, run by Lite and checked
    against PyTorch before it is put at `output` -> spec sidecar."""
    from rare_portable.mslite_bridge import LiteBridge

    output = Path(output)
    output_folder(output)
    with tempfile.TemporaryDirectory(prefix="rare-lite-export-") as tmp:
        onnx = export_onnx(net, Path(tmp) / "lite.onnx", flavour="lite", opset=opset)
        bridge = LiteBridge()
        try:
            staged = Path(tmp) / output.name
            reply = bridge.convert(onnx.path, staged)
            bridge.load(staged)  # Lite builds it for one image
            example = net.spec.input.example_batch(1)
            diff = float(np.abs(bridge.predict(example) - torch_probs(net, example)).max())
        finally:
            bridge.close()
        require_faithful(output, "MindSpore Lite", "PyTorch", diff)
        partial = output.with_name(f".{output.name}.tmp")  # atomic: a crash never leaves half a model
        shutil.move(staged, partial)
        os.replace(partial, output)
    write_sidecar(output, net.spec, format="mslite", lite_version=reply["version"], onnx_flavour="lite", opset=opset)
    return LiteExport(path=output, onnx_max_abs_diff=onnx.max_abs_diff, max_abs_diff=diff,
                      lite_version=reply["version"])
