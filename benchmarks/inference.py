"""Inference throughput of every runtime, side by side, against the machine's SGEMM peak.

    python benchmarks/inference.py [--quick] [--configs rare_tiny rare_resnet34] [--json FILE]

For each config and batch size: img/s per runtime, the ratio to PyTorch eager, and efficiency =
achieved GFLOP/s (FLOPs counted from the spec, direct convolution) / SGEMM GFLOP/s
(`benchmarks.machine.sgemm_gflops`); "in-image" counts no padding taps (`flops_per_image(in_image=True)`),
the work a kernel that skips padding does: near 1.0 there, a runtime's convolutions run at SGEMM speed.
"1st call s": the first call at a batch size (graph compilation, Lite's model build), paid once.
Weights are seeded, not trained: speed does not depend on them.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import machine  # noqa: E402  (after the path it needs)

RESULTS = ROOT / "benchmarks" / "results"
RUNTIMES = ["torch", "mindspore", "mindspore-graph", "onnxruntime", "mindir", "mslite"]


def time_runtime(runtime, batch: np.ndarray, min_seconds: float, min_runs: int) -> tuple:
    """(best-of img/s, seconds of the first call at this batch size): the first call compiles graphs
    (MindSpore) or builds a model for the batch size (MindSpore Lite, MindIR), which a user waits for once."""
    started = time.perf_counter()
    runtime.predict(batch)
    first_call = time.perf_counter() - started
    times, started = [], time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - started < min_seconds:
        t = time.perf_counter()
        runtime.predict(batch)
        times.append(time.perf_counter() - t)
    return len(batch) / min(times), first_call


def open_all(config: str, workdir: Path, wanted):
    from rare_portable import load_config, save_weights, build_model
    from rare_portable.parity import artifact_for
    from rare_portable.errors import UserError
    from runtimes import open_runtime

    spec = load_config(config).spec
    weights = save_weights(build_model(spec, "torch", seed=0), workdir / f"{config}.safetensors")
    opened, skipped = {}, {}
    for backend in wanted:
        try:
            artifact = artifact_for(backend, spec, weights, workdir)
            opened[backend] = open_runtime(backend, spec, artifact or weights)
        except UserError as e:
            skipped[backend] = str(e)
    return spec, opened, skipped


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="rare_tiny and rare_resnet34, short timings")
    parser.add_argument("--configs", nargs="+", default=["rare_tiny", "rare_resnet34"])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    parser.add_argument("--runtimes", nargs="+", default=RUNTIMES)
    parser.add_argument("--json", default=str(RESULTS / "inference.json"))
    args = parser.parse_args(argv)
    from rare_portable.flops import flops_per_image

    min_seconds, min_runs = (1.0, 2) if args.quick else (5.0, 5)
    described = machine.describe()
    peak, kernel = machine.sgemm_gflops()
    print(f"machine: {machine.summary(described)}; SGEMM {peak:.0f} GFLOP/s (OpenBLAS {kernel} kernels)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="rare-bench-") as tmp:
        for config in args.configs:
            spec, runtimes, skipped = open_all(config, Path(tmp), args.runtimes)
            flops = flops_per_image(spec)["total"]
            flops_in_image = flops_per_image(spec, in_image=True)["total"]
            for name, why in skipped.items():
                print(f"{config}: {name} not run: {why}")
            for batch_size in args.batches:
                x = spec.input.example_batch(batch_size)
                timed = {name: time_runtime(rt, x, min_seconds, min_runs) for name, rt in runtimes.items()}
                measured = {name: ips for name, (ips, _) in timed.items()}
                base = measured.get("torch")
                print(f"\n{config} ({flops / 1e9:.2f} GFLOP/image), batch {batch_size}")
                print(f"{'runtime':<16}{'img/s':>9}{'x torch':>9}{'GFLOP/s':>9}{'efficiency':>11}{'in-image':>10}"
                      f"{'1st call s':>11}")
                for name, ips in measured.items():
                    row = {"config": config, "batch": batch_size, "runtime": name, "img_per_s": ips,
                           "vs_torch": ips / base if base else None, "gflops": ips * flops / 1e9,
                           "efficiency": ips * flops / 1e9 / peak,
                           "efficiency_in_image": ips * flops_in_image / 1e9 / peak,
                           "first_call_s": timed[name][1]}
                    rows.append(row)
                    print(f"{name:<16}{ips:>9.1f}{row['vs_torch'] or float('nan'):>9.2f}{row['gflops']:>9.1f}"
                          f"{row['efficiency']:>11.2f}{row['efficiency_in_image']:>10.2f}"
                          f"{row['first_call_s']:>11.2f}")
    result = {"machine": {**machine.finish(described), "sgemm_gflops": peak, "openblas_kernel": kernel}, "rows": rows}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
