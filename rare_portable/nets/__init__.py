"""Builders per framework, registered by backend name; each imports its framework only when asked for.

Each framework module turns `common.plan(spec)` into layers and provides the same hooks: `RARE`,
`canonical_names`, `get_state`, `set_state`, `set_mode`, `infer` and `pt_names`."""
from __future__ import annotations

import importlib
from typing import Dict, Optional

from ..spec import ModelSpec
from ..errors import UserError
from .common import Flavour, export_flavour

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


def build_network(spec: ModelSpec, backend: str, flavour: Optional[Flavour] = None):
    """A freshly built network; weights are set by the caller (see `rare_portable.api`). `flavour` (default:
    `common.current_flavour()`) picks the export graph, once, at build time."""
    if flavour is None:
        return framework_module(backend).RARE(spec)
    with export_flavour(flavour):
        return framework_module(backend).RARE(spec)


def rebuild(net, flavour: Flavour):
    """A copy of `net` built in `flavour`, with its weights, in eval mode; `net` itself is untouched."""
    module = framework_module(backend_of(net))
    copy = build_network(net.spec, backend_of(net), flavour)
    module.set_state(copy, module.get_state(net))  # every tensor: no initialisation needed
    return module.set_mode(copy, False)


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
