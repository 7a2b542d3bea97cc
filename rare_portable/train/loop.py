"""`train()`: a RARE network trained on MindSpore from a MindOCR rec config, resumable and interruptible.

Everything that can be wrong with the config, the data, the weights or the checkpoint to resume is checked
in `Trainer.__init__`, before the first step. The loop itself only trains, validates and saves.
"""
from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
from tqdm import tqdm

from ..config import RareConfig
from ..labels import LabelStats
from . import checkpoint as ckpt
from .curves import STEP_FIELDS, CsvLog, epoch_fields, plot_curves
from .data import BatchLoader, BatchPlan, TrainSet, open_sources
from .distributed import Cluster, any_rank, average_statistics, gradient_reducer, start_cluster
from .optim import build_loss_scaler, build_optimizer, lr_schedule
from .settings import TrainError, TrainSettings, read_settings
from .step import NetworkWithLoss, TrainStep, compiled
from .validate import Validator, load_eval_sets

COMPLETED, INTERRUPTED, TIME_LIMIT, NONFINITE = "completed", "interrupted", "time_limit", "nonfinite"
STOPPED_BY_HOOK = "stopped_by_hook"


@dataclass(frozen=True)
class StepInfo:
    """What an `on_step` hook sees after each step."""

    epoch: int  # 0-based
    step_in_epoch: int  # steps done in this epoch, this one included
    global_step: int  # steps done, this one included
    loss: float
    finite: bool
    lr: float


@dataclass
class TrainResult:
    output_dir: Path
    stop_reason: str  # completed, interrupted, time_limit, nonfinite or stopped_by_hook
    message: str
    state: ckpt.LoopState
    last_validation: Optional[Dict]
    images_per_second: float
    world_size: int


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


