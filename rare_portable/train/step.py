"""One training step as one MindSpore graph: forward, loss, gradients, all-reduce, overflow check, unscale,
clipping, learning rate and optimizer update.

Compiling the whole step (not just the network) keeps Python out of the per-step path. On the 2-core CPU
it was measured on, this step runs rare_tiny at 2.2x the speed of MindSpore's documented plain step
(`ms.jit` over `value_and_grad` + optimizer, same network, optimizer and batch; benchmarks/train_tiny.py);
the gain goes away when the update is made unconditional, so it comes with the graph split at `if finite`.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import mindspore as ms
from mindspore import Parameter, ParameterTuple, Tensor, amp, nn, ops

from ..charset import NUM_SPECIAL
from .losses import AttentionLoss

AUX_CTC_PREFIX = "aux_ctc."


class AuxiliaryCTC(nn.Cell):
    """A training-only CTC classifier on the encoder's output (joint CTC-attention training, Kim et al. 2017).

    CTC needs no alignment to be learned first, so within a few hundred steps it makes every encoder column
    say which character lies under it; the attention then finds characters by content instead of waiting to
    discover positions, which is what keeps a fresh RARE on its language-prior plateau. Class 0 (GO, never a
    target) is the blank. The network and its exports are unchanged: these parameters live outside it and
    are saved only in train_resume.ckpt."""

    def __init__(self, features: int, num_classes: int, seed: int):
        super().__init__()
        bound = 1.0 / np.sqrt(features)  # PyTorch's nn.Linear initialisation
        rng = np.random.default_rng(seed)
        self.weight = Parameter(Tensor(rng.uniform(-bound, bound, (num_classes, features)).astype(np.float32)),
                                name=AUX_CTC_PREFIX + "weight")
        self.bias = Parameter(Tensor(np.zeros(num_classes, np.float32)), name=AUX_CTC_PREFIX + "bias")

    def log_probs(self, features):
        """Per-column class log-probabilities [T, N, C] of `features` [T, N, F] (time-major), float32; class 0 is
        the blank."""
        return ops.log_softmax(ops.matmul(features.astype(ms.float32), self.weight.T) + self.bias, -1)

    def construct(self, log_probs, targets):
        """The CTC loss of `log_probs` (`self.log_probs(features)`, which the column labels read too); `targets`
        [N, 1 + steps] as the attention loss takes them."""
        labels = targets[:, 1:].astype(ms.int32)
        label_lengths = character_steps(labels).astype(ms.int32).sum(1)
        input_lengths = ops.fill(ms.int32, (log_probs.shape[1],), log_probs.shape[0])
        loss, _ = ops.ctc_loss(log_probs, labels, input_lengths, label_lengths, blank=0, reduction="mean",
                               zero_infinity=True)
        return loss


def character_steps(labels):
    """True where `labels` (the targets after GO) hold a character: STOP (1) and padding (0) are not."""
    return labels >= NUM_SPECIAL


GUIDED_ATTENTION_SIGMA = 0.2  # Tachibana et al.'s g: the prior's width, as a fraction of the word


def guided_attention_loss(alphas, targets, sigma: float = GUIDED_ATTENTION_SIGMA):
    """A training-only prior that characters are read left to right, evenly spaced (guided attention,
    Tachibana et al. 2017): step t of a word of L characters is penalised for attending far from column
    (t + 0.5) / L of the feature map, by sum_s alpha[t, s] (1 - exp(-(s' - t')^2 / 2 sigma^2)). It gives the
    attention a gradient towards the right column from the first step on, where a fresh RARE otherwise waits
    on its plateau until it finds positions by chance. `alphas` [N, steps, T]; STOP and padding steps are
    not guided. Returns the mean over character steps."""
    steps, columns = alphas.shape[1], alphas.shape[2]
    chars = character_steps(targets[:, 1:1 + steps]).astype(ms.float32)  # [N, steps]: 1 on character steps
    lengths = ops.maximum(chars.sum(1, keepdims=True), 1.0)  # [N, 1]
    expected = (ops.arange(steps, dtype=ms.float32).reshape(1, -1) + 0.5) / lengths  # [N, steps]
    position = (ops.arange(columns, dtype=ms.float32) + 0.5) / columns  # [T]
    distance = position.reshape(1, 1, -1) - ops.expand_dims(expected, 2)  # [N, steps, T]
    penalty = 1 - ops.exp(-distance * distance / (2 * sigma * sigma))
    per_step = (alphas.astype(ms.float32) * penalty).sum(2)  # [N, steps]
    return (per_step * chars).sum() / ops.maximum(chars.sum(), 1.0)


def uniform_alignment_loss(log_probs, targets):
    """A training-only per-column cross-entropy on the auxiliary CTC classifier: column s of T is labelled with
    character floor((s + 0.5) / T * L) of a word of L characters, as if the word filled the image evenly (it is
    stretched to do so). CTC must first discover where the characters are, and a fresh encoder learns no
    letters while it waits; this label is roughly right from the first step, so every column gets a letter to
    learn at once. It is a valid CTC path for words without doubled letters. `log_probs` [T, N, C] float32, the
    classifier's (`AuxiliaryCTC.log_probs`); returns the mean over the columns of words with characters."""
    columns = log_probs.shape[0]
    chars = targets[:, 1:].astype(ms.int32)  # [N, steps]
    lengths = character_steps(chars).astype(ms.float32).sum(1, keepdims=True)  # [N, 1]
    position = (ops.arange(columns, dtype=ms.float32) + 0.5) / columns  # [T]
    index = ops.floor(position.reshape(1, -1) * lengths).astype(ms.int32)  # [N, T]
    index = ops.minimum(index, ops.maximum(lengths.astype(ms.int32) - 1, 0))
    labels = ops.gather_elements(chars, 1, index)  # [N, T]
    picked = ops.gather_elements(log_probs.transpose(1, 0, 2), 2, ops.expand_dims(labels, 2)).squeeze(2)  # [N, T]
    words = (lengths > 0).astype(ms.float32)  # [N, 1]
    return -(picked * words).sum() / ops.maximum(words.sum() * columns, 1.0)


