"""The machine a benchmark ran on, recorded beside its figures, and its SGEMM peak.

Why: the same "2-core x86_64" sandbox has been CPUs whose SGEMM differs 2.3x (207 vs 480 GFLOP/s),
so a figure means little without the CPU model, its vector extensions and the load around the run.
"""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

# Vector extensions that decide which kernels the engines pick (fp32 FMA width, int8 dot products, bf16).
SIMD = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8")

SGEMM_CHILD = """
import time, numpy as np
from threadpoolctl import threadpool_info
n = 2048
a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
a @ b
best = min((lambda t: (a @ b, time.perf_counter() - t)[1])(time.perf_counter()) for _ in range(10))
info = [i for i in threadpool_info() if i.get("internal_api") == "openblas"]
print(2 * n ** 3 / best / 1e9, (info[0].get("architecture") if info else "unknown"))
"""


def _cpuinfo() -> dict:
    """The first processor's fields from /proc/cpuinfo ({} where there is none)."""
    path = Path("/proc/cpuinfo")
    fields = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if not line.strip():
                break
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
    return fields


def describe(**versions) -> dict:
    """CPU model, cores, vector extensions, platform, `versions` given, and the load average now."""
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    return {"cpu": info.get("model name") or platform.processor() or platform.machine(),
            "cpu_family_model": f"{info.get('cpu family', '?')}/{info.get('model', '?')}",
            "cores": os.cpu_count(), "simd": [f for f in SIMD if f in flags],
            "platform": platform.platform(), "python": platform.python_version(), **versions,
            "load_average_before": [round(x, 2) for x in os.getloadavg()]}


def finish(machine: dict) -> dict:
    """`machine` with the load average at the end: a busy machine shows there."""
    machine["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    return machine


def summary(machine: dict) -> str:
    return (f"{machine['cpu']} (family/model {machine['cpu_family_model']}), {machine['cores']} cores, "
            f"{' '.join(machine['simd']) or 'no AVX2'}; load {machine['load_average_before'][0]}")


def sgemm_gflops() -> tuple:
    """(GFLOP/s, OpenBLAS kernel) of a 2048^3 float32 matmul in numpy, the physical limit benchmarks quote.
    Measured in a child with OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset: they pin OpenBLAS to older kernels
    (AVX2 where the CPU has AVX-512); nothing else changes them."""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    out = subprocess.run([sys.executable, "-c", SGEMM_CHILD], capture_output=True, text=True, env=env, check=True)
    gflops, kernel = out.stdout.split()
    return float(gflops), kernel
