"""MindSpore running an exported MindIR (`mindspore.load` + `nn.GraphCell`).

One loaded graph per batch size: MindSpore 2.8 running a dynamic-batch MindIR at a second batch size
returned the first call's batch size and wrong values (measured, also with a new GraphCell over the same
loaded graph), while a graph loaded anew is exact. Loading one costs seconds, so a batch smaller than one
already loaded (or than a static graph's) runs on it, padded."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

import mindspore as ms
import numpy as np

from rare_portable.artifact import ArtifactError, read_mindir_info
from rare_portable.recognizer import padded_to_built
from rare_portable.spec import ModelSpec, SpecError

from .base import Runtime


class MindirRuntime(Runtime):
    name = "mindir"

    def __init__(self, spec: Optional[ModelSpec], weights, device: str = "cpu"):
        from rare_portable.devices import set_mindspore_device

        set_mindspore_device(device)
        self.path = Path(weights)
        stored, info = read_mindir_info(self.path, expected=spec)
        super().__init__(stored)
        self.batch = info.get("batch")
        self.cells: Dict[int, ms.nn.GraphCell] = {}
        self._cell(self.batch or 1)  # an unreadable file fails here, on load

    def _predict(self, batch: np.ndarray) -> np.ndarray:
        n = len(batch)
        if self.batch is not None and n > self.batch:
            raise SpecError(f"{self.path} was exported for batch {self.batch}, got {n}; re-export with "
                            f"--dynamic-batch or --batch {n}")
        x = padded_to_built(batch, self.cells)  # a static graph, or one already loaded for a larger size
        return self._cell(len(x))(ms.Tensor(x)).asnumpy()[:n]

    def _cell(self, batch_size: int) -> ms.nn.GraphCell:
        if batch_size not in self.cells:
            try:
                self.cells[batch_size] = ms.nn.GraphCell(ms.load(str(self.path)))
            except (RuntimeError, ValueError) as e:
                raise ArtifactError(f"{self.path}: MindSpore cannot load it ({str(e).strip().splitlines()[0]})") from None
        return self.cells[batch_size]
