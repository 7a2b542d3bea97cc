"""Training step throughput and peak memory: our MindSpore trainer step beside PyTorch doing the same
step (same network from the spec, same weights, same batch, AdamW, clipping), each in its own process
so peak RSS is its own.

    python -m benchmarks.train_step [--config rare_tiny] [--batch 64] [--steps 10] [--json FILE]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import machine

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def batch(spec, size: int):
    images = spec.input.example_batch(size)
    rng = np.random.default_rng(1)
    targets = np.zeros((size, spec.head.num_steps + 1), np.int32)
    lengths = rng.integers(3, 11, size)
    for row, n in enumerate(lengths):
        targets[row, 1:1 + n] = rng.integers(2, spec.num_classes, n)
        targets[row, 1 + n] = 1
    return images, targets


def time_steps(step, steps: int) -> float:
    for _ in range(2):  # compilation, allocator warm-up
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - started) / steps


def torch_step(config: str, size: int, steps: int) -> float:
    import torch

    from rare_portable import build_model
    from rare_portable.train.losses import torch_attention_loss as attention_loss

    net = build_model(config, "torch", train=True)
    images, targets = (torch.from_numpy(a) for a in batch(net.spec, size))
    optimizer = torch.optim.AdamW(net.parameters(), lr=5e-4, weight_decay=0.05)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = attention_loss(net(images, targets), targets)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        optimizer.step()
        return float(loss)

    return time_steps(step, steps)


def mindspore_step(config: str, size: int, steps: int) -> float:
    import mindspore as ms

    from rare_portable import build_model, load_config
    from rare_portable.train import read_settings
    from rare_portable.train.optim import build_loss_scaler, build_optimizer
    from rare_portable.train.step import NetworkWithLoss, TrainStep, compiled

    opts = ["train.clip_grad=True", "train.clip_norm=5"]
    rare_config = load_config(config, opts)
    settings = read_settings(rare_config, opts)
    net = build_model(config, "mindspore", train=True)
    optimizer = build_optimizer(net.trainable_params(), settings.optimizer, settings.schedule.lr)
    train_step = compiled(TrainStep(NetworkWithLoss(net), optimizer, build_loss_scaler(settings.loss_scale), settings.clip_norm),
                          graph_mode=True)
    images, targets = (ms.Tensor(a) for a in batch(net.spec, size))
    lr, attention_weight = ms.Tensor(np.float32(settings.schedule.lr)), ms.Tensor(np.float32(1.0))
    return time_steps(lambda: train_step(images, targets, lr, attention_weight)[0].asnumpy(), steps)


def child(framework: str, config: str, size: int, steps: int) -> None:
    seconds = (torch_step if framework == "torch" else mindspore_step)(config, size, steps)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"img_per_s": size / seconds, "peak_rss_mib": peak_mib}))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="rare_tiny")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--json", default=str(RESULTS / "train_step.json"))
    parser.add_argument("--child", choices=["torch", "mindspore"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args.child, args.config, args.batch, args.steps)
    results, described = {}, machine.describe()
    for framework in ("mindspore", "torch"):
        env = dict(os.environ, GLOG_v="3", PYTHONPATH=str(ROOT))
        out = subprocess.run([sys.executable, __file__, "--child", framework, "--config", args.config,
                              "--batch", str(args.batch), "--steps", str(args.steps)],
                             capture_output=True, text=True, env=env, check=True)
        results[framework] = json.loads(out.stdout.strip().splitlines()[-1])
    ratio = results["mindspore"]["img_per_s"] / results["torch"]["img_per_s"]
    print(f"{args.config}, batch {args.batch}: MindSpore trainer step {results['mindspore']['img_per_s']:.1f} img/s "
          f"(peak {results['mindspore']['peak_rss_mib']:.0f} MiB), PyTorch {results['torch']['img_per_s']:.1f} img/s "
          f"(peak {results['torch']['peak_rss_mib']:.0f} MiB): MindSpore/PyTorch {ratio:.2f}")
    report = {"config": args.config, "batch": args.batch, "results": results, "mindspore_over_torch": ratio,
              "machine": machine.finish(described)}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(report, indent=1))
    return report


if __name__ == "__main__":
    main()
