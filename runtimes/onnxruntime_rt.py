"""ONNX Runtime on a model from `rare export --format onnx`; the spec comes from the model's metadata."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import onnxruntime as ort

from rare_portable.artifact import INPUT_NAME, STEP_KEY, ArtifactError, check_step_file, int8_record, read_onnx_spec
from rare_portable.charset import STOP
from rare_portable.nets import BackendUnavailable
from rare_portable.spec import ModelSpec

from .base import Runtime

OPTIMIZATION_LEVELS = {"none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                       "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                       "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                       "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}


class OnnxRuntime(Runtime):
    name = "onnxruntime"

    def __init__(self, spec: Optional[ModelSpec], weights, device: str = "cpu", threads: Optional[int] = None,
                 providers: Optional[Sequence[str]] = None, graph_optimization: str = "all", profile: bool = False):
        """`weights` is the .onnx file. `spec` (from --config) is checked against the stored one.
        `device` picks the providers unless they are given: cpu, or cuda/gpu for the CUDA provider."""
        path = Path(weights)
        if providers is None:
            providers = _providers(device)
        super().__init__(read_onnx_spec(path, expected=spec))
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.graph_optimization_level = OPTIMIZATION_LEVELS[graph_optimization]
        options.enable_profiling = profile
        try:
            self.session = ort.InferenceSession(str(path), options, providers=list(providers))
        except Exception as e:
            raise ArtifactError(f"{path}: ONNX Runtime cannot load it ({type(e).__name__}: {e})") from None
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.quantization = int8_record(metadata, path)
        self.step_session = None
        if STEP_KEY in metadata:  # `rare export --decoder stepwise`: this runtime loops the step graph
            step = check_step_file(path, metadata[STEP_KEY])
            # One thread: the step graph is too small to split, and a second thread pool spinning beside the
            # encoder's cost 1.6x at batch 1 here (benchmarks/early_stop.py).
            step_options = ort.SessionOptions()
            step_options.intra_op_num_threads = 1
            step_options.graph_optimization_level = options.graph_optimization_level
            self.step_session = ort.InferenceSession(str(step), step_options, providers=list(providers))
            self.stops_early = True

    def _predict(self, batch: np.ndarray) -> np.ndarray:
        if self.step_session is not None:
            return run_stepwise(self.session, self.step_session, batch, self.spec, STOP)
        return self.session.run(None, {INPUT_NAME: batch})[0]


def _providers(device: str):
    kind = device.lower().split(":")[0]
    if kind == "cpu":
        return ["CPUExecutionProvider"]
    if kind in ("cuda", "gpu"):
        if "CUDAExecutionProvider" not in ort.get_available_providers():
            raise BackendUnavailable(f"device {device!r}: this onnxruntime has no CUDA provider; "
                                     f"pip install onnxruntime-gpu, or use --device cpu")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    raise BackendUnavailable(f"onnxruntime here runs on cpu or cuda, not {device!r}")


def run_stepwise(encoder, step, batch: np.ndarray, spec: ModelSpec, stop_id: int) -> np.ndarray:
    """Probabilities [N, steps, C] from two ONNX Runtime sessions (`rare export --decoder stepwise`), stopping
    once all words emitted STOP; the steps after that decode as STOP."""
    batch_h, batch_h_proj = encoder.run(None, {INPUT_NAME: batch})
    n, steps, classes = len(batch), spec.head.num_steps, spec.num_classes
    probs = np.zeros((n, steps, classes), np.float32)
    probs[:, :, stop_id] = 1.0
    hidden = np.zeros((n, spec.head.hidden_size), np.float32)
    prev = np.zeros(n, np.int64)
    stopped = np.zeros(n, bool)
    for t in range(steps):
        hidden, step_probs = step.run(None, {"hidden": hidden, "batch_h": batch_h, "batch_h_proj": batch_h_proj,
                                             "prev_ids": prev})
        probs[:, t] = step_probs
        prev = step_probs.argmax(1)
        stopped |= prev == stop_id
        if stopped.all():
            break
    return probs
