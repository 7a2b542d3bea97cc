"""RARE as a MindSpore `nn.Cell`: the layers of `common.plan`, as `torch_rare.py` builds them for PyTorch.

Attribute paths give MindOCR's parameter names exactly, so MindOCR checkpoints load unchanged. What this
file holds is what the framework forces: Cell/construct, pad_mode='same', Dense, `accurate_tanh` (MindSpore's
CPU Tanh is approximate), `lstm_steps` for the plain-operator LSTM flavour.
"""
from __future__ import annotations

from typing import Dict

import numpy as np
import mindspore as ms
from mindspore import Parameter, Tensor, nn, ops

from . import layers
from .common import (BN_EPS, MS_BN_MOMENTUM, BackbonePlan, ConvNorm, LocPool, NeckPlan, SamePool, TransformPlan,
                     gru_combine)


# The kit of `layers.py`, whose layers build through this module (`layers.Shared.kit`): `relu`, `batch_norm`,
# `conv`, `dense` (by the attention cell), `nn`, and the layer classes they nest.
relu = ops.relu


def batch_norm(channels: int, dims: int = 2) -> nn.Cell:
    cls = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
    return cls(channels, eps=BN_EPS, momentum=MS_BN_MOMENTUM)


def conv(p: ConvNorm) -> nn.Conv2d:
    return nn.Conv2d(p.cin, p.cout, p.kernel, p.stride, pad_mode="pad", padding=p.padding, has_bias=False)


class ConvNormLayer(layers.ConvNormLayer, nn.Cell):
    pass


class BasicBlock(layers.BasicBlock, nn.Cell):
    pass


def _same_max_pool(p: SamePool) -> nn.MaxPool2d:
    return nn.MaxPool2d(kernel_size=p.kernel, stride=p.stride, pad_mode="same")


class RecResNet(nn.Cell):
    def __init__(self, p: BackbonePlan):
        super().__init__()
        self.conv1_1, self.conv1_2, self.conv1_3 = (ConvNormLayer(c) for c in p.stem)
        self.maxpool2d_1 = _same_max_pool(p.stem_pool)
        self.block_list = nn.SequentialCell([BasicBlock(b) for b in p.blocks])
        self.maxpool2d_2 = _same_max_pool(p.final_pool)

    def construct(self, x):
        y = self.maxpool2d_1(self.conv1_3(self.conv1_2(self.conv1_1(x))))
        return self.maxpool2d_2(self.block_list(y))


class RNNEncoder(nn.Cell):
    """[N, C, 1, W] -> [W, N, 2*hidden], time-major as MindOCR; fp32 throughout (MindOCR casts to fp16
    on some MindSpore versions, which moves the output by ~1e-2)."""

    def __init__(self, p: NeckPlan):
        super().__init__()
        self.seq_encoder = nn.LSTM(p.in_channels, p.hidden_size, p.num_layers, has_bias=True, bidirectional=True)
        self.feature_shape = (-1, p.in_channels, p.seq_len)
        # exporters.mindir_export builds with lstm_kernel False: a MindIR without the LSTM kernel converts
        # for Ascend from any host (the kernel exports as _DynamicLSTMCPUGPU, which converter_lite rejects).
        self.lstm_kernel = p.lstm_kernel

    def construct(self, x):
        x = ops.transpose(ops.reshape(x, self.feature_shape), (2, 0, 1))
        if not self.lstm_kernel:
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


def dense(cin: int, cout: int, bias: bool = True) -> nn.Dense:
    return nn.Dense(cin, cout, has_bias=bias)


class AttentionCell(layers.AttentionCell, nn.Cell):
    def construct(self, prev_hidden, batch_h, batch_h_proj, prev_ids):
        return self.step(prev_hidden, batch_h, batch_h_proj, prev_ids)[0]

    def step(self, prev_hidden, batch_h, batch_h_proj, prev_ids):
        """(next hidden [N, H], attention weights [N, T, 1])."""
        e = self.score(accurate_tanh(batch_h_proj + ops.expand_dims(self.h2h(prev_hidden), 1)))  # [N, T, 1]
        alpha = ops.softmax(e, axis=1)
        context = ops.reshape(ops.bmm(ops.transpose(alpha, (0, 2, 1)), batch_h), (-1, self.input_size))
        return self.rnn(context, prev_ids, prev_hidden), alpha


