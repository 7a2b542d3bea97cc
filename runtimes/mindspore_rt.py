"""MindSpore execution of the RARE network `rare_portable` builds, op by op (PyNative) or compiled (graph).

MindSpore's execution mode is a process-wide context setting. The runtime switches it only around its own
call and puts the caller's mode back, so a graph runtime and a PyNative one (or a test) can share a process;
MindSpore keeps the compiled graph across switches, so only the first batch of each shape compiles.
"""
from __future__ import annotations

import numpy as np
import mindspore as ms

from rare_portable.api import build_model
from rare_portable.devices import set_mindspore_device
from rare_portable.spec import ModelSpec

from .base import Runtime

MODES = {"pynative": ms.PYNATIVE_MODE, "graph": ms.GRAPH_MODE}
NAMES = {"pynative": "mindspore", "graph": "mindspore-graph"}


class MindSporeRuntime(Runtime):
    def __init__(self, spec: ModelSpec, weights=None, device: str = "cpu", mode: str = "pynative"):
        super().__init__(spec)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.name = NAMES[mode]
        self.mode = mode
        set_mindspore_device(device)
        self.net = build_model(spec, "mindspore", weights=weights)

    def _predict(self, batch: np.ndarray) -> np.ndarray:
        caller_mode = ms.get_context("mode")
        ms.set_context(mode=MODES[self.mode])
        try:
            return self.net(ms.Tensor(batch)).asnumpy()
        finally:
            ms.set_context(mode=caller_mode)
