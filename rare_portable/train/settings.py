"""Everything `rare train` reads from a config, read and checked once, before any data or network is touched.

Keys are MindOCR's (tools/train.py and the builders it calls), so its rec yaml trains unchanged. Keys we
add are few and named in docs/training.md: `train.curriculum`, `train.aux_ctc_weight`,
`train.attention_warmup_steps`, `train.guided_attention_weight`, `train.resume_save_interval`,
`train.max_consecutive_nonfinite`, `train.freeze_bn_stats`, `loss.label_smoothing`, `system.device_target`, and
`optimizer.opt: adadelta` (MindOCR has no Adadelta; DTRB trains with it). The key tables and readers live by
concern in keys.py, optim_settings.py and data_settings.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from ..config import KNOWN_KEYS, ConfigError, RareConfig, get_dotted, load_config
from ..errors import UserError
from ..evaluation import metric_options, postprocess_lower
from .data_settings import CurriculumSettings, DataSettings, read_curriculum, read_data_settings
from .keys import Key, check_known, section
from .optim_settings import (LossScaleSettings, OptimizerSettings, ScheduleSettings, read_loss_scale, read_optimizer,
                             read_schedule)


DEFAULT_MAX_CONSECUTIVE_NONFINITE = 20
# Steps between train_resume.ckpt saves inside an epoch: a crash loses at most this many (~3 min of rare_tiny here).
DEFAULT_RESUME_SAVE_INTERVAL = 500

# The scalar keys TrainSettings takes as they are: (dotted key, type, default, minimum).
SCALAR_KEYS = {
    "seed": Key("system.seed", int, 42),
    "num_workers": Key("train.loader.num_workers", int, 1),
    "eval_batch_size": Key("eval.loader.batch_size", int, 64, minimum=1),
    "val_interval": Key("system.val_interval", int, 1, minimum=1),
    "val_start_epoch": Key("system.val_start_epoch", int, 1, minimum=1),
    "log_interval": Key("system.log_interval", int, 100, minimum=1),
    "aux_ctc_weight": Key("train.aux_ctc_weight", float, 0.0),  # 0 turns the auxiliary CTC loss off
    "guided_attention_weight": Key("train.guided_attention_weight", float, 0.0),
    "uniform_alignment_weight": Key("train.uniform_alignment_weight", float, 0.0),
    "resume_save_interval": Key("train.resume_save_interval", int, DEFAULT_RESUME_SAVE_INTERVAL),
    "max_consecutive_nonfinite": Key("train.max_consecutive_nonfinite", int, DEFAULT_MAX_CONSECUTIVE_NONFINITE,
                                     minimum=1),
    "freeze_bn_stats": Key("train.freeze_bn_stats", bool, False),
}
CLIP_NORM = Key("train.clip_norm", float, 1.0)
ATTENTION_WARMUP_STEPS = Key("train.attention_warmup_steps", int, 0)
# Keys that act through the auxiliary CTC classifier (train.aux_ctc_weight), and what each does with it.
NEEDS_AUX_CTC = ((ATTENTION_WARMUP_STEPS, "trains the encoder through the auxiliary CTC loss first"),
                 (SCALAR_KEYS["uniform_alignment_weight"], "labels the columns of the auxiliary CTC classifier"))
LABEL_SMOOTHING = Key("loss.label_smoothing", float, 0.0)
BATCH_SIZE_KEYS = ("common.batch_size", "train.loader.batch_size")


class TrainError(UserError, ValueError):
    """A training run that cannot start or continue; the message says what to change."""


@dataclass(frozen=True)
class TrainSettings:
    seed: int
    graph_mode: bool
    amp_level: str
    device_target: Optional[str]
    distribute: bool
    batch_size: int
    num_workers: int
    train_data: DataSettings
    eval_data: Optional[DataSettings]  # None: no validation while training
    eval_batch_size: int
    val_interval: int
    val_start_epoch: int
    log_interval: int
    clip_norm: Optional[float]  # None: no clipping
    output_dir: Path
    schedule: ScheduleSettings
    optimizer: OptimizerSettings
    loss_scale: LossScaleSettings
    curriculum: Optional[CurriculumSettings]
    aux_ctc_weight: float  # 0: off; else the weight of a training-only CTC loss on the encoder (train/step.py)
    attention_warmup_steps: int  # the first steps train the encoder through the auxiliary CTC loss alone
    guided_attention_weight: float  # 0: off; else the weight of a left-to-right attention prior (train/step.py)
    uniform_alignment_weight: float  # 0: off; else the weight of evenly spaced column labels on the CTC classifier
    label_smoothing: float  # loss.label_smoothing: 0 is MindOCR's AttentionLoss
    resume_save_interval: int  # steps; 0: train_resume.ckpt only at epoch ends and on a stop
    max_consecutive_nonfinite: int
    freeze_bn_stats: bool  # batch-norm normalises with, and keeps, the loaded statistics (short fine-tuning)
    pretrained: Optional[Path]
    resume: Optional[str]  # "auto" or a path
    eval_lower: bool  # MindOCR's RecAttnLabelDecode(lower=...)
    metric_options: Dict[str, bool]


def read_settings(config: RareConfig, opts: Sequence[str] = ()) -> TrainSettings:
    """`opts` are the --opt overrides `config` was loaded with: they decide between keys MindOCR writes
    twice through yaml anchors (common.batch_size and train.loader.batch_size) when only one was overridden."""
    raw = config.raw
    system = section(raw, "system")
    amp_level = str(system.get("amp_level", "O0"))
    if amp_level not in ("O0", "O1", "O2", "O3"):
        raise ConfigError(f"system.amp_level must be O0, O1, O2 or O3, got {amp_level!r}")
    mode = system.get("mode", 0)
    if mode not in (0, 1):
        raise ConfigError(f"system.mode must be 0 (graph) or 1 (pynative), got {mode!r}")
    max_text_len = config.spec.head.batch_max_length
    train = section(raw, "train")
    _check_needs_aux_ctc(train)
    _check_uniform_alignment_fits(train, config)
    return TrainSettings(
        graph_mode=mode == 0,
        amp_level=amp_level,
        device_target=system.get("device_target"),
        distribute=bool(system.get("distribute", False)),
        batch_size=_aliased_int(raw, _base_raw(config, opts), BATCH_SIZE_KEYS),
        train_data=read_data_settings(raw, "train", config, max_text_len),
        eval_data=read_data_settings(raw, "eval", config, max_text_len) if system.get("val_while_train") else None,
        clip_norm=_clip_norm(train),
        output_dir=Path(str(get_dotted(raw, "train.ckpt_save_dir") or "./tmp_rec")),
        schedule=read_schedule(section(raw, "scheduler")),
        optimizer=read_optimizer(section(raw, "optimizer")),
        loss_scale=read_loss_scale(raw.get("loss_scaler")),
        curriculum=read_curriculum(get_dotted(raw, "train.curriculum"), max_text_len),
        attention_warmup_steps=ATTENTION_WARMUP_STEPS.get(train),
        label_smoothing=_label_smoothing(section(raw, "loss")),
        pretrained=_optional_path(get_dotted(raw, "model.pretrained"), "model.pretrained"),
        resume=_resume(get_dotted(raw, "model.resume")),
        eval_lower=postprocess_lower(config),
        metric_options=metric_options(config),
        **{name: key.find(raw) for name, key in SCALAR_KEYS.items()},
    )


def _base_raw(config: RareConfig, opts: Sequence[str]) -> Mapping[str, Any]:
    """The config as written, without --opt: what an override is compared against."""
    if not opts:
        return config.raw
    try:
        return load_config(config.source).raw
    except ConfigError:
        return {}


def _aliased_int(raw: Mapping, base: Mapping, keys: Tuple[str, str]) -> int:
    """MindOCR writes one value under two keys via a yaml anchor; an --opt on either one wins."""
    values = {key: get_dotted(raw, key) for key in keys if get_dotted(raw, key) is not None}
    if not values:
        raise ConfigError(f"{keys[0]} is required")
    distinct = set(values.values())
    if len(distinct) > 1:
        overridden = {k: v for k, v in values.items() if v != get_dotted(base, k)}
        if len(set(overridden.values())) != 1:
            shown = ", ".join(f"{k}={v}" for k, v in values.items())
            raise ConfigError(f"{shown} disagree; set both to the same value")
        values = overridden
    key, value = next(iter(values.items()))
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{key} must be a positive integer, got {value!r}")
    return value


def _clip_norm(train: Mapping[str, Any]) -> Optional[float]:
    if not train.get("clip_grad", False):
        return None
    norm = CLIP_NORM.get(train)
    if norm <= 0:
        raise ConfigError("train.clip_norm must be > 0")
    return norm


def _check_needs_aux_ctc(train: Mapping[str, Any]) -> None:
    """Keys that act through the auxiliary CTC classifier are an error without it."""
    if train.get("aux_ctc_weight"):
        return
    for key, what in NEEDS_AUX_CTC:
        if key.get(train):
            raise ConfigError(f"{key.dotted} {what}: set train.aux_ctc_weight > 0 too, or drop {key.name}")


def _check_uniform_alignment_fits(train: Mapping[str, Any], config: RareConfig) -> None:
    """The column labels spread each word over the input's whole width: padded inputs would label the padding."""
    key = SCALAR_KEYS["uniform_alignment_weight"]
    if key.get(train) and config.spec.input.padding:
        raise ConfigError(f"{key.dotted} spreads each word over the input's whole width, but {config.source} pads "
                          f"inputs on the right (keep_ratio with padding): set {key.dotted}=0")


