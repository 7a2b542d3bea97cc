"""Averaging runs of one network (`rare_portable.train.average`): every tensor is the mean of the runs', the
result loads strictly, and bad input is a one-line error that writes nothing."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rare_portable.api import build_model
from rare_portable.train.average import average_file
from rare_portable.weights import get_state, read_state, save_weights, write_state

ROOT = Path(__file__).resolve().parents[1]


def run_weights(tmp_path: Path, seed: int) -> Path:
    return save_weights(build_model("rare_tiny", "torch", seed=seed), tmp_path / f"run{seed}.safetensors")


def test_every_tensor_is_the_mean_of_the_runs_and_the_result_loads(tmp_path):
    runs = [run_weights(tmp_path, seed) for seed in (1, 2, 3)]
    output = tmp_path / "averaged.safetensors"
    assert "the mean of 3 weights files" in average_file("rare_tiny", [str(p) for p in runs], output)
    states, averaged = [read_state(p) for p in runs], read_state(output)
    assert set(averaged) == set(states[0])
    for name, value in averaged.items():
        expected = (states[0][name].astype(np.float64) + states[1][name] + states[2][name]) / 3
        np.testing.assert_allclose(value, expected, rtol=1e-6, atol=1e-7, err_msg=name)
    differing = [name for name in averaged if not np.array_equal(states[0][name], states[1][name])]
    assert differing and not any(np.array_equal(averaged[name], states[0][name]) for name in differing)
    build_model("rare_tiny", "torch", weights=output)  # strict: every tensor of the network, right shapes


def test_a_stored_mean_named_n_times_joins_a_new_run_as_the_mean_of_all(tmp_path):
    runs = [run_weights(tmp_path, seed) for seed in (1, 2, 3, 4)]
    first_three, all_four = tmp_path / "first_three.safetensors", tmp_path / "all_four.safetensors"
    average_file("rare_tiny", [str(p) for p in runs[:3]], first_three)
    assert "the mean of 4 weights files" in average_file("rare_tiny", [str(first_three)] * 3 + [str(runs[3])],
                                                        all_four)
    states, joined = [read_state(p) for p in runs], read_state(all_four)
    for name, value in joined.items():
        expected = sum(state[name].astype(np.float64) for state in states) / 4
        np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-6, err_msg=name)


def test_float16_stores_the_mean_rounded_in_half_the_file_and_loads_as_float32(tmp_path):
    runs = [run_weights(tmp_path, seed) for seed in (1, 2)]
    full, half = tmp_path / "full.safetensors", tmp_path / "half.safetensors"
    average_file("rare_tiny", [str(p) for p in runs], full)
    assert "stored as float16" in average_file("rare_tiny", [str(p) for p in runs], half, float16=True)
    mean, stored = read_state(full), read_state(half)
    assert set(stored) == set(mean) and {v.dtype for v in stored.values()} == {np.dtype(np.float16)}
    for name, value in stored.items():
        np.testing.assert_array_equal(value, mean[name].astype(np.float16), err_msg=name)
    assert half.stat().st_size < 0.55 * full.stat().st_size
    loaded = get_state(build_model("rare_tiny", "torch", weights=half))  # the float32 network
    for name, value in loaded.items():
        assert value.dtype == np.float32, name
        np.testing.assert_array_equal(value, stored[name].astype(np.float32), err_msg=name)


def average_main(*args):
    return subprocess.run([sys.executable, "-m", "rare_portable.train.average", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True)


@pytest.mark.parametrize("case", ["one run", "exists", "wrong weights", "missing", "beyond float16"])
def test_bad_input_is_one_line_naming_the_fix_and_writes_nothing(tmp_path, case):
    runs, config = [run_weights(tmp_path, 1), run_weights(tmp_path, 2)], "rare_tiny"
    missing = tmp_path / "nowhere.safetensors"
    output = tmp_path / "averaged.safetensors"
    options = []
    if case == "beyond float16":
        state = read_state(runs[1])
        state["head.generator.bias"] = np.full_like(state["head.generator.bias"], 2e5)
        write_state(state, runs[1])
        options = ["--float16"]
    if case == "one run":
        runs = runs[:1]
    if case == "exists":
        output.write_bytes(b"keep me")
    if case == "wrong weights":
        config = "rare_small"
    if case == "missing":
        runs[1] = missing
    done = average_main("-c", config, "-w", *runs, "-o", output, *options)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    expected = {"one run": ["two or more"], "exists": ["choose another -o"], "wrong weights": [str(runs[0])],
                "missing": [str(missing), "no such weights file"],
                "beyond float16": ["head.generator.bias", "leave out --float16"]}[case]
    assert all(part in lines[0] for part in expected), lines[0]
    assert output.read_bytes() == b"keep me" if case == "exists" else not output.exists()
