"""What every synth module shares: the error type and the path type."""
from __future__ import annotations

from ...errors import UserError
from ...files import PathLike  # noqa: F401  (re-exported: the synth modules import it from here)


class SynthError(UserError, ValueError):
    """Settings that cannot produce the requested images; the message says what to change."""
