"""`rare doctor`: what each backend can do on this machine, and why not, before a run fails halfway.

Each check reads installed versions (importlib.metadata, nothing imported), then loads the framework in a
child process, so a framework that crashes on import (MindSpore under NumPy 2) is reported, not fatal. Known-bad
combinations come from this project's own measurements (constraints.txt says why each pin is there).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import click

ERROR, WARNING = "error", "warning"
PROBE_TIMEOUT_S = 120


@dataclass
class Problem:
    severity: str  # error: the backend cannot run; warning: it runs, with a known defect
    what: str
    fix: str


@dataclass
class BackendStatus:
    backend: str
    detail: str = ""  # versions, providers: what was found
    problems: List[Problem] = field(default_factory=list)

    @property
    def can_run(self) -> bool:
        return not any(p.severity == ERROR for p in self.problems)


def installed_version(package: str) -> Optional[str]:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def probe(code: str, python: str = sys.executable) -> Tuple[bool, str]:
    """(ok, what it printed last: its answer, or the error) of `code` run in a fresh interpreter."""
    env = dict(os.environ, GLOG_v="3")
    try:
        done = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=PROBE_TIMEOUT_S, env=env)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"{type(e).__name__}: {e}"
    lines = [line.strip() for line in (done.stdout if done.returncode == 0 else done.stderr).splitlines()
             if line.strip()]
    return done.returncode == 0, lines[-1] if lines else f"exit status {done.returncode}"


def _major_minor(version: str) -> Tuple[int, int]:
    parts = (version.split("+")[0].split(".") + ["0"])[:2]
    return tuple(int("".join(c for c in p if c.isdigit()) or 0) for p in parts)  # type: ignore[return-value]


Versions = Callable[[str], Optional[str]]
Probe = Callable[..., Tuple[bool, str]]  # (code, python=this interpreter) -> (ok, said)


def probe_import(status: BackendStatus, run: Probe, code: str, package: str) -> Tuple[bool, str]:
    """Run `code` in a child interpreter; an import that fails there is an error with the pinned install."""
    ok, said = run(code)
    if not ok:
        status.problems.append(Problem(ERROR, f"import {package} failed: {said}",
                                       f"pip install -c constraints.txt {package}"))
    return ok, said


def check_mindspore(versions: Versions, run: Probe) -> BackendStatus:
    status = BackendStatus("mindspore")
    version, numpy = versions("mindspore"), versions("numpy")
    if version is None:
        status.problems.append(Problem(ERROR, "MindSpore is not installed", "pip install -c constraints.txt mindspore"))
        return status
    status.detail = f"mindspore {version}, numpy {numpy}"
    if _major_minor(version) in ((2, 9), (2, 10)):
        status.problems.append(Problem(WARNING, f"mindspore {version} runs Conv2d ~200x slower on CPU than 2.8 "
                                       "(oneDNN reference fallback; benchmarks/conv_regression.py)",
                                       "pip install mindspore==2.8.0"))
    if numpy and _major_minor(numpy)[0] >= 2:
        status.problems.append(Problem(ERROR, f"numpy {numpy}: MindSpore {version} is built against NumPy 1.x "
                                       "(\"Numpy init failed\")", "pip install 'numpy<2'"))
    implementation = os.environ.get("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
    if implementation != "python":
        status.problems.append(Problem(ERROR, f"PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION={implementation}: MindSpore's "
                                       "checkpoint protobuf modules need the pure-Python backend",
                                       "unset it (rare sets it to python when imported first)"))
    if status.can_run:
        probe_import(status, run, "import rare_portable, mindspore; print(mindspore.__version__)", "mindspore")
    return status


def check_torch(versions: Versions, run: Probe) -> BackendStatus:
    status = BackendStatus("torch")
    version = versions("torch")
    if version is None:
        status.problems.append(Problem(ERROR, "PyTorch is not installed", "pip install -c constraints.txt torch "
                                       "(the CPU wheel; any other spec may download a CUDA build)"))
        return status
    ok, said = probe_import(status, run, "import torch; print('cuda' if torch.cuda.is_available() else 'cpu only')",
                            "torch")
    status.detail = f"torch {version}, {said if ok else 'not loadable'}"
    return status


def check_onnxruntime(versions: Versions, run: Probe) -> BackendStatus:
    status = BackendStatus("onnxruntime")
    version, onnx = versions("onnxruntime"), versions("onnx")
    for package, have in (("onnxruntime", version), ("onnx", onnx)):
        if have is None:
            status.problems.append(Problem(ERROR, f"{package} is not installed (the runtime reads the spec with "
                                           "onnx)" if package == "onnx" else f"{package} is not installed",
                                           f"pip install -c constraints.txt {package}"))
    if status.problems:
        return status
    ok, said = probe_import(status, run, "import onnxruntime as o; print(','.join(o.get_available_providers()))",
                            "onnxruntime")
    status.detail = f"onnxruntime {version} (providers: {said if ok else '?'}), onnx {onnx}"
    return status


def check_openvino(versions: Versions, run: Probe) -> BackendStatus:
    """Both OpenVINO backends: the package, and whether the CPU plugin has bf16 units to run openvino-bf16 on."""
    status = BackendStatus("openvino")
    version = versions("openvino")
    if version is None:
        status.problems.append(Problem(ERROR, "OpenVINO is not installed",
                                       "pip install -c constraints.txt 'rare-portable[openvino]'"))
        return status
    ok, said = probe_import(status, run, "import openvino as o; "
                            "print(','.join(o.Core().get_property('CPU', 'OPTIMIZATION_CAPABILITIES')))", "openvino")
    if not ok:
        return status
    if "BF16" in said.split(","):
        status.detail = (f"openvino {version}, CPU plugin with bf16 units (openvino-bf16 runs in bf16; OpenVINO "
                         "would pick bf16 by itself, `openvino` sets fp32 explicitly)")
    else:
        status.detail = f"openvino {version}, CPU plugin without bf16 units (openvino-bf16 computes in fp32 here)"
    return status


def check_mslite(run: Probe) -> BackendStatus:
    from ..mslite_bridge import availability, find_lite_python, find_python37, lite_in_process

    status = BackendStatus("mslite")
    why = availability()
    if why is not None:
        python37 = find_python37()
        setup = (f"rare mslite-setup (provisions it from {python37})" if python37 else
                 "install CPython 3.7 (pyenv install 3.7.17, or set RARE_PYTHON37), then rare mslite-setup")
        status.problems.append(Problem(ERROR, f"no MindSpore Lite interpreter: {why}", setup))
        return status
    if lite_in_process():
        status.detail = f"mindspore-lite {installed_version('mindspore-lite')} in this interpreter"
        return status
    python = find_lite_python()
    ok, said = run("import mindspore_lite as m; print(getattr(m, '__version__', '?'))", python)
    status.detail = f"mindspore-lite {said} via {python}" if ok else ""
    if not ok:
        status.problems.append(Problem(ERROR, f"{python} cannot import mindspore_lite: {said}", "rare mslite-setup"))
    return status


def ascend_tools() -> List[str]:
    """Lines on the Ascend 310 conversion tools (not a backend here: `rare convert` writes their command)."""
    converter = shutil.which("converter_lite")
    cann = os.environ.get("ASCEND_HOME_PATH") or os.environ.get("ASCEND_TOOLKIT_HOME")
    if cann is None and Path("/usr/local/Ascend").is_dir():
        cann = "/usr/local/Ascend"
    missing = "not on PATH (rare convert writes its config and command to run elsewhere)"
    return [f"converter_lite: {converter or missing}",
            f"CANN toolkit: {cann or 'not found (ASCEND_HOME_PATH unset, no /usr/local/Ascend)'}"]


def diagnose(versions: Versions = installed_version, run: Probe = probe) -> Dict[str, BackendStatus]:
    """Every backend `rare eval --backend` knows, by name."""
    mindspore = check_mindspore(versions, run)
    statuses = {"torch": check_torch(versions, run), "mindspore": mindspore}
    for alias, uses in (("mindspore-graph", "MindSpore's graph mode"), ("mindir", "MindSpore's MindIR loader")):
        statuses[alias] = BackendStatus(alias, f"{uses} ({mindspore.detail or 'not installed'})",
                                        list(mindspore.problems))
    statuses["onnxruntime"] = check_onnxruntime(versions, run)
    statuses["mslite"] = check_mslite(run)
    openvino = check_openvino(versions, run)
    statuses["openvino"] = openvino
    statuses["openvino-bf16"] = BackendStatus("openvino-bf16", openvino.detail, list(openvino.problems))
    return statuses


def report(statuses: Dict[str, BackendStatus]) -> List[str]:
    lines = []
    for status in statuses.values():
        lines.append(f"{status.backend:<16} {'ok' if status.can_run else 'CANNOT RUN'}"
                     + (f"  {status.detail}" if status.detail else ""))
        for problem in status.problems:
            lines.append(f"{'':<16} {problem.severity}: {problem.what}; fix: {problem.fix}")
    return lines


@click.command()
@click.option("--backend", "backends", multiple=True,
              type=click.Choice(sorted(["torch", "mindspore", "mindspore-graph", "onnxruntime", "mindir", "mslite",
                                        "openvino", "openvino-bf16"])),
              help="Check only these; exit 1 when one of them cannot run.")
def doctor(backends):
    """What each backend can do on this machine, why not, and the fix for every known-bad combination."""
    import platform

    statuses = diagnose()
    shown = {name: s for name, s in statuses.items() if not backends or name in backends}
    click.echo(f"python {platform.python_version()} on {platform.machine()}, rare-portable "
               f"{installed_version('rare-portable')}")
    for line in report(shown):
        click.echo(line)
    if not backends:
        for line in ascend_tools():
            click.echo(line)
    cannot = [name for name, s in shown.items() if not s.can_run]
    if backends and cannot:
        raise SystemExit(1)
