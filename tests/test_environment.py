"""The pins that keep this project fast and correct, checked against what is installed."""
import re
from pathlib import Path

import numpy as np

CONSTRAINTS = (Path(__file__).resolve().parent.parent / "constraints.txt").read_text()
# MindSpore versions whose CPU Conv2d was measured at full speed here (2.9/2.10: ~200x slower,
# oneDNN reference fallback). Moving the pin means re-running benchmarks/conv_regression.py first.
MINDSPORE_MEASURED_FAST = {"2.8.0"}


def _pin(name):
    match = re.search(rf"^{name}==(\S+)", CONSTRAINTS, re.M)
    assert match, f"constraints.txt must pin {name}=="
    return match.group(1)


def test_mindspore_pin_is_a_measured_fast_release():
    import mindspore
    assert _pin("mindspore") in MINDSPORE_MEASURED_FAST
    assert mindspore.__version__ == _pin("mindspore")


def test_torch_is_the_local_cpu_wheel():
    import torch
    assert _pin("torch") == "2.13.0"
    assert torch.__version__.split("+")[0] == "2.13.0" and not torch.cuda.is_available()


def test_numpy_is_1x_for_mindspore():
    assert re.search(r"^numpy<2", CONSTRAINTS, re.M)
    assert int(np.__version__.split(".")[0]) == 1
