"""Growing a trained network deeper (`rare_portable.train.grow`): it reads exactly as before, and bad input is a
one-line error that writes nothing."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rare_portable.api import build_model, resolve_spec
from rare_portable.train.grow import grow_file, with_depths
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


def grow_main(*args):
    return subprocess.run([sys.executable, "-m", "rare_portable.train.grow", *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True)


@pytest.mark.parametrize("case", ["shallower", "same", "exists", "wrong weights"])
def test_bad_input_is_one_line_naming_the_fix_and_writes_nothing(tmp_path, case):
    weights = trained_tiny(tmp_path)
    output = tmp_path / "grown.safetensors"
    depths, config = ["1", "1", "2", "1"], "rare_tiny"
    if case == "shallower":
        depths = ["1", "1", "1"]  # a stage fewer
    if case == "same":
        depths = ["1", "1", "1", "1"]
    if case == "exists":
        output.write_bytes(b"keep me")
    if case == "wrong weights":
        config = "rare_small"
    done = grow_main("-c", config, "-w", weights, "--depths", *depths, "-o", output)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    expected = {"shallower": ["depths"], "same": ["add a block"], "exists": ["choose another -o"],
                "wrong weights": [str(weights), "compare model.backbone"]}[case]
    assert all(part in lines[0] for part in expected), lines[0]
    assert output.read_bytes() == b"keep me" if case == "exists" else not output.exists()
