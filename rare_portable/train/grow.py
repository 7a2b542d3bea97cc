"""Deepen a trained RARE without changing a word it reads, so training can go on with more capacity.

The backbone's blocks are numbered across stages (`block_list.N`), so adding a block to a stage renumbers every
block after it: each trained block is copied to its new number, and each added block (stride 1, as many channels
in as out, identity shortcut) starts with its last batch-norm at zero. Its residual branch then adds nothing and
the ReLU after the sum passes the previous block's (non-negative) output through unchanged: the deeper network
computes exactly what the trained one did, and its new convolutions start from the usual fresh initialisation.

`--tps` puts a TPS rectifier in front of a network trained without one. Its last layer starts with zero weights
and the control points at the TPS margins as bias, and it samples with `align_corners`: the grid is then every
pixel's own centre, so the network reads what it read (to float rounding) until training bends the grid.

    python -m rare_portable.train.grow -c CONFIG -w WEIGHTS --depths 1 1 2 2 -o grown.safetensors
    python -m rare_portable.train.grow -c CONFIG -w WEIGHTS --tps --loc-channels 16 32 64 128 128 128 -o tps.safetensors
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..api import build_model, resolve_spec
from ..errors import UserError, print_or_exit, refuse_existing
from ..nets.common import stn_initial_points
from ..spec import ModelSpec, TransformSpec
from ..weights import State, get_state, write_state

BLOCK_PREFIX = "backbone.block_list."
ZEROED = ("conv1.norm.gamma", "conv1.norm.beta")  # the residual branch's last batch-norm
STN_BIAS = "transform.stn_head.stn_fc2.bias"


def with_depths(spec: ModelSpec, depths: Sequence[int]) -> ModelSpec:
    return replace(spec, backbone=replace(spec.backbone, depths=tuple(depths)))


def with_tps(spec: ModelSpec, loc_channels: Optional[Sequence[int]] = None) -> ModelSpec:
    """`spec` with MindOCR's STN_ON in front, sampling with align_corners (the identity needs it)."""
    if spec.transform is not None:
        raise UserError("grow: --tps: the trained network already has a TPS rectifier (model.transform); "
                        "leave --tps out")
    extra = {} if loc_channels is None else {"loc_channels": tuple(loc_channels)}
    return replace(spec, transform=TransformSpec(align_corners=True, **extra))


def check_deeper(old_depths: Sequence[int], new_depths: Sequence[int]) -> None:
    if len(new_depths) != len(old_depths) or any(n < o for n, o in zip(new_depths, old_depths)):
        raise UserError(f"grow: --depths {list(new_depths)} must keep the {len(old_depths)} stages of "
                        f"{list(old_depths)} and add blocks only (each stage at least as deep)")
    if tuple(new_depths) == tuple(old_depths):
        raise UserError(f"grow: --depths {list(new_depths)} are the trained network's own: add a block to a stage")


def block_numbers(depths: Sequence[int]) -> List[Tuple[int, int]]:
    """(stage, index within the stage) of `block_list.N`, for every N."""
    return [(stage, n) for stage, depth in enumerate(depths) for n in range(depth)]


def grow_state(trained: State, old_depths: Sequence[int], new: ModelSpec, seed: int = 0) -> Tuple[State, List[int]]:
    """`trained` (MindOCR names, blocks per stage `old_depths`) as weights of the deeper network `new`, whose
    other tensors start as a fresh network of `seed` does; the numbers of the added blocks."""
    grown = get_state(build_model(new, "torch", seed=seed))
    old_number = {place: n for n, place in enumerate(block_numbers(old_depths))}
    added = []
    for new_n, place in enumerate(block_numbers(new.backbone.depths)):
        if place in old_number:
            _copy_block(trained, grown, old_number[place], new_n)
        else:
            added.append(new_n)
            for leaf in ZEROED:
                key = f"{BLOCK_PREFIX}{new_n}.{leaf}"
                grown[key] = np.zeros_like(grown[key])
    for key, value in trained.items():
        if not key.startswith(BLOCK_PREFIX):
            grown[key] = value
    if STN_BIAS in grown and STN_BIAS not in trained:  # the rectifier is new: start it as the identity
        grown[STN_BIAS] = stn_initial_points(new.transform, new.transform.tps_margins)
    return grown, added


def _copy_block(trained: State, grown: State, old_n: int, new_n: int) -> None:
    prefix = f"{BLOCK_PREFIX}{old_n}."
    for key, value in trained.items():
        if key.startswith(prefix):
            grown[f"{BLOCK_PREFIX}{new_n}.{key[len(prefix):]}"] = value


def grow_file(config: str, weights: str, depths: Optional[Sequence[int]], output: Path, seed: int = 0,
              tps: bool = False, loc_channels: Optional[Sequence[int]] = None) -> str:
    """Write the grown weights of `config`'s network trained as `weights`; the line that says what was done."""
    refuse_existing(output)
    if loc_channels is not None and not tps:
        raise UserError("grow: --loc-channels sizes the rectifier that --tps adds: add --tps or leave it out")
    if depths is None and not tps:
        raise UserError("grow: nothing to add: give --depths (more blocks per stage), --tps (a rectifier) or both")
    old = resolve_spec(config)
    new, done, opts = old, [], []
    if depths is not None:
        check_deeper(old.backbone.depths, depths)
        new = with_depths(new, depths)
    if tps:
        new = with_tps(new, loc_channels)
    trained = get_state(build_model(old, "torch", weights=weights))  # strict: the weights must fit the config
    grown, added = grow_state(trained, old.backbone.depths, new, seed)
    write_state(grown, output)
    if depths is not None:
        done.append(f"depths {list(old.backbone.depths)} -> {list(depths)}; added blocks "
                    f"{', '.join(f'block_list.{n}' for n in added)} start as the identity")
        opts.append(f"--opt model.backbone.depths=[{','.join(map(str, depths))}]")
    if tps:
        t = new.transform
        trainable = sum(v.size for k, v in grown.items() if k.startswith("transform.") and ".moving_" not in k)
        done.append(f"a TPS rectifier ({trainable:,} parameters) starts as the identity")
        opts.append(f"--opt 'model.transform={{name: STN_ON, align_corners: true, "
                    f"loc_channels: [{', '.join(map(str, t.loc_channels))}]}}'")
    return f"{output}: {'; '.join(done)}; train it with {' '.join(opts)}"


def main(argv: Sequence[str] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--config", required=True, help="the trained network's config (yaml or name)")
    parser.add_argument("-w", "--weights", required=True, help="its weights (file or shipped name)")
    parser.add_argument("--depths", type=int, nargs="+", help="blocks per stage of the deeper network")
    parser.add_argument("--tps", action="store_true", help="add a TPS rectifier (MindOCR's STN_ON) in front")
    parser.add_argument("--loc-channels", type=int, nargs="+",
                        help="its localisation convnet's channels (default MindOCR's 32 64 128 256 256 256)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the grown weights (.safetensors)")
    parser.add_argument("--seed", type=int, default=0, help="initialisation of the added convolutions")
    args = parser.parse_args(argv)
    print_or_exit(lambda: grow_file(args.config, args.weights, args.depths, args.output, args.seed,
                                    args.tps, args.loc_channels))


if __name__ == "__main__":
    main()
