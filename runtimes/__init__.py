"""Runtimes: run a RARE model from any framework or artifact behind one `predict` interface."""
from .base import PRESET_OPTIONS, RUNTIMES, Runtime, open_runtime

__all__ = ["Runtime", "RUNTIMES", "PRESET_OPTIONS", "open_runtime"]
