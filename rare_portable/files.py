"""Files written whole or not at all: a temporary file beside the target, then renamed over it."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


def temp_beside(path: Path, suffix: str = "") -> str:
    """A new empty file next to `path` to write and `os.replace` over it, with the permissions a plain `open`
    gives (mkstemp's own are 0600: shipped weights, exports and logs would be unreadable to anyone else)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return tmp