class StopRequest:
    """Ctrl-C (SIGINT) or SIGTERM asks the loop to finish the current step, save and stop; a second one aborts."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.received: Optional[str] = None
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False

    def _handle(self, signum, frame):
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signal.Signals(signum).name


def train(config: RareConfig, opts: Sequence[str] = (), *, resume: Optional[str] = None,
          weights: Optional[str] = None, force: bool = False, time_limit_s: Optional[float] = None,
          on_step: Optional[Callable[[StepInfo], Optional[bool]]] = None,
          echo: Callable[[str], None] = tqdm.write) -> TrainResult:
    """Train as `config` says; `resume` ("auto" or a train_resume.ckpt) continues a run, `weights` fine-tunes.
    `on_step` sees every step; when it returns True the run saves and stops there, as on Ctrl-C.

    `opts` are the --opt overrides `config` was loaded with (see settings.read_settings)."""
    return Trainer(config, read_settings(config, opts), resume=resume, weights=weights, force=force,
                   time_limit_s=time_limit_s, on_step=on_step, echo=echo).run()


class Trainer:
    def __init__(self, config: RareConfig, settings: TrainSettings, resume: Optional[str] = None,
                 weights: Optional[str] = None, force: bool = False, time_limit_s: Optional[float] = None,
                 on_step: Optional[Callable[[StepInfo], Optional[bool]]] = None,
                 echo: Callable[[str], None] = tqdm.write):
        import mindspore as ms

        self.config, self.settings, self.spec = config, settings, config.spec
        self.time_limit_s, self.on_step = time_limit_s, on_step
        resume = resume or settings.resume
        weights = weights or (str(settings.pretrained) if settings.pretrained else None)
        if resume and weights:
            raise TrainError("--resume continues a run with its own weights; --weights (model.pretrained) starts a new "
                             "one from other weights: give one of them")
        self.cluster, cluster_note = start_cluster(settings.distribute)
        self.log = RunLog(self.cluster, echo)
        if cluster_note:
            self.log(f"note: {cluster_note}")
        self.amp_level = self._set_device(ms)
        ms.set_seed(settings.seed)

        # The data is opened before the output folder is touched: a bad dataset path writes nothing.
        self.trainset = TrainSet(settings.train_data, settings.seed, self.spec.head.batch_max_length,
                                 need_lengths=settings.curriculum is not None)
        self.plan = BatchPlan(len(self.trainset), settings.batch_size, self.cluster, settings.seed,
                              settings.train_data.shuffle, settings.curriculum, self.trainset.lengths,
                              self.spec.head.batch_max_length)
        self.validator = self._validator()

        out = settings.output_dir
        self.resume_path = self._resume_path(resume)
        backup = ckpt.prepare_output_dir(out, self.resume_path is not None, force, self.cluster.is_main)
        self.log.attach(out / "train.log", append=self.resume_path is not None)
        if backup is not None:
            self.log(f"--force: the earlier run's files were moved to {backup}")
        self.loader = BatchLoader(self.trainset, self.plan, settings.train_data.input, self.spec.charset,
                                  self.spec.head.batch_max_length, settings.train_data.lower, settings.num_workers,
                                  settings.train_data.augmentation)

        from ..api import build_model

        self.network = build_model(self.spec, "mindspore", seed=settings.seed, train=True)
        if weights:
            for line in ckpt.load_pretrained(self.network, Path(weights)).lines():
                self.log(line)
        model = self.network
        if self.amp_level != "O0":
            self.network = ms.amp.auto_mixed_precision(self.network, self.amp_level)
        # The auxiliary CTC loss and guided attention read the encoder, so they take the model itself: AMP casts
        # its cells in place, and NetworkWithLoss casts the outputs to float32 as AMP's wrapper would.
        reads_encoder = settings.aux_ctc_weight or settings.guided_attention_weight
        net_with_loss = NetworkWithLoss(model if reads_encoder else self.network, settings.aux_ctc_weight,
                                        settings.seed, settings.label_smoothing, settings.guided_attention_weight)
        self.schedule = lr_schedule(settings.schedule, self.plan.steps_per_epoch)
        self.optimizer = build_optimizer(net_with_loss.trainable_params(), settings.optimizer, self.schedule[0])
        self.loss_scaler = build_loss_scaler(settings.loss_scale)
        self.train_step = compiled(TrainStep(net_with_loss, self.optimizer, self.loss_scaler, settings.clip_norm,
                                             gradient_reducer(self.cluster, self.optimizer.parameters)),
                                   settings.graph_mode)
        self.infer = compiled(self.network, settings.graph_mode)

        self.state = ckpt.LoopState(seed=settings.seed, global_batch=self.plan.global_batch,
                                    train_samples=len(self.trainset))
        if self.resume_path is not None:
            self.state = ckpt.load_training_state(self.resume_path, self.network, self.optimizer, self.loss_scaler,
                                                  self.state)
        self.step_log = CsvLog(out / "steps.csv", STEP_FIELDS)
        self.epoch_log = CsvLog(out / "epochs.csv", epoch_fields(self.validator.names if self.validator else []))
        if self.cluster.is_main:
            keep = self.state.global_step if self.resume_path is not None else None
            self.step_log.start(keep)
            self.epoch_log.start(keep)
        self.last_validation: Optional[Dict] = None

    # ------------------------------------------------------------------------------------------- setup

    def _set_device(self, ms) -> str:
        """The device (system.device_target, else MindSpore's default) and the AMP level it can run.

        On CPU float16 only costs (rare_tiny, batch 32: 2.78 s/step with O1 against 2.40 s with O0). O2 and O3
        cast cells, not ops, so the decoder's GRU cell, which multiplies its own float32 weights, meets float16
        activations and the graph does not compile ("MatMulExt: the input type must be same"); O1 casts per
        op and compiles."""
        if self.settings.device_target:
            ms.set_device(self.settings.device_target)
        level = self.settings.amp_level
        if level != "O0" and ms.get_context("device_target") == "CPU":
            self.log(f"note: system.amp_level {level} is for GPU/Ascend; MindSpore on CPU runs float16 slower than "
                     f"float32, so training in float32 (O0)")
            return "O0"
        if level in ("O2", "O3"):
            self.log(f"note: system.amp_level {level} does not compile for this network (the decoder's GRU cell "
                     f"weights stay float32 while its input becomes float16); using O1, which casts per operation")
            return "O1"
        return level

    def _resume_path(self, resume: Optional[str]) -> Optional[Path]:
        if not resume:
            return None
        path = self.settings.output_dir / ckpt.RESUME_NAME if resume == "auto" else Path(resume)
        if not path.is_file():
            hint = f"no {ckpt.RESUME_NAME} in {self.settings.output_dir}" if resume == "auto" else "no such file"
            raise TrainError(f"cannot resume from {path}: {hint}; start without --resume, or point it at the "
                             f"train_resume.ckpt of the run to continue")
        return path

    def _validator(self) -> Optional[Validator]:
        data = self.settings.eval_data
        if data is None:
            return None
        if not self.cluster.is_main:  # only rank 0 validates; the others only check the data is there
            open_sources(data)
            return None
        sets = load_eval_sets(data)
        return Validator(sets, self.spec.input, self.spec.charset, self.settings.eval_batch_size,
                         self.settings.eval_lower, self.settings.metric_options)

    def _describe(self) -> None:
        s, plan = self.settings, self.plan
        params = sum(int(np.prod(p.shape)) for p in self.network.trainable_params())
        self.log(f"training {self.spec.name} ({params:,} trainable parameters) on "
                 f"{len(self.trainset):,} samples from {len(self.trainset.names)} dataset(s), "
                 f"batch {s.batch_size} x {self.cluster.size} process(es), {plan.steps_per_epoch} steps/epoch, "
                 f"{s.schedule.num_epochs} epochs; {s.optimizer.name} {s.schedule.name} lr {s.schedule.lr}, "
                 f"clip {s.clip_norm or 'off'}, loss scale {s.loss_scale.kind} {s.loss_scale.loss_scale:g}, "
                 f"amp {self.amp_level}, {'graph' if s.graph_mode else 'pynative'} mode")
        if self.trainset.too_long_filtered:
            self.log(f"train.dataset.filter_max_len: {self.trainset.too_long_filtered} samples with labels longer "
                     f"than {self.spec.head.batch_max_length} characters left out")
        if self.validator:
            sizes = ", ".join(f"{e.name} ({len(e.images)})" for e in self.validator.sets)
            self.log(f"validating on {sizes}")
            for eval_set in self.validator.sets:
                if eval_set.skipped.total:
                    self.log(f"validation {eval_set.name}: {eval_set.skipped.summary()}")
        if s.aux_ctc_weight:
            self.log(f"auxiliary CTC loss on the encoder, weight {s.aux_ctc_weight:g} (training only; the logged loss "
                     f"is the attention loss)")
        if s.attention_warmup_steps:
            self.log(f"the first {s.attention_warmup_steps} steps train through the auxiliary CTC loss alone "
                     f"(train.attention_warmup_steps)")
        if s.guided_attention_weight:
            self.log(f"guided attention: a left-to-right attention prior, weight {s.guided_attention_weight:g} "
                     f"(training only)")
        if s.label_smoothing:
            self.log(f"label smoothing {s.label_smoothing:g} in the objective (the logged loss is not smoothed)")
        augmentation = s.train_data.augmentation
        if augmentation is not None:
            self.log(f"augmentation: SVTRRecAug (aug_type {augmentation.aug_type}; geometry {augmentation.geometry_p:g}, "
                     f"deterioration {augmentation.deterioration_p:g}, colour jitter {augmentation.colorjitter_p:g})")
        if s.curriculum:
            self.log(f"curriculum: labels up to {s.curriculum.start_max_len} characters at first, all lengths after "
                     f"{plan.curriculum_steps} steps")
        if self.resume_path is not None:
            self.log(f"resuming from {self.resume_path}: epoch {self.state.epoch + 1}, step "
                     f"{self.state.step_in_epoch} of {plan.steps_per_epoch} (global step {self.state.global_step})")

    # -------------------------------------------------------------------------------------------- loop

    def run(self) -> TrainResult:
        import mindspore as ms

        s, state = self.settings, self.state
        started = time.monotonic()
        stop_reason = COMPLETED
        images_done, train_seconds = 0, 0.0
        with StopRequest() as stop:
            self._describe()  # once Ctrl-C is caught: from this line on it saves instead of aborting
            while state.epoch < s.schedule.num_epochs and stop_reason == COMPLETED:
                epoch_started, epoch_images = time.monotonic(), 0
                label_stats = LabelStats(self.spec.head.batch_max_length)
                losses, interval_losses, interval_images, interval_started = [], [], 0, time.monotonic()
                self.network.set_train(True)
                progress = tqdm(total=self.plan.steps_per_epoch, initial=state.step_in_epoch, unit="step",
                                desc=f"epoch {state.epoch + 1}/{s.schedule.num_epochs}", leave=False,
                                disable=True if not self.cluster.is_main else None, dynamic_ncols=True)
                batches = self.loader.batches(state.epoch, state.step_in_epoch)
                try:
                    for step, batch in batches:
                        lr = float(self.schedule[state.global_step])
                        attention = 0.0 if state.global_step < s.attention_warmup_steps else 1.0
                        loss, finite = self.train_step(ms.Tensor(batch.images), ms.Tensor(batch.targets),
                                                       ms.Tensor(np.float32(lr)), ms.Tensor(np.float32(attention)))
                        loss, finite = float(loss.asnumpy()), bool(finite.asnumpy())
                        state.step_in_epoch, state.global_step = step + 1, state.global_step + 1
                        if finite:
                            state.consecutive_nonfinite = 0
                            losses.append(loss)
                            interval_losses.append(loss)
                        else:
                            state.nonfinite_steps += 1
                            state.consecutive_nonfinite += 1
                        self._merge_label_stats(label_stats, batch.labels)
                        epoch_images += len(batch.images) * self.cluster.size
                        interval_images += len(batch.images) * self.cluster.size
                        recent_loss = np.mean(interval_losses) if interval_losses else float("nan")
                        speed = epoch_images / max(time.monotonic() - epoch_started, 1e-9)
                        progress.set_postfix(loss=f"{recent_loss:.4f}", lr=f"{lr:.2e}", img_s=f"{speed:.1f}",
                                             refresh=False)
                        progress.update()
                        if state.global_step % s.log_interval == 0:
                            self._log_steps(interval_losses, lr, interval_images, time.monotonic() - interval_started,
                                            time.monotonic() - started)
                            interval_losses, interval_images, interval_started = [], 0, time.monotonic()
                        if self.on_step is not None and self.on_step(
                                StepInfo(state.epoch, state.step_in_epoch, state.global_step, loss, finite, lr)):
                            stop_reason = STOPPED_BY_HOOK
                            break
                        ends_epoch = state.step_in_epoch == self.plan.steps_per_epoch  # _end_epoch saves then
                        if s.resume_save_interval and state.global_step % s.resume_save_interval == 0 and not ends_epoch:
                            self._save_resumable()
                        if state.consecutive_nonfinite >= s.max_consecutive_nonfinite:
                            stop_reason = NONFINITE
                            break
                        timed_out = self.time_limit_s is not None and time.monotonic() - started >= self.time_limit_s
                        if any_rank(self.cluster, stop.received is not None or timed_out):
                            stop_reason = INTERRUPTED if stop.received is not None else TIME_LIMIT
                            break
                finally:
                    batches.close()
                    progress.close()
                epoch_seconds = time.monotonic() - epoch_started
                images_done += epoch_images
                train_seconds += epoch_seconds
                if stop_reason == COMPLETED:
                    self._end_epoch(losses, epoch_images, epoch_seconds, label_stats)
            self._save_on_stop(stop_reason)
        images_per_second = images_done / train_seconds if train_seconds else 0.0
        message = self._final_message(stop_reason, stop.received)
        self.log(message)
        return TrainResult(self.settings.output_dir, stop_reason, message, state, self.last_validation,
                           images_per_second, self.cluster.size)

    @staticmethod
    def _merge_label_stats(total: LabelStats, batch: LabelStats) -> None:
        total.total += batch.total
        total.counts.update(batch.counts)

    def _log_steps(self, losses: List[float], lr: float, images: int, seconds: float, elapsed: float) -> None:
        if not self.cluster.is_main:
            return
        self.step_log.append({
            "global_step": self.state.global_step, "epoch": self.state.epoch + 1,
            "loss": float(np.mean(losses)) if losses else None, "lr": lr,
            "loss_scale": float(self.loss_scaler.scale_value.asnumpy()), "nonfinite_steps": self.state.nonfinite_steps,
            "images_per_second": images / seconds if seconds > 0 else None, "elapsed_s": elapsed,
        })

    def _end_epoch(self, losses: List[float], images: int, seconds: float, label_stats: LabelStats) -> None:
        state, s = self.state, self.settings
        epoch_number = state.epoch + 1
        average_statistics(self.cluster, self.network)
        validation = None
        if self.validator and epoch_number >= s.val_start_epoch and (epoch_number - s.val_start_epoch) % s.val_interval == 0:
            validation = self._validate()
        state.epoch, state.step_in_epoch = epoch_number, 0
        if not self.cluster.is_main:
            return
        out = s.output_dir
        ckpt.save_weights_only(self.network, out / ckpt.LAST_NAME)
        improved = validation is not None and validation["acc"] > state.best_acc
        if improved:
            state.best_acc, state.best_epoch = validation["acc"], epoch_number
            ckpt.save_weights_only(self.network, out / ckpt.BEST_NAME)
        ckpt.save_training_state(out / ckpt.RESUME_NAME, self.network, self.optimizer, self.loss_scaler, state)
        row = {"epoch": epoch_number, "global_step": state.global_step,
               "loss": float(np.mean(losses)) if losses else None,
               "lr": float(self.schedule[state.global_step - 1]), "nonfinite_steps": state.nonfinite_steps,
               "images_per_second": images / seconds if seconds > 0 else None, "epoch_seconds": seconds}
        summary = (f"epoch {epoch_number}/{s.schedule.num_epochs}: loss {row['loss'] or float('nan'):.4f}, "
                   f"{row['images_per_second'] or 0:.1f} img/s, {state.nonfinite_steps} non-finite steps skipped")
        if validation is not None:
            row.update(val_acc=validation["acc"], val_norm_edit_distance=validation["norm_edit_distance"])
            for name, result in validation["datasets"].items():
                row[f"acc:{name}"], row[f"ned:{name}"] = result["acc"], result["norm_edit_distance"]
            summary += (f"; val acc {validation['acc']:.4f}, NED {validation['norm_edit_distance']:.4f}"
                        f"{' (best, saved best.ckpt)' if improved else f' (best {state.best_acc:.4f})'}")
        self.epoch_log.append(row)
        self.log(summary)
        for warning in label_stats.warnings():
            self.log(f"labels: {warning}")
        plot_curves(self.step_log.read(), self.epoch_log.read(), out / "curves.png")

    def _validate(self) -> Dict:
        import mindspore as ms

        self.network.set_train(False)
        try:
            self.last_validation = self.validator.evaluate(lambda batch: self.infer(ms.Tensor(batch)).asnumpy())
        finally:
            self.network.set_train(True)
        return self.last_validation

    def _save_on_stop(self, reason: str) -> None:
        """A stopped (not completed) run saves where it is, so --resume auto continues from this step."""
        if reason == COMPLETED:
            return
        self._save_resumable()
        if self.cluster.is_main:
            plot_curves(self.step_log.read(), self.epoch_log.read(), self.settings.output_dir / "curves.png")

    def _save_resumable(self) -> None:
        """last.ckpt and train_resume.ckpt as of this step. Every rank calls it: the batch-norm statistics are
        averaged first, which leaves an uninterrupted run unchanged (the moving average is linear)."""
        average_statistics(self.cluster, self.network)
        if not self.cluster.is_main:
            return
        out = self.settings.output_dir
        ckpt.save_weights_only(self.network, out / ckpt.LAST_NAME)
        ckpt.save_training_state(out / ckpt.RESUME_NAME, self.network, self.optimizer, self.loss_scaler, self.state)

    def _final_message(self, reason: str, signal_name: Optional[str]) -> str:
        state, out = self.state, self.settings.output_dir
        where = f"epoch {state.epoch + 1}, step {state.step_in_epoch} (global step {state.global_step})"
        resume = f"continue with --resume auto (reads {out / ckpt.RESUME_NAME})"
        if reason == COMPLETED:
            best = f"; best val acc {state.best_acc:.4f} at epoch {state.best_epoch} ({out / ckpt.BEST_NAME})" \
                if state.best_epoch else ""
            return f"finished {state.epoch} epochs, {state.global_step} steps{best}; last weights {out / ckpt.LAST_NAME}"
        saved = f"saved {out / ckpt.RESUME_NAME} and the weights as of now in {out / ckpt.LAST_NAME}"
        if reason == INTERRUPTED:
            return f"stopped by {signal_name or 'another rank'} at {where}; {saved}; {resume}"
        if reason == TIME_LIMIT:
            return f"time limit reached at {where}; {saved}; {resume}"
        if reason == STOPPED_BY_HOOK:
            return f"stopped by the caller's on_step hook at {where}; {saved}; {resume}"
        return (f"stopped: {state.consecutive_nonfinite} consecutive steps had non-finite gradients (NaN/inf loss) at "
                f"{where}; the weights are those of the last finite step, saved in {out / ckpt.RESUME_NAME}. Lower "
                f"scheduler.lr, turn on train.clip_grad, or check the data, then {resume}")
