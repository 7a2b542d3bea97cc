"""Why a run stops, and what it then tells the user: Ctrl-C/SIGTERM handling and the run's last message."""
from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Optional

from . import checkpoint as ckpt

COMPLETED, INTERRUPTED, TIME_LIMIT, NONFINITE = "completed", "interrupted", "time_limit", "nonfinite"
STOPPED_BY_HOOK = "stopped_by_hook"


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


def final_message(reason: str, signal_name: Optional[str], state: ckpt.LoopState, out: Path) -> str:
    """The run's last line: where it stopped, what it saved and how to continue."""
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
