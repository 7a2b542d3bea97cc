"""Learning-rate schedule, parameter groups, optimizer and loss scaler, as MindOCR builds them from a config.

The optimizers are MindSpore's PyTorch-semantics ones (`mindspore.experimental.optim`): their AdamW is the
update MindOCR's own AdamW computes (bias-corrected moments, eps outside the square root, decay
`lr * weight_decay * param` applied apart from the gradient), and each parameter group carries its
own weight decay. `nn.AdamWeightDecay` was not used: it has no bias correction, so early steps differ.
"""
from __future__ import annotations

import math
from typing import Dict, List, Sequence

import numpy as np

from .optim_settings import LossScaleSettings, OptimizerSettings, ScheduleSettings


def lr_schedule(settings: ScheduleSettings, steps_per_epoch: int) -> np.ndarray:
    """Per-step learning rates, `steps_per_epoch * num_epochs` long: MindOCR's `create_scheduler` without
    `lr_epoch_stair` (a linear warmup from `warmup_factor * lr`, then a cosine to `min_lr` over `decay_epochs`,
    then `min_lr`)."""
    s = settings
    lrs: List[float] = []
    warmup_steps = steps_per_epoch * s.warmup_epochs
    start = s.lr * s.warmup_factor
    for i in range(warmup_steps):
        lrs.append(start + (i / warmup_steps) * (s.lr - start))
    main_steps = steps_per_epoch * (s.num_epochs - s.warmup_epochs)
    if s.name == "constant":
        lrs += [s.lr] * main_steps
    else:
        decay_steps = steps_per_epoch * s.decay_epochs
        for i in range(min(decay_steps, main_steps)):
            lrs.append(s.min_lr + 0.5 * (s.lr - s.min_lr) * (1.0 + math.cos(math.pi * i / decay_steps)))
        lrs += [s.min_lr] * (main_steps - min(decay_steps, main_steps))
    return np.asarray(lrs, dtype=np.float64)


def parameter_groups(params: Sequence, settings: OptimizerSettings) -> List[Dict]:
    """Decayed and undecayed groups; the undecayed one sets weight_decay 0 explicitly.

    MindOCR's `filter_bias_and_bn` groups the same names, but leaves the second group without a
    `weight_decay` key, so MindSpore's optimizer applies its default decay to it after all; we do what the
    option says."""
    decayed = [p for p in params if not any(key in p.name for key in settings.no_decay_keys)]
    undecayed = [p for p in params if any(key in p.name for key in settings.no_decay_keys)]
    groups = [{"params": decayed, "weight_decay": settings.weight_decay}]
    if undecayed:
        groups.append({"params": undecayed, "weight_decay": 0.0})
    return groups


def build_optimizer(params: Sequence, settings: OptimizerSettings, initial_lr: float):
    """A `mindspore.experimental.optim` optimizer; its per-group `lrs` Parameters are set every step."""
    from mindspore.experimental import optim

    groups = parameter_groups(params, settings)
    lr = float(initial_lr)
    eps = {} if settings.eps is None else {"eps": settings.eps}
    if settings.name == "adamw":
        return optim.AdamW(groups, lr=lr, betas=(settings.beta1, settings.beta2), **eps)
    if settings.name == "adam":
        return optim.Adam(groups, lr=lr, betas=(settings.beta1, settings.beta2), **eps)
    if settings.name == "adadelta":
        return optim.Adadelta(groups, lr=lr, rho=settings.rho, **eps)
    return optim.SGD(groups, lr=lr, momentum=settings.momentum, nesterov=settings.nesterov)  # sgd, momentum


def build_loss_scaler(settings: LossScaleSettings):
    """MindSpore's own scalers: dynamic halves the scale on a non-finite step and grows it after
    `scale_window` finite ones (never below 1)."""
    from mindspore import amp

    if settings.kind == "dynamic":
        return amp.DynamicLossScaler(settings.loss_scale, settings.scale_factor, settings.scale_window)
    return amp.StaticLossScaler(settings.loss_scale)