class NetworkWithLoss(nn.Cell):
    """MindOCR's AttentionLoss on the teacher-forced logits, in float32 whatever the network computes in, plus
    `aux_ctc_weight` x an auxiliary CTC loss when that is on. Returns (objective, attention loss): the second,
    which the trainer logs, is the plain cross-entropy even when the objective smooths the labels, so runs
    with and without smoothing log the same quantity.

    `attention_weight` (an input of the step, like the lr) scales the attention loss in the objective: 0 while
    `train.attention_warmup_steps` lets CTC alone shape the encoder first. (A Parameter set from Python
    between steps was measured not to reach the compiled step.) `guided_attention_weight` adds
    `guided_attention_loss` on the teacher-forced attention weights, `uniform_alignment_weight` adds
    `uniform_alignment_loss` on the auxiliary CTC classifier's columns."""

    def __init__(self, network: nn.Cell, aux_ctc_weight: float = 0.0, seed: int = 0, label_smoothing: float = 0.0,
                 guided_attention_weight: float = 0.0, uniform_alignment_weight: float = 0.0):
        super().__init__(auto_prefix=False)  # keep MindOCR's parameter names
        self.network = network
        self.loss = AttentionLoss()
        self.smoothing = float(label_smoothing)
        self.smoothed_loss = AttentionLoss(self.smoothing) if self.smoothing > 0 else self.loss
        self.aux_ctc_weight = float(aux_ctc_weight)
        self.guided_attention_weight = float(guided_attention_weight)
        self.uniform_alignment_weight = float(uniform_alignment_weight)
        if self.aux_ctc_weight > 0:
            self.aux_ctc = AuxiliaryCTC(network.spec.neck.out_channels, network.spec.num_classes, seed)

    def attention_losses(self, logits, targets):
        """(what the objective uses, what is logged)."""
        logits = logits.astype(ms.float32)
        loss = self.loss(logits, targets)
        return (self.smoothed_loss(logits, targets) if self.smoothing > 0 else loss), loss

    def construct(self, images, targets, attention_weight):
        if self.aux_ctc_weight <= 0 and self.guided_attention_weight <= 0:
            objective, loss = self.attention_losses(self.network(images, targets), targets)
            return attention_weight * objective, loss
        features = self.network.encode(images)
        if self.guided_attention_weight > 0:
            logits, alphas = self.network.head.teacher_forced(features, targets)
        else:
            logits, alphas = self.network.head(features, targets), None
        objective, loss = self.attention_losses(logits, targets)
        objective = attention_weight * objective
        if self.aux_ctc_weight > 0:
            column_log_probs = self.aux_ctc.log_probs(features)
            objective = objective + self.aux_ctc_weight * self.aux_ctc(column_log_probs, targets)
            if self.uniform_alignment_weight > 0:  # settings allow it only beside the CTC loss
                labelled = uniform_alignment_loss(column_log_probs, targets)
                objective = objective + self.uniform_alignment_weight * labelled
        if self.guided_attention_weight > 0:
            objective = objective + self.guided_attention_weight * guided_attention_loss(alphas, targets)
        return objective, loss


