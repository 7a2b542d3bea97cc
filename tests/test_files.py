"""Atomic writes leave files with the permissions a plain `open` gives, not mkstemp's 0600."""
import os
import stat

import numpy as np

from rare_portable.weights import write_state


def test_written_weights_are_readable_by_others(tmp_path):
    umask = os.umask(0o022)
    try:
        path = write_state({"w": np.zeros(3, np.float32)}, tmp_path / "w.safetensors")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary file left beside it
