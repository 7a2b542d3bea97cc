"""One interface over every way of running RARE: a framework network now, exported artifacts later.

A runtime takes a preprocessed NCHW float32 batch and returns the head's probabilities [N, steps, classes].
The batch is checked here, before any framework sees it, so every runtime rejects the same mistake with
the same message instead of failing somewhere inside its own stack.
"""
from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, TypeVar, Union

import numpy as np

from rare_portable.api import resolve_spec
from rare_portable.config import RareConfig
from rare_portable.data.preprocess import batch as preprocess_batch, content_width
from rare_portable.labels import decode
from rare_portable.nets import INSTALL_HINT, BackendUnavailable
from rare_portable.spec import ModelSpec, SpecError

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
# `recognise_all` sorts images by width within windows of this many batches: wide enough to group similar
# widths, small enough that a large folder is never held in memory at once.
SORT_WINDOW_BATCHES = 16
Key = TypeVar("Key")


class Runtime(ABC):
    """Runs one RARE model; subclasses implement `_predict` on an already checked batch."""

    name: str
    # How an int8 artifact was quantized (its exporter's record); None for fp32. `rare parity` holds an
    # int8 runtime to greedy-word agreement instead of fp32 probabilities.
    quantization: Optional[dict] = None
    # What the runtime computes in; "bf16" puts it in its own `rare parity` class, held to words like int8.
    precision: str = "fp32"
    # True when the decoder stops once every word has emitted STOP (later steps read as STOP): `rare parity`
    # then compares each word's steps up to the reference's STOP only.
    stops_early: bool = False

    def __init__(self, spec: ModelSpec):
        self.spec = spec

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities [N, steps, num_classes] float32 for a batch [N, C, H, W] from `preprocess`."""
        batch = self.check_batch(batch)
        expected = (len(batch), self.spec.head.num_steps, self.spec.num_classes)
        if not len(batch):
            return np.zeros(expected, dtype=np.float32)
        probs = np.asarray(self._predict(batch), dtype=np.float32)
        if probs.shape != expected:
            raise RuntimeError(f"{self.name} returned probabilities of shape {list(probs.shape)}, expected "
                               f"{list(expected)} (batch, head.num_steps, num_classes): the model does not match "
                               f"config {self.spec.name}")
        return probs

    def recognise(self, images: Sequence[np.ndarray], lower: bool = False) -> List[Tuple[str, float]]:
        """(text, confidence) per RGB HWC uint8 image: the one preprocessing, `predict`, MindOCR's decoding."""
        return decode(self.predict(preprocess_batch(images, self.spec.input)), self.spec.charset, lower=lower)

    def recognise_all(self, items: Iterable[Tuple[Key, np.ndarray]], batch_size: int,
                      lower: bool = False) -> Iterator[Tuple[Key, Tuple[str, float]]]:
        """(key, (text, confidence)) per (key, RGB HWC uint8 image), in input order, `batch_size` per `predict`.

        With a ratio-keeping resize and padding, images are batched in order of their resized width (within
        windows of SORT_WINDOW_BATCHES batches) so each batch holds similar widths. Every runtime here takes
        the full padded width (MindOCR pads to input.width, and trimming would change the outputs), so the
        results are those of unsorted batches."""
        window: List[Tuple[Key, np.ndarray]] = []
        for item in items:
            window.append(item)
            if len(window) == batch_size * SORT_WINDOW_BATCHES:
                yield from self._recognise_window(window, batch_size, lower)
                window = []
        if window:
            yield from self._recognise_window(window, batch_size, lower)

    def _recognise_window(self, window: List[Tuple[Key, np.ndarray]], batch_size: int,
                          lower: bool) -> List[Tuple[Key, Tuple[str, float]]]:
        order = list(range(len(window)))
        if self.spec.input.keep_ratio and self.spec.input.padding:
            order.sort(key=lambda i: content_width(window[i][1], self.spec.input))
        results: List[Optional[Tuple[str, float]]] = [None] * len(window)
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            for i, result in zip(chunk, self.recognise([window[i][1] for i in chunk], lower=lower)):
                results[i] = result
        return [(key, result) for (key, _), result in zip(window, results)]

    def check_batch(self, batch: np.ndarray) -> np.ndarray:
        """The batch as a C-contiguous float32 array; float64 is narrowed, anything else is refused."""
        if not isinstance(batch, np.ndarray):
            raise SpecError(f"{self.name}: expected a numpy float32 array, got {type(batch).__name__}")
        if batch.dtype == np.float64:
            batch = batch.astype(np.float32)
        elif batch.dtype != np.float32:
            raise SpecError(f"{self.name}: expected a float32 batch, got {batch.dtype}; integer pixels must go "
                            f"through rare_portable.data.preprocess, which normalises them")
        self.spec.check_input_shape(batch.shape)
        return np.ascontiguousarray(batch)

    @abstractmethod
    def _predict(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities for a batch `check_batch` accepted (never empty)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.spec.name}>"


def padded_to_built(batch: np.ndarray, built: Iterable[int]) -> np.ndarray:
    """`batch` with zero images appended up to the smallest size in `built` that holds it (as it is where
    none does). Runtimes that build a model per batch size (MindSpore Lite, MindIR: seconds each) run a
    dataset's last, smaller batch on a model they have instead of building another; in eval no sample sees
    another, so the caller keeps the first len(batch) outputs."""
    sizes = [size for size in built if size >= len(batch)]
    if not sizes or min(sizes) == len(batch):
        return batch
    return np.concatenate([batch, np.zeros((min(sizes) - len(batch), *batch.shape[1:]), batch.dtype)])


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

