"""The run's record in its output folder: `steps.csv` (every log_interval steps), `epochs.csv` (every epoch,
with validation per dataset), `train.log` (every message) and `curves.png` (loss, lr, validation).

Rows are appended and flushed as they come, so an interrupted run keeps them; a resumed run first drops
the rows written after the checkpoint it resumes from, so the files read as one uninterrupted run.
"""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..files import temp_beside

STEP_FIELDS = ("global_step", "epoch", "loss", "lr", "loss_scale", "nonfinite_steps", "images_per_second", "elapsed_s")
EPOCH_FIELDS = ("epoch", "global_step", "loss", "lr", "nonfinite_steps", "images_per_second", "epoch_seconds",
                "val_acc", "val_norm_edit_distance")


def epoch_fields(dataset_names: Sequence[str]) -> List[str]:
    return list(EPOCH_FIELDS) + [f"{kind}:{name}" for name in dataset_names for kind in ("acc", "ned")]


class CsvLog:
    def __init__(self, path: Path, fields: Sequence[str]):
        self.path = path
        self.fields = list(fields)

    def start(self, keep_until_step: Optional[int]) -> None:
        """A new file, or (resuming) the rows up to `keep_until_step`, rewritten under the current header."""
        kept = [r for r in self.read() if int(r["global_step"]) <= keep_until_step] if keep_until_step is not None else []
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temp_beside(self.path)
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, self.fields, restval="", extrasaction="ignore")
            writer.writeheader()
            writer.writerows(kept)
        os.replace(tmp, self.path)

    def append(self, row: Dict) -> None:
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            csv.DictWriter(f, self.fields, restval="", extrasaction="ignore").writerow(
                {k: _format(v) for k, v in row.items()})

    def read(self) -> List[Dict[str, str]]:
        if not self.path.is_file():
            return []
        with open(self.path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))


def _format(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


def plot_curves(steps: List[Dict[str, str]], epochs: List[Dict[str, str]], path: Path) -> Path:
    """Loss and learning rate against steps, validation accuracy and NED against epochs; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_lr, ax_val) = plt.subplots(1, 3, figsize=(15, 4))
    x = [int(r["global_step"]) for r in steps]
    ax_loss.plot(x, [float(r["loss"]) if r["loss"] else float("nan") for r in steps])
    ax_loss.set(title="training loss", xlabel="step", ylabel="AttentionLoss")
    ax_lr.plot(x, [float(r["lr"]) for r in steps])
    ax_lr.set(title="learning rate", xlabel="step")
    validated = [r for r in epochs if r.get("val_acc")]
    ax_val.plot([int(r["epoch"]) for r in validated], [float(r["val_acc"]) for r in validated], "o-", label="acc")
    ax_val.plot([int(r["epoch"]) for r in validated], [float(r["val_norm_edit_distance"]) for r in validated], "s-",
                label="NED (MindOCR: 1 - normalised edit distance)")
    ax_val.set(title="validation (mean over datasets)", xlabel="epoch", ylim=(0, 1))
    ax_val.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(path, ".png")
    try:
        fig.savefig(tmp, dpi=80)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)
    return path
