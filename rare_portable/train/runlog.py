"""What a run tells and records as it goes: messages (console and train.log), one epoch's running figures, and the
rows of steps.csv and epochs.csv with curves.png (curves.py writes the files)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..labels import LabelStats
from .checkpoint import LoopState
from .curves import STEP_FIELDS, CsvLog, epoch_fields, plot_curves
from .distributed import Cluster
from .settings import TrainSettings

if TYPE_CHECKING:
    from .loop import Trainer


def opening_lines(trainer: "Trainer") -> Iterator[str]:
    """What a run says before its first step, line by line as it finds out: what trains on what and how, the data
    left out or skipped, the options on, and where a resumed run goes on."""
    t, s, plan = trainer, trainer.settings, trainer.plan
    params = sum(int(np.prod(p.shape)) for p in t.network.trainable_params())
    yield (f"training {t.spec.name} ({params:,} trainable parameters) on "
           f"{len(t.trainset):,} samples from {len(t.trainset.names)} dataset(s), "
           f"batch {s.batch_size} x {t.cluster.size} process(es), {plan.steps_per_epoch} steps/epoch, "
           f"{s.schedule.num_epochs} epochs; {s.optimizer.name} {s.schedule.name} lr {s.schedule.lr}, "
           f"clip {s.clip_norm or 'off'}, loss scale {s.loss_scale.kind} {s.loss_scale.loss_scale:g}, "
           f"amp {t.amp_level}, {'graph' if s.graph_mode else 'pynative'} mode")
    if t.trainset.too_long_filtered:
        yield (f"train.dataset.filter_max_len: {t.trainset.too_long_filtered} samples with labels longer "
               f"than {t.spec.head.batch_max_length} characters left out")
    if t.validator:
        opened = [(eval_set.name, eval_set.open()) for eval_set in t.validator.sets]
        yield "validating on " + ", ".join(f"{name} ({len(samples)})" for name, samples in opened)
        yield from (f"validation {name}: {samples.skipped.summary()}" for name, samples in opened
                    if samples.skipped.total)
    yield from option_lines(s, plan.curriculum_steps)
    if t.resume_path is not None:
        yield (f"resuming from {t.resume_path}: epoch {t.state.epoch + 1}, step "
               f"{t.state.step_in_epoch} of {plan.steps_per_epoch} (global step {t.state.global_step})")


def option_lines(s: TrainSettings, curriculum_steps: int) -> List[str]:
    """One line per training option that is on (auxiliary losses, label smoothing, augmentation, curriculum)."""
    lines = []
    if s.aux_ctc_weight:
        lines.append(f"auxiliary CTC loss on the encoder, weight {s.aux_ctc_weight:g} (training only; the logged "
                     f"loss is the attention loss)")
    if s.attention_warmup_steps:
        lines.append(f"the first {s.attention_warmup_steps} steps train through the auxiliary CTC loss alone "
                     f"(train.attention_warmup_steps)")
    if s.guided_attention_weight:
        lines.append(f"guided attention: a left-to-right attention prior, weight {s.guided_attention_weight:g} "
                     f"(training only)")
    if s.uniform_alignment_weight:
        lines.append(f"uniform alignment: each encoder column labelled with the character at its place in the word, "
                     f"weight {s.uniform_alignment_weight:g} (training only)")
    if s.freeze_bn_stats:
        lines.append("batch-norm statistics frozen: every layer normalises with the loaded statistics and keeps them "
                     "(train.freeze_bn_stats)")
    if s.label_smoothing:
        lines.append(f"label smoothing {s.label_smoothing:g} in the objective (the logged loss is not smoothed)")
    aug = s.train_data.augmentation
    if aug is not None:
        lines.append(f"augmentation: SVTRRecAug (aug_type {aug.aug_type}; geometry {aug.geometry_p:g}, "
                     f"deterioration {aug.deterioration_p:g}, colour jitter {aug.colorjitter_p:g}"
                     + (f", edges padded {aug.pad_p:g} up to {aug.pad_margin:g} x height" if aug.pad_p else "") + ")")
    if s.curriculum:
        lines.append(f"curriculum: labels up to {s.curriculum.start_max_len} characters at first, all lengths after "
                     f"{curriculum_steps} steps")
    return lines


class RunLog:
    """Messages to the console (rank 0 only) and to output_dir/train.log; kept until the folder may be written."""

    def __init__(self, cluster: Cluster, echo: Callable[[str], None]):
        self.enabled = cluster.is_main
        self.echo = echo
        self.path: Optional[Path] = None
        self.pending: List[str] = []

    def attach(self, path: Path, append: bool) -> None:
        if not self.enabled:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        with open(path, "a" if append else "w", encoding="utf-8") as f:
            f.writelines(line + "\n" for line in self.pending)
        self.pending = []

    def __call__(self, message: str) -> None:
        if not self.enabled:
            return
        self.echo(message)
        stamped = time.strftime("%Y-%m-%d %H:%M:%S ") + message
        if self.path is None:
            self.pending.append(stamped)
        else:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write(stamped + "\n")


@dataclass
class EpochMeter:
    """One epoch's running figures: finite losses, images (of all ranks) and labels, for the epoch and since the
    last steps.csv row (the interval)."""

    label_stats: LabelStats
    world_size: int
    started: float = field(default_factory=time.monotonic)
    images: int = 0
    losses: List[float] = field(default_factory=list)
    interval_losses: List[float] = field(default_factory=list)
    interval_images: int = 0
    interval_started: float = field(default_factory=time.monotonic)

    def add(self, loss: float, finite: bool, images: int, labels: LabelStats) -> None:
        if finite:
            self.losses.append(loss)
            self.interval_losses.append(loss)
        self.label_stats.total += labels.total
        self.label_stats.counts.update(labels.counts)
        self.images += images * self.world_size
        self.interval_images += images * self.world_size

    def recent_loss(self) -> float:
        return np.mean(self.interval_losses) if self.interval_losses else float("nan")

    def images_per_second(self) -> float:
        return self.images / max(time.monotonic() - self.started, 1e-9)

    def seconds(self) -> float:
        return time.monotonic() - self.started

    def new_interval(self) -> None:
        self.interval_losses, self.interval_images, self.interval_started = [], 0, time.monotonic()


class RunRecords:
    """steps.csv, epochs.csv and curves.png in the output folder; only rank 0 calls these."""

    def __init__(self, out: Path, validation_names: Sequence[str]):
        self.out = out
        self.steps = CsvLog(out / "steps.csv", STEP_FIELDS)
        self.epochs = CsvLog(out / "epochs.csv", epoch_fields(validation_names))

    def start(self, keep_until_step: Optional[int]) -> None:
        """New files, or (resuming) the rows up to the checkpoint's step."""
        self.steps.start(keep_until_step)
        self.epochs.start(keep_until_step)

    def plot(self) -> None:
        plot_curves(self.steps.read(), self.epochs.read(), self.out / "curves.png")


