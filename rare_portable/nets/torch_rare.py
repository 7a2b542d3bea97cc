"""RARE as a PyTorch `nn.Module`: the layers of `common.plan`, as `ms_rare.py` builds them for MindSpore.

Module paths equal MindOCR's parameter names (batch-norm tensors aside, see `common.py`), so a
MindOCR checkpoint maps onto this network by one table. The graph avoids what ONNX and MindSpore
Lite handle badly: the GRU cell is written out, the one-hot is a gather, pads are constants.
"""
from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import layers
from .common import (BN_EPS, TORCH_BN_MOMENTUM, TORCH_TO_CANONICAL_BN, BackbonePlan, ConvNorm, LocPool, NeckPlan,
                     SamePool, TransformPlan, gru_combine)


# The kit of `layers.py`, whose layers build through this module (`layers.Shared.kit`): `relu`, `batch_norm`,
# `conv`, `dense` (by the attention cell), `nn`, and the layer classes they nest.
relu = F.relu


def batch_norm(channels: int, dims: int = 2) -> nn.Module:
    cls = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
    return cls(channels, eps=BN_EPS, momentum=TORCH_BN_MOMENTUM)


def conv(p: ConvNorm) -> nn.Conv2d:
    return nn.Conv2d(p.cin, p.cout, p.kernel, p.stride, p.padding, bias=False)


class ConvNormLayer(layers.ConvNormLayer, nn.Module):
    pass


class BasicBlock(layers.BasicBlock, nn.Module):
    pass


def _same_max_pool(p: SamePool) -> nn.MaxPool2d:
    """MindSpore's pad_mode='same' max-pool without a Pad node: its (before, after) pads differ by at most
    one, and `ceil_mode` lets the last window hang over the end, which is the extra `after` row/column."""
    left, right, top, bottom = p.pads
    assert right - left in (0, 1) and bottom - top in (0, 1), p.pads
    return nn.MaxPool2d(p.kernel, p.stride, padding=(top, left), ceil_mode=True)


class RecResNet(nn.Module):
    def __init__(self, p: BackbonePlan):
        super().__init__()
        self.conv1_1, self.conv1_2, self.conv1_3 = (ConvNormLayer(c) for c in p.stem)
        self.maxpool2d_1 = _same_max_pool(p.stem_pool)
        self.maxpool2d_2 = _same_max_pool(p.final_pool)
        self.block_list = nn.Sequential(*(BasicBlock(b) for b in p.blocks))

    def forward(self, x):
        y = self.maxpool2d_1(self.conv1_3(self.conv1_2(self.conv1_1(x))))
        return self.maxpool2d_2(self.block_list(y))


class RNNEncoder(nn.Module):
    """[N, C, 1, W] -> [W, N, 2*hidden], time-major as MindOCR."""

    def __init__(self, p: NeckPlan):
        super().__init__()
        self.seq_encoder = nn.LSTM(p.in_channels, p.hidden_size, p.num_layers, bidirectional=True)
        self.feature_shape = (-1, p.in_channels, p.seq_len)  # reshape, not squeeze(2): no If node in exports
        self.lstm_kernel = p.lstm_kernel  # False (lite flavour): `lstm_cells`, for runtimes whose LSTM is approximate

    def forward(self, x):
        x = x.reshape(self.feature_shape).permute(2, 0, 1)
        if not self.lstm_kernel:
            return lstm_cells(self.seq_encoder, x, self.feature_shape[2])
        return self.seq_encoder(x)[0]


def lstm_cells(lstm: nn.LSTM, x, steps: int):
    """`lstm(x)[0]` (bidirectional, time-major) from MatMul and Sigmoid, step by step. MindSpore Lite 2.0's
    LSTM kernel is 1.7e-4 off a float64 evaluation (PyTorch's: 2e-6) and its Tanh 1e-4; these ops are not.
    Lite's model build time grows with the node count, so both directions advance in one batched matmul
    per step, and the cell gate's tanh is 2 sigmoid(2g) - 1 with its rows scaled by 2 (folded into the
    weights at export), so one Sigmoid covers all four gates; the lite flavour rewrites the one Tanh left. The first step has no recurrent term: the graph needs no
    zero state of a batch-derived shape."""
    size = lstm.hidden_size
    backward = list(range(steps - 1, -1, -1))
    # Gates i, f, g, o: tanh(g) = 2 sigmoid(2g) - 1. A constant (not an in-place write, which traces to
    # ScatterND/Expand), so the scaled weights fold at export.
    scale = torch.from_numpy(np.repeat(np.array([1, 1, 2, 1], np.float32), size)).to(x.dtype)
    for layer in range(lstm.num_layers):
        w_ih, w_hh, bias = [], [], []
        for suffix in ("", "_reverse"):
            w_ih.append(getattr(lstm, f"weight_ih_l{layer}{suffix}").T * scale)
            w_hh.append(getattr(lstm, f"weight_hh_l{layer}{suffix}").T * scale)
            bias.append((getattr(lstm, f"bias_ih_l{layer}{suffix}") + getattr(lstm, f"bias_hh_l{layer}{suffix}")) * scale)
        # Every step's input term at once, [T, 2, N, 4H]; direction 1 walks the sequence backwards.
        projected = torch.stack([x @ w_ih[0] + bias[0], (x @ w_ih[1] + bias[1])[backward]], 1)
        recurrent = torch.stack(w_hh)  # [2, H, 4H]
        outputs, h, c = [], None, None
        for t in range(steps):
            gates = torch.sigmoid(projected[t] if h is None else projected[t] + h @ recurrent)  # [2, N, 4H]
            i, f, o = gates[..., :size], gates[..., size:2 * size], gates[..., 3 * size:]
            g = 2 * gates[..., 2 * size:3 * size] - 1
            c = i * g if c is None else f * c + i * g
            h = o * torch.tanh(c)
            outputs.append(h)
        out = torch.stack(outputs)  # [T, 2, N, H], direction 1 in reversed time
        x = torch.cat([out[:, 0], out[backward, 1]], -1)
    return x


