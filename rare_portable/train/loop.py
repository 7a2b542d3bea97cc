"""`train()`: a RARE network trained on MindSpore from a MindOCR rec config, resumable and interruptible.

Everything that can be wrong with the config, the data, the weights or the checkpoint to resume is checked
in `Trainer.__init__`, before the first step. The loop itself only trains, validates and saves.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from ..config import RareConfig
from ..labels import LabelStats
from . import checkpoint as ckpt
from .data import Batch, BatchLoader, BatchPlan, TrainSet, open_sources
from .distributed import any_rank, average_statistics, gradient_reducer, start_cluster
from .optim import build_loss_scaler, build_optimizer, lr_schedule
from .runlog import EpochMeter, RunLog, RunRecords, epoch_record, opening_lines, step_row
from .settings import TrainError, TrainSettings, read_settings
from .step import NetworkWithLoss, TrainStep, compiled, freeze_batch_norm_statistics
from .stopping import COMPLETED, INTERRUPTED, NONFINITE, STOPPED_BY_HOOK, TIME_LIMIT, StopRequest, final_message
from .validate import Validator, load_eval_sets


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
    """Built, a run is checked and ready: data, output folder, network, optimizer and (resuming) its state.
    `run()` then trains, validates and saves until the schedule ends or something stops it."""

    def __init__(self, config: RareConfig, settings: TrainSettings, resume: Optional[str] = None,
                 weights: Optional[str] = None, force: bool = False, time_limit_s: Optional[float] = None,
                 on_step: Optional[Callable[[StepInfo], Optional[bool]]] = None,
                 echo: Callable[[str], None] = tqdm.write):
        self.config, self.settings, self.spec = config, settings, config.spec
        self.time_limit_s, self.on_step = time_limit_s, on_step
        resume, weights = self._resume_or_weights(resume, weights)
        self._start_process(echo)
        # The data is opened before the output folder is touched: a bad dataset path writes nothing.
        self._open_data()
        self.resume_path = self._resume_path(resume)
        self._open_output(force)
        self.loader = BatchLoader(self.trainset, self.plan, settings.train_data.input, self.spec.charset,
                                  self.spec.head.batch_max_length, settings.train_data.lower, settings.num_workers,
                                  settings.train_data.augmentation)
        self._build_training(self._build_network(weights))
        self.state = self._initial_state()
        self.records = self._start_records()
        self.last_validation: Optional[Dict] = None
        self._run_started = 0.0  # time.monotonic() when run() began

    # ------------------------------------------------------------------------------------------- setup

    def _resume_or_weights(self, resume: Optional[str], weights: Optional[str]) -> Tuple[Optional[str], Optional[str]]:
        """The arguments, else the config's model.resume and model.pretrained; not both."""
        resume = resume or self.settings.resume
        pretrained = self.settings.pretrained
        weights = weights or (str(pretrained) if pretrained else None)
        if resume and weights:
            raise TrainError("--resume continues a run with its own weights; --weights (model.pretrained) starts a new "
                             "one from other weights: give one of them")
        return resume, weights

    def _start_process(self, echo: Callable[[str], None]) -> None:
        """This process's place in the cluster (msrun), the run's log, the device, its AMP level and the seed."""
        import mindspore as ms

        self.cluster, cluster_note = start_cluster(self.settings.distribute)
        self.log = RunLog(self.cluster, echo)
        if cluster_note:
            self.log(f"note: {cluster_note}")
        self.amp_level = self._set_device(ms)
        ms.set_seed(self.settings.seed)

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

    def _open_data(self) -> None:
        """The training set and its batch order; the validation sets (checked on every rank)."""
        s, max_len = self.settings, self.spec.head.batch_max_length
        self.trainset = TrainSet(s.train_data, s.seed, max_len, need_lengths=s.curriculum is not None)
        self.plan = BatchPlan(len(self.trainset), s.batch_size, self.cluster, s.seed, s.train_data.shuffle,
                              s.curriculum, self.trainset.lengths, max_len)
        self.validator = self._validator()

    def _validator(self) -> Optional[Validator]:
        data = self.settings.eval_data
        if data is None:
            return None
        if not self.cluster.is_main:  # only rank 0 validates; the others only check the data is there
            open_sources(data)
            return None
        sets = load_eval_sets(data)
        return Validator(sets, self.spec, self.settings.eval_batch_size, self.settings.eval_lower,
                         self.settings.metric_options)

    def _resume_path(self, resume: Optional[str]) -> Optional[Path]:
        if not resume:
            return None
        path = self.settings.output_dir / ckpt.RESUME_NAME if resume == "auto" else Path(resume)
        if not path.is_file():
            hint = f"no {ckpt.RESUME_NAME} in {self.settings.output_dir}" if resume == "auto" else "no such file"
            raise TrainError(f"cannot resume from {path}: {hint}; start without --resume, or point it at the "
                             f"train_resume.ckpt of the run to continue")
        return path

    def _open_output(self, force: bool) -> None:
        """The output folder, checked (or its earlier run moved aside with --force), and train.log in it."""
        out, resuming = self.settings.output_dir, self.resume_path is not None
        backup = ckpt.prepare_output_dir(out, resuming, force, self.cluster.is_main)
        self.log.attach(out / "train.log", append=resuming)
        if backup is not None:
            self.log(f"--force: the earlier run's files were moved to {backup}")

    def _build_network(self, weights: Optional[str]):
        """The network (fine-tuned from `weights` if given), wrapped for AMP; returns the model unwrapped."""
        import mindspore as ms
        from ..api import build_model

        self.network = build_model(self.spec, "mindspore", seed=self.settings.seed, train=True)
        if weights:
            for line in ckpt.load_pretrained(self.network, Path(weights)).lines():
                self.log(line)
        if self.settings.freeze_bn_stats:
            freeze_batch_norm_statistics(self.network)
        model = self.network
        if self.amp_level != "O0":
            self.network = ms.amp.auto_mixed_precision(self.network, self.amp_level)
        return model

    def _build_training(self, model) -> None:
        """The loss, lr schedule, optimizer, loss scaler and the compiled training and inference steps."""
        s = self.settings
        # The auxiliary CTC loss and guided attention read the encoder, so they take the model itself: AMP casts
        # its cells in place, and NetworkWithLoss casts the outputs to float32 as AMP's wrapper would.
        reads_encoder = s.aux_ctc_weight or s.guided_attention_weight
        net_with_loss = NetworkWithLoss(model if reads_encoder else self.network, s.aux_ctc_weight, s.seed,
                                        s.label_smoothing, s.guided_attention_weight, s.uniform_alignment_weight)
        self.schedule = lr_schedule(s.schedule, self.plan.steps_per_epoch)
        self.optimizer = build_optimizer(net_with_loss.trainable_params(), s.optimizer, self.schedule[0])
        self.loss_scaler = build_loss_scaler(s.loss_scale)
        self.train_step = compiled(TrainStep(net_with_loss, self.optimizer, self.loss_scaler, s.clip_norm,
                                             gradient_reducer(self.cluster, self.optimizer.parameters)), s.graph_mode)
        self.infer = compiled(self.network, s.graph_mode)

    def _initial_state(self) -> ckpt.LoopState:
        """A fresh loop state, or (resuming) the checkpoint's, with its weights, optimizer and loss scale loaded."""
        state = ckpt.LoopState(seed=self.settings.seed, global_batch=self.plan.global_batch,
                               train_samples=len(self.trainset))
        if self.resume_path is None:
            return state
        return ckpt.load_training_state(self.resume_path, self.network, self.optimizer, self.loss_scaler, state)

    def _start_records(self) -> RunRecords:
        """steps.csv and epochs.csv (rank 0): new, or cut back to the step a resumed run continues from."""
        records = RunRecords(self.settings.output_dir, self.validator.names if self.validator else [])
        if self.cluster.is_main:
            records.start(self.state.global_step if self.resume_path is not None else None)
        return records

    def _describe(self) -> None:
        """The run's first lines: what trains on what and how, the options on, and where a resumed run goes on."""
        for line in opening_lines(self):
            self.log(line)

    # -------------------------------------------------------------------------------------------- loop

    def run(self) -> TrainResult:
        self._run_started = time.monotonic()
        reason, images_done, train_seconds = COMPLETED, 0, 0.0
        with StopRequest() as stop:
            self._describe()  # once Ctrl-C is caught: from this line on it saves instead of aborting
            while self.state.epoch < self.settings.schedule.num_epochs and reason == COMPLETED:
                reason, images, seconds = self._train_epoch(stop)
                images_done, train_seconds = images_done + images, train_seconds + seconds
            self._save_on_stop(reason)
        message = final_message(reason, stop.received, self.state, self.settings.output_dir)
        self.log(message)
        return TrainResult(self.settings.output_dir, reason, message, self.state, self.last_validation,
                           images_done / train_seconds if train_seconds else 0.0, self.cluster.size)

    def _train_epoch(self, stop: StopRequest) -> Tuple[str, int, float]:
        """The rest of the current epoch, then (completed) its end; returns why it ended, its images and seconds."""
        meter = EpochMeter(LabelStats(self.spec.head.batch_max_length), self.cluster.size)
        self.network.set_train(True)
        progress = tqdm(total=self.plan.steps_per_epoch, initial=self.state.step_in_epoch, unit="step",
                        desc=f"epoch {self.state.epoch + 1}/{self.settings.schedule.num_epochs}", leave=False,
                        disable=True if not self.cluster.is_main else None, dynamic_ncols=True)
        batches = self.loader.batches(self.state.epoch, self.state.step_in_epoch)
        try:
            reason = self._train_steps(batches, meter, progress, stop)
        finally:
            batches.close()
            progress.close()
        seconds = meter.seconds()
        if reason == COMPLETED:
            self._end_epoch(meter, seconds)
        return reason, meter.images, seconds

    def _train_steps(self, batches: Iterator[Tuple[int, Batch]], meter: EpochMeter, progress: tqdm,
                     stop: StopRequest) -> str:
        for step, batch in batches:
            loss, finite, lr = self._step(step, batch)
            meter.add(loss, finite, len(batch.images), batch.labels)
            self._report_step(meter, progress, lr)
            reason = self._stop_reason(StepInfo(self.state.epoch, self.state.step_in_epoch, self.state.global_step,
                                                loss, finite, lr), stop)
            if reason is not None:
                return reason
        return COMPLETED

    def _step(self, step: int, batch: Batch) -> Tuple[float, bool, float]:
        """One training step (a non-finite one leaves the weights as they were), counted in the loop state;
        returns its loss, whether it was finite, and its lr."""
        import mindspore as ms

        state = self.state
        lr = float(self.schedule[state.global_step])
        attention = 0.0 if state.global_step < self.settings.attention_warmup_steps else 1.0
        loss, finite = self.train_step(ms.Tensor(batch.images), ms.Tensor(batch.targets),
                                       ms.Tensor(np.float32(lr)), ms.Tensor(np.float32(attention)))
        loss, finite = float(loss.asnumpy()), bool(finite.asnumpy())
        state.step_in_epoch, state.global_step = step + 1, state.global_step + 1
        if finite:
            state.consecutive_nonfinite = 0
        else:
            state.nonfinite_steps += 1
            state.consecutive_nonfinite += 1
        return loss, finite, lr

    def _report_step(self, meter: EpochMeter, progress: tqdm, lr: float) -> None:
        """The progress bar, and every log_interval steps a steps.csv row."""
        progress.set_postfix(loss=f"{meter.recent_loss():.4f}", lr=f"{lr:.2e}",
                             img_s=f"{meter.images_per_second():.1f}", refresh=False)
        progress.update()
        if self.state.global_step % self.settings.log_interval == 0:
            self._log_steps(meter.interval_losses, lr, meter.interval_images,
                            time.monotonic() - meter.interval_started, time.monotonic() - self._run_started)
            meter.new_interval()

    def _stop_reason(self, info: StepInfo, stop: StopRequest) -> Optional[str]:
        """After a step: train_resume.ckpt when due, then why the run stops here (None: it goes on). Every rank
        asks the others (any_rank) after each step, so they all stop at the same one."""
        s, state = self.settings, self.state
        if self.on_step is not None and self.on_step(info):
            return STOPPED_BY_HOOK
        ends_epoch = state.step_in_epoch == self.plan.steps_per_epoch  # _end_epoch saves then
        if s.resume_save_interval and state.global_step % s.resume_save_interval == 0 and not ends_epoch:
            self._save_resumable()
        if state.consecutive_nonfinite >= s.max_consecutive_nonfinite:
            return NONFINITE
        timed_out = self.time_limit_s is not None and time.monotonic() - self._run_started >= self.time_limit_s
        if any_rank(self.cluster, stop.received is not None or timed_out):
            return INTERRUPTED if stop.received is not None else TIME_LIMIT
        return None

    def _log_steps(self, losses: List[float], lr: float, images: int, seconds: float, elapsed: float) -> None:
        if not self.cluster.is_main:
            return
        loss_scale = float(self.loss_scaler.scale_value.asnumpy())
        self.records.steps.append(step_row(self.state, losses, lr, loss_scale, images, seconds, elapsed))

    # ------------------------------------------------------------------------------- epoch end and stop

    def _end_epoch(self, meter: EpochMeter, seconds: float) -> None:
        """Batch-norm statistics averaged over the ranks; (rank 0) last.ckpt, and train_resume.ckpt too when
        validation follows; validation when due; then (rank 0) best.ckpt, train_resume.ckpt, the epochs.csv row,
        the epoch's log lines and curves.png."""
        state = self.state
        epoch_number = state.epoch + 1
        average_statistics(self.cluster, self.network)
        validating = self._validation_due(epoch_number)
        if self.cluster.is_main:
            # The epoch's training is on disk before validation runs: if it fails, nothing is lost, and
            # --resume auto starts at this epoch's end, validates and goes on.
            ckpt.save_weights_only(self.network, self.settings.output_dir / ckpt.LAST_NAME)
            if validating:
                self._write_training_state()
        validation = self._validate() if validating else None
        state.epoch, state.step_in_epoch = epoch_number, 0
        if not self.cluster.is_main:
            return
        improved = self._save_epoch(validation)
        row, summary = epoch_record(state, self.settings.schedule.num_epochs, meter.losses,
                                    float(self.schedule[state.global_step - 1]), meter.images, seconds, validation,
                                    improved)
        self.records.epochs.append(row)
        self.log(summary)
        for warning in meter.label_stats.warnings():
            self.log(f"labels: {warning}")
        self.records.plot()

    def _validation_due(self, epoch_number: int) -> bool:
        s = self.settings
        return bool(self.validator) and epoch_number >= s.val_start_epoch \
            and (epoch_number - s.val_start_epoch) % s.val_interval == 0

    def _save_epoch(self, validation: Optional[Dict]) -> bool:
        """best.ckpt when validation improved (returns whether it did), train_resume.ckpt; `_end_epoch` wrote last.ckpt."""
        state, out = self.state, self.settings.output_dir
        improved = validation is not None and validation["acc"] > state.best_acc
        if improved:
            state.best_acc, state.best_epoch = validation["acc"], state.epoch
            ckpt.save_weights_only(self.network, out / ckpt.BEST_NAME)
        self._write_training_state()
        return improved

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
            self.records.plot()

    def _save_resumable(self) -> None:
        """last.ckpt and train_resume.ckpt as of this step. Every rank calls it: the batch-norm statistics are
        averaged first, which leaves an uninterrupted run unchanged (the moving average is linear)."""
        average_statistics(self.cluster, self.network)
        if not self.cluster.is_main:
            return
        ckpt.save_weights_only(self.network, self.settings.output_dir / ckpt.LAST_NAME)
        self._write_training_state()

    def _write_training_state(self) -> None:
        """train_resume.ckpt: weights, optimizer, loss scale and loop state as they are now (rank 0)."""
        ckpt.save_training_state(self.settings.output_dir / ckpt.RESUME_NAME, self.network, self.optimizer,
                                 self.loss_scaler, self.state)
