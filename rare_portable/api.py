"""The public entry points: build a network of either framework from a config, move weights in and out."""
from __future__ import annotations

from typing import Sequence, Union

from .config import RareConfig, load_config
from .nets import backend_of, build_network, framework_module
from .nets.common import stn_initial_points
from .spec import ModelSpec
from .weights import expected_shapes, initial_state, load_weights


def resolve_spec(config: Union[str, RareConfig, ModelSpec], opts: Sequence[str] = ()) -> ModelSpec:
    if isinstance(config, ModelSpec):
        return config
    if isinstance(config, RareConfig):
        return config.spec
    return load_config(config, opts).spec


def build_model(config: Union[str, RareConfig, ModelSpec], backend: str = "torch", opts: Sequence[str] = (),
                weights=None, seed: int = 0, train: bool = False):
    """A RARE network for `backend` ("torch" or "mindspore") in eval mode (train mode with `train=True`).

    Fresh weights are framework-neutral (`initial_state`), so both backends start identical for a seed."""
    spec = resolve_spec(config, opts)
    net = build_network(spec, backend)
    if weights is not None:
        load_weights(net, weights)  # strict: it sets every tensor, so no initialisation first
    else:
        special = {}
        if spec.transform is not None:
            special = {"transform.stn_head.stn_fc2.weight": 0.0,  # start from the identity rectification
                       "transform.stn_head.stn_fc2.bias": stn_initial_points(spec.transform)}
        framework_module(backend).set_state(net, initial_state(expected_shapes(net), seed, special))
    set_mode(net, train)
    return net


def set_mode(net, train: bool):
    """Train or eval mode, whichever framework built `net`."""
    return framework_module(backend_of(net)).set_mode(net, train)
