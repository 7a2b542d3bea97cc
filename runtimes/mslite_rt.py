"""MindSpore Lite on a model from `rare export --format mslite`, through `rare_portable.mslite_bridge`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from rare_portable.artifact import read_lite_spec
from rare_portable.mslite_bridge import LiteBridge
from rare_portable.nets import BackendUnavailable
from rare_portable.recognizer import padded_to_built
from rare_portable.spec import ModelSpec

from .base import Runtime


class MindSporeLiteRuntime(Runtime):
    name = "mslite"

    def __init__(self, spec: Optional[ModelSpec], weights, device: str = "cpu", threads: int = 2):
        """`weights` is the Lite model; its spec is the JSON sidecar the exporter wrote beside it.
        The PyPI Lite 2.0 wheel is a CPU build."""
        if device.lower() != "cpu":
            raise BackendUnavailable(f"mslite (PyPI's CPU build of Lite 2.0) cannot use device {device!r}")
        path = Path(weights)
        super().__init__(read_lite_spec(path, expected=spec))
        self.bridge = LiteBridge()
        self.bridge.load(path, threads)
        self.built = {1}  # batch sizes the worker has a model for (it builds 1 on load)

    def _predict(self, batch: np.ndarray) -> np.ndarray:
        x = padded_to_built(batch, self.built)
        self.built.add(len(x))
        return self.bridge.predict(x)[:len(batch)]
