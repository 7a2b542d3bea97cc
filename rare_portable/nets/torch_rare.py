"""RARE as a PyTorch `nn.Module`, block for block the mirror of `ms_rare.py`.

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

from ..spec import BackboneSpec, HeadSpec, ModelSpec, NeckSpec, TransformSpec
from .common import (BN_EPS, TORCH_BN_MOMENTUM, TORCH_TO_CANONICAL_BN, final_pool_pads, gru_combine,
                     stem_pool_pads, tps_matrices)


class ConvNormLayer(nn.Module):
    """conv (no bias) + BN (+ ReLU); `is_vd_mode` puts a strided average pool in front ("ResNet-D")."""

    def __init__(self, cin: int, cout: int, kernel: int, stride=(1, 1), is_vd_mode=False, act=False):
        super().__init__()
        self.pool = nn.AvgPool2d(stride, stride) if is_vd_mode else None
        self.conv = nn.Conv2d(cin, cout, kernel, 1 if is_vd_mode else stride, (kernel - 1) // 2, bias=False)
        self.norm = nn.BatchNorm2d(cout, eps=BN_EPS, momentum=TORCH_BN_MOMENTUM)
        self.act = act

    def forward(self, x):
        if self.pool is not None:
            x = self.pool(x)
        y = self.norm(self.conv(x))
        return F.relu(y) if self.act else y


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride, shortcut: bool, is_first: bool):
        super().__init__()
        self.conv0 = ConvNormLayer(cin, cout, 3, stride, act=True)
        self.conv1 = ConvNormLayer(cout, cout, 3)
        self.short = None if shortcut else ConvNormLayer(cin, cout, 1, stride, is_vd_mode=not is_first and stride[0] != 1)

    def forward(self, x):
        short = x if self.short is None else self.short(x)
        return F.relu(short + self.conv1(self.conv0(x)))


def _same_max_pool(kernel: int, pads) -> nn.MaxPool2d:
    """MindSpore's pad_mode='same' max-pool without a Pad node: its (before, after) pads differ by at most
    one, and `ceil_mode` lets the last window hang over the end, which is the extra `after` row/column."""
    left, right, top, bottom = pads
    assert right - left in (0, 1) and bottom - top in (0, 1), pads
    return nn.MaxPool2d(kernel, 2, padding=(top, left), ceil_mode=True)


class RecResNet(nn.Module):
    def __init__(self, spec: BackboneSpec, height: int, width: int):
        super().__init__()
        s0, s1, s2 = spec.stem_channels
        self.conv1_1 = ConvNormLayer(spec.in_channels, s0, 3, act=True)
        self.conv1_2 = ConvNormLayer(s0, s1, 3, act=True)
        self.conv1_3 = ConvNormLayer(s1, s2, 3, act=True)
        self.maxpool2d_1 = _same_max_pool(3, stem_pool_pads(height, width))
        self.maxpool2d_2 = _same_max_pool(2, final_pool_pads(*spec.stages_output_size(height, width)))
        blocks, cin = [], s2
        for stage, (depth, cout) in enumerate(zip(spec.depths, spec.widths)):
            for i in range(depth):
                stride = spec.stage_stride(stage) if i == 0 else (1, 1)
                blocks.append(BasicBlock(cin, cout, stride, shortcut=i > 0, is_first=stage == i == 0))
                cin = cout
        self.block_list = nn.Sequential(*blocks)

    def forward(self, x):
        y = self.maxpool2d_1(self.conv1_3(self.conv1_2(self.conv1_1(x))))
        return self.maxpool2d_2(self.block_list(y))


class RNNEncoder(nn.Module):
    """[N, C, 1, W] -> [W, N, 2*hidden], time-major as MindOCR."""

    def __init__(self, spec: NeckSpec, in_channels: int, seq_len: int):
        super().__init__()
        self.seq_encoder = nn.LSTM(in_channels, spec.hidden_size, spec.num_layers, bidirectional=True)
        self.feature_shape = (-1, in_channels, seq_len)  # reshape, not squeeze(2): no If node in exports
        self.use_lstm_kernel = True  # exporters switch to `lstm_cells` for runtimes whose LSTM is approximate

    def forward(self, x):
        x = x.reshape(self.feature_shape).permute(2, 0, 1)
        if not self.use_lstm_kernel:
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


class AttentionCell(nn.Module):
    def __init__(self, input_size: int, hidden_size: int, num_classes: int):
        super().__init__()
        self.i2h = nn.Linear(input_size, hidden_size, bias=False)
        self.h2h = nn.Linear(hidden_size, hidden_size)
        self.score = nn.Linear(hidden_size, 1, bias=False)
        self.rnn = GRUCell(input_size, num_classes, hidden_size)
        self.input_size = input_size

    def forward(self, prev_hidden, batch_h, batch_h_proj, prev_ids):
        e = self.score(torch.tanh(batch_h_proj + self.h2h(prev_hidden).unsqueeze(1)))  # [N, T, 1]
        alpha = torch.softmax(e, dim=1)
        # reshape, not squeeze: squeezing a dimension the exporter cannot prove is 1 becomes an If node
        context = torch.bmm(alpha.transpose(1, 2), batch_h).reshape(-1, self.input_size)
        return self.rnn(context, prev_ids, prev_hidden)


class AttentionHead(nn.Module):
    def __init__(self, spec: HeadSpec, in_channels: int):
        super().__init__()
        self.attention_cell = AttentionCell(in_channels, spec.hidden_size, spec.num_classes)
        self.generator = nn.Linear(spec.hidden_size, spec.num_classes)
        self.spec = spec

    def forward(self, inputs, targets: Optional[torch.Tensor] = None):
        """Teacher-forced logits [N, steps, C] with targets; greedy softmax probabilities without."""
        batch_h = inputs.permute(1, 0, 2)
        batch_h_proj = self.attention_cell.i2h(batch_h)  # constant across steps: computed once
        # Zeros derived by arithmetic, not from the batch size: exported graphs then carry no Shape ops,
        # which MindSpore Lite rejects at run time.
        hidden = 0.0 * batch_h_proj[:, 0]
        ids = (0.0 * batch_h[:, 0, 0]).long() if targets is None else None
        outputs = []
        for step in range(self.spec.num_steps):
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


def _conv3x3_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout, eps=BN_EPS, momentum=TORCH_BN_MOMENTUM),
        nn.ReLU(),
    )


class STN(nn.Module):
    """Localisation net: predicts the source control points; indices match MindOCR's SequentialCell."""

    def __init__(self, spec: TransformSpec, in_channels: int):
        super().__init__()
        layers, cin = [], in_channels
        for i, cout in enumerate(spec.loc_channels):
            if i:
                layers.append(nn.MaxPool2d(2, 2))
            layers.append(_conv3x3_block(cin, cout))
            cin = cout
        self.stn_convnet = nn.Sequential(*layers)
        self.stn_fc1 = nn.Sequential(
            nn.Linear(spec.loc_flat_features, spec.loc_fc_hidden),
            nn.BatchNorm1d(spec.loc_fc_hidden, eps=BN_EPS, momentum=TORCH_BN_MOMENTUM), nn.ReLU(),
        )
        self.stn_fc2 = nn.Linear(spec.loc_fc_hidden, 2 * spec.num_control_points)
        self.spec = spec

    def forward(self, x):
        x = self.stn_convnet(x).flatten(1)
        x = self.stn_fc2(0.1 * self.stn_fc1(x))
        if self.spec.stn_activation == "sigmoid":
            x = torch.sigmoid(x)
        return x.reshape(-1, self.spec.num_control_points, 2)