class AttentionHead(layers.AttentionHead, nn.Cell):
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


class STN(nn.Cell):
    """Localisation net: predicts the source control points; indices match MindOCR's SequentialCell."""

    def __init__(self, p: TransformPlan):
        super().__init__()
        self.stn_convnet = nn.SequentialCell([
            nn.MaxPool2d(layer.kernel, layer.kernel) if isinstance(layer, LocPool) else nn.SequentialCell(
                nn.Conv2d(layer.cin, layer.cout, 3, 1, pad_mode="pad", padding=1, has_bias=False),
                batch_norm(layer.cout), nn.ReLU())
            for layer in p.loc_layers])
        self.stn_fc1 = nn.SequentialCell(nn.Dense(*p.fc1), batch_norm(p.fc1[1], 1), nn.ReLU())
        self.stn_fc2 = nn.Dense(*p.fc2)
        self.sigmoid = p.sigmoid
        self.num_points = p.num_points
        self.flat_features = p.flat_features

    def construct(self, x):
        x = self.stn_convnet(x)
        x = self.stn_fc2(0.1 * self.stn_fc1(ops.reshape(x, (-1, self.flat_features))))
        if self.sigmoid:
            x = ops.sigmoid(x)
        return ops.reshape(x, (-1, self.num_points, 2))


class STN_ON(nn.Cell):  # noqa: N801 - MindOCR's name, which configs use
    def __init__(self, p: TransformPlan):
        super().__init__()
        if not p.grid_sample:
            raise ValueError("the MindSpore network samples with grid_sample only; build other flavours in PyTorch")
        self.stn_head = STN(p)
        self.grid_from_points = Tensor(p.grid_from_points)
        self.inputsize = p.inputsize
        # The primitive, not ops.interpolate: interpolate's Python checks leave nodes that a
        # dynamic-batch MindIR cannot run (MindSpore 2.8, measured); the results are identical.
        self.resize = ops.ResizeBilinearV2(align_corners=p.align_corners, half_pixel_centers=not p.align_corners)
        self.outputsize = p.outputsize
        self.align_corners = p.align_corners
        self.padding_mode = p.padding_mode

    def construct(self, image):
        small = self.resize(image, self.inputsize)
        points = self.stn_head(small)
        grid = ops.reshape(ops.matmul(self.grid_from_points, points), (-1,) + self.outputsize + (2,))
        grid = ops.clamp(grid, 0.0, 1.0) * 2.0 - 1.0
        return ops.grid_sample(image, grid, mode="bilinear", padding_mode=self.padding_mode,
                               align_corners=self.align_corners)


class RARE(layers.RARE, nn.Cell):
    def __call__(self, images, *targets):
        self.spec.check_input_shape(tuple(images.shape))
        return super().__call__(images, *targets)

    def construct(self, images, targets=None):
        return self.head(self.encode(images), targets)


def canonical_names(net: nn.Cell) -> Dict[str, str]:
    """MindSpore names are MindOCR's already."""
    return {p.name: p.name for p in net.get_parameters()}


def get_state(net: nn.Cell) -> Dict[str, np.ndarray]:
    return {p.name: p.asnumpy().copy() for p in net.get_parameters()}


def set_state(net: nn.Cell, state: Dict[str, np.ndarray]) -> None:
    for p in net.get_parameters():
        p.set_data(Tensor(np.ascontiguousarray(state[p.name]), p.dtype))


def set_mode(net: nn.Cell, train: bool) -> nn.Cell:
    net.set_train(train)
    return net


def infer(fn, *arrays: np.ndarray) -> np.ndarray:
    """`fn` (a network or one of its cells) on numpy arrays, as a numpy array."""
    return fn(*(Tensor(a) for a in arrays)).asnumpy()


def pt_names(net: nn.Cell) -> None:
    """A .pt written from MindSpore keeps MindOCR's names (loading accepts either naming)."""
    return None
