"""Which device MindSpore runs on: a process-wide setting that the MindSpore runtimes and the MindIR exporter
both make, from the one spelling the CLI takes (`cpu`, `gpu`/`cuda`, `ascend`/`npu`, optionally `:index`)."""
from __future__ import annotations

from .nets import BackendUnavailable

MINDSPORE_TARGETS = {"cpu": "CPU", "gpu": "GPU", "cuda": "GPU", "ascend": "Ascend", "npu": "Ascend"}


def set_mindspore_device(device: str) -> None:
    """Point MindSpore at `device`; one it does not know or cannot use is a BackendUnavailable naming it."""
    import mindspore as ms

    kind, _, index = device.lower().partition(":")
    if kind not in MINDSPORE_TARGETS or (index and not index.isdigit()):
        raise BackendUnavailable(f"mindspore does not know device {device!r}; use cpu, gpu[:N] or ascend[:N]")
    target = MINDSPORE_TARGETS[kind]
    try:
        if index:
            ms.set_device(target, int(index))
        elif ms.get_context("device_target") != target:
            ms.set_device(target)
    except RuntimeError as e:
        first_line = str(e).strip().splitlines()[0]
        raise BackendUnavailable(f"mindspore cannot use device {device!r}: {first_line}") from None
