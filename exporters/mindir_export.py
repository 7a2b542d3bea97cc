"""MindIR from the MindSpore network (`mindspore.export`), for MindSpore and the Ascend 310 converter.

Static `1x3xHxW` is what MindOCR ships; `dynamic_batch` writes a `None` batch axis. The input's name
in the file (`args0` for a fresh export) is recorded, since the Ascend converter config needs it.

The BiLSTM is exported as plain operators (MatMul, Sigmoid, Mul: `ms_rare.lstm_steps`) unless
`lstm_kernel=True`: MindSpore's LSTM kernel exports on CPU/GPU as `_DynamicLSTMCPUGPU`, which the Ascend
converter rejects ("Can't find OpAdapter for LSTM"), so only the plain file converts for Ascend from any
host. `rare_portable.artifact.primitives` lists what a file holds, for `rare convert` to check before converting.

The spec (charset included) and the export record live inside the file, in MindIR's `user_info` map (set
through `mindspore.export(custom_func=...)`), so a MindIR copied alone still runs; the `<file>.json` sidecar is
written too, for tools that do not parse MindIR, and read when a file has no record of its own.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from rare_portable import __version__
from rare_portable.artifact import (USER_INFO_KEY, ArtifactError, input_names, output_folder, parse_mindir, primitives,
                                    write_sidecar)
from rare_portable.nets import rebuild
from rare_portable.nets.common import Flavour
from rare_portable.spec import ModelSpec, spec_to_dict

from .check import require_faithful


@dataclass(frozen=True)
class MindirExport:
    path: Path
    input_name: str
    batch: Optional[int]  # None: dynamic
    max_abs_diff: float  # probabilities, the loaded MindIR vs the MindSpore network
    lstm: str  # "plain" (operators) or "kernel" (MindSpore's LSTM)


def set_user_info(model, key: str, value: str) -> None:
    for entry in model.user_info:
        if entry.key == key:
            entry.value = value
            return
    entry = model.user_info.add()
    entry.key, entry.value = key, value


def compare_with_network(net, path: Path, batch: int) -> float:
    """Max |diff| of probabilities: the MindIR at `path`, loaded back, vs the MindSpore network."""
    import mindspore as ms

    x = ms.Tensor(net.spec.input.example_batch(batch))
    return float(np.abs(ms.nn.GraphCell(ms.load(str(path)))(x).asnumpy() - net(x).asnumpy()).max())


def export_mindir(net, output, batch: Optional[int] = 1, lstm_kernel: bool = False) -> MindirExport:
    """`batch=None` exports a dynamic batch axis; the artifact is checked by loading it back against `net`
    before it is put at `output` (exporters/check.py)."""
    import mindspore as ms

    spec: ModelSpec = net.spec
    i = spec.input
    output = Path(output)
    if output.suffix != ".mindir":
        raise ArtifactError(f"{output}: MindIR files end in .mindir (mindspore.export appends it)")
    output_folder(output)
    net.set_train(False)
    exported = rebuild(net, Flavour(lstm_kernel=lstm_kernel))  # a copy: the caller's network is untouched
    shape = [batch, i.channels, i.height, i.width]
    example = ms.Tensor(shape=shape, dtype=ms.float32) if batch is None else ms.Tensor(np.zeros(shape, np.float32))
    lstm = "kernel" if lstm_kernel else "plain"
    record = {"spec": spec_to_dict(spec), "rare_portable": __version__, "format": "mindir", "batch": batch,
              "device": ms.get_context("device_target").lower(), "mindspore": ms.__version__, "lstm": lstm}

    def store_record(model) -> None:
        set_user_info(model, USER_INFO_KEY, json.dumps(record, ensure_ascii=False))

    with tempfile.TemporaryDirectory(prefix="rare-mindir-", dir=output.parent) as tmp:
        stem = os.path.join(tmp, "model")
        ms.export(exported, example, file_name=stem, file_format="MINDIR", custom_func=store_record)
        diff = compare_with_network(net, Path(stem + ".mindir"), 2 if batch is None else batch)
        require_faithful(output, "MindSpore loading the MindIR", "the MindSpore network", diff)
        os.replace(stem + ".mindir", output)
    model = parse_mindir(output)
    names = input_names(model)
    extra = {k: v for k, v in record.items() if k not in ("spec", "rare_portable")}
    write_sidecar(output, spec, input_name=names[0], primitives=primitives(model), **extra)
    return MindirExport(path=output, input_name=names[0], batch=batch, max_abs_diff=diff, lstm=lstm)
