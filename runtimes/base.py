"""The registry of runtimes: every way of running RARE (a framework network, an exported file) by name.

A runtime is a `Recognizer` (rare_portable/recognizer.py): it takes a preprocessed NCHW float32 batch and
returns the head's probabilities [N, steps, classes], checked the same way for every runtime.
"""
from __future__ import annotations

import importlib
from typing import Any, Dict, Optional, Sequence, Union

from rare_portable.api import resolve_spec
from rare_portable.config import RareConfig
from rare_portable.nets import INSTALL_HINT, BackendUnavailable
from rare_portable.recognizer import Recognizer
from rare_portable.spec import ModelSpec

# backend name -> "module:class", imported only when that backend is opened; other runtimes add entries here.
RUNTIMES: Dict[str, str] = {
    "torch": "runtimes.torch_rt:TorchRuntime",
    "mindspore": "runtimes.mindspore_rt:MindSporeRuntime",
    "mindspore-graph": "runtimes.mindspore_rt:MindSporeRuntime",
    # Exported artifacts: `weights` is the .onnx / .mindir / Lite file; the spec is stored with it.
    "onnxruntime": "runtimes.onnxruntime_rt:OnnxRuntime",
    "mindir": "runtimes.mindir_rt:MindirRuntime",
    "mslite": "runtimes.mslite_rt:MindSporeLiteRuntime",
    # OpenVINO's CPU plugin on the same .onnx file, fp32 or bf16 (AMX / AVX-512 BF16 where the CPU has them).
    "openvino": "runtimes.openvino_rt:OpenVinoRuntime",
    "openvino-bf16": "runtimes.openvino_rt:OpenVinoRuntime",
}
ARTIFACT_BACKENDS = ("onnxruntime", "mindir", "mslite", "openvino", "openvino-bf16")
# Options a backend name implies, so `mindspore-graph` is one word on the command line.
PRESET_OPTIONS: Dict[str, Dict[str, Any]] = {
    "mindspore-graph": {"mode": "graph"},
    "openvino-bf16": {"precision": "bf16"},
}


class Runtime(Recognizer):
    """Runs one RARE model in a framework or from an exported file; subclasses implement `_predict`."""

    # How an int8 artifact was quantized (its exporter's record); None for fp32. `rare parity` holds an
    # int8 runtime to greedy-word agreement instead of fp32 probabilities.
    quantization: Optional[dict] = None
    # What the runtime computes in; "bf16" puts it in its own `rare parity` class, held to words like int8.
    precision: str = "fp32"
    # True when the decoder stops once every word has emitted STOP (later steps read as STOP): `rare parity`
    # then compares each word's steps up to the reference's STOP only.
    stops_early: bool = False


def open_runtime(backend: str, config_or_spec: Union[None, str, RareConfig, ModelSpec], weights=None,
                 opts: Sequence[str] = (), **options) -> Runtime:
    """The runtime registered as `backend`, running the model `config_or_spec` describes with `weights`.

    `options` go to the runtime (e.g. `device`, `threads` for torch, `mode` for mindspore). A framework
    that is not installed raises BackendUnavailable saying how to install it. Artifact backends take
    `config_or_spec=None` (use the stored spec) or check the stored spec against it."""
    if backend not in RUNTIMES:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(RUNTIMES)}")
    module_name, class_name = RUNTIMES[backend].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        missing = (e.name or "").split(".")[0]
        if not missing or module_name.startswith(missing):
            raise  # the registry names a module that does not exist: a bug here, not a missing framework
        hint = INSTALL_HINT.get(missing, f"pip install {missing}")
        raise BackendUnavailable(f"backend {backend!r} needs {missing}, which is not installed: {hint}") from None
    runtime_class = getattr(module, class_name)
    spec = None if config_or_spec is None and backend in ARTIFACT_BACKENDS else resolve_spec(config_or_spec, opts)
    return runtime_class(spec, weights, **{**PRESET_OPTIONS.get(backend, {}), **options})

