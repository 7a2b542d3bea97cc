"""MindOCR's `AttentionLoss` (cross-entropy of step t against targets[:, t + 1], padding 0 ignored, mean over
characters), for the MindSpore training step and, as `torch_attention_loss`, for PyTorch (the framework
parity tests and benchmarks/train_step.py). Both live here so the one definition is read in one place; the
PyTorch one imports torch only when called, so this module needs no more than the MindSpore training it serves.
"""
from __future__ import annotations

import mindspore as ms
from mindspore import nn, ops


class AttentionLoss(nn.Cell):
    """`label_smoothing` > 0 is our extension (MindSpore's own smoothing of the cross-entropy)."""

    def __init__(self, label_smoothing: float = 0.0):
        super().__init__()
        self.criterion = nn.CrossEntropyLoss(reduction="mean", ignore_index=0, label_smoothing=float(label_smoothing))

    def construct(self, logits, targets):
        labels = targets[:, 1:1 + logits.shape[1]].astype(ms.int32)  # targets[:, 0] is GO
        return self.criterion(ops.reshape(logits, (-1, logits.shape[-1])), ops.reshape(labels, (-1,)))


def torch_attention_loss(logits, targets):
    """The same loss on PyTorch tensors (no label smoothing: nothing trains PyTorch networks here)."""
    import torch.nn.functional as F

    labels = targets[:, 1:1 + logits.shape[1]].long()
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=0)
