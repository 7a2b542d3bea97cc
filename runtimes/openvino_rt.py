"""OpenVINO's CPU plugin on the ONNX file from `rare export --format onnx` (fp32 or int8), at a chosen precision.

OpenVINO picks bf16 by itself on a CPU with AMX or AVX-512 BF16; here the precision is always set
explicitly, fp32 unless asked (`openvino-bf16`), so a run says what it computed in. bf16 moves the
probabilities by ~5e-3, so `rare parity` holds it to the words (its own tolerance class), as int8.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import openvino as ov

from rare_portable.artifact import INPUT_NAME, ArtifactError, int8_record, onnx_metadata, read_onnx_spec
from rare_portable.nets import BackendUnavailable
from rare_portable.spec import ModelSpec

from .base import Runtime

PRECISIONS = {"fp32": ov.Type.f32, "bf16": ov.Type.bf16}


class OpenVinoRuntime(Runtime):
    name = "openvino"

    def __init__(self, spec: Optional[ModelSpec], weights, device: str = "cpu", threads: Optional[int] = None,
                 precision: str = "fp32"):
        """`weights` is the .onnx file; `spec` (from --config) is checked against the stored one."""
        if precision not in PRECISIONS:
            raise ValueError(f"openvino precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
        if device.lower().split(":")[0] != "cpu":
            raise BackendUnavailable(f"openvino here runs on cpu, not {device!r}")
        path = Path(weights)
        metadata = onnx_metadata(path)
        super().__init__(read_onnx_spec(path, expected=spec, meta=metadata))
        self.precision = precision
        if precision != "fp32":
            self.name = f"openvino-{precision}"
        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": PRECISIONS[precision]}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            model = core.read_model(str(path))
            self.compiled = core.compile_model(model, "CPU", config)
        except Exception as e:
            raise ArtifactError(f"{path}: OpenVINO cannot load it ({type(e).__name__}: {e})") from None
        self.request = self.compiled.create_infer_request()
        self.quantization = int8_record(metadata, path)

    def _predict(self, batch: np.ndarray) -> np.ndarray:
        return self.request.infer({INPUT_NAME: batch})[0].copy()
