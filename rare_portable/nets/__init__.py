"""Builders per framework, registered by backend name; each imports its framework only when asked for."""
from __future__ import annotations

import importlib
from typing import Dict

from ..spec import ModelSpec
from ..errors import UserError

BUILDERS: Dict[str, str] = {
    "torch": "rare_portable.nets.torch_rare",
    "mindspore": "rare_portable.nets.ms_rare",
}
INSTALL_HINT = {
    "torch": "pip install -c constraints.txt 'rare-portable[torch]'",
    "mindspore": "pip install -c constraints.txt 'rare-portable[mindspore]'",
    "openvino": "pip install -c constraints.txt 'rare-portable[openvino]'",
}


class BackendUnavailable(UserError, RuntimeError):
    """The framework a backend needs is not installed; the message says how to install it."""


def framework_module(backend: str):
    if backend not in BUILDERS:
        raise ValueError(f"unknown backend {backend!r}; choose one of {', '.join(BUILDERS)}")
    try:
        return importlib.import_module(BUILDERS[backend])
    except ImportError as e:
        raise BackendUnavailable(f"backend {backend!r} needs {e.name or 'its framework'}: {INSTALL_HINT[backend]}") from None


def build_network(spec: ModelSpec, backend: str):
    """A freshly built network; weights are set by the caller (see `rare_portable.api`)."""
    return framework_module(backend).RARE(spec)


def backend_of(net) -> str:
    """Which framework a network object belongs to, without importing the other one."""
    module = type(net).__module__
    for backend, path in BUILDERS.items():
        if module == path:
            return backend
    root = module.split(".")[0]
    if root in ("torch", "mindspore"):
        return root
    raise TypeError(f"not a RARE network: {type(net).__name__}")
