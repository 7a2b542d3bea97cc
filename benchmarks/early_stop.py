"""The decoder that stops at STOP (`rare export --decoder stepwise`) against the unrolled ONNX graph, on ONNX
Runtime, side by side (alternating rounds, best each), on real held-out crops.

    python -m benchmarks.early_stop [--quick]

The early stop only pays where the model emits STOP, so it is measured on the shipped, trained model
(rare_small_en); seeded weights never stop early and say nothing. Writes benchmarks/results/early_stop.json.
Goal (issue 14): batch 1 at least 2x the unrolled graph's img/s for rare_tiny, 1.2x for rare_resnet34.
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

from benchmarks import machine  # noqa: E402
from benchmarks.int8 import time_side_by_side  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
REAL_HOLDOUT = ROOT / "data" / "real" / "holdout"


def real_batch(spec, count: int) -> np.ndarray:
    """`count` crops drawn (seed 0) from the real held-out splits (rendered words where they are absent)."""
    from rare_portable.data.lmdb import LmdbDataset, find_lmdb_datasets
    from rare_portable.data.preprocess import batch
    from rare_portable.data.synth import render_words

    images = []
    if REAL_HOLDOUT.is_dir():
        for path in find_lmdb_datasets(REAL_HOLDOUT):
            dataset = LmdbDataset(path)
            images += [s.image for s in (dataset[i] for i in range(len(dataset))) if s.image is not None]
    if not images:
        images, _ = render_words(spec, count, 5)
    rng = np.random.default_rng(0)
    return batch([images[i] for i in rng.choice(len(images), count, replace=False)], spec.input)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 32])
    args = parser.parse_args(argv)
    import onnxruntime

    from exporters.onnx_export import export_onnx
    from exporters.onnx_stepwise import export_stepwise
    from rare_portable import build_model
    from rare_portable.config import load_config
    from rare_portable.parity import after_stop
    from rare_portable.pretrained import DEFAULT_MODEL
    from runtimes import open_runtime

    rounds = 3 if args.quick else 6
    started = time.perf_counter()
    result = {"machine": machine.describe(onnxruntime=onnxruntime.__version__), "model": DEFAULT_MODEL,
              "rounds": rounds, "rows": []}
    print(f"machine: {machine.summary(result['machine'])}")
    spec = load_config(DEFAULT_MODEL).spec
    with tempfile.TemporaryDirectory(prefix="rare-early-stop-") as tmp:
        net = build_model(spec, "torch", weights=DEFAULT_MODEL)
        runtimes = {"unrolled": open_runtime("onnxruntime", None, export_onnx(net, Path(tmp) / "u.onnx").path),
                    "stepwise": open_runtime("onnxruntime", None, export_stepwise(net, Path(tmp) / "s.onnx"))}
        for size in args.batches:
            x = real_batch(spec, size)
            steps_run = int((~after_stop(runtimes["unrolled"].predict(x).argmax(-1))).sum(1).max())
            measured = time_side_by_side(runtimes, x, rounds)
            row = {"batch": size, "steps_run": steps_run,
                   "of_steps": spec.head.num_steps, **{f"{k}_img_per_s": v for k, v in measured.items()},
                   "speedup": measured["stepwise"] / measured["unrolled"]}
            result["rows"].append(row)
            print(f"batch {size}: {row['steps_run']} of {row['of_steps']} steps; unrolled {measured['unrolled']:.1f} "
                  f"img/s, stepwise {measured['stepwise']:.1f} img/s ({row['speedup']:.2f}x)")
    machine.finish(result["machine"])
    result["seconds"] = round(time.perf_counter() - started, 1)
    path = RESULTS / "early_stop.json"
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")
    return result


if __name__ == "__main__":
    main()
