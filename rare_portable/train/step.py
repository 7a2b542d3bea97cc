"""One training step as one MindSpore graph: forward, loss, gradients, all-reduce, overflow check, unscale,
clipping, learning rate and optimizer update.

Compiling the whole step (not just the network) keeps Python out of the per-step path. On the 2-core CPU
it was measured on, this step runs rare_tiny at 2.2x the speed of MindSpore's documented plain step
(`ms.jit` over `value_and_grad` + optimizer, same network, optimizer and batch; benchmarks/train_tiny.py);
the gain goes away when the update is made unconditional, so it comes with the graph split at `if finite`.
"""
from __future__ import annotations

from typing import Optional

import mindspore as ms
from mindspore import ParameterTuple, amp, nn, ops

from ..nets.ms_rare import AttentionLoss


class NetworkWithLoss(nn.Cell):
    """MindOCR's AttentionLoss on the teacher-forced logits, in float32 whatever the network computes in."""

    def __init__(self, network: nn.Cell):
        super().__init__(auto_prefix=False)  # keep MindOCR's parameter names
        self.network = network
        self.loss = AttentionLoss()

    def construct(self, images, targets):
        return self.loss(self.network(images, targets).astype(ms.float32), targets)


class GradientsUnchanged(nn.Cell):
    """The gradient reducer of a single process."""

    def construct(self, grads):
        return grads


class TrainStep(nn.Cell):
    """Returns (loss, finite): a step whose gradients are not all finite leaves weights, optimizer state and
    batch-norm statistics untouched and lowers a dynamic loss scale; the caller counts it.

    Batch norm updates its moving statistics during the forward pass, before the gradients can be checked,
    so they are copied first and put back after a non-finite step."""

    def __init__(self, network: nn.Cell, optimizer, loss_scaler, clip_norm: Optional[float],
                 grad_reducer: Optional[nn.Cell] = None):
        super().__init__(auto_prefix=False)
        self.statistics = ParameterTuple(p for p in network.get_parameters() if not p.requires_grad)
        self.statistics_before = self.statistics.clone(prefix="statistics_before_step", init="zeros")
        self.net_with_loss = NetworkWithLoss(network)
        self.optimizer = optimizer
        self.loss_scaler = loss_scaler
        self.clip = clip_norm is not None
        self.clip_norm = float(clip_norm or 1.0)
        self.grad_reducer = grad_reducer if grad_reducer is not None else GradientsUnchanged()
        self.value_and_grad = ms.value_and_grad(self.scaled_loss, None, optimizer.parameters)

    def scaled_loss(self, images, targets):
        return self.loss_scaler.scale(self.net_with_loss(images, targets))

    def construct(self, images, targets, lr):
        for saved, statistic in zip(self.statistics_before, self.statistics):
            ops.assign(saved, statistic)
        scaled_loss, grads = self.value_and_grad(images, targets)
        grads = self.grad_reducer(grads)
        loss = self.loss_scaler.unscale(scaled_loss)
        finite = amp.all_finite(grads)
        if finite:
            grads = self.loss_scaler.unscale(grads)
            if self.clip:
                grads = ops.clip_by_global_norm(grads, self.clip_norm)
            for group_lr in self.optimizer.lrs:
                ops.assign(group_lr, lr)
            self.optimizer(grads)
        else:
            for statistic, saved in zip(self.statistics, self.statistics_before):
                ops.assign(statistic, saved)
        self.loss_scaler.adjust(finite)
        return loss, finite


def compiled(cell: nn.Cell, graph_mode: bool):
    """`cell` as a callable: one compiled graph (system.mode 0) or op by op (system.mode 1)."""
    return ms.jit(cell.construct) if graph_mode else cell
