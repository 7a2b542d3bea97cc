"""Output files: their folder checked before any work, and written whole or not at all (a temporary file beside
the target, then renamed over it)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Optional, Type, Union

from .errors import UserError

PathLike = Union[str, os.PathLike]  # what every path argument here accepts


def temp_beside(path: Path, suffix: str = "") -> str:
    """A new empty file next to `path` to write and `os.replace` over it, with the permissions a plain `open`
    gives (mkstemp's own are 0600: shipped weights, exports and logs would be unreadable to anyone else)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return tmp


def writable_folder(folder: PathLike, error: Type[UserError] = UserError, named: Optional[PathLike] = None) -> Path:
    """`folder`, created if needed; one that cannot be made or written to raises `error` naming `named` (the file
    meant for it; the folder itself by default). Commands call it before any work, so a long run never ends in a
    traceback with its results unwritten."""
    folder = Path(folder)
    named = folder if named is None else named
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise error(f"{named}: cannot create the folder {folder} ({e.strerror or e}); choose an output path in a "
                    f"folder you can write to") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise error(f"{named}: the folder {folder} is not writable; choose an output path in a folder you can "
                    f"write to")
    return folder


def output_folder(output: PathLike, error: Type[UserError] = UserError) -> Path:
    """The folder the file (or LMDB folder) `output` goes into, as `writable_folder` makes sure of it."""
    return writable_folder(Path(output).parent, error, named=output)
