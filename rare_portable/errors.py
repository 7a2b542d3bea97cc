"""One base for errors a user can fix (a config key, a file, an input): the CLI prints their one-line
message and exits 2 instead of showing a traceback."""
import sys
from pathlib import Path
from typing import Callable


class UserError(Exception):
    """Bad input named in the message, with the fix."""


def refuse_existing(output: Path) -> None:
    """Tools that make a new weights file never overwrite one."""
    if output.exists():
        raise UserError(f"{output} exists: choose another -o (nothing is overwritten)")


def print_or_exit(action: Callable[[], str]) -> None:
    """A `python -m` tool's end: the line `action` returns, or its UserError as one `error:` line, exit 2."""
    try:
        print(action())
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
