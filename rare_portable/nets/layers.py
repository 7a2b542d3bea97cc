"""The layers whose make-up both builders share, written once: which sub-layers each has, under MindOCR's
names, from `common.plan`'s entries, and the data flow where it is framework-free.

A framework file subclasses each of these with its base class (`class BasicBlock(layers.BasicBlock, nn.Cell)`)
and adds what the frameworks do differently. The layers build through `self.kit`, the framework file their
class is defined in: its `relu`, `dense`, `conv`, `batch_norm`, `nn`, and its layer classes. `construct` is
MindSpore's name for the data flow and `forward`, PyTorch's, is the same function; MindSpore compiles these
in graph mode as it compiles the framework files' own.
"""
from __future__ import annotations

import sys

from ..spec import ModelSpec
from .common import Block, ConvNorm, HeadPlan, plan


class _FrameworkFile:
    """`layer.kit`: the module that defines the layer's class (`torch_rare` or `ms_rare`)."""

    def __get__(self, layer, cls):
        return sys.modules[cls.__module__]


class Shared:
    """Base of the layers here: `self.kit` is the framework file that subclasses them."""

    kit = _FrameworkFile()


class ConvNormLayer(Shared):
    """conv (no bias) + BN (+ ReLU), optionally after a strided average pool ("ResNet-D"): `common.ConvNorm`."""

    def __init__(self, p: ConvNorm):
        super().__init__()
        kit = self.kit
        self.pool = None if p.avg_pool is None else kit.nn.AvgPool2d(p.avg_pool, p.avg_pool)
        self.conv = kit.conv(p)
        self.norm = kit.batch_norm(p.cout)
        self.act = p.act

    def construct(self, x):
        if self.pool is not None:
            x = self.pool(x)
        y = self.norm(self.conv(x))
        return self.kit.relu(y) if self.act else y

    forward = construct


class BasicBlock(Shared):
    def __init__(self, p: Block):
        super().__init__()
        conv_norm = self.kit.ConvNormLayer
        self.conv0 = conv_norm(p.conv0)
        self.conv1 = conv_norm(p.conv1)
        self.short = None if p.short is None else conv_norm(p.short)

    def construct(self, x):
        short = x if self.short is None else self.short(x)
        return self.kit.relu(short + self.conv1(self.conv0(x)))

    forward = construct


class AttentionCell(Shared):
    def __init__(self, p: HeadPlan):
        super().__init__()
        kit = self.kit
        self.i2h = kit.dense(p.input_size, p.hidden_size, bias=False)
        self.h2h = kit.dense(p.hidden_size, p.hidden_size)
        self.score = kit.dense(p.hidden_size, 1, bias=False)
        self.rnn = kit.GRUCell(p.input_size, p.num_classes, p.hidden_size)
        self.input_size = p.input_size


class AttentionHead(Shared):
    def __init__(self, p: HeadPlan):
        super().__init__()
        self.attention_cell = self.kit.AttentionCell(p)
        self.generator = self.kit.dense(p.hidden_size, p.num_classes)
        self.num_steps = p.num_steps


class RARE(Shared):
    def __init__(self, spec: ModelSpec):
        super().__init__()
        kit = self.kit
        self.spec = spec
        p = plan(spec)
        self.transform = None if p.transform is None else kit.STN_ON(p.transform)
        self.backbone = kit.RecResNet(p.backbone)
        self.neck = kit.RNNEncoder(p.neck)
        self.head = kit.AttentionHead(p.head)

    def encode(self, images):
        """The encoder's output [W, N, 2*hidden], time-major: what the head attends over."""
        x = images if self.transform is None else self.transform(images)
        return self.neck(self.backbone(x))
