"""`rare doctor`: known-bad combinations are named with their fix (versions faked), and `--backend X` exits 1
exactly when X cannot run here (the Lite interpreter pointed at a file that does not exist)."""
import os
import subprocess
import sys

import pytest

from rare_portable.commands.doctor_cmd import ERROR, WARNING, diagnose

GOOD = {"mindspore": "2.8.0", "numpy": "1.26.4", "torch": "2.13.0", "onnxruntime": "1.23.2", "onnx": "1.19.1",
        "openvino": "2026.4.1"}


def statuses(**versions):
    table = {**GOOD, **versions}
    probed = []

    def run(code, python=sys.executable):
        probed.append((python, code))
        return True, "fine"

    return diagnose(versions=table.get, run=run), probed


def test_numpy_2_stops_every_mindspore_backend_without_importing_it():
    result, probed = statuses(numpy="2.1.0")
    for name in ("mindspore", "mindspore-graph", "mindir"):
        assert not result[name].can_run
        (problem,) = result[name].problems
        assert problem.severity == ERROR and "numpy 2.1.0" in problem.what and problem.fix == "pip install 'numpy<2'"
    # importing MindSpore under NumPy 2 would crash this interpreter; the Lite interpreter has its own NumPy
    assert not any("mindspore" in code for python, code in probed if python == sys.executable)
    assert result["torch"].can_run and result["onnxruntime"].can_run


@pytest.mark.parametrize("version", ["2.9.0", "2.10.1"])
def test_a_moved_mindspore_pin_is_a_warning_with_the_fix(version):
    result, _ = statuses(mindspore=version)
    (problem,) = result["mindspore"].problems
    assert problem.severity == WARNING and "Conv2d ~200x slower" in problem.what
    assert problem.fix == "pip install mindspore==2.8.0" and result["mindspore"].can_run


def test_missing_frameworks_and_a_foreign_protobuf_backend(monkeypatch):
    result, _ = statuses(torch=None, onnx=None, openvino=None)
    for name in ("openvino", "openvino-bf16"):
        assert not result[name].can_run and "rare-portable[openvino]" in result[name].problems[0].fix
    assert not result["torch"].can_run and "torch" in result["torch"].problems[0].fix
    assert not result["onnxruntime"].can_run and "pip install -c constraints.txt onnx" in \
        result["onnxruntime"].problems[0].fix
    monkeypatch.setenv("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "upb")
    result, _ = statuses()
    assert not result["mindspore"].can_run and "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION=upb" in \
        result["mindspore"].problems[0].what


def doctor(*args, **env):
    return subprocess.run([sys.executable, "-c", "from rare_portable.cli import main; main()", "doctor", *args],
                          capture_output=True, text=True, env={**os.environ, **env}, timeout=300)


def test_backend_exit_status_follows_what_can_run_here():
    missing = doctor("--backend", "mslite", RARE_MSLITE_PYTHON="/nonexistent/python3.7")
    assert missing.returncode == 1, missing.stdout + missing.stderr
    assert "mslite           CANNOT RUN" in missing.stdout and "RARE_MSLITE_PYTHON=/nonexistent/python3.7" in missing.stdout
    here = doctor("--backend", "torch", "--backend", "onnxruntime")
    assert here.returncode == 0, here.stdout + here.stderr
    assert "torch            ok  torch " in here.stdout and "onnxruntime      ok  onnxruntime " in here.stdout
    assert "mslite" not in here.stdout
