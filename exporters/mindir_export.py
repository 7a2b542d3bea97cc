"""MindIR from the MindSpore network (`mindspore.export`), for MindSpore and the Ascend 310 converter.

Static `1x3xHxW` is what MindOCR ships; `dynamic_batch` writes a `None` batch axis. The input's name
in the file (`args0` for a fresh export) is recorded, since the Ascend converter config needs it.
"""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from rare_portable.spec import ModelSpec

from .artifact import ArtifactError, output_folder, sidecar_spec, write_sidecar


@dataclass(frozen=True)
class MindirExport:
    path: Path
    input_name: str
    batch: Optional[int]  # None: dynamic
    max_abs_diff: float  # probabilities, the loaded MindIR vs the MindSpore network


def mindir_input_names(path: Path):
    """Graph input names as stored in the file (MindSpore's own protobuf schema)."""
    from mindspore.train import mind_ir_pb2

    model = mind_ir_pb2.ModelProto()
    try:
        model.ParseFromString(Path(path).read_bytes())
    except Exception as e:
        raise ArtifactError(f"{path}: not a MindIR file ({type(e).__name__}: {e})") from None
    return [i.name for i in model.graph.input]


def export_mindir(net, output, batch: Optional[int] = 1) -> MindirExport:
    """`batch=None` exports a dynamic batch axis; the artifact is checked by loading it back."""
    import mindspore as ms

    spec: ModelSpec = net.spec
    i = spec.input
    output = Path(output)
    if output.suffix != ".mindir":
        raise ArtifactError(f"{output}: MindIR files end in .mindir (mindspore.export appends it)")
    output_folder(output)
    net.set_train(False)
    shape = [batch, i.channels, i.height, i.width]
    example = ms.Tensor(shape=shape, dtype=ms.float32) if batch is None else ms.Tensor(np.zeros(shape, np.float32))
    with tempfile.TemporaryDirectory(prefix="rare-mindir-", dir=output.parent) as tmp:
        stem = os.path.join(tmp, "model")
        ms.export(net, example, file_name=stem, file_format="MINDIR")
        os.replace(stem + ".mindir", output)
    names = mindir_input_names(output)
    device = ms.get_context("device_target").lower()
    write_sidecar(output, spec, format="mindir", input_name=names[0], batch=batch, device=device,
                  mindspore=ms.__version__)
    check_batch = 2 if batch is None else batch
    x = np.random.default_rng(0).uniform(-1, 1, (check_batch, i.channels, i.height, i.width)).astype(np.float32)
    got = ms.nn.GraphCell(ms.load(str(output)))(ms.Tensor(x)).asnumpy()
    diff = float(np.abs(got - net(ms.Tensor(x)).asnumpy()).max())
    return MindirExport(path=output, input_name=names[0], batch=batch, max_abs_diff=diff)


def read_mindir_info(path, expected: Optional[ModelSpec] = None):
    from .artifact import read_sidecar

    path = Path(path)
    return sidecar_spec(path, expected), read_sidecar(path)
