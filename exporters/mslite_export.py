"""MindSpore Lite models: the `lite` ONNX flavour converted by Lite 2.0's own Converter.

Lite 2.0 cannot read the MindIR that MindSpore 2.8+ writes (IR v3), so the route is ONNX -> Lite.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from rare_portable.spec import ModelSpec

from .artifact import output_folder, sidecar_spec, write_sidecar
from .onnx_export import export_onnx


@dataclass(frozen=True)
class LiteExport:
    path: Path
    onnx_max_abs_diff: float
    lite_version: str


def export_mslite(net, output, opset: int = 17) -> LiteExport:
    """PyTorch network -> lite-flavour ONNX (checked against PyTorch) -> Lite model + spec sidecar."""
    from runtimes.mslite_bridge import LiteBridge

    output = Path(output)
    output_folder(output)
    with tempfile.TemporaryDirectory(prefix="rare-lite-export-") as tmp:
        onnx = export_onnx(net, Path(tmp) / "lite.onnx", flavour="lite", opset=opset)
        bridge = LiteBridge()
        try:
            staged = Path(tmp) / output.name
            reply = bridge.convert(onnx.path, staged)
        finally:
            bridge.close()
        partial = output.with_name(f".{output.name}.tmp")  # atomic: a crash never leaves half a model
        shutil.move(staged, partial)
        os.replace(partial, output)
    write_sidecar(output, net.spec, format="mslite", lite_version=reply["version"], onnx_flavour="lite", opset=opset)
    return LiteExport(path=output, onnx_max_abs_diff=onnx.max_abs_diff, lite_version=reply["version"])


def read_lite_spec(path, expected: Optional[ModelSpec] = None) -> ModelSpec:
    return sidecar_spec(Path(path), expected)
