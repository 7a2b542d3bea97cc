"""PyTorch eager execution of the RARE network `rare_portable` builds."""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from rare_portable.api import build_model
from rare_portable.nets import BackendUnavailable
from rare_portable.spec import ModelSpec

from .base import Runtime


class TorchRuntime(Runtime):
    name = "torch"

    def __init__(self, spec: ModelSpec, weights=None, device: str = "cpu", threads: Optional[int] = None):
        """`threads` sets torch's intra-op thread count, which is process-wide in PyTorch."""
        super().__init__(spec)
        if threads is not None:
            if threads < 1:
                raise ValueError(f"threads must be at least 1, got {threads}")
            torch.set_num_threads(threads)
        self.device = _torch_device(device)
        self.net = build_model(spec, "torch", weights=weights).to(self.device)

    def _predict(self, batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.net(torch.from_numpy(batch).to(self.device)).cpu().numpy()


def _torch_device(device: str) -> torch.device:
    """`gpu` is accepted as `cuda` so one --device value works for every backend."""
    name = "cuda" + device[3:] if device.lower().startswith("gpu") else device
    try:
        parsed = torch.device(name)
    except RuntimeError:
        raise BackendUnavailable(f"torch does not know device {device!r}; use cpu, cuda or cuda:N") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailable(f"device {device!r}: this torch build sees no CUDA GPU; use --device cpu")
    return parsed