def step_row(state: LoopState, losses: List[float], lr: float, loss_scale: float, images: int, seconds: float,
             elapsed: float) -> Dict:
    """A steps.csv row for the interval that ends at this step."""
    return {
        "global_step": state.global_step, "epoch": state.epoch + 1,
        "loss": float(np.mean(losses)) if losses else None, "lr": lr,
        "loss_scale": loss_scale, "nonfinite_steps": state.nonfinite_steps,
        "images_per_second": images / seconds if seconds > 0 else None, "elapsed_s": elapsed,
    }


def epoch_record(state: LoopState, num_epochs: int, losses: List[float], lr: float, images: int, seconds: float,
                 validation: Optional[Dict], improved: bool) -> Tuple[Dict, str]:
    """The epochs.csv row and the log line of the epoch `state` has just completed."""
    row = {"epoch": state.epoch, "global_step": state.global_step,
           "loss": float(np.mean(losses)) if losses else None,
           "lr": lr, "nonfinite_steps": state.nonfinite_steps,
           "images_per_second": images / seconds if seconds > 0 else None, "epoch_seconds": seconds}
    summary = (f"epoch {state.epoch}/{num_epochs}: loss {row['loss'] or float('nan'):.4f}, "
               f"{row['images_per_second'] or 0:.1f} img/s, {state.nonfinite_steps} non-finite steps skipped")
    if validation is None:
        return row, summary
    row.update(val_acc=validation["acc"], val_norm_edit_distance=validation["norm_edit_distance"])
    for name, result in validation["datasets"].items():
        row[f"acc:{name}"], row[f"ned:{name}"] = result["acc"], result["norm_edit_distance"]
    summary += (f"; val acc {validation['acc']:.4f}, NED {validation['norm_edit_distance']:.4f}"
                f"{' (best, saved best.ckpt)' if improved else f' (best {state.best_acc:.4f})'}")
    return row, summary