class GradientsUnchanged(nn.Cell):
    """The gradient reducer of a single process."""

    def construct(self, grads):
        return grads


class TrainStep(nn.Cell):
    """Returns (attention loss, finite): a step whose gradients are not all finite leaves weights, optimizer state and
    batch-norm statistics untouched and lowers a dynamic loss scale; the caller counts it.

    Batch norm updates its moving statistics during the forward pass, before the gradients can be checked,
    so they are copied first and put back after a non-finite step."""

    def __init__(self, net_with_loss: NetworkWithLoss, optimizer, loss_scaler, clip_norm: Optional[float],
                 grad_reducer: Optional[nn.Cell] = None):
        super().__init__(auto_prefix=False)
        self.statistics = ParameterTuple(p for p in net_with_loss.get_parameters() if not p.requires_grad)
        self.statistics_before = self.statistics.clone(prefix="statistics_before_step", init="zeros")
        self.net_with_loss = net_with_loss
        self.optimizer = optimizer
        self.loss_scaler = loss_scaler
        self.clip = clip_norm is not None
        self.clip_norm = float(clip_norm or 1.0)
        self.grad_reducer = grad_reducer if grad_reducer is not None else GradientsUnchanged()
        self.value_and_grad = ms.value_and_grad(self.scaled_objective, None, optimizer.parameters, has_aux=True)

    def scaled_objective(self, images, targets, attention_weight):
        objective, loss = self.net_with_loss(images, targets, attention_weight)
        return self.loss_scaler.scale(objective), loss

    def construct(self, images, targets, lr, attention_weight):
        """`attention_weight` scales the attention loss (1: MindOCR's objective; 0: auxiliary CTC alone)."""
        for saved, statistic in zip(self.statistics_before, self.statistics):
            ops.assign(saved, statistic)
        (_, loss), grads = self.value_and_grad(images, targets, attention_weight)
        grads = self.grad_reducer(grads)
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


def freeze_batch_norm_statistics(network: nn.Cell) -> int:
    """Make every batch-norm layer of `network` normalise with its moving statistics in training too, and stop
    updating them; returns how many. A short fine-tuning (the demo's 120 steps) on a mix unlike the one a model
    was trained on otherwise re-estimates them from its last few batches (momentum 0.9): that alone cost the
    shipped model 1.3 points of real held-out accuracy with the learning rate at zero. Gamma and beta train."""
    layers = [cell for _, cell in network.cells_and_names() if isinstance(cell, (nn.BatchNorm1d, nn.BatchNorm2d))]
    for layer in layers:
        layer.use_batch_statistics = False
    return len(layers)
