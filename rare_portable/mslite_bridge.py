"""Reach MindSpore Lite from this interpreter: in-process when `mindspore_lite` imports, else through a
CPython 3.7 interpreter that has it (`mindspore-lite` 2.0.0 on PyPI is built for 3.7 only).

The interpreter is `$RARE_MSLITE_PYTHON`, else `.mslite37/bin/python` in the project, which
`python -m rare_portable.mslite_bridge setup` (or `rare mslite-setup`) provisions from a 3.7 it finds
(pyenv's `~/.pyenv/versions/3.7.*`, or `python3.7` on PATH).
"""
from __future__ import annotations

import atexit
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

from . import mslite_worker
from .errors import UserError
from .nets import BackendUnavailable

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VENV = PROJECT_ROOT / ".mslite37"
LITE_REQUIREMENTS = ["mindspore-lite==2.0.0", "numpy<1.22"]
SETUP_HINT = ("MindSpore Lite needs a CPython 3.7 interpreter with mindspore-lite 2.0.0: run "
              "`python -m rare_portable.mslite_bridge setup`, or set RARE_MSLITE_PYTHON to such an interpreter")


class LiteUnavailable(BackendUnavailable):
    """No way to run MindSpore Lite here; the message says how to provision it."""


class LiteError(UserError, RuntimeError):
    """Lite refused a model or an input; the message carries Lite's own error."""


def lite_in_process() -> bool:
    try:
        import mindspore_lite  # noqa: F401
    except ImportError:
        return False
    return True


def find_lite_python() -> Optional[str]:
    env = os.environ.get("RARE_MSLITE_PYTHON")
    if env:
        if not Path(env).is_file():
            raise LiteUnavailable(f"RARE_MSLITE_PYTHON={env} does not exist; {SETUP_HINT}")
        return env
    candidate = DEFAULT_VENV / "bin" / "python"
    return str(candidate) if candidate.is_file() else None


def availability() -> Optional[str]:
    """None when Lite can run here, else the reason it cannot (tests skip with it)."""
    if lite_in_process():
        return None
    try:
        return None if find_lite_python() else SETUP_HINT
    except LiteUnavailable as e:
        return str(e)


class LiteBridge:
    """A session with Lite: `convert`, `load`, `predict`. One worker process per bridge."""

    def __init__(self):
        self._local = lite_in_process()
        self._models = None
        self._proc = None
        if not self._local:
            python = find_lite_python()
            if python is None:
                raise LiteUnavailable(SETUP_HINT)
            env = dict(os.environ, GLOG_v=os.environ.get("GLOG_v", "3"))
            self._proc = subprocess.Popen([python, mslite_worker.__file__], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
            atexit.register(self.close)
        self._tmp = tempfile.mkdtemp(prefix="rare-mslite-")

    def _call(self, **request):
        if self._local:
            if self._models is None and request["cmd"] != "convert":
                self._models = mslite_worker.LiteModels()
            try:
                return mslite_worker.handle(self._models, request)
            except Exception as e:
                raise LiteError(f"{type(e).__name__}: {e}") from None
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        for line in self._proc.stdout:
            if line.startswith(mslite_worker.REPLY):
                reply = json.loads(line[len(mslite_worker.REPLY):])
                if not reply.pop("ok"):
                    raise LiteError(reply["error"])
                return reply
        err = self._proc.stderr.read()[-2000:]
        raise LiteError(f"the MindSpore Lite worker exited (code {self._proc.wait()}): {err}")

    def convert(self, onnx_path: Path, output: Path) -> dict:
        """ONNX -> Lite model at `output` (Lite names its file; we move it)."""
        stem = os.path.join(self._tmp, "converted")
        reply = self._call(cmd="convert", onnx=str(onnx_path), output=stem)
        if not os.path.isfile(reply["file"]):
            raise LiteError(f"converting {onnx_path}: Lite reported success but wrote no model")
        shutil.move(reply["file"], output)
        return reply

    def load(self, model: Path, threads: int = 2) -> dict:
        return self._call(cmd="load", model=str(model), threads=threads)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        if self._local:
            return self._models.predict(batch)
        src, dst = os.path.join(self._tmp, "in.npy"), os.path.join(self._tmp, "out.npy")
        np.save(src, batch)
        self._call(cmd="predict", input=src, output=dst)
        return np.load(dst)

    def close(self):
        if self._proc is not None and self._proc.poll() is None:
            self._proc.stdin.close()
            self._proc.wait(timeout=30)
        shutil.rmtree(self._tmp, ignore_errors=True)


def find_python37() -> Optional[str]:
    pyenv = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.7.*/bin/python3.7")))
    return os.environ.get("RARE_PYTHON37") or (pyenv[-1] if pyenv else None) or shutil.which("python3.7")


def setup(venv: Path = DEFAULT_VENV) -> Path:
    """Create `venv` from a CPython 3.7 and install mindspore-lite 2.0.0 into it; idempotent."""
    python = venv / "bin" / "python"
    if python.is_file() and subprocess.run([str(python), "-c", "import mindspore_lite"], capture_output=True).returncode == 0:
        return python
    base = find_python37()
    if base is None:
        raise LiteUnavailable("no CPython 3.7 found (pyenv ~/.pyenv/versions/3.7.*, python3.7 on PATH, "
                              "or RARE_PYTHON37): install one, e.g. `pyenv install 3.7`")
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *LITE_REQUIREMENTS], check=True)
    return python


if __name__ == "__main__":
    args = sys.argv[1:]
    if args not in (["setup"], ["setup", "--optional"]):
        sys.exit("usage: python -m rare_portable.mslite_bridge setup [--optional]")
    try:
        print(f"MindSpore Lite interpreter: {setup()}")
    except (LiteUnavailable, subprocess.CalledProcessError) as e:
        if "--optional" not in args:
            raise
        print(f"MindSpore Lite not provisioned ({e}); the mslite tests will skip with this reason")
