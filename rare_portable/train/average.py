"""Average the weights of several runs of one network that all started from the same trained weights.

Runs fine-tuned from one starting point stay in one basin of the loss, so the element-wise mean of their
weights (a "model soup", Wortsman et al. 2022) reads about as well as the best of them and often better: it
averages away the noise each run's last steps leave. Batch-norm statistics are averaged like every other tensor.
The shipped model's recipe measures it before using it (rare_portable/pretrained/rare_small_en.md).

    python -m rare_portable.train.average -c CONFIG -w RUN1 RUN2 [RUN3 ...] -o averaged.safetensors [--float16]

A file named n times counts n times: a stored mean of n runs joins new runs from the same start as
`-w MEAN MEAN ... (n times) NEW_RUN`, which is the mean of all n + 1 (up to the stored mean's rounding).

--float16 stores the mean's floating-point tensors as float16: half the file, and every loader here reads them
back into the float32 network (the shipped model is stored so; its recipe measures that it reads the same).
"""
from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np

from ..api import build_model
from ..errors import UserError, print_or_exit, refuse_existing
from ..weights import State, get_state, load_weights, write_state


def average_states(states: Sequence[State]) -> State:
    """The element-wise mean of tensors stored under the same names (float32 sums, each tensor's dtype kept)."""
    return {name: np.mean([state[name] for state in states], axis=0, dtype=np.float32).astype(value.dtype)
            for name, value in states[0].items()}


def as_float16(state: State) -> State:
    """Floating-point tensors as float16 (what they round to), the others unchanged; a tensor beyond float16's
    range (it would turn to inf) is an error naming it."""
    limit = float(np.finfo(np.float16).max)
    for name, value in state.items():
        if np.issubdtype(value.dtype, np.floating) and value.size and float(np.abs(value).max()) > limit:
            raise UserError(f"average --float16: {name} holds {float(np.abs(value).max()):.3g}, beyond float16's "
                            f"{limit:g}; store it in float32 (leave out --float16)")
    return {name: value.astype(np.float16) if np.issubdtype(value.dtype, np.floating) else value
            for name, value in state.items()}


def average_file(config: str, weights: Sequence[str], output: Path, float16: bool = False) -> str:
    """Write the mean of `weights` (each must fit `config`'s network), stored as float16 with `float16`; the
    line that says what was done."""
    refuse_existing(output)
    if len(weights) < 2:
        raise UserError(f"average: -w names {len(weights)} weights file(s); give two or more runs to average")
    net = build_model(config, "torch")
    counts = Counter(map(str, weights))  # a file named n times is read once and counted n times
    states = {}
    for path in counts:
        load_weights(net, path)  # strict: each must fit the config's network
        states[path] = get_state(net)
    mean = average_states([states[str(path)] for path in weights])
    write_state(as_float16(mean) if float16 else mean, output)
    stored = ", stored as float16" if float16 else ""
    named = ", ".join(path if n == 1 else f"{path} x {n}" for path, n in counts.items())
    return f"{output}: the mean of {len(weights)} weights files ({named}){stored}"


def main(argv: Sequence[str] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-c", "--config", required=True, help="the network's config (yaml or name)")
    parser.add_argument("-w", "--weights", nargs="+", required=True, help="the runs' weights (files or shipped names)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="the averaged weights (.safetensors)")
    parser.add_argument("--float16", action="store_true", help="store the mean as float16 (half the file)")
    args = parser.parse_args(argv)
    print_or_exit(lambda: average_file(args.config, args.weights, args.output, args.float16))


if __name__ == "__main__":
    main()
