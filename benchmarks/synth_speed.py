"""Throughput of `rare synth` rendering (word choice -> text -> distortion -> PNG), with 1 and 2 workers.

Times `render_samples` end to end, worker start-up included, for the default plan (0-9a-z, built-in
lexicon, height 32), and checks that both worker counts produce the same bytes. The plan (font survey)
is timed separately: it is paid once per run. The machine may be shared, so the load average is recorded.

    python -m benchmarks.synth_speed [--images 2000] [--workers 1 2]      (from the repository root)

Prints the figures and writes them to benchmarks/results/synth_speed.json.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import cv2
import numpy as np
import PIL

from benchmarks import machine
from rare_portable.data.synth import make_plan, render_samples


def timed_render(plan, images, workers):
    digest = hashlib.sha256()
    began = time.perf_counter()
    for image_bytes, label in render_samples(plan, images, workers=workers):
        digest.update(image_bytes)
        digest.update(label.encode("utf-8"))
    return time.perf_counter() - began, digest.hexdigest()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "synth_speed.json"))
    args = parser.parse_args()

    described = machine.describe(numpy=np.__version__, opencv=cv2.__version__, pillow=PIL.__version__)
    began = time.perf_counter()
    plan = make_plan(seed=args.seed)
    plan_seconds = time.perf_counter() - began

    runs = []
    for workers in args.workers:
        seconds, digest = timed_render(plan, args.images, workers)
        runs.append({"workers": workers, "seconds": round(seconds, 3),
                     "images_per_second": round(args.images / seconds, 1), "sha256": digest})
        print(f"{workers} worker(s): {args.images} images in {seconds:.2f} s = {args.images / seconds:.0f} img/s")
    base = runs[0]["images_per_second"]
    for run in runs[1:]:
        run["speedup_vs_first"] = round(run["images_per_second"] / base, 2)
        print(f"{run['workers']} vs {runs[0]['workers']} worker(s): {run['speedup_vs_first']:.2f}x")
    identical = len({run["sha256"] for run in runs}) == 1
    print(f"plan (font survey): {plan_seconds:.2f} s; outputs identical across worker counts: {identical}")

    result = {
        "images": args.images,
        "seed": args.seed,
        "height": plan.height,
        "fonts": len(plan.fonts),
        "plan_seconds": round(plan_seconds, 3),
        "runs": runs,
        "identical_across_worker_counts": identical,
        "machine": machine.finish(described),
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