def _label_smoothing(loss: Mapping[str, Any]) -> float:
    """MindOCR's AttentionLoss (mean over characters, padding ignored) plus our `label_smoothing` key."""
    check_known(loss, "loss", KNOWN_KEYS["loss"])
    if loss.get("name", "AttentionLoss") != "AttentionLoss":
        raise ConfigError(f"loss.name {loss.get('name')!r} is not supported by rare train; use AttentionLoss")
    if loss.get("reduction", "mean") != "mean" or loss.get("ignore_index", 0) != 0:
        raise ConfigError("loss: rare train computes AttentionLoss with reduction mean and ignore_index 0 (padding); "
                          "drop the other values")
    smoothing = LABEL_SMOOTHING.get(loss)
    if smoothing >= 1:
        raise ConfigError(f"loss.label_smoothing must be in [0, 1), got {smoothing}")
    return smoothing


def _optional_path(value: Any, key: str) -> Optional[Path]:
    if value in (None, False, ""):
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{key} must be a checkpoint path, got {value!r}")
    return Path(value)


def _resume(value: Any) -> Optional[str]:
    """MindOCR's model.resume: true means the output dir's train_resume.ckpt, a string is a path."""
    if value in (None, False, ""):
        return None
    if value is True:
        return "auto"
    if not isinstance(value, str):
        raise ConfigError(f"model.resume must be true or a checkpoint path, got {value!r}")
    return value
