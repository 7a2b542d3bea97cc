"""What a run writes and reads back: weights-only `best.ckpt`/`last.ckpt`, and `train_resume.ckpt` with
everything a resumed run needs to continue exactly where the interrupted one stopped.

`best.ckpt` and `last.ckpt` hold only the network under MindOCR's names, so `rare eval`, MindOCR and the
PyTorch builder load them unchanged. `train_resume.ckpt` adds the optimizer state (`optimizer.` + its own
parameter names), the loss scale and the loop counters (`trainer.`). The data order needs no saved state
(see data.py). Every file is written to a temp file and renamed over the target (weights.write_state).
"""
from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from ..files import writable_folder
from ..nets import framework_module
from ..weights import check_fit, expected_shapes, get_state, load_weights, read_state, to_canonical, write_state
from .settings import TrainError

RESUME_NAME = "train_resume.ckpt"
LAST_NAME = "last.ckpt"
BEST_NAME = "best.ckpt"
CHECKPOINT_NAMES = (RESUME_NAME, LAST_NAME, BEST_NAME)
OPTIMIZER_PREFIX = "optimizer."
TRAINER_PREFIX = "trainer."
LOSS_SCALE = "loss_scale"
LOSS_SCALE_COUNTER = "loss_scale.counter"
ONE_HOT_INPUT = "head.attention_cell.rnn.weight_ih"  # [3H, context + classes]: the decoder's GRU input weights


@dataclass
class LoopState:
    """Where a run is; the last three fields pin the data order a resumed run must reproduce."""

    epoch: int = 0  # epochs completed
    step_in_epoch: int = 0  # steps completed in the current epoch
    global_step: int = 0
    nonfinite_steps: int = 0
    consecutive_nonfinite: int = 0
    best_acc: float = -1.0  # -1: no validation yet
    best_epoch: int = 0
    seed: int = 0
    global_batch: int = 0
    train_samples: int = 0

    def to_arrays(self) -> Dict[str, np.ndarray]:
        return {TRAINER_PREFIX + k: np.array(v) for k, v in asdict(self).items()}

    @classmethod
    def from_arrays(cls, stored: Dict[str, np.ndarray]) -> "LoopState":
        values = {}
        for f in fields(cls):
            value = stored[TRAINER_PREFIX + f.name]
            values[f.name] = float(value) if f.type in (float, "float") else int(value)
        return cls(**values)


def prepare_output_dir(output_dir: Path, resuming: bool, force: bool, may_write: bool) -> Optional[Path]:
    """Refuse to start a new run over an earlier run's checkpoints; with `force`, move them (and its logs)
    into a `previous-<time>` subfolder instead. Returns that folder, if any. Only `may_write` ranks make the
    folder or move; one that cannot be made or written to stops the run before it trains."""
    if may_write:
        writable_folder(output_dir, TrainError)
    existing = [name for name in CHECKPOINT_NAMES if (output_dir / name).exists()]
    if not existing or resuming:
        return None
    if not force:
        raise TrainError(f"{output_dir} already holds {', '.join(existing)} from an earlier run; continue it with "
                         f"--resume auto, choose another train.ckpt_save_dir, or pass --force to start over (the old "
                         f"files are moved to a subfolder, never deleted)")
    if not may_write:
        return None
    backup = output_dir / time.strftime("previous-%Y%m%d-%H%M%S")
    backup.mkdir()
    for path in output_dir.iterdir():
        if path.is_file():
            shutil.move(str(path), str(backup / path.name))
    return backup


def optimizer_state(optimizer, network) -> Dict[str, np.ndarray]:
    network_names = {p.name for p in network.get_parameters()}
    return {OPTIMIZER_PREFIX + p.name: p.asnumpy() for p in optimizer.get_parameters() if p.name not in network_names}


def save_weights_only(network, path: Path) -> Path:
    return write_state(get_state(network), path)


def save_training_state(path: Path, network, optimizer, loss_scaler, state: LoopState) -> Path:
    arrays = {**get_state(network), **optimizer_state(optimizer, network), **state.to_arrays(),
              LOSS_SCALE: loss_scaler.scale_value.asnumpy()}
    if hasattr(loss_scaler, "counter"):
        arrays[LOSS_SCALE_COUNTER] = loss_scaler.counter.asnumpy()
    return write_state(arrays, path)


