"""Every engine and precision on this CPU, side by side: fp32 ONNX Runtime against int8 (ONNX Runtime, OpenVINO),
bf16 (OpenVINO), the decoder that stops at STOP, PyTorch, MindSpore (graph) and MindSpore Lite, with the
accuracy each reduced precision keeps on real held-out words (issue 14).

    python -m benchmarks.precision [--quick] [--configs rare_tiny rare_resnet34] [--batches 32 1]

1. Throughput per config and batch size: every variant timed in alternating rounds (best round each), so a
   burst of load hits all of them. Weights are seeded (speed does not depend on them; the stepwise decoder
   runs all 26 steps on them, so its figure here is a floor: benchmarks/early_stop.py times it on real
   crops with the shipped model). MindSpore Lite joins where its interpreter is provisioned.
2. Accuracy of the shipped model (rare_small_en) per variant on the real held-out words (data/real/holdout:
   `rare lmdb split`, see rare_portable/pretrained/rare_small_en.md) and the share of words that read
   differently from fp32 ONNX Runtime (what `rare parity` holds bf16 and int8 to).

Writes benchmarks/results/precision/<cpu>.json and .md: one table per CPU kind met, kept side by side.
Goal (issue 14): rare_resnet34 batch 32 >= 4x fp32 ONNX Runtime on a CPU with AMX (>= 2x without), with at
most 0.5 points of real accuracy lost.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import machine  # noqa: E402  (after the path it needs)
from benchmarks.int8 import throughput_rows  # noqa: E402
from rare_portable.weights import save_weights  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "precision"
REAL_HOLDOUT = ROOT / "data" / "real" / "holdout"
# variant -> (backend, which file); OpenVINO's int8 with the bf16 hint runs int8 convolutions, bf16 elsewhere.
# "weights": the framework runtimes read the weights themselves.
VARIANTS = {"fp32": ("onnxruntime", "fp32"), "ort int8": ("onnxruntime", "static"),
            "ov fp32": ("openvino", "fp32"), "ov bf16": ("openvino-bf16", "fp32"),
            "ov int8": ("openvino", "static"), "ov int8+bf16": ("openvino-bf16", "static")}
ENGINES = {"ort stepwise": ("onnxruntime", "stepwise"), "torch": ("torch", "weights"),
           "ms graph": ("mindspore-graph", "weights"), "mslite": ("mslite", "lite")}


def open_variants(spec, weights, workdir: Path, calibration_images: int, engines: bool = False):
    """The reduced-precision variants; with `engines`, the other engines too (the throughput table)."""
    from exporters.onnx_export import export_onnx
    from exporters.quantize import quantize_onnx, rendered_calibration
    from rare_portable import build_model
    from runtimes import open_runtime

    net = build_model(spec, "torch", weights=weights, seed=0)
    files = {"fp32": export_onnx(net, workdir / f"{spec.name}.onnx").path}
    files["static"] = quantize_onnx(files["fp32"], workdir / f"{spec.name}.static.onnx", "static",
                                    rendered_calibration(spec, calibration_images)).path
    chosen = dict(VARIANTS)
    if engines:
        from exporters.onnx_stepwise import export_stepwise
        from rare_portable.mslite_bridge import availability

        files["weights"] = save_weights(net, workdir / f"{spec.name}.safetensors")  # the same weights as the files
        files["stepwise"] = export_stepwise(net, workdir / f"{spec.name}.stepwise.onnx")
        chosen.update(ENGINES)
        lite_missing = availability()
        if lite_missing is None:
            from exporters.mslite_export import export_mslite

            files["lite"] = export_mslite(net, workdir / f"{spec.name}.ms").path
        else:
            print(f"mslite left out: {lite_missing}")
            del chosen["mslite"]
    return {name: open_runtime(backend, spec if kind == "weights" else None, files[kind])
            for name, (backend, kind) in chosen.items()}


def real_accuracy(config, runtimes, limit=None) -> dict:
    """Word accuracy per variant on each real held-out split, and words differing from fp32 over all."""
    from rare_portable.evaluation import metric_options, postprocess_lower
    from rare_portable.data.lmdb import LmdbDataset, find_lmdb_datasets
    from rare_portable.metrics import rec_metric

    out = {name: {"splits": {}, "texts": []} for name in runtimes}
    labels_all = []
    for path in find_lmdb_datasets(REAL_HOLDOUT):
        dataset = LmdbDataset(path)
        samples = [dataset[i] for i in range(len(dataset) if limit is None else min(limit, len(dataset)))]
        samples = [s for s in samples if s.image is not None]
        labels = [s.label for s in samples]
        labels_all += labels
        for name, runtime in runtimes.items():
            read = runtime.recognise_all(((i, s.image) for i, s in enumerate(samples)), batch_size=32,
                                         lower=postprocess_lower(config))
            texts = [text for _, (text, _) in read]
            out[name]["texts"] += texts
            out[name]["splits"][path.name] = rec_metric(texts, labels, config.spec.charset,
                                                        **metric_options(config))["acc"]
    fp32 = out["fp32"]
    fp32["mean"] = sum(fp32["splits"].values()) / len(fp32["splits"])
    for row in out.values():
        row["mean"] = sum(row["splits"].values()) / len(row["splits"])
        row["acc_loss_points"] = 100 * (fp32["mean"] - row["mean"])
        row["words_differing_from_fp32"] = sum(a != b for a, b in zip(row["texts"], fp32["texts"]))
        row["word_disagreement"] = row["words_differing_from_fp32"] / len(labels_all)
    for row in out.values():
        del row["texts"]
    return out


def cpu_slug(described: dict) -> str:
    return re.sub(r"[^a-z0-9]+", "-", described["cpu"].lower()).strip("-") + "-" + \
        described["cpu_family_model"].replace("/", "-")


def markdown(result: dict) -> str:
    m = result["machine"]
    measured = {r["model"] for r in result["throughput"]}
    columns = [v for v in (*VARIANTS, *ENGINES) if v in measured]
    lines = [f"# {m['cpu']} ({m['cores']} cores; {' '.join(m['simd'])}), {result['date']}", "",
             f"img/s, best of {result['rounds']} alternating rounds; x = ratio to fp32 ONNX Runtime in the same run.",
             "", "| config | batch | " + " | ".join(columns) + " |", "|---|---|" + "---|" * len(columns)]
    for (config, batch) in sorted({(r["config"], r["batch"]) for r in result["throughput"]}):
        cells = {r["model"]: r for r in result["throughput"] if r["config"] == config and r["batch"] == batch}
        lines.append(f"| {config} | {batch} | " + " | ".join(
            f"{cells[v]['img_per_s']:.1f} ({cells[v]['vs_fp32']:.2f}x)" if v in cells else "-" for v in columns) + " |")
    acc = result.get("real_accuracy")
    if acc:
        lines += ["", f"rare_small_en on real held-out words ({', '.join(next(iter(acc.values()))['splits'])}): "
                  "mean word accuracy, points lost against fp32, words reading differently", "",
                  "| variant | mean | lost | words ≠ fp32 |", "|---|---|---|---|"]
        for name, row in acc.items():
            lines.append(f"| {name} | {100 * row['mean']:.1f}% | {row['acc_loss_points']:.2f} | "
                         f"{row['words_differing_from_fp32']} ({row['word_disagreement']:.1%}) |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds and real words")
    parser.add_argument("--configs", nargs="+", default=["rare_tiny", "rare_resnet34"])
    parser.add_argument("--batches", nargs="+", type=int, default=[32, 1])
    args = parser.parse_args(argv)
    import onnxruntime
    import openvino

    from rare_portable import load_config
    from rare_portable.pretrained import DEFAULT_MODEL

    rounds, calibration_images = (3, 64) if args.quick else (6, 256)
    started = time.perf_counter()
    result = {"machine": machine.describe(onnxruntime=onnxruntime.__version__, openvino=openvino.__version__),
              "date": time.strftime("%Y-%m-%d"), "rounds": rounds, "calibration_images": calibration_images}
    print(f"machine: {machine.summary(result['machine'])}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="rare-precision-") as tmp:
        for name in args.configs:
            rows += throughput_rows(name, open_variants(load_config(name).spec, None, Path(tmp), calibration_images,
                                                        engines=True), args.batches, rounds)
        result["throughput"] = rows
        if REAL_HOLDOUT.is_dir():
            config = load_config(DEFAULT_MODEL)
            runtimes = open_variants(config.spec, DEFAULT_MODEL, Path(tmp), calibration_images)
            result["real_accuracy"] = real_accuracy(config, runtimes, limit=200 if args.quick else None)
        else:
            print(f"real accuracy skipped: no {REAL_HOLDOUT} (see rare_portable/pretrained/rare_small_en.md)")
    machine.finish(result["machine"])
    result["seconds"] = round(time.perf_counter() - started, 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stem = RESULTS / cpu_slug(result["machine"])
    stem.with_suffix(".json").write_text(json.dumps(result, indent=1, ensure_ascii=False))
    table = markdown(result)
    stem.with_suffix(".md").write_text(table)
    print("\n" + table + f"\nwrote {stem}.json and .md")
    return result


if __name__ == "__main__":
    main()
