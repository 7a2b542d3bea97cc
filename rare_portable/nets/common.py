"""Framework-free pieces both builders share: the architecture plan (`plan`: every layer's channels, kernel,
stride and pads, and the export flavour), padding arithmetic, TPS matrices, the parameter-name table.

The plan is where decisions are made; `torch_rare.py` and `ms_rare.py` only turn its entries into layers
(`layers.py` holds those layers whose make-up both frameworks share).
"""
from __future__ import annotations

import contextlib
import itertools
import math
from dataclasses import dataclass, field
from typing import Dict, Iterator, Optional, Tuple, Union

import numpy as np

from ..spec import ModelSpec, TransformSpec

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


def stn_initial_points(t: TransformSpec, margins: Tuple[float, float] = (0.01, 0.01)) -> np.ndarray:
    """Bias of the last localisation layer. ASTER's margin 0.01 starts near the identity (a slight zoom-out);
    at `t.tps_margins` with `align_corners` the TPS grid is every pixel's own centre: the exact identity."""
    pts = _tps_control_points(t.num_control_points, margins)
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


# ---- Export flavour: chosen when a network is built (timm's `set_exportable` pattern) ----------------------

@dataclass(frozen=True)
class Flavour:
    """Which graph a network is built as. The weights and the math are the same in every flavour."""

    lstm_kernel: bool = True  # False: the BiLSTM as step-by-step MatMul/Sigmoid (torch `lstm_cells`, MS `lstm_steps`)
    grid_sample: bool = True  # False: the TPS sampler from Floor/Clip/GatherElements (torch `bilinear_gather`)


STANDARD = Flavour()
# MindSpore Lite 2.0's ONNX parser: no GridSample, and its LSTM kernel is approximate (exporters/onnx_export.py).
LITE = Flavour(lstm_kernel=False, grid_sample=False)
_flavour = STANDARD


def current_flavour() -> Flavour:
    """The flavour networks built now get (`export_flavour` sets it)."""
    return _flavour


@contextlib.contextmanager
def export_flavour(flavour: Flavour) -> Iterator[Flavour]:
    """Networks built inside the block get `flavour`: `with export_flavour(LITE): net = build_network(...)`.
    Layers read it once, when built; nothing flips it on a live network."""
    global _flavour
    previous, _flavour = _flavour, flavour
    try:
        yield flavour
    finally:
        _flavour = previous


# ---- The architecture plan ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ConvNorm:
    """conv (no bias) + batch-norm (+ ReLU); `avg_pool` (a stride) puts a strided average pool in front and
    leaves the conv at stride 1 (ResNet-vd's shortcut)."""

    cin: int
    cout: int
    kernel: int
    stride: Tuple[int, int] = (1, 1)
    act: bool = False
    avg_pool: Optional[Tuple[int, int]] = None

    @property
    def padding(self) -> int:
        return (self.kernel - 1) // 2


@dataclass(frozen=True)
class Block:
    """BasicBlock: conv0 -> conv1, plus the shortcut (`short` None: identity)."""

    conv0: ConvNorm
    conv1: ConvNorm
    short: Optional[ConvNorm]


@dataclass(frozen=True)
class SamePool:
    """Max-pool as MindSpore's pad_mode='same'; `pads` (left, right, top, bottom) for frameworks that pad."""

    kernel: int
    stride: int
    pads: Tuple[int, int, int, int]


@dataclass(frozen=True)
class BackbonePlan:
    stem: Tuple[ConvNorm, ConvNorm, ConvNorm]  # conv1_1, conv1_2, conv1_3
    stem_pool: SamePool  # maxpool2d_1
    blocks: Tuple[Block, ...]  # block_list
    final_pool: SamePool  # maxpool2d_2


@dataclass(frozen=True)
class LocConv:
    """One conv 3x3 (pad 1, no bias) + batch-norm + ReLU block of the localisation net."""

    cin: int
    cout: int


@dataclass(frozen=True)
class LocPool:
    """A 2x2/2 floor max-pool between localisation blocks."""

    kernel: int = 2


