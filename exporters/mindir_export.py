"""MindIR from the MindSpore network (`mindspore.export`), for MindSpore and the Ascend 310 converter.

Static `1x3xHxW` is what MindOCR ships; `dynamic_batch` writes a `None` batch axis. The input's name
in the file (`args0` for a fresh export) is recorded, since the Ascend converter config needs it.

The BiLSTM is exported as plain operators (MatMul, Sigmoid, Mul: `ms_rare.lstm_steps`) unless
`lstm_kernel=True`: MindSpore's LSTM kernel exports on CPU/GPU as `_DynamicLSTMCPUGPU`, which the Ascend
converter rejects ("Can't find OpAdapter for LSTM"), so only the plain file converts for Ascend from any
host. `primitives()` lists what a file holds, for `rare convert` to check before converting.

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
from typing import Dict, Optional

import numpy as np

from rare_portable import __version__
from rare_portable.spec import ModelSpec, spec_from_dict, spec_to_dict

from .artifact import ArtifactError, check_same_spec, output_folder, read_sidecar, sidecar_spec, write_sidecar


@dataclass(frozen=True)
class MindirExport:
    path: Path
    input_name: str
    batch: Optional[int]  # None: dynamic
    max_abs_diff: float  # probabilities, the loaded MindIR vs the MindSpore network
    lstm: str  # "plain" (operators) or "kernel" (MindSpore's LSTM)


USER_INFO_KEY = "rare_portable"


def parse_mindir(path: Path):
    """The file's ModelProto (MindSpore's own protobuf schema)."""
    from mindspore.train import mind_ir_pb2

    model = mind_ir_pb2.ModelProto()
    try:
        model.ParseFromString(Path(path).read_bytes())
    except Exception as e:
        raise ArtifactError(f"{path}: not a MindIR file ({type(e).__name__}: {e})") from None
    return model


def input_names(model):
    """Graph input names as stored in the file."""
    return [i.name for i in model.graph.input]


def user_info(model) -> Dict[str, str]:
    """The `user_info` map; under protobuf's pure-Python backend (which MindSpore needs) MindSpore's generated
    module exposes it as repeated key/value entries."""
    return {entry.key: entry.value for entry in model.user_info}


def set_user_info(model, key: str, value: str) -> None:
    for entry in model.user_info:
        if entry.key == key:
            entry.value = value
            return
    entry = model.user_info.add()
    entry.key, entry.value = key, value


def embedded_record(model) -> Optional[dict]:
    """The export record stored in the file's user_info, or None (a MindIR not exported by us)."""
    text = user_info(model).get(USER_INFO_KEY)
    return json.loads(text) if text else None


# Graph plumbing every MindIR has; the converter resolves it, it is not an operator to support.
STRUCTURAL = {"Constant", "Load", "TupleGetItem", "MakeTuple", "make_list", "make_tuple", "UpdateState", "Depend",
              "Return", "return"}


def primitives(model) -> Dict[str, int]:
    """{primitive name: nodes} of a parsed MindIR, graph plumbing left out. Nodes store `REF::Name:id`."""
    counts: Dict[str, int] = {}
    for graph in (model.graph, *model.functions):
        for node in graph.node:
            name = node.op_type.split("::", 1)[-1].rsplit(":", 1)[0]
            if name not in STRUCTURAL:
                counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def export_copy(net, lstm_kernel: bool):
    """The network to export: a copy of `net` with the chosen LSTM, so the caller's network is untouched."""
    from rare_portable import get_state
    from rare_portable.nets import build_network
    from rare_portable.weights import framework_module

    copy = build_network(net.spec, "mindspore")
    framework_module("mindspore").set_state(copy, get_state(net))  # every tensor: no initialisation needed
    copy.set_train(False)
    copy.neck.use_lstm_kernel = lstm_kernel
    return copy


def export_mindir(net, output, batch: Optional[int] = 1, lstm_kernel: bool = False) -> MindirExport:
    """`batch=None` exports a dynamic batch axis; the artifact is checked by loading it back against `net`."""
    import mindspore as ms

    spec: ModelSpec = net.spec
    i = spec.input
    output = Path(output)
    if output.suffix != ".mindir":
        raise ArtifactError(f"{output}: MindIR files end in .mindir (mindspore.export appends it)")
    output_folder(output)
    net.set_train(False)
    exported = export_copy(net, lstm_kernel)
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
        os.replace(stem + ".mindir", output)
    model = parse_mindir(output)
    names = input_names(model)
    extra = {k: v for k, v in record.items() if k not in ("spec", "rare_portable")}
    write_sidecar(output, spec, input_name=names[0], primitives=primitives(model), **extra)
    check_batch = 2 if batch is None else batch
    x = np.random.default_rng(0).uniform(-1, 1, (check_batch, i.channels, i.height, i.width)).astype(np.float32)
    got = ms.nn.GraphCell(ms.load(str(output)))(ms.Tensor(x)).asnumpy()
    diff = float(np.abs(got - net(ms.Tensor(x)).asnumpy()).max())
    return MindirExport(path=output, input_name=names[0], batch=batch, max_abs_diff=diff, lstm=lstm)


def read_mindir_info(path, expected: Optional[ModelSpec] = None):
    """(spec, record) of a MindIR, parsed once: the record stored in the file itself, else its sidecar (files
    from other exporters), with the file's `input_name` and `primitives`. `expected` is checked against the
    stored spec."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"{path}: no such file")
    model = parse_mindir(path)
    record = embedded_record(model)
    if record is None:
        spec, record = sidecar_spec(path, expected), read_sidecar(path)
    else:
        spec = spec_from_dict(record["spec"])
        if expected is not None:
            check_same_spec(path, spec, expected)
    return spec, {**record, "input_name": input_names(model)[0], "primitives": primitives(model)}
