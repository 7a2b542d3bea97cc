"""Where ONNX Runtime spends a model's time, how fast its convolutions run against SGEMM, and which
session settings (or another engine on the same ONNX file) change the speed.

    python -m benchmarks.ort_profile [--config rare_resnet34] [--batch 32] [--json FILE]

1. ORT's own profiler (ORT_ENABLE_ALL: BN folded, NCHWc layout): kernel time per op type, and the
   convolutions' GFLOP/s counted direct and in-image (no padding taps, `flops_per_image(in_image=True)`)
   over the machine's SGEMM: in-image near 1.0 means the convolutions run at the matmul peak already.
2. img/s of the same model under each setting that could matter: optimisation level, thread count,
   spinning, sequential/parallel execution, IO binding into a preallocated output; OpenVINO's CPU
   plugin (fp32) on the same file where the `openvino` package is installed (the bench extra has it).
Weights are seeded, not trained: speed does not depend on them.
"""
from __future__ import annotations

import argparse
import collections
import json
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

from benchmarks import machine
from benchmarks.conv_regression import best_time

RESULTS = Path(__file__).resolve().parent / "results"


def export(config: str, workdir: Path) -> tuple:
    from rare_portable import build_model, load_config, save_weights
    from rare_portable.parity import artifact_for

    spec = load_config(config).spec
    weights = save_weights(build_model(spec, "torch", seed=0), workdir / f"{config}.safetensors")
    return spec, artifact_for("onnxruntime", spec, weights, workdir)


def session(path: Path, level="all", threads=2, spinning=True, parallel=False, profile_prefix=None):
    import onnxruntime as ort

    from runtimes.onnxruntime_rt import OPTIMIZATION_LEVELS

    options = ort.SessionOptions()
    options.graph_optimization_level = OPTIMIZATION_LEVELS[level]
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if parallel:
        options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_prefix)  # ORT writes into the working directory otherwise
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def best_img_per_s(run, batch_size: int, repeats: int) -> float:
    return batch_size / best_time(run, repeats)


def kernel_time_by_op(path: Path, x: np.ndarray, runs: int) -> dict:
    """{op type: kernel microseconds per batch} from ORT's profiler, after one warm-up run."""
    sess = session(path, profile_prefix=path.parent / "ort_profile")
    for _ in range(runs + 1):
        sess.run(None, {"images": x})
    events = json.loads(Path(sess.end_profiling()).read_text())
    per_node = collections.defaultdict(list)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_node[(e["name"], e["args"].get("op_name"))].append(e["dur"])
    by_op = collections.Counter()
    for (_, op), durations in per_node.items():
        by_op[op] += sum(durations[1:]) / max(1, len(durations) - 1)  # the first is the warm-up
    return dict(by_op.most_common())


def openvino_img_per_s(path: Path, x: np.ndarray, probs: np.ndarray, repeats: int) -> Optional[float]:
    """OpenVINO's CPU plugin (fp32: it picks bf16 where the CPU has it) on the same ONNX file; None where
    openvino is not installed."""
    try:
        import openvino
    except ImportError:
        return None
    compiled = openvino.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32",
                                                                "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    if np.abs(request.infer({0: x})[compiled.output(0)] - probs).max() > 1e-3:
        raise RuntimeError("OpenVINO's output differs from ONNX Runtime's: not a like-for-like timing")
    return best_img_per_s(lambda: request.infer({0: x}), len(x), repeats)


def settings_sweep(path: Path, x: np.ndarray, repeats: int) -> dict:
    import onnxruntime as ort

    variants = {"all (default)": {}, "extended": {"level": "extended"}, "basic": {"level": "basic"},
                "1 thread": {"threads": 1}, "no spinning": {"spinning": False},
                "parallel execution": {"parallel": True}}
    speeds = {}
    for name, kwargs in variants.items():
        sess = session(path, **kwargs)
        speeds[name] = best_img_per_s(lambda: sess.run(None, {"images": x}), len(x), repeats)
    sess = session(path)
    binding = sess.io_binding()
    binding.bind_cpu_input("images", x)
    out = sess.get_outputs()[0]
    probs = sess.run(None, {"images": x})[0]
    buffer = np.empty_like(probs)  # the OrtValue borrows this memory: it must outlive the runs
    binding.bind_ortvalue_output(out.name, ort.OrtValue.ortvalue_from_numpy(buffer))
    speeds["IO binding"] = best_img_per_s(lambda: sess.run_with_iobinding(binding), len(x), repeats)
    speeds["OpenVINO CPU fp32"] = openvino_img_per_s(path, x, probs, repeats)
    return speeds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="rare_resnet34")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--json", default=str(RESULTS / "ort_profile.json"))
    args = parser.parse_args(argv)
    import onnxruntime

    from rare_portable.flops import flops_per_image

    described = machine.describe(onnxruntime=onnxruntime.__version__)
    peak, kernel = machine.sgemm_gflops()
    print(f"machine: {machine.summary(described)}; SGEMM {peak:.0f} GFLOP/s (OpenBLAS {kernel})")
    with tempfile.TemporaryDirectory(prefix="rare-ort-profile-") as tmp:
        spec, path = export(args.config, Path(tmp))
        x = spec.input.example_batch(args.batch)
        by_op = kernel_time_by_op(path, x, runs=args.repeats // 2)
        speeds = settings_sweep(path, x, args.repeats)

    total = sum(by_op.values())
    conv_flops = {kind: sum(v for k, v in flops_per_image(spec, in_image=kind == "in_image").items()
                            if k in ("transform", "backbone")) * args.batch
                  for kind in ("direct", "in_image")}
    conv_gflops = {kind: f / (by_op.get("Conv", 0) * 1e-6) / 1e9 for kind, f in conv_flops.items()}
    print(f"\n{args.config}, batch {args.batch}: kernel time {total / 1e3:.1f} ms per batch")
    for op, us in list(by_op.items())[:8]:
        print(f"  {op:<16}{us / total:>7.1%}")
    print(f"Conv: {conv_gflops['direct']:.0f} GFLOP/s direct = {conv_gflops['direct'] / peak:.2f} x SGEMM; "
          f"{conv_gflops['in_image']:.0f} GFLOP/s in-image = {conv_gflops['in_image'] / peak:.2f} x SGEMM")
    base = speeds["all (default)"]
    print(f"\n{'setting':<22}{'img/s':>8}{'x default':>11}")
    for name, ips in speeds.items():
        print(f"{name:<22}" + (f"{ips:>8.1f}{ips / base:>11.2f}" if ips else "    not installed"))

    result = {"machine": {**machine.finish(described), "sgemm_gflops": peak, "openblas_kernel": kernel},
              "config": args.config, "batch": args.batch,
              "kernel_share_by_op": {op: us / total for op, us in by_op.items()},
              "kernel_ms_per_batch": total / 1e3, "conv_gflops": conv_gflops,
              "conv_over_sgemm": {kind: g / peak for kind, g in conv_gflops.items()},
              "img_per_s_by_setting": speeds}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
