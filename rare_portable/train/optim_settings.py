"""The learning-rate schedule, optimizer and loss scaler a config asks for (MindOCR's `scheduler`, `optimizer`
and `loss_scaler` sections, with its defaults), read and checked."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional, Tuple

from ..config import KNOWN_KEYS, ConfigError
from .keys import Key, check_known, read_keys

SCHEDULERS = ("constant", "cosine_decay", "warmup_cosine_decay")
OPTIMIZERS = ("adamw", "adam", "adadelta", "sgd", "momentum")
# MindOCR's filter_bias_and_bn: a parameter whose name holds one of these gets no weight decay.
BIAS_AND_NORM_KEYS = ("beta", "gamma", "bias")


@dataclass(frozen=True)
class ScheduleSettings:
    """MindOCR's `create_scheduler` arguments, with its defaults."""

    name: str = "constant"
    lr: float = 0.01
    min_lr: float = 1e-6
    warmup_epochs: int = 3
    warmup_factor: float = 0.0
    decay_epochs: int = 10
    num_epochs: int = 200


@dataclass(frozen=True)
class OptimizerSettings:
    name: str = "adam"  # MindOCR's create_optimizer default
    weight_decay: float = 0.0
    no_decay_keys: Tuple[str, ...] = BIAS_AND_NORM_KEYS
    beta1: float = 0.9
    beta2: float = 0.999
    eps: Optional[float] = None  # None: the optimizer's own default
    rho: float = 0.9
    momentum: float = 0.9
    nesterov: bool = False


@dataclass(frozen=True)
class LossScaleSettings:
    kind: str = "static"  # "static" or "dynamic"
    loss_scale: float = 1.0
    scale_factor: int = 2
    scale_window: int = 2000


# The scalar keys, (dotted key, type, default, minimum): the defaults are the dataclasses' (MindOCR's).
SCHEDULE_KEYS = {
    "lr": Key("scheduler.lr", float, ScheduleSettings.lr),
    "min_lr": Key("scheduler.min_lr", float, ScheduleSettings.min_lr),
    "warmup_epochs": Key("scheduler.warmup_epochs", int, ScheduleSettings.warmup_epochs),
    "warmup_factor": Key("scheduler.warmup_factor", float, ScheduleSettings.warmup_factor),
    "decay_epochs": Key("scheduler.decay_epochs", int, ScheduleSettings.decay_epochs, minimum=1),
    "num_epochs": Key("scheduler.num_epochs", int, ScheduleSettings.num_epochs, minimum=1),
}
OPTIMIZER_KEYS = {name: Key(f"optimizer.{name}", float, getattr(OptimizerSettings, name))
                  for name in ("weight_decay", "beta1", "beta2", "rho", "momentum")}
EPS = Key("optimizer.eps", float, 0.0)  # read only when given
LOSS_SCALE_KEYS = {
    "loss_scale": Key("loss_scaler.loss_scale", float, LossScaleSettings.loss_scale, minimum=1.0),
    "scale_factor": Key("loss_scaler.scale_factor", float, 2.0, minimum=1.0),  # then checked whole and >= 2
    "scale_window": Key("loss_scaler.scale_window", int, LossScaleSettings.scale_window, minimum=1),
}


def read_schedule(cfg: Mapping[str, Any]) -> ScheduleSettings:
    check_known(cfg, "scheduler", KNOWN_KEYS["scheduler"])
    if cfg.get("lr_epoch_stair"):
        raise ConfigError("scheduler.lr_epoch_stair: only per-step schedules are supported; set it false")
    if cfg.get("num_cycles", 1) != 1:
        raise ConfigError("scheduler.num_cycles: only one cosine cycle is supported; set it 1")
    name = cfg.get("scheduler", ScheduleSettings.name)
    if name not in SCHEDULERS:
        raise ConfigError(f"scheduler.scheduler {name!r} is not supported; use one of {', '.join(SCHEDULERS)}")
    settings = ScheduleSettings(name=name, **read_keys(cfg, SCHEDULE_KEYS))
    if settings.warmup_epochs >= settings.num_epochs:
        raise ConfigError(f"scheduler.warmup_epochs ({settings.warmup_epochs}) must be below scheduler.num_epochs "
                          f"({settings.num_epochs})")
    return settings


def read_optimizer(cfg: Mapping[str, Any]) -> OptimizerSettings:
    check_known(cfg, "optimizer", KNOWN_KEYS["optimizer"])
    if cfg.get("loss_scale", 1.0) != 1.0:
        raise ConfigError("optimizer.loss_scale must be 1.0 (as in MindOCR): set the scale in loss_scaler.loss_scale")
    name = str(cfg.get("opt", OptimizerSettings.name)).lower()
    if name not in OPTIMIZERS:
        raise ConfigError(f"optimizer.opt {name!r} is not supported; use one of {', '.join(OPTIMIZERS)}")
    custom = cfg.get("no_weight_decay_params") or ()
    if isinstance(custom, str) or not all(isinstance(k, str) for k in custom):
        raise ConfigError(f"optimizer.no_weight_decay_params must be a list of name substrings, got {custom!r}")
    # As MindOCR: an explicit list replaces the bias/BN filter.
    no_decay = tuple(custom) or (BIAS_AND_NORM_KEYS if cfg.get("filter_bias_and_bn", True) else ())
    values = read_keys(cfg, OPTIMIZER_KEYS)
    return OptimizerSettings(name=name, no_decay_keys=no_decay, eps=None if cfg.get("eps") is None else EPS.get(cfg),
                             nesterov=bool(cfg.get("nesterov", OptimizerSettings.nesterov)), **values)


def read_loss_scale(cfg: Optional[Mapping[str, Any]]) -> LossScaleSettings:
    if cfg is None:
        return LossScaleSettings()
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"loss_scaler must be a mapping, got {cfg!r}")
    check_known(cfg, "loss_scaler", KNOWN_KEYS["loss_scaler"])
    kind = cfg.get("type", "static")
    if kind not in ("static", "dynamic"):
        raise ConfigError(f"loss_scaler.type must be static or dynamic, got {kind!r}")
    if "loss_scale" not in cfg:
        raise ConfigError("loss_scaler.loss_scale is required when loss_scaler is set (as in MindOCR)")
    factor = LOSS_SCALE_KEYS["scale_factor"].get(cfg)
    if not factor.is_integer() or factor < 2:
        raise ConfigError(f"loss_scaler.scale_factor must be a whole number >= 2 (MindSpore's DynamicLossScaler), "
                          f"got {factor}")
    return LossScaleSettings(kind=kind, loss_scale=LOSS_SCALE_KEYS["loss_scale"].get(cfg), scale_factor=int(factor),
                             scale_window=LOSS_SCALE_KEYS["scale_window"].get(cfg))
