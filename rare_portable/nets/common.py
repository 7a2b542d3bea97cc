"""Framework-free pieces both builders share: padding arithmetic, TPS matrices, the parameter-name table."""
from __future__ import annotations

import itertools
import math
from typing import Dict, Tuple

import numpy as np

from ..spec import TransformSpec

# PyTorch spells batch-norm tensors differently; every other parameter name is MindOCR's on both sides.
TORCH_TO_CANONICAL_BN = {
    "weight": "gamma",
    "bias": "beta",
    "running_mean": "moving_mean",
    "running_var": "moving_variance",
}
CANONICAL_TO_TORCH_BN = {v: k for k, v in TORCH_TO_CANONICAL_BN.items()}

BN_EPS = 1e-5
MS_BN_MOMENTUM = 0.9  # MindSpore keeps 0.9 of the old statistics ...
TORCH_BN_MOMENTUM = 1.0 - MS_BN_MOMENTUM  # ... PyTorch states the share of the new ones


def same_pads(size: int, kernel: int, stride: int) -> Tuple[int, int]:
    """MindSpore's pad_mode='same': total padding split with the extra row/column at the end."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def stem_pool_pads(height: int, width: int) -> Tuple[int, int, int, int]:
    """(left, right, top, bottom) of the 3x3/2 'same' max-pool after the stem, from the input size."""
    top, bottom = same_pads(height, 3, 2)
    left, right = same_pads(width, 3, 2)
    return left, right, top, bottom


def final_pool_pads(height: int, width: int) -> Tuple[int, int, int, int]:
    """(left, right, top, bottom) of the 2x2/2 'same' max-pool closing the backbone."""
    top, bottom = same_pads(height, 2, 2)
    left, right = same_pads(width, 2, 2)
    return left, right, top, bottom


def _tps_control_points(num_points: int, margins: Tuple[float, float]) -> np.ndarray:
    margin_x, margin_y = margins
    per_side = num_points // 2
    xs = np.linspace(margin_x, 1.0 - margin_x, per_side)
    top = np.stack([xs, np.full(per_side, margin_y)], axis=1)
    bottom = np.stack([xs, np.full(per_side, 1.0 - margin_y)], axis=1)
    return np.concatenate([top, bottom], axis=0)


def _tps_radial(points: np.ndarray, ctrl: np.ndarray) -> np.ndarray:
    """U(r) = r^2 log r, written as 0.5 d log d with d = r^2 (0 where d = 0)."""
    d = np.sum((points[:, None, :] - ctrl[None, :, :]) ** 2, axis=2)
    return 0.5 * d * np.log(d, where=d != 0, out=np.zeros_like(d))


def tps_matrices(t: TransformSpec) -> Dict[str, np.ndarray]:
    """Constant matrices of the TPS grid generator (ASTER/MindOCR): the grid is
    `coordinate_repr @ inverse_kernel @ [source_points; 0]`, so only the control points are learned."""
    n = t.num_control_points
    ctrl = _tps_control_points(n, t.tps_margins)
    kernel = np.zeros((n + 3, n + 3))
    kernel[:n, :n] = _tps_radial(ctrl, ctrl)
    kernel[:n, -3] = 1
    kernel[-3, :n] = 1
    kernel[:n, -2:] = ctrl
    kernel[-2:, :n] = ctrl.T
    h, w = t.tps_outputsize
    yx = np.array(list(itertools.product(range(h), range(w))), dtype=np.float64)
    xy = np.stack([yx[:, 1] / (w - 1), yx[:, 0] / (h - 1)], axis=1)
    coordinate_repr = np.concatenate([_tps_radial(xy, ctrl), np.ones((h * w, 1)), xy], axis=1)
    # Folding inverse_kernel[:, :n] into the coordinate matrix is exact: the 3 padding rows of Y are 0.
    grid_from_points = coordinate_repr @ np.linalg.inv(kernel)[:, :n]
    return {"grid_from_points": grid_from_points.astype(np.float32)}


def stn_initial_points(t: TransformSpec) -> np.ndarray:
    """Bias of the last localisation layer: an identity rectification (ASTER's margin 0.01)."""
    pts = _tps_control_points(t.num_control_points, (0.01, 0.01))
    if t.stn_activation == "sigmoid":
        pts = -np.log(1.0 / pts - 1.0)
    return pts.reshape(-1).astype(np.float32)


def gru_combine(gi, gh, hidden, size: int, sigmoid, tanh):
    """The GRU update from input and hidden projections (gates r, z, n as PyTorch/MindOCR order them),
    written once for both frameworks' tensors."""
    r = sigmoid(gi[:, :size] + gh[:, :size])
    z = sigmoid(gi[:, size:2 * size] + gh[:, size:2 * size])
    n = tanh(gi[:, 2 * size:] + r * gh[:, 2 * size:])
    return n + z * (hidden - n)
