"""All benchmarks, one after the other (never two at once: they share 2 cores), results in
benchmarks/results/. `--quick` keeps to about 5 minutes on this machine, plus about 4 for the peer
comparison (benchmarks/peers.py).

    python benchmarks/run.py [--quick] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
TRAINED_TINY = ROOT / "runs" / "train_tiny" / "run" / "best.ckpt"  # benchmarks.train_tiny's; int8 measures it


def plan(quick: bool):
    """(name, module args, result file) per benchmark."""
    inference = ["--quick"] if quick else ["--configs", "rare_tiny", "rare_resnet34", "rare_tps_resnet34"]
    int8 = [("int8", ["benchmarks.int8", *(["--quick"] if quick else [])], "int8.json")]
    if not TRAINED_TINY.is_file():
        print(f"int8 skipped: no {TRAINED_TINY} (python -m benchmarks.train_tiny makes it)")
        int8 = []
    return [
        ("data path", ["benchmarks.data_path", "--samples", "1000" if quick else "2000"], "data_path.json"),
        ("synth", ["benchmarks.synth_speed", "--images", "400" if quick else "2000"], "synth_speed.json"),
        ("conv regression", ["benchmarks.conv_regression", "--repeat", "3" if quick else "10"], "conv_regression.json"),
        ("inference", ["benchmarks.inference", *inference], "inference.json"),
        ("ORT profile", ["benchmarks.ort_profile", *(["--repeats", "4"] if quick else [])], "ort_profile.json"),
        ("train step", ["benchmarks.train_step", "--steps", "5" if quick else "20"], "train_step.json"),
        *int8,
        ("precision", ["benchmarks.precision", *(["--quick"] if quick else [])], "precision"),  # one file per CPU kind
        ("peers", ["benchmarks.peers", *(["--quick"] if quick else [])], "peers.json"),
    ]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", default=str(RESULTS / "summary.json"))
    args = parser.parse_args(argv)
    env = dict(os.environ, PYTHONPATH=str(ROOT), GLOG_v=os.environ.get("GLOG_v", "3"))
    summary = {}
    for name, command, result in plan(args.quick):
        print(f"\n=== {name}: python -m {' '.join(command)}", flush=True)
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", *command], cwd=ROOT, env=env, check=True)
        # Each benchmark writes its own result file; the summary says where, not the figures again.
        summary[name] = {"seconds": round(time.perf_counter() - started, 1),
                         "result": str((RESULTS / result).relative_to(ROOT))}
    Path(args.json).write_text(json.dumps(summary, indent=1))
    print(f"\nall results in {RESULTS}; summary {args.json}")


if __name__ == "__main__":
    main()
