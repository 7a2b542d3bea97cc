"""The gate every exporter ends with: the artifact, run by its own runtime on an example batch, against the
network it came from, held to the fp32 runtime tolerance before it is put at the output path. Greedy ids
are reported, not gated: within the tolerance, an id can only differ at a near-tie on noise input."""
from __future__ import annotations

from pathlib import Path

from rare_portable.artifact import ArtifactError
from rare_portable.tolerances import FP32_RUNTIME


class ExportError(ArtifactError):
    """An export that cannot be made as asked; the message says what to change."""


def require_faithful(output: Path, runtime: str, reference: str, max_abs_diff: float) -> None:
    """Raise ExportError (nothing is written to `output`) when the artifact is not fit for use."""
    if max_abs_diff <= FP32_RUNTIME.bound:  # NaN fails too
        return
    raise ExportError(f"{output}: {runtime} running the exported model gives probabilities {max_abs_diff:.2e} "
                      f"from {reference}'s, beyond the {FP32_RUNTIME.name} bound {FP32_RUNTIME.bound:g}; not fit "
                      f"for use, so nothing was written (run `rare doctor`, and report it with its output)")