def bilinear_gather(image, grid, spec: TransformSpec, channels: int):
    """`F.grid_sample(mode="bilinear")` from Floor, Clip and GatherElements, for runtimes without GridSample
    (MindSpore Lite 2.0). Sizes come from the spec and channels are broadcast, not expanded, so the
    exported graph holds no shape-derived ops."""
    h, w = spec.tps_outputsize
    x, y = grid[..., 0].reshape(-1, 1, h * w), grid[..., 1].reshape(-1, 1, h * w)
    if spec.align_corners:
        ix, iy = (x + 1) * 0.5 * (w - 1), (y + 1) * 0.5 * (h - 1)
    else:
        ix, iy = ((x + 1) * w - 1) * 0.5, ((y + 1) * h - 1) * 0.5
    if spec.padding_mode == "border":
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
    def __init__(self, spec: TransformSpec, in_channels: int):
        super().__init__()
        self.stn_head = STN(spec, in_channels)
        self.register_buffer("grid_from_points", torch.from_numpy(tps_matrices(spec)["grid_from_points"]),
                             persistent=False)
        self.spec = spec
        self.channels = in_channels
        self.use_grid_sample = True  # exporters switch to `bilinear_gather` for runtimes without GridSample

    def forward(self, image):
        s = self.spec
        small = F.interpolate(image, size=tuple(s.tps_inputsize), mode="bilinear", align_corners=s.align_corners)
        points = self.stn_head(small)
        h, w = s.tps_outputsize
        grid = (self.grid_from_points @ points).reshape(-1, h, w, 2).clamp(0, 1) * 2.0 - 1.0
        if not self.use_grid_sample:
            return bilinear_gather(image, grid, s, self.channels)
        return F.grid_sample(image, grid, mode="bilinear", padding_mode=s.padding_mode, align_corners=s.align_corners)


class RARE(nn.Module):
    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        c = spec.input.channels
        self.transform = STN_ON(spec.transform, c) if spec.transform is not None else None
        self.backbone = RecResNet(spec.backbone, spec.input.height, spec.input.width)
        self.neck = RNNEncoder(spec.neck, spec.backbone.out_channels, spec.sequence_length)
        self.head = AttentionHead(spec.head, spec.neck.out_channels)

    def forward(self, images, targets: Optional[torch.Tensor] = None):
        self.spec.check_input_shape(tuple(images.shape))
        x = images if self.transform is None else self.transform(images)
        return self.head(self.neck(self.backbone(x)), targets)


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


def attention_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """MindOCR `AttentionLoss`: cross-entropy of step t against targets[:, t + 1], padding (0) ignored."""
    labels = targets[:, 1:1 + logits.shape[1]].long()
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=0)
