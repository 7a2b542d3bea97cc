"""MindSpore Conv2d throughput beside PyTorch's on the same convolutions, as a ratio.

Why: MindSpore 2.9/2.10 run Conv2d ~200x slower on this CPU than 2.7/2.8 (oneDNN falls back to its
reference kernel, `ONEDNN_VERBOSE=1` shows `jit_uni_ncsp:conv+ref:any`). Run this whenever the
mindspore pin in constraints.txt moves: a ratio far below ~0.5 means that regression is back.

    python -m benchmarks.conv_regression [--repeat 20]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from benchmarks import machine

# (batch, in, out, H, W, stride): rare_resnet34's costliest convolutions at 32x100.
CASES = [(32, 64, 64, 16, 50, 1), (32, 128, 128, 8, 50, 1), (32, 256, 256, 4, 50, 1), (32, 512, 512, 2, 50, 1)]


def gflop(n, cin, cout, h, w, stride):
    return 2 * n * cout * cin * 9 * (h // stride) * (w // stride) / 1e9


def best_time(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--json", default=str(Path(__file__).parent / "results" / "conv_regression.json"))
    args = parser.parse_args()
    import mindspore as ms
    import torch
    from mindspore import nn as msnn

    rows, described = [], machine.describe(mindspore=ms.__version__, torch=torch.__version__)
    for n, cin, cout, h, w, stride in CASES:
        x = np.random.default_rng(0).standard_normal((n, cin, h, w)).astype(np.float32)
        tconv = torch.nn.Conv2d(cin, cout, 3, stride, 1, bias=False).eval()
        mconv = msnn.Conv2d(cin, cout, 3, stride, pad_mode="pad", padding=1, has_bias=False)
        tx, mx = torch.from_numpy(x), ms.Tensor(x)
        with torch.inference_mode():
            t_torch = best_time(lambda: tconv(tx), args.repeat)
        t_ms = best_time(lambda: mconv(mx).asnumpy(), args.repeat)
        g = gflop(n, cin, cout, h, w, stride)
        rows.append({"case": f"{n}x{cin}->{cout} {h}x{w}", "torch_gflops": g / t_torch, "mindspore_gflops": g / t_ms,
                     "mindspore_over_torch": t_torch / t_ms})
        print(f"{rows[-1]['case']:>22}: torch {g / t_torch:7.1f} GFLOP/s  mindspore {g / t_ms:7.1f} GFLOP/s  "
              f"ratio {t_torch / t_ms:5.2f}")
    result = {"machine": machine.finish(described), "cases": rows,
              "worst_ratio": min(r["mindspore_over_torch"] for r in rows)}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2))
    print(f"worst MindSpore/PyTorch ratio {result['worst_ratio']:.2f} (regressed builds measured ~0.005)")


if __name__ == "__main__":
    main()
