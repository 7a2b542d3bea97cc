"""Growing a trained network deeper (`rare_portable.train.grow`): it reads exactly as before, and bad input is a
one-line error that writes nothing."""
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from rare_portable.api import build_model, resolve_spec
from rare_portable.train.grow import grow_file, with_depths, with_tps
from rare_portable.weights import get_state, save_weights

ROOT = Path(__file__).resolve().parents[1]


def trained_tiny(tmp_path: Path) -> Path:
    """rare_tiny with weights unlike a fresh initialisation (batch-norm statistics included)."""
    net = build_model("rare_tiny", "torch", seed=7)
    rng = np.random.default_rng(0)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if tensor.is_floating_point():
                tensor.add_(torch.from_numpy(rng.normal(0, 0.05, tensor.shape).astype(np.float32)).abs()
                            if "running_var" in name else
                            torch.from_numpy(rng.normal(0, 0.05, tensor.shape).astype(np.float32)))
    return save_weights(net, tmp_path / "trained.safetensors")


def test_the_grown_network_reads_exactly_as_the_trained_one(tmp_path):
    weights = trained_tiny(tmp_path)
    grown = tmp_path / "grown.safetensors"
    line = grow_file("rare_tiny", str(weights), [2, 1, 3, 1], grown)
    assert "block_list.1, block_list.4, block_list.5" in line  # numbered across stages: 0,1 | 2 | 3,4,5 | 6

    old = build_model("rare_tiny", "torch", weights=weights)
    new = build_model(with_depths(resolve_spec("rare_tiny"), [2, 1, 3, 1]), "torch", weights=grown)
    assert len(get_state(new)) > len(get_state(old))
    batch = torch.from_numpy(np.random.default_rng(1).uniform(-1, 1, (4, 3, 32, 100)).astype(np.float32))
    with torch.inference_mode():
        expected, actual = old(batch).numpy(), new(batch).numpy()
    np.testing.assert_array_equal(actual, expected)

    # The identity comes from the zeroed batch-norm of the added blocks: with it trained away, the outputs move.
    with torch.no_grad():
        new.backbone.block_list[4].conv1.norm.weight.fill_(1.0)
        assert not np.allclose(new(batch).numpy(), expected, atol=1e-4)


def test_an_added_tps_rectifier_starts_as_the_identity(tmp_path):
    weights = trained_tiny(tmp_path)
    grown = tmp_path / "grown.safetensors"
    line = grow_file("rare_tiny", str(weights), None, grown, tps=True, loc_channels=[8, 16, 16, 16, 16, 16])
    assert "model.transform={name: STN_ON, align_corners: true, loc_channels: [8, 16, 16, 16, 16, 16]}" in line

    old = build_model("rare_tiny", "torch", weights=weights)
    spec = with_tps(resolve_spec("rare_tiny"), [8, 16, 16, 16, 16, 16])
    new = build_model(spec, "torch", weights=grown)
    batch = torch.from_numpy(np.random.default_rng(1).uniform(-1, 1, (4, 3, 32, 100)).astype(np.float32))
    with torch.inference_mode():
        rectified, expected, actual = new.transform(batch).numpy(), old(batch).numpy(), new(batch).numpy()
    np.testing.assert_allclose(rectified, batch.numpy(), atol=2e-4)  # float rounding of the TPS grid only
    np.testing.assert_allclose(actual, expected, atol=1e-4)
    np.testing.assert_array_equal(actual.argmax(-1), expected.argmax(-1))

    # A fresh rectifier (ASTER's margin-0.01 start) is not the identity, nor is this one without align_corners.
    fresh = build_model(spec, "torch", seed=3)
    unaligned = build_model(replace(spec, transform=replace(spec.transform, align_corners=False)), "torch",
                            weights=grown)
    with torch.inference_mode():
        for other in (fresh, unaligned):
            assert np.abs(other.transform(batch).numpy() - batch.numpy()).max() > 0.1


def test_grow_deeper_and_add_tps_at_once(tmp_path):
    weights = trained_tiny(tmp_path)
    grown = tmp_path / "grown.safetensors"
    line = grow_file("rare_tiny", str(weights), [1, 2, 1, 1], grown, tps=True)
    assert "--opt model.backbone.depths=[1,2,1,1] --opt 'model.transform=" in line
    spec = with_tps(with_depths(resolve_spec("rare_tiny"), [1, 2, 1, 1]))
    assert spec.transform.loc_channels == (32, 64, 128, 256, 256, 256)  # MindOCR's, when not given
    batch = torch.from_numpy(np.random.default_rng(2).uniform(-1, 1, (2, 3, 32, 100)).astype(np.float32))
    with torch.inference_mode():
        expected = build_model("rare_tiny", "torch", weights=weights)(batch).numpy()
        actual = build_model(spec, "torch", weights=grown)(batch).numpy()
    np.testing.assert_allclose(actual, expected, atol=1e-4)


def grow_main(*args):
    return subprocess.run([sys.executable, "-m", "rare_portable.train.grow", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True)


@pytest.mark.parametrize("case", ["shallower", "same", "exists", "wrong weights", "nothing", "loc without tps",
                                  "tps twice"])
def test_bad_input_is_one_line_naming_the_fix_and_writes_nothing(tmp_path, case):
    weights = trained_tiny(tmp_path)
    output = tmp_path / "grown.safetensors"
    change, config = ["--depths", "1", "1", "2", "1"], "rare_tiny"
    if case == "shallower":
        change = ["--depths", "1", "1", "1"]  # a stage fewer
    if case == "same":
        change = ["--depths", "1", "1", "1", "1"]
    if case == "exists":
        output.write_bytes(b"keep me")
    if case == "wrong weights":
        config = "rare_small"
    if case == "nothing":
        change = []
    if case == "loc without tps":
        change = ["--loc-channels", "8", "8", "8", "8", "8", "8"]
    if case == "tps twice":
        config, change = "rare_tps_resnet34", ["--tps"]  # refused before any weights are read
    done = grow_main("-c", config, "-w", weights, *change, "-o", output)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    expected = {"shallower": ["depths"], "same": ["add a block"], "exists": ["choose another -o"],
                "wrong weights": [str(weights), "compare model.backbone"], "nothing": ["--depths", "--tps"],
                "loc without tps": ["add --tps"], "tps twice": ["already has a TPS rectifier"]}[case]
    assert all(part in lines[0] for part in expected), lines[0]
    assert output.read_bytes() == b"keep me" if case == "exists" else not output.exists()
