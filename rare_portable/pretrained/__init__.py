"""Models we ship: trained weights inside the package, each with the config, recipe and report that made it.

A shipped model is named like a shipped config: `-w rare_small_en` loads `rare_small_en.safetensors` from
this folder and, where no `-c` is given, its own `rare_small_en.yaml`. `rare_small_en.md` holds the exact
commands that trained it and `rare_small_en.json` its evaluation report. `rare predict` uses
`DEFAULT_MODEL` when no weights are given.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from ..errors import UserError

PRETRAINED_DIR = Path(__file__).resolve().parent
WEIGHTS_SUFFIX = ".safetensors"
DEFAULT_MODEL = "rare_small_en"


class PretrainedError(UserError, ValueError):
    """A shipped-model name that does not exist; the message lists the ones that do."""


def list_pretrained() -> List[str]:
    """Names of the shipped models: those whose weights and config are both here."""
    return sorted(p.stem for p in PRETRAINED_DIR.glob(f"*{WEIGHTS_SUFFIX}") if p.with_suffix(".yaml").is_file())


def looks_like_name(value: str) -> bool:
    """A bare word (no folder, no suffix) is read as a shipped-model name, anything else as a path."""
    path = Path(value)
    return path.name == value and not path.suffix


def pretrained_weights(name: str) -> Path:
    if name not in list_pretrained():
        shipped = ", ".join(list_pretrained()) or "none in this installation"
        raise PretrainedError(f"weights {name!r}: no such file and no shipped model of that name (shipped: "
                              f"{shipped}); pass a .ckpt/.pt/.safetensors path or a shipped name")
    return PRETRAINED_DIR / f"{name}{WEIGHTS_SUFFIX}"


def pretrained_config(name: str) -> Path:
    return pretrained_weights(name).with_suffix(".yaml")


def resolve_weights(value) -> Path:
    """A weights path as given, or a shipped model's weights file for a bare name that is not a file."""
    path = Path(value)
    if not path.exists() and looks_like_name(str(value)):
        return pretrained_weights(str(value))
    return path


def shipped_name(weights: Optional[str]) -> Optional[str]:
    """The shipped model `weights` names, if it names one (and is not a file of that name here)."""
    if weights is None or Path(weights).exists() or not looks_like_name(weights):
        return None
    pretrained_weights(weights)  # an unknown name is an error, not a path
    return weights
