"""Ascend 310 / 310P: the `converter_lite` config and command that turn our MindIR into an Ascend model.

MindOCR's known issue: a MindIR exported on CPU/GPU with MindSpore's LSTM kernel (`_DynamicLSTMCPUGPU`) is
rejected by the Ascend conversion ("Can't find OpAdapter for LSTM"), and MindOCR's only way round it is to
export on an Ascend device. `rare export --format mindir` writes the BiLSTM as plain operators instead, so
the file converts from any host. Before converting, every primitive in the file is checked against the
operators MindSpore Lite documents for Ascend (`ascend310_ops.txt`, with its source); a file with others
is refused, naming them.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from rare_portable.artifact import ArtifactError

PRECISION_MODES = ("enforce_fp32", "preferred_fp32", "enforce_fp16", "enforce_origin", "allow_fp32_to_fp16")
SUPPORTED_OPS_FILE = Path(__file__).with_name("ascend310_ops.txt")
# MindSpore primitive (as a MindIR stores it) -> the Lite schema name the operator list uses, where it is not
# the same name or the name + "Fusion". MatMulExt is `mindspore.ops.matmul` since 2.3: a MatMul.
LITE_NAMES = {"ReLU": "Activation", "ReLU6": "Activation", "Sigmoid": "Activation", "Tanh": "Activation",
              "GeLU": "Activation", "HSwish": "Activation", "Muls": "MulFusion", "BatchMatMul": "MatMulFusion",
              "MatMulExt": "MatMulFusion", "Dense": "MatMulFusion", "Argmax": "ArgmaxFusion"}


@lru_cache(maxsize=1)
def supported_ops() -> Tuple[str, frozenset]:
    """(version line, names) of the shipped operator list."""
    version, names = "", set()
    for line in SUPPORTED_OPS_FILE.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("version:"):
            version = line.split(":", 1)[1].strip()
        elif line:
            names.add(line)
    return version, frozenset(names)


def unsupported_primitives(primitives: Dict[str, int]) -> List[str]:
    """The primitives of a MindIR that the Ascend operator list does not cover."""
    _, names = supported_ops()
    return [p for p in primitives
            if not {p, p + "Fusion", LITE_NAMES.get(p, p)} & names]


@dataclass(frozen=True)
class AscendConversion:
    config: Path
    command: List[str]
    output: Path
    ran: bool


def input_shape_name(stored_name: str) -> str:
    """The name `converter_lite` matches in `input_shape`: the graph parameter's own name (`args0` for
    MindOCR's `construct(*args)`, `images` for ours), without the graph prefix MindIR stores."""
    return stored_name.rsplit(":", 1)[-1]


def convert_ascend310(mindir, output_dir, precision_mode: str = "enforce_fp32", run: Optional[bool] = None,
                      batch: int = 1, batch_sizes: Sequence[int] = ()) -> AscendConversion:
    """Write `config.txt` and the converter command; run it when `converter_lite` is on PATH (or `run`).
    `batch_sizes` (a MindIR exported with a dynamic batch) writes Ascend's `dynamic_dims` instead of one batch."""
    from rare_portable.artifact import read_mindir_info

    mindir = Path(mindir)
    if precision_mode not in PRECISION_MODES:
        raise ArtifactError(f"precision_mode {precision_mode!r}: choose one of {', '.join(PRECISION_MODES)}")
    stored_spec, info = read_mindir_info(mindir)
    if info.get("format") != "mindir":
        raise ArtifactError(f"{mindir}: not a MindIR from `rare export --format mindir`")
    stored_batch = info.get("batch")
    if batch_sizes and stored_batch is not None:
        raise ArtifactError(f"{mindir} was exported for batch {stored_batch}: re-export it with --dynamic-batch for "
                            f"--batch-sizes")
    if stored_batch is not None and stored_batch != batch:
        raise ArtifactError(f"{mindir} was exported for batch {stored_batch}; convert with --batch {stored_batch}")
    unsupported = unsupported_primitives(info["primitives"])
    if unsupported:
        version, _ = supported_ops()
        fix = ("re-export it without --lstm-kernel (the LSTM as plain operators)" if "LSTM" in unsupported
               else "export a network without them")
        raise ArtifactError(f"{mindir}: MindSpore Lite's Ascend converter ({version}, {SUPPORTED_OPS_FILE.name}) does "
                            f"not support {', '.join(unsupported)}; {fix}")
    spec = stored_spec.input
    name = input_shape_name(info["input_name"])
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    config = output_dir / f"{mindir.stem}_ascend310_config.txt"
    shape = f"{spec.channels},{spec.height},{spec.width}"
    batch_lines = (f"input_shape={name}:[-1,{shape}]\ndynamic_dims={','.join(f'[{b}]' for b in batch_sizes)}\n"
                   if batch_sizes else f"input_shape={name}:[{batch},{shape}]\n")
    config.write_text("[ascend_context]\ninput_format=NCHW\n" + batch_lines + f"precision_mode={precision_mode}\n")
    output = output_dir / f"{mindir.stem}_ascend310"
    command = ["converter_lite", "--fmk=MINDIR", "--saveType=MINDIR", "--optimize=ascend_oriented",
               f"--modelFile={mindir}", f"--outputFile={output}", f"--configFile={config}"]
    available = shutil.which("converter_lite") is not None
    if run and not available:
        raise ArtifactError("converter_lite is not on PATH: install MindSpore Lite's converter for Ascend "
                            "(CANN + mindspore-lite cloud-inference package) and run the printed command")
    ran = False
    if available if run is None else run:
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise ArtifactError(f"converter_lite failed ({result.returncode}): {result.stdout[-1500:]}{result.stderr[-1500:]}")
        ran = True
    return AscendConversion(config=config, command=command, output=output.with_suffix(".mindir"), ran=ran)
