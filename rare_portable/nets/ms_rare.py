"""RARE as a MindSpore `nn.Cell`, block for block the mirror of `torch_rare.py`.

Attribute paths give MindOCR's parameter names exactly, so MindOCR checkpoints load unchanged.
Differences from the PyTorch file are the ones the frameworks force (pad_mode='same', Dense, Cell).
"""
from __future__ import annotations

from typing import Dict

import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

from ..spec import BackboneSpec, HeadSpec, ModelSpec, NeckSpec, TransformSpec
from .common import BN_EPS, MS_BN_MOMENTUM, gru_combine, tps_matrices


def _batch_norm(channels: int, dims: int = 2) -> nn.Cell:
    cls = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
    return cls(channels, eps=BN_EPS, momentum=MS_BN_MOMENTUM)


class ConvNormLayer(nn.Cell):
    """conv (no bias) + BN (+ ReLU); `is_vd_mode` puts a strided average pool in front ("ResNet-D")."""

    def __init__(self, cin: int, cout: int, kernel: int, stride=(1, 1), is_vd_mode=False, act=False):
        super().__init__()
        self.is_vd_mode = is_vd_mode
        self.pool = nn.AvgPool2d(stride, stride) if is_vd_mode else None
        self.conv = nn.Conv2d(cin, cout, kernel, 1 if is_vd_mode else stride, pad_mode="pad",
                              padding=(kernel - 1) // 2, has_bias=False)
        self.norm = _batch_norm(cout)
        self.act = act

    def construct(self, x):
        if self.is_vd_mode:
            x = self.pool(x)
        y = self.norm(self.conv(x))
        if self.act:
            y = ops.relu(y)
        return y


class BasicBlock(nn.Cell):
    def __init__(self, cin: int, cout: int, stride, shortcut: bool, is_first: bool):
        super().__init__()
        self.conv0 = ConvNormLayer(cin, cout, 3, stride, act=True)
        self.conv1 = ConvNormLayer(cout, cout, 3)
        self.shortcut = shortcut
        if not shortcut:
            self.short = ConvNormLayer(cin, cout, 1, stride, is_vd_mode=not is_first and stride[0] != 1)

    def construct(self, x):
        short = x if self.shortcut else self.short(x)
        return ops.relu(short + self.conv1(self.conv0(x)))


class RecResNet(nn.Cell):
    def __init__(self, spec: BackboneSpec):
        super().__init__()
        s0, s1, s2 = spec.stem_channels
        self.conv1_1 = ConvNormLayer(spec.in_channels, s0, 3, act=True)
        self.conv1_2 = ConvNormLayer(s0, s1, 3, act=True)
        self.conv1_3 = ConvNormLayer(s1, s2, 3, act=True)
        self.maxpool2d_1 = nn.MaxPool2d(kernel_size=3, stride=2, pad_mode="same")
        blocks, cin = [], s2
        for stage, (depth, cout) in enumerate(zip(spec.depths, spec.widths)):
            for i in range(depth):
                stride = spec.stage_stride(stage) if i == 0 else (1, 1)
                blocks.append(BasicBlock(cin, cout, stride, shortcut=i > 0, is_first=stage == i == 0))
                cin = cout
        self.block_list = nn.SequentialCell(blocks)
        self.maxpool2d_2 = nn.MaxPool2d(kernel_size=2, stride=2, pad_mode="same")

    def construct(self, x):
        y = self.maxpool2d_1(self.conv1_3(self.conv1_2(self.conv1_1(x))))
        return self.maxpool2d_2(self.block_list(y))


class RNNEncoder(nn.Cell):
    """[N, C, 1, W] -> [W, N, 2*hidden], time-major as MindOCR; fp32 throughout (MindOCR casts to fp16
    on some MindSpore versions, which moves the output by ~1e-2)."""

    def __init__(self, spec: NeckSpec, in_channels: int, seq_len: int):
        super().__init__()
        self.seq_encoder = nn.LSTM(in_channels, spec.hidden_size, spec.num_layers, has_bias=True,
                                   bidirectional=True)
        self.feature_shape = (-1, in_channels, seq_len)
        # exporters.mindir_export builds its own copy with False: a MindIR without the LSTM kernel converts
        # for Ascend from any host (the kernel exports as _DynamicLSTMCPUGPU, which converter_lite rejects).
        self.use_lstm_kernel = True

    def construct(self, x):
        x = ops.transpose(ops.reshape(x, self.feature_shape), (2, 0, 1))
        if not self.use_lstm_kernel:
            return lstm_steps(self.seq_encoder, x, self.feature_shape[2])
        return self.seq_encoder(x)[0]


def lstm_steps(lstm: nn.LSTM, x, steps: int):
    """`lstm(x)[0]` (bidirectional, time-major) from MatMul, Sigmoid and Mul, step by step: the same math as
    the kernel (gates i, f, g, o), with tanh as 2 sigmoid(2x) - 1 (`accurate_tanh`)."""
    size = lstm.hidden_size
    for layer in range(lstm.num_layers):
        directions = []
        for d in range(2):  # 0 forward, 1 backward
            k = 2 * layer + d
            w_hh = lstm.w_hh_list[k].T
            projected = ops.matmul(x, lstm.w_ih_list[k].T) + lstm.b_ih_list[k] + lstm.b_hh_list[k]  # [T, N, 4H]
            order = range(steps) if d == 0 else range(steps - 1, -1, -1)
            outputs = [None] * steps
            h, c = None, None
            for t in order:
                gates = projected[t] if h is None else projected[t] + ops.matmul(h, w_hh)
                i, f = ops.sigmoid(gates[:, :size]), ops.sigmoid(gates[:, size:2 * size])
                g, o = accurate_tanh(gates[:, 2 * size:3 * size]), ops.sigmoid(gates[:, 3 * size:])
                c = i * g if c is None else f * c + i * g
                h = o * accurate_tanh(c)
                outputs[t] = h
            directions.append(ops.stack(outputs))
        x = ops.concat(directions, -1)
    return x


def accurate_tanh(x):
    """tanh as 2 sigmoid(2x) - 1. MindSpore's CPU Tanh is a fast approximation, up to 1e-4 off near |x| = 5
    (its Sigmoid: 1e-6), and a trained decoder carries that through 26 steps to 2e-4 on its probabilities,
    twice the parity tolerance; this form stays within 2e-6 of tanh on every device."""
    return 2 * ops.sigmoid(2 * x) - 1


class GRUCell(nn.Cell):
    """MindOCR's GRU cell math and parameters, with the one-hot part of the input taken by gather."""

    def __init__(self, dense_size: int, num_classes: int, hidden_size: int):
        super().__init__()
        self.weight_ih = Parameter(Tensor(np.zeros((3 * hidden_size, dense_size + num_classes), np.float32)),
                                   name="weight_ih")
        self.weight_hh = Parameter(Tensor(np.zeros((3 * hidden_size, hidden_size), np.float32)), name="weight_hh")
        self.bias_ih = Parameter(Tensor(np.zeros((3 * hidden_size,), np.float32)), name="bias_ih")
        self.bias_hh = Parameter(Tensor(np.zeros((3 * hidden_size,), np.float32)), name="bias_hh")
        self.hidden_size = hidden_size
        self.dense_size = dense_size

    def construct(self, dense, onehot_ids, hidden):
        """`concat([dense, one_hot(ids)]) @ W_ih^T` equals `dense @ W_ih[:, :D]^T + W_ih[:, D + ids]^T`."""
        d = self.dense_size
        gi = ops.matmul(dense, self.weight_ih[:, :d].T) + ops.gather(self.weight_ih[:, d:].T, onehot_ids, 0)
        gi = gi + self.bias_ih
        gh = ops.matmul(hidden, self.weight_hh.T) + self.bias_hh
        return gru_combine(gi, gh, hidden, self.hidden_size, ops.sigmoid, accurate_tanh)


class AttentionCell(nn.Cell):
    def __init__(self, input_size: int, hidden_size: int, num_classes: int):
        super().__init__()
        self.i2h = nn.Dense(input_size, hidden_size, has_bias=False)
        self.h2h = nn.Dense(hidden_size, hidden_size)
        self.score = nn.Dense(hidden_size, 1, has_bias=False)
        self.rnn = GRUCell(input_size, num_classes, hidden_size)
        self.input_size = input_size

    def construct(self, prev_hidden, batch_h, batch_h_proj, prev_ids):
        return self.step(prev_hidden, batch_h, batch_h_proj, prev_ids)[0]

    def step(self, prev_hidden, batch_h, batch_h_proj, prev_ids):
        """(next hidden [N, H], attention weights [N, T, 1])."""
        e = self.score(accurate_tanh(batch_h_proj + ops.expand_dims(self.h2h(prev_hidden), 1)))  # [N, T, 1]
        alpha = ops.softmax(e, axis=1)
        context = ops.reshape(ops.bmm(ops.transpose(alpha, (0, 2, 1)), batch_h), (-1, self.input_size))
        return self.rnn(context, prev_ids, prev_hidden), alpha


class AttentionHead(nn.Cell):
    def __init__(self, spec: HeadSpec, in_channels: int):
        super().__init__()
        self.attention_cell = AttentionCell(in_channels, spec.hidden_size, spec.num_classes)
        self.generator = nn.Dense(spec.hidden_size, spec.num_classes)
        self.num_steps = spec.num_steps

    def construct(self, inputs, targets=None):
        """Teacher-forced logits [N, steps, C] with targets; greedy softmax probabilities without."""
        if targets is not None:
            return self.teacher_forced(inputs, targets)[0]
        batch_h, batch_h_proj, hidden = self.start(inputs)
        ids = (batch_h_proj[:, 0, 0] * 0).astype(ms.int32)
        outputs = []
        for _ in range(self.num_steps):
            hidden = self.attention_cell(hidden, batch_h, batch_h_proj, ids)
            logits = self.generator(hidden)
            ids = ops.argmax(logits, 1).astype(ms.int32)
            outputs.append(logits)
        return ops.softmax(ops.stack(outputs, 1), axis=2)

    def teacher_forced(self, inputs, targets):
        """(logits [N, steps, C], attention weights [N, steps, T]) with the targets fed back; the weights are
        what a training-only attention loss (train/step.py) reads."""
        batch_h, batch_h_proj, hidden = self.start(inputs)
        targets = targets.astype(ms.int32)
        outputs, alphas = [], []
        for step in range(self.num_steps):
            hidden, alpha = self.attention_cell.step(hidden, batch_h, batch_h_proj, targets[:, step])
            outputs.append(hidden)
            alphas.append(alpha[:, :, 0])
        return self.generator(ops.stack(outputs, 1)), ops.stack(alphas, 1)

    def start(self, inputs):
        """(features [N, T, F], their projection for the attention, constant over steps, the zero state).
        The zero state (and the GO ids) come from a tensor of the batch, not `ops.zeros` of a batch-derived
        shape: a dynamic-batch MindIR would keep a Zeros primitive, which Lite's Ascend converter does not list."""
        batch_h = ops.transpose(inputs, (1, 0, 2))
        batch_h_proj = self.attention_cell.i2h(batch_h)
        return batch_h, batch_h_proj, batch_h_proj[:, 0, :] * 0


def _conv3x3_block(cin: int, cout: int) -> nn.SequentialCell:
    return nn.SequentialCell(
        nn.Conv2d(cin, cout, 3, 1, pad_mode="pad", padding=1, has_bias=False), _batch_norm(cout), nn.ReLU(),
    )


class STN(nn.Cell):
    """Localisation net: predicts the source control points; indices match MindOCR's SequentialCell."""

    def __init__(self, spec: TransformSpec, in_channels: int):
        super().__init__()
        layers, cin = [], in_channels
        for i, cout in enumerate(spec.loc_channels):
            if i:
                layers.append(nn.MaxPool2d(2, 2))
            layers.append(_conv3x3_block(cin, cout))
            cin = cout
        self.stn_convnet = nn.SequentialCell(layers)
        self.stn_fc1 = nn.SequentialCell(
            nn.Dense(spec.loc_flat_features, spec.loc_fc_hidden), _batch_norm(spec.loc_fc_hidden, 1), nn.ReLU(),
        )
        self.stn_fc2 = nn.Dense(spec.loc_fc_hidden, 2 * spec.num_control_points)
        self.sigmoid = spec.stn_activation == "sigmoid"
        self.num_points = spec.num_control_points
        self.flat_features = spec.loc_flat_features

    def construct(self, x):
        x = self.stn_convnet(x)
        x = self.stn_fc2(0.1 * self.stn_fc1(ops.reshape(x, (-1, self.flat_features))))
        if self.sigmoid:
            x = ops.sigmoid(x)
        return ops.reshape(x, (-1, self.num_points, 2))


class STN_ON(nn.Cell):  # noqa: N801 - MindOCR's name, which configs use
    def __init__(self, spec: TransformSpec, in_channels: int):
        super().__init__()
        self.stn_head = STN(spec, in_channels)
        self.grid_from_points = Tensor(tps_matrices(spec)["grid_from_points"])
        self.inputsize = tuple(spec.tps_inputsize)
        # The primitive, not ops.interpolate: interpolate's Python checks leave nodes that a
        # dynamic-batch MindIR cannot run (MindSpore 2.8, measured); the results are identical.
        self.resize = ops.ResizeBilinearV2(align_corners=spec.align_corners, half_pixel_centers=not spec.align_corners)
        self.outputsize = tuple(spec.tps_outputsize)
        self.align_corners = spec.align_corners
        self.padding_mode = spec.padding_mode

    def construct(self, image):
        small = self.resize(image, self.inputsize)
        points = self.stn_head(small)
        grid = ops.reshape(ops.matmul(self.grid_from_points, points), (-1,) + self.outputsize + (2,))
        grid = ops.clamp(grid, 0.0, 1.0) * 2.0 - 1.0
        return ops.grid_sample(image, grid, mode="bilinear", padding_mode=self.padding_mode,
                               align_corners=self.align_corners)


class RARE(nn.Cell):
    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec
        self.has_transform = spec.transform is not None
        if self.has_transform:
            self.transform = STN_ON(spec.transform, spec.input.channels)
        self.backbone = RecResNet(spec.backbone)
        self.neck = RNNEncoder(spec.neck, spec.backbone.out_channels, spec.sequence_length)
        self.head = AttentionHead(spec.head, spec.neck.out_channels)

    def __call__(self, images, *targets):
        self.spec.check_input_shape(tuple(images.shape))
        return super().__call__(images, *targets)

    def construct(self, images, targets=None):
        return self.head(self.encode(images), targets)

    def encode(self, images):
        """The encoder's output [W, N, 2*hidden], time-major: what the head attends over."""
        x = self.transform(images) if self.has_transform else images
        return self.neck(self.backbone(x))


def canonical_names(net: nn.Cell) -> Dict[str, str]:
    """MindSpore names are MindOCR's already."""
    return {p.name: p.name for p in net.get_parameters()}


def get_state(net: nn.Cell) -> Dict[str, np.ndarray]:
    return {p.name: p.asnumpy().copy() for p in net.get_parameters()}


def set_state(net: nn.Cell, state: Dict[str, np.ndarray]) -> None:
    for p in net.get_parameters():
        p.set_data(Tensor(np.ascontiguousarray(state[p.name]), p.dtype))


class AttentionLoss(nn.Cell):
    """MindOCR `AttentionLoss`: cross-entropy of step t against targets[:, t + 1], padding (0) ignored;
    `label_smoothing` > 0 is our extension (MindSpore's own smoothing of the cross-entropy)."""

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.criterion = nn.CrossEntropyLoss(reduction="mean", ignore_index=0, label_smoothing=float(label_smoothing))

    def construct(self, logits, targets):
        labels = targets[:, 1:1 + logits.shape[1]].astype(ms.int32)
        return self.criterion(ops.reshape(logits, (-1, logits.shape[-1])), ops.reshape(labels, (-1,)))