class GRUCell(nn.Module):
    """nn.GRUCell's math and parameters, written out so tracing keeps shapes (legacy ONNX chokes on
    `unsafe_chunk`), and with the input split into a dense part and a one-hot part taken by gather."""

    def __init__(self, dense_size: int, num_classes: int, hidden_size: int):
        super().__init__()
        self.weight_ih = nn.Parameter(torch.empty(3 * hidden_size, dense_size + num_classes))
        self.weight_hh = nn.Parameter(torch.empty(3 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.empty(3 * hidden_size))
        self.bias_hh = nn.Parameter(torch.empty(3 * hidden_size))
        self.hidden_size = hidden_size
        self.dense_size = dense_size  # a constant, not dense.shape[1]: traced shapes become Shape ops

    def forward(self, dense, onehot_ids, hidden):
        """`concat([dense, one_hot(ids)]) @ W_ih^T` equals `dense @ W_ih[:, :D]^T + W_ih[:, D + ids]^T`."""
        d = self.dense_size
        gi = dense @ self.weight_ih[:, :d].t() + self.weight_ih[:, d:].t()[onehot_ids] + self.bias_ih
        gh = hidden @ self.weight_hh.t() + self.bias_hh
        return gru_combine(gi, gh, hidden, self.hidden_size, torch.sigmoid, torch.tanh)


def dense(cin: int, cout: int, bias: bool = True) -> nn.Linear:
    return nn.Linear(cin, cout, bias=bias)


class AttentionCell(layers.AttentionCell, nn.Module):
    def forward(self, prev_hidden, batch_h, batch_h_proj, prev_ids):
        e = self.score(torch.tanh(batch_h_proj + self.h2h(prev_hidden).unsqueeze(1)))  # [N, T, 1]
        alpha = torch.softmax(e, dim=1)
        # reshape, not squeeze: squeezing a dimension the exporter cannot prove is 1 becomes an If node
        context = torch.bmm(alpha.transpose(1, 2), batch_h).reshape(-1, self.input_size)
        return self.rnn(context, prev_ids, prev_hidden)


class AttentionHead(layers.AttentionHead, nn.Module):
    def forward(self, inputs, targets: Optional[torch.Tensor] = None):
        """Teacher-forced logits [N, steps, C] with targets; greedy softmax probabilities without."""
        batch_h = inputs.permute(1, 0, 2)
        batch_h_proj = self.attention_cell.i2h(batch_h)  # constant across steps: computed once
        # Zeros derived by arithmetic, not from the batch size: exported graphs then carry no Shape ops,
        # which MindSpore Lite rejects at run time.
        hidden = 0.0 * batch_h_proj[:, 0]
        ids = (0.0 * batch_h[:, 0, 0]).long() if targets is None else None
        outputs = []
        for step in range(self.num_steps):
            prev = targets[:, step].long() if targets is not None else ids
            hidden = self.attention_cell(hidden, batch_h, batch_h_proj, prev)
            if targets is None:
                logits = self.generator(hidden)
                ids = logits.argmax(1)
                outputs.append(logits)
            else:
                outputs.append(hidden)
        if targets is not None:
            return self.generator(torch.stack(outputs, 1))
        return torch.softmax(torch.stack(outputs, 1), dim=2)


class STN(nn.Module):
    """Localisation net: predicts the source control points; indices match MindOCR's SequentialCell."""

    def __init__(self, p: TransformPlan):
        super().__init__()
        self.stn_convnet = nn.Sequential(*(
            nn.MaxPool2d(layer.kernel, layer.kernel) if isinstance(layer, LocPool) else nn.Sequential(
                nn.Conv2d(layer.cin, layer.cout, 3, 1, 1, bias=False), batch_norm(layer.cout), nn.ReLU())
            for layer in p.loc_layers))
        self.stn_fc1 = nn.Sequential(nn.Linear(*p.fc1), batch_norm(p.fc1[1], 1), nn.ReLU())
        self.stn_fc2 = nn.Linear(*p.fc2)
        self.sigmoid = p.sigmoid
        self.num_points = p.num_points

    def forward(self, x):
        x = self.stn_convnet(x).flatten(1)
        x = self.stn_fc2(0.1 * self.stn_fc1(x))
        if self.sigmoid:
            x = torch.sigmoid(x)
        return x.reshape(-1, self.num_points, 2)


def bilinear_gather(image, grid, p: TransformPlan):
    """`F.grid_sample(mode="bilinear")` from Floor, Clip and GatherElements, for runtimes without GridSample
    (MindSpore Lite 2.0). Sizes come from the spec and channels are broadcast, not expanded, so the
    exported graph holds no shape-derived ops."""
    h, w = p.outputsize
    channels = p.channels
    x, y = grid[..., 0].reshape(-1, 1, h * w), grid[..., 1].reshape(-1, 1, h * w)
    if p.align_corners:
        ix, iy = (x + 1) * 0.5 * (w - 1), (y + 1) * 0.5 * (h - 1)
    else:
        ix, iy = ((x + 1) * w - 1) * 0.5, ((y + 1) * h - 1) * 0.5
    if p.padding_mode == "border":
        ix, iy = ix.clamp(0, w - 1), iy.clamp(0, h - 1)
    x0, y0 = torch.floor(ix), torch.floor(iy)
    flat = image.reshape(-1, channels, h * w)
    channel_axis = torch.zeros(1, channels, 1, dtype=torch.long)
    out = 0.0
    for cx, wx in ((x0, x0 + 1 - ix), (x0 + 1, ix - x0)):
        for cy, wy in ((y0, y0 + 1 - iy), (y0 + 1, iy - y0)):
            x_in, y_in = cx.clamp(0, w - 1), cy.clamp(0, h - 1)
            # 1 inside the image, 0 outside (zero padding), from Abs/Clip: Lite 2.0 has no GreaterOrEqual.
            inside = (1 - (cx - x_in).abs().clamp(0, 1)) * (1 - (cy - y_in).abs().clamp(0, 1))
            index = (y_in * w + x_in).long() + channel_axis
            out = out + torch.gather(flat, 2, index) * (wx * wy * inside)
    return out.reshape(-1, channels, h, w)


class STN_ON(nn.Module):  # noqa: N801 - MindOCR's name, which configs use
    def __init__(self, p: TransformPlan):
        super().__init__()
        self.stn_head = STN(p)
        self.register_buffer("grid_from_points", torch.from_numpy(p.grid_from_points), persistent=False)
        self.plan = p  # frozen sizes and modes; `p.grid_sample` False (lite flavour): `bilinear_gather`

    def forward(self, image):
        p = self.plan
        small = F.interpolate(image, size=p.inputsize, mode="bilinear", align_corners=p.align_corners)
        points = self.stn_head(small)
        h, w = p.outputsize
        grid = (self.grid_from_points @ points).reshape(-1, h, w, 2).clamp(0, 1) * 2.0 - 1.0
        if not p.grid_sample:
            return bilinear_gather(image, grid, p)
        return F.grid_sample(image, grid, mode="bilinear", padding_mode=p.padding_mode, align_corners=p.align_corners)


class RARE(layers.RARE, nn.Module):
    def forward(self, images, targets: Optional[torch.Tensor] = None):
        self.spec.check_input_shape(tuple(images.shape))
        return self.head(self.encode(images), targets)


def canonical_names(net: nn.Module) -> Dict[str, str]:
    """{PyTorch state_dict key: MindOCR name}; `num_batches_tracked` has no MindOCR counterpart."""
    bn = {name for name, m in net.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    table = {}
    for key in net.state_dict():
        owner, _, leaf = key.rpartition(".")
        if leaf == "num_batches_tracked":
            continue
        table[key] = f"{owner}.{TORCH_TO_CANONICAL_BN[leaf]}" if owner in bn else key
    return table


def get_state(net: nn.Module) -> Dict[str, np.ndarray]:
    state = net.state_dict()
    return {canon: state[key].detach().cpu().numpy().copy() for key, canon in canonical_names(net).items()}


def set_state(net: nn.Module, state: Dict[str, np.ndarray]) -> None:
    """Copy canonical-named arrays in place; the caller has checked names and shapes."""
    own = net.state_dict()
    with torch.no_grad():
        for key, canon in canonical_names(net).items():
            own[key].copy_(torch.from_numpy(np.ascontiguousarray(state[canon])))


def set_mode(net: nn.Module, train: bool) -> nn.Module:
    return net.train(train)


def infer(fn, *arrays: np.ndarray) -> np.ndarray:
    """`fn` (a network or one of its layers) on numpy arrays, without gradients, as a numpy array."""
    with torch.inference_mode():
        return fn(*(torch.from_numpy(a) for a in arrays)).numpy()


def pt_names(net: nn.Module) -> Dict[str, str]:
    """{.pt key: MindOCR name}: a .pt file holds PyTorch's own state_dict keys."""
    return canonical_names(net)
