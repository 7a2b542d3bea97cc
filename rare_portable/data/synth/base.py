"""What every synth module shares: the error type and the path type."""
from __future__ import annotations

import os
from typing import Union

from ...errors import UserError

PathLike = Union[str, os.PathLike]


class SynthError(UserError, ValueError):
    """Settings that cannot produce the requested images; the message says what to change."""
