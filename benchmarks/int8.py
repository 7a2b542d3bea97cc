"""int8 ONNX (static and dynamic, `rare export --int8`) against fp32 ONNX Runtime: speed and accuracy.

    python -m benchmarks.int8 [--quick] [--weights runs/train_tiny/run/best.ckpt] [--json FILE]

1. Throughput of fp32, static int8 and dynamic int8 on ONNX Runtime, side by side: the three models of a
   config are timed in alternating rounds (best round each, a round ~0.3 s of calls per model), so a burst
   of load on a shared machine hits all of them. rare_tiny uses the trained checkpoint's models (the ones whose accuracy is reported);
   rare_resnet34 seeded weights (speed does not depend on them).
2. Word accuracy of the trained rare_tiny (`--weights`, from `python -m benchmarks.train_tiny`) on a held-out
   rendered set (seed HELD_OUT_SEED; calibration uses CALIBRATION_SEED), fp32 vs each int8 model, and the
   share of words that read differently from fp32 (what `rare parity` holds int8 to).

Goal (issue 6): >= 1.8x fp32 throughput with <= 0.5 points of accuracy lost. Writes benchmarks/results/int8.json.
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
DEFAULT_WEIGHTS = ROOT / "runs" / "train_tiny" / "run" / "best.ckpt"
HELD_OUT_SEED = 20  # not CALIBRATION_SEED (7), nor train_tiny's training (1) and held-out (2) seeds
GOAL_SPEEDUP, GOAL_MAX_ACC_LOSS_POINTS = 1.8, 0.5
VARIANTS = ("fp32", "int8 static", "int8 dynamic")


def build_variants(spec, weights, workdir: Path, calibration_images: int):
    """fp32 ONNX and its static and dynamic int8 copies, opened on ONNX Runtime, with their int8 records."""
    from exporters.onnx_export import export_onnx
    from exporters.quantize import quantize_onnx, rendered_calibration
    from rare_portable import build_model
    from runtimes import open_runtime

    fp32 = export_onnx(build_model(spec, "torch", weights=weights, seed=0), workdir / f"{spec.name}.onnx").path
    static = quantize_onnx(fp32, workdir / f"{spec.name}.static.onnx", "static",
                           rendered_calibration(spec, calibration_images))
    dynamic = quantize_onnx(fp32, workdir / f"{spec.name}.dynamic.onnx", "dynamic")
    paths = dict(zip(VARIANTS, (fp32, static.path, dynamic.path)))
    return ({name: open_runtime("onnxruntime", spec, path) for name, path in paths.items()},
            {"int8 static": static.record, "int8 dynamic": dynamic.record})


def time_side_by_side(runtimes, batch: np.ndarray, rounds: int, block_seconds: float = 0.3) -> dict:
    """img/s per runtime: best of `rounds` alternating rounds. A round times each runtime over a block of
    calls lasting about `block_seconds` (one call if longer), because the previous session's threads keep
    spinning for a while after its last call and would slow a lone short call of the next one."""
    calls = {}
    for name, runtime in runtimes.items():
        runtime.predict(batch)  # warm-up
        started = time.perf_counter()
        runtime.predict(batch)
        calls[name] = max(1, round(block_seconds / (time.perf_counter() - started)))
    best = {name: float("inf") for name in runtimes}
    for _ in range(rounds):
        for name, runtime in runtimes.items():
            started = time.perf_counter()
            for _ in range(calls[name]):
                runtime.predict(batch)
            best[name] = min(best[name], (time.perf_counter() - started) / calls[name])
    return {name: len(batch) / seconds for name, seconds in best.items()}


def throughput_rows(config: str, runtimes, batches, rounds: int):
    spec = next(iter(runtimes.values())).spec
    rows = []
    for batch_size in batches:
        x = spec.input.example_batch(batch_size)
        measured = time_side_by_side(runtimes, x, rounds)
        print(f"\n{config}, batch {batch_size} ({rounds} alternating rounds, best each)")
        print(f"{'model':<14}{'img/s':>9}{'x fp32':>9}")
        for name, ips in measured.items():
            rows.append({"config": config, "batch": batch_size, "model": name, "img_per_s": ips,
                         "vs_fp32": ips / measured["fp32"]})
            print(f"{name:<14}{ips:>9.1f}{ips / measured['fp32']:>9.2f}")
    return rows


def accuracy(config, runtimes, count: int) -> dict:
    """Word accuracy per model on `count` held-out rendered words, and each int8 model's words vs fp32."""
    from rare_portable.evaluation import metric_options, postprocess_lower
    from rare_portable.data.synth import render_words
    from rare_portable.metrics import rec_metric
    from rare_portable.parity import INT8_MAX_WORD_DISAGREEMENT

    images, labels = render_words(config.spec, count, HELD_OUT_SEED)
    texts = {}
    for name, runtime in runtimes.items():
        read = runtime.recognise_all(enumerate(images), batch_size=32, lower=postprocess_lower(config))
        texts[name] = [text for _, (text, _) in read]
    scores = {name: rec_metric(t, labels, config.spec.charset, **metric_options(config)) for name, t in texts.items()}
    print(f"\nrare_tiny (trained) on {count} held-out rendered words (seed {HELD_OUT_SEED})")
    print(f"{'model':<14}{'accuracy':>9}{'lost (points)':>14}{'words ≠ fp32':>14}")
    out = {}
    for name, score in scores.items():
        differing = sum(a != b for a, b in zip(texts[name], texts["fp32"]))
        loss = 100 * (scores["fp32"]["acc"] - score["acc"])
        out[name] = {"acc": score["acc"], "norm_edit_distance": score["norm_edit_distance"], "acc_loss_points": loss,
                     "words_differing_from_fp32": differing, "word_disagreement": differing / count,
                     "parity_int8_class_ok": differing / count <= INT8_MAX_WORD_DISAGREEMENT}
        print(f"{name:<14}{score['acc']:>9.4f}{loss:>14.2f}{f'{differing} ({differing / count:.1%})':>14}")
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calibration/held-out words, fewer rounds")
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS, help="a trained rare_tiny checkpoint")
    parser.add_argument("--configs", nargs="+", default=["rare_tiny", "rare_resnet34"])
    parser.add_argument("--batches", nargs="+", type=int, default=[32, 1])
    parser.add_argument("--json", default=str(RESULTS / "int8.json"))
    args = parser.parse_args(argv)
    if not args.weights.is_file():
        sys.exit(f"{args.weights}: no trained rare_tiny checkpoint. Train one first with "
                 f"`python -m benchmarks.train_tiny` (about 30 minutes on 2 cores), or pass --weights")
    import onnxruntime

    from rare_portable import load_config

    calibration_images, held_out, rounds = (64, 300, 3) if args.quick else (256, 1000, 6)
    started = time.perf_counter()
    result = {"machine": machine.describe(onnxruntime=onnxruntime.__version__), "weights": str(args.weights),
              "calibration_images": calibration_images,
              "held_out_words": held_out, "rounds": rounds, "goal": {"speedup": GOAL_SPEEDUP,
                                                                    "max_acc_loss_points": GOAL_MAX_ACC_LOSS_POINTS}}
    print(f"machine: {machine.summary(result['machine'])} (timings on a shared machine)")
    rows, records = [], {}
    with tempfile.TemporaryDirectory(prefix="rare-int8-bench-") as tmp:
        for name in args.configs:
            config = load_config(name)
            weights = args.weights if name == "rare_tiny" else None
            runtimes, records[name] = build_variants(config.spec, weights, Path(tmp), calibration_images)
            rows += throughput_rows(name, runtimes, args.batches, rounds)
            if name == "rare_tiny":
                result["accuracy_rare_tiny"] = accuracy(config, runtimes, held_out)
    result["throughput"] = rows
    result["int8_records"] = records
    result["goal_met"] = goal_verdicts(rows, result.get("accuracy_rare_tiny", {}))
    machine.finish(result["machine"])
    result["seconds"] = round(time.perf_counter() - started, 1)
    print(f"\ngoal: >= {GOAL_SPEEDUP}x fp32 at batch 32, <= {GOAL_MAX_ACC_LOSS_POINTS} points lost (trained rare_tiny)")
    for method, verdict in result["goal_met"].items():
        speed = ", ".join(f"{config} {x:.2f}x" for config, x in verdict["speedup_batch32"].items())
        loss = "n/a" if verdict["acc_loss_points"] is None else f"{verdict['acc_loss_points']:.2f} points lost"
        print(f"  {method}: {speed}; {loss} -> {'met' if verdict['met'] else 'NOT met'}")
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1, ensure_ascii=False))
    print(f"wrote {args.json}")
    return result


def goal_verdicts(rows, acc) -> dict:
    """Per int8 method: the batch-32 speed-up per config, and the accuracy lost where a trained model says."""
    verdicts = {}
    for method in VARIANTS[1:]:
        speedups = {r["config"]: r["vs_fp32"] for r in rows if r["model"] == method and r["batch"] == 32}
        loss = acc[method]["acc_loss_points"] if method in acc else None
        met = all(s >= GOAL_SPEEDUP for s in speedups.values()) and loss is not None and loss <= GOAL_MAX_ACC_LOSS_POINTS
        verdicts[method] = {"speedup_batch32": speedups, "acc_loss_points": loss, "met": met}
    return verdicts


if __name__ == "__main__":
    main()
