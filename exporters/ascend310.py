"""Ascend 310 / 310P: the `converter_lite` config and command that turn our MindIR into an Ascend model.

MindOCR's known issue applies: a MindIR exported on CPU/GPU carries MindSpore's CPU/GPU LSTM kernel
(`_DynamicLSTMCPUGPU`), which the Ascend conversion rejects ("Can't find OpAdapter for LSTM"). The
supported path is to export the MindIR on an Ascend training device (`rare export --format mindir
--device ascend`), where nn.LSTM lowers to Ascend's DynamicRNN, then convert it with this config.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from .artifact import ArtifactError, read_sidecar

PRECISION_MODES = ("enforce_fp32", "preferred_fp32", "enforce_fp16", "enforce_origin", "allow_fp32_to_fp16")
LSTM_WARNING = ("MindIR exported on {mindspore_device} carries the CPU/GPU LSTM kernel, which Ascend conversion "
                "rejects (\"Can't find OpAdapter for LSTM\", MindOCR FAQ Q7): export the MindIR on an Ascend "
                "device (`rare export --format mindir --device ascend`) and convert that file")


@dataclass(frozen=True)
class AscendConversion:
    config: Path
    command: List[str]
    output: Path
    ran: bool
    warning: Optional[str]


def input_shape_name(stored_name: str) -> str:
    """The name `converter_lite` matches in `input_shape`: the graph parameter's own name (`args0` for
    MindOCR's `construct(*args)`, `images` for ours), without the graph prefix MindIR stores."""
    return stored_name.rsplit(":", 1)[-1]


def convert_ascend310(mindir, output_dir, precision_mode: str = "enforce_fp32", run: Optional[bool] = None,
                      batch: int = 1) -> AscendConversion:
    """Write `config.txt` and the converter command; run it when `converter_lite` is on PATH (or `run`)."""
    mindir = Path(mindir)
    if precision_mode not in PRECISION_MODES:
        raise ArtifactError(f"precision_mode {precision_mode!r}: choose one of {', '.join(PRECISION_MODES)}")
    info = read_sidecar(mindir)
    if info.get("format") != "mindir":
        raise ArtifactError(f"{mindir}: not a MindIR from `rare export --format mindir`")
    stored_batch = info.get("batch")
    if stored_batch is not None and stored_batch != batch:
        raise ArtifactError(f"{mindir} was exported for batch {stored_batch}; convert with --batch {stored_batch}")
    spec = info["spec"]["input"]
    name = input_shape_name(info["input_name"])
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    config = output_dir / f"{mindir.stem}_ascend310_config.txt"
    config.write_text(
        "[ascend_context]\n"
        "input_format=NCHW\n"
        f"input_shape={name}:[{batch},{spec['channels']},{spec['height']},{spec['width']}]\n"
        f"precision_mode={precision_mode}\n"
    )
    output = output_dir / f"{mindir.stem}_ascend310"
    command = ["converter_lite", "--fmk=MINDIR", "--saveType=MINDIR", "--optimize=ascend_oriented",
               f"--modelFile={mindir}", f"--outputFile={output}", f"--configFile={config}"]
    device = info.get("device", "cpu")
    warning = None if device == "ascend" else LSTM_WARNING.format(mindspore_device=device)
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
    return AscendConversion(config=config, command=command, output=output.with_suffix(".mindir"), ran=ran,
                            warning=warning)