def load_training_state(path: Path, network, optimizer, loss_scaler, expected: LoopState) -> LoopState:
    """Restore network, optimizer and loss scale from `path`; refuse a file that cannot continue this run."""
    stored = read_state(path)
    if TRAINER_PREFIX + "global_step" not in stored:
        raise TrainError(f"{path} holds weights only, no optimizer or loop state, so it cannot be resumed: resume from "
                         f"a {RESUME_NAME}, or start a new run from these weights with --weights")
    network_part = {k: v for k, v in stored.items()
                    if not k.startswith((OPTIMIZER_PREFIX, TRAINER_PREFIX, LOSS_SCALE))}
    check_fit(expected_shapes(network), network_part, str(path))
    wanted = optimizer_state(optimizer, network)
    given = {k: v for k, v in stored.items() if k.startswith(OPTIMIZER_PREFIX)}
    if set(wanted) != set(given) or any(wanted[k].size != given[k].size for k in wanted):
        missing = sorted(set(wanted) - set(given))[:2]
        raise TrainError(f"{path} holds optimizer state that does not fit this config's optimizer (e.g. missing "
                         f"{', '.join(missing) or 'nothing, but shapes differ'}): resume with the optimizer.opt the run "
                         f"started with, or start a new run from its weights with --weights")
    state = LoopState.from_arrays(stored)
    for key in ("seed", "global_batch", "train_samples"):
        if getattr(state, key) != getattr(expected, key):
            raise TrainError(f"{path} was written with {key}={getattr(state, key)}, this run has "
                             f"{getattr(expected, key)}: the data order cannot be continued (same system.seed, "
                             f"batch size x processes and training set needed); start a new run with --weights")
    framework_module("mindspore").set_state(network, network_part)
    import mindspore as ms

    restored = [(p, given[OPTIMIZER_PREFIX + p.name]) for p in optimizer.get_parameters()
                if OPTIMIZER_PREFIX + p.name in given]
    restored.append((loss_scaler.scale_value, stored[LOSS_SCALE]))
    if hasattr(loss_scaler, "counter") and LOSS_SCALE_COUNTER in stored:
        restored.append((loss_scaler.counter, stored[LOSS_SCALE_COUNTER]))
    for param, value in restored:  # .ckpt stores scalars as shape [1]
        param.set_data(ms.Tensor(value.reshape(param.shape), param.dtype))
    return state


@dataclass
class FineTuneReport:
    source: str
    loaded: int
    total: int
    not_loaded: List[str]  # "name (why)": kept at their fresh initialisation
    partial: List[str]  # "name (what was taken)"
    unused: List[str]  # tensors of the file no parameter took

    def lines(self) -> List[str]:
        out = [f"fine-tuning from {self.source}: {self.loaded} of {self.total} tensors loaded"]
        if self.partial:
            out.append("partly loaded: " + "; ".join(self.partial))
        if self.not_loaded:
            out.append(f"not loaded, initialised afresh ({len(self.not_loaded)}): " + "; ".join(self.not_loaded))
        if self.unused:
            out.append(f"in the file but unused ({len(self.unused)}): " + "; ".join(self.unused))
        return out


def load_pretrained(network, path: Path) -> FineTuneReport:
    """MindOCR's fine-tuning (`model.pretrained`): every tensor whose name and shape fit is loaded. With
    another dictionary the classifier starts afresh, and of the decoder's GRU input weights only the
    context columns are kept: the one-hot columns, one per class, are initialised for the new classes."""
    expected = expected_shapes(network)
    stored, _ = to_canonical(network, read_state(path))
    skipped = load_weights(network, path, strict=False)
    if len(skipped) == len(expected):
        raise TrainError(f"{path}: none of its tensors fits this network (names or shapes differ everywhere): it is "
                         f"not a RARE checkpoint of this architecture; compare model.backbone/neck/head")
    partial = []
    if ONE_HOT_INPUT in skipped and _context_columns_fit(stored, expected):
        context = expected[ONE_HOT_INPUT][1] - expected["head.generator.weight"][0]
        state = get_state(network)
        state[ONE_HOT_INPUT][:, :context] = stored[ONE_HOT_INPUT][:, :context]
        framework_module("mindspore").set_state(network, state)
        partial.append(f"{ONE_HOT_INPUT} (its {context} context columns; the {expected[ONE_HOT_INPUT][1] - context} "
                       f"one-hot columns start afresh)")
        skipped = [k for k in skipped if k != ONE_HOT_INPUT]
    not_loaded = [f"{k} ({_why(k, stored, expected)})" for k in skipped]
    taken = set(expected) - set(skipped)  # whole or in part
    unused = [k for k in stored if k not in taken]
    loaded = len(expected) - len(skipped) - len(partial)
    return FineTuneReport(str(path), loaded, len(expected), not_loaded, partial, unused)


def _context_columns_fit(stored: Dict[str, np.ndarray], expected: Dict[str, tuple]) -> bool:
    if ONE_HOT_INPUT not in stored or "head.generator.weight" not in stored:
        return False
    old, new = stored[ONE_HOT_INPUT].shape, expected[ONE_HOT_INPUT]
    old_context = old[1] - stored["head.generator.weight"].shape[0]
    new_context = new[1] - expected["head.generator.weight"][0]
    return old[0] == new[0] and old_context == new_context > 0


def _why(name: str, stored: Dict[str, np.ndarray], expected: Dict[str, tuple]) -> str:
    if name not in stored:
        return "not in the file"
    return f"file {list(stored[name].shape)} vs model {list(expected[name])}"