@dataclass(frozen=True)
class TransformPlan:
    loc_layers: Tuple[Union[LocConv, LocPool], ...]  # stn_convnet's entries, MindOCR's indices
    fc1: Tuple[int, int]  # stn_fc1: dense + batch-norm 1d + ReLU
    fc2: Tuple[int, int]  # stn_fc2: dense to the control points
    sigmoid: bool  # on the predicted points
    num_points: int
    flat_features: int
    inputsize: Tuple[int, int]  # the localisation net's input (a bilinear resize)
    outputsize: Tuple[int, int]
    channels: int
    align_corners: bool
    padding_mode: str
    grid_sample: bool  # flavour: GridSample, or bilinear sampling from gathers
    grid_from_points: np.ndarray = field(compare=False, repr=False)  # `tps_matrices`: points -> sampling grid


@dataclass(frozen=True)
class NeckPlan:
    in_channels: int
    hidden_size: int
    num_layers: int
    seq_len: int
    lstm_kernel: bool  # flavour: the framework's LSTM, or step-by-step matmuls


@dataclass(frozen=True)
class HeadPlan:
    input_size: int
    hidden_size: int
    num_classes: int
    num_steps: int


@dataclass(frozen=True)
class RarePlan:
    transform: Optional[TransformPlan]  # None: no TPS (the network's `transform` is None too)
    backbone: BackbonePlan
    neck: NeckPlan
    head: HeadPlan


def _backbone_plan(spec: ModelSpec) -> BackbonePlan:
    b, i = spec.backbone, spec.input
    s0, s1, s2 = b.stem_channels
    stem = (ConvNorm(b.in_channels, s0, 3, act=True), ConvNorm(s0, s1, 3, act=True), ConvNorm(s1, s2, 3, act=True))
    blocks, cin = [], s2
    for stage, (depth, cout) in enumerate(zip(b.depths, b.widths)):
        for n in range(depth):
            stride = b.stage_stride(stage) if n == 0 else (1, 1)
            short = None
            if n == 0:  # the first block of a stage projects; vd (pool, then a 1x1 conv) where it also strides
                vd = stage > 0 and stride[0] != 1
                short = ConvNorm(cin, cout, 1, (1, 1) if vd else stride, avg_pool=stride if vd else None)
            blocks.append(Block(ConvNorm(cin, cout, 3, stride, act=True), ConvNorm(cout, cout, 3), short))
            cin = cout
    return BackbonePlan(stem=stem, stem_pool=SamePool(3, 2, stem_pool_pads(i.height, i.width)), blocks=tuple(blocks),
                        final_pool=SamePool(2, 2, final_pool_pads(*b.stages_output_size(i.height, i.width))))


def _transform_plan(t: TransformSpec, channels: int, flavour: Flavour) -> TransformPlan:
    layers, cin = [], channels
    for n, cout in enumerate(t.loc_channels):
        if n:
            layers.append(LocPool())
        layers.append(LocConv(cin, cout))
        cin = cout
    return TransformPlan(
        loc_layers=tuple(layers), fc1=(t.loc_flat_features, t.loc_fc_hidden),
        fc2=(t.loc_fc_hidden, 2 * t.num_control_points), sigmoid=t.stn_activation == "sigmoid",
        num_points=t.num_control_points, flat_features=t.loc_flat_features, inputsize=tuple(t.tps_inputsize),
        outputsize=tuple(t.tps_outputsize), channels=channels, align_corners=t.align_corners,
        padding_mode=t.padding_mode, grid_sample=flavour.grid_sample,
        grid_from_points=tps_matrices(t)["grid_from_points"])


def plan(spec: ModelSpec, flavour: Optional[Flavour] = None) -> RarePlan:
    """Every layer of the network `spec` describes, in `flavour` (default: `current_flavour()`)."""
    flavour = current_flavour() if flavour is None else flavour
    c = spec.input.channels
    return RarePlan(
        transform=None if spec.transform is None else _transform_plan(spec.transform, c, flavour),
        backbone=_backbone_plan(spec),
        neck=NeckPlan(spec.backbone.out_channels, spec.neck.hidden_size, spec.neck.num_layers, spec.sequence_length,
                      flavour.lstm_kernel),
        head=HeadPlan(spec.neck.out_channels, spec.head.hidden_size, spec.head.num_classes, spec.head.num_steps))
