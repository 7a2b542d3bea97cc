"""Everything `rare train` reads from a config, read and checked once, before any data or network is touched.

Keys are MindOCR's (tools/train.py and the builders it calls), so its rec yaml trains unchanged. Keys we
add are few and named in docs/training.md: `train.curriculum`, `train.aux_ctc_weight`, `train.attention_warmup_steps`,
`train.guided_attention_weight`,
`train.resume_save_interval`, `train.max_consecutive_nonfinite`, `loss.label_smoothing`, `system.device_target`, and `optimizer.opt: adadelta` (MindOCR has no Adadelta; DTRB trains with it).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

from ..errors import UserError
from ..config import KNOWN_KEYS, ConfigError, RareConfig, get_dotted, load_config, pipeline_steps
from ..data.augment import AugmentError, AugmentSettings, augment_settings
from ..spec import InputSpec

SCHEDULERS = ("constant", "cosine_decay", "warmup_cosine_decay")
OPTIMIZERS = ("adamw", "adam", "adadelta", "sgd", "momentum")
TRAIN_TRANSFORMS = ("DecodeImage", "RecAttnLabelEncode", "SVTRRecAug", "RecResizeImg", "NormalizeImage",
                    "ToCHWImage", "Rotate90IfVertical")
DEFAULT_MAX_CONSECUTIVE_NONFINITE = 20
# Steps between train_resume.ckpt saves inside an epoch: a crash loses at most this many (~3 min of rare_tiny here).
DEFAULT_RESUME_SAVE_INTERVAL = 500
# MindOCR's filter_bias_and_bn: a parameter whose name holds one of these gets no weight decay.
BIAS_AND_NORM_KEYS = ("beta", "gamma", "bias")


class TrainError(UserError, ValueError):
    """A training run that cannot start or continue; the message says what to change."""


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


@dataclass(frozen=True)
class CurriculumSettings:
    """Short words first: the label-length limit grows linearly from `start_max_len` to max_text_len."""

    start_max_len: int
    epochs: float  # how long the growth takes


@dataclass(frozen=True)
class DataSettings:
    kind: str  # "lmdb": every leaf LMDB under each dir; "folder": image folder + label file pairs
    dirs: Tuple[Path, ...]
    label_files: Tuple[Path, ...] = ()
    sample_ratio: float = 1.0
    shuffle: bool = True
    filter_max_len: bool = False
    lower: bool = False
    input: Optional[InputSpec] = None  # the train pipeline's resize; None for eval (the spec's input)
    augmentation: Optional[AugmentSettings] = None  # the train pipeline's SVTRRecAug; None: none


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
    label_smoothing: float  # loss.label_smoothing: 0 is MindOCR's AttentionLoss
    resume_save_interval: int  # steps; 0: train_resume.ckpt only at epoch ends and on a stop
    max_consecutive_nonfinite: int
    pretrained: Optional[Path]
    resume: Optional[str]  # "auto" or a path
    eval_lower: bool  # MindOCR's RecAttnLabelDecode(lower=...)
    metric_options: Dict[str, bool]


def read_settings(config: RareConfig, opts: Sequence[str] = ()) -> TrainSettings:
    """`opts` are the --opt overrides `config` was loaded with: they decide between keys MindOCR writes
    twice through yaml anchors (common.batch_size and train.loader.batch_size) when only one was overridden."""
    raw = config.raw
    base = _base_raw(config, opts)
    system = _section(raw, "system")
    amp_level = str(system.get("amp_level", "O0"))
    if amp_level not in ("O0", "O1", "O2", "O3"):
        raise ConfigError(f"system.amp_level must be O0, O1, O2 or O3, got {amp_level!r}")
    mode = system.get("mode", 0)
    if mode not in (0, 1):
        raise ConfigError(f"system.mode must be 0 (graph) or 1 (pynative), got {mode!r}")
    from ..commands.eval_cmd import metric_options, postprocess_lower

    eval_enabled = bool(system.get("val_while_train", False))
    max_text_len = config.spec.head.batch_max_length
    return TrainSettings(
        seed=_int(system, "system.seed", 42, minimum=0),
        graph_mode=mode == 0,
        amp_level=amp_level,
        device_target=system.get("device_target"),
        distribute=bool(system.get("distribute", False)),
        batch_size=_aliased_int(raw, base, ("common.batch_size", "train.loader.batch_size")),
        num_workers=_int(_section(raw, "train.loader"), "train.loader.num_workers", 1, minimum=0),
        train_data=_data_settings(raw, "train", config, max_text_len),
        eval_data=_data_settings(raw, "eval", config, max_text_len) if eval_enabled else None,
        eval_batch_size=_int(_section(raw, "eval.loader"), "eval.loader.batch_size", 64, minimum=1),
        val_interval=_int(system, "system.val_interval", 1, minimum=1),
        val_start_epoch=_int(system, "system.val_start_epoch", 1, minimum=1),
        log_interval=_int(system, "system.log_interval", 100, minimum=1),
        clip_norm=_clip_norm(_section(raw, "train")),
        output_dir=Path(str(get_dotted(raw, "train.ckpt_save_dir") or "./tmp_rec")),
        schedule=_schedule(_section(raw, "scheduler")),
        optimizer=_optimizer(_section(raw, "optimizer")),
        loss_scale=_loss_scale(raw.get("loss_scaler")),
        curriculum=_curriculum(get_dotted(raw, "train.curriculum"), max_text_len),
        aux_ctc_weight=_aux_ctc_weight(_section(raw, "train")),
        attention_warmup_steps=_attention_warmup_steps(_section(raw, "train")),
        guided_attention_weight=_float(_section(raw, "train"), "train.guided_attention_weight", 0.0),
        label_smoothing=_label_smoothing(_section(raw, "loss")),
        resume_save_interval=_int(_section(raw, "train"), "train.resume_save_interval", DEFAULT_RESUME_SAVE_INTERVAL,
                                  minimum=0),
        max_consecutive_nonfinite=_int(_section(raw, "train"), "train.max_consecutive_nonfinite",
                                       DEFAULT_MAX_CONSECUTIVE_NONFINITE, minimum=1),
        pretrained=_optional_path(get_dotted(raw, "model.pretrained"), "model.pretrained"),
        resume=_resume(get_dotted(raw, "model.resume")),
        eval_lower=postprocess_lower(config),
        metric_options=metric_options(config),
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


def _section(raw: Mapping, dotted: str) -> Mapping[str, Any]:
    node = get_dotted(raw, dotted)
    if node is None:
        return {}
    if not isinstance(node, Mapping):
        raise ConfigError(f"{dotted} must be a mapping, got {node!r}")
    return node


def _int(section: Mapping, dotted: str, default: int, minimum: int) -> int:
    value = section.get(dotted.rsplit(".", 1)[-1], default)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ConfigError(f"{dotted} must be an integer >= {minimum}, got {value!r}")
    return value


def _float(section: Mapping, dotted: str, default: float, minimum: float = 0.0) -> float:
    value = section.get(dotted.rsplit(".", 1)[-1], default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum:
        raise ConfigError(f"{dotted} must be a number >= {minimum}, got {value!r}")
    return float(value)


def _check_known(section: Mapping, dotted: str, known: Sequence[str]) -> None:
    unknown = sorted(set(section) - set(known))
    if unknown:
        raise ConfigError(f"{dotted}.{unknown[0]} is not supported by rare train (known: {', '.join(sorted(known))})")


def _schedule(cfg: Mapping[str, Any]) -> ScheduleSettings:
    _check_known(cfg, "scheduler", KNOWN_KEYS["scheduler"])
    if cfg.get("lr_epoch_stair"):
        raise ConfigError("scheduler.lr_epoch_stair: only per-step schedules are supported; set it false")
    if cfg.get("num_cycles", 1) != 1:
        raise ConfigError("scheduler.num_cycles: only one cosine cycle is supported; set it 1")
    d = ScheduleSettings()
    name = cfg.get("scheduler", d.name)
    if name not in SCHEDULERS:
        raise ConfigError(f"scheduler.scheduler {name!r} is not supported; use one of {', '.join(SCHEDULERS)}")
    settings = ScheduleSettings(
        name=name,
        lr=_float(cfg, "scheduler.lr", d.lr),
        min_lr=_float(cfg, "scheduler.min_lr", d.min_lr),
        warmup_epochs=_int(cfg, "scheduler.warmup_epochs", d.warmup_epochs, minimum=0),
        warmup_factor=_float(cfg, "scheduler.warmup_factor", d.warmup_factor),
        decay_epochs=_int(cfg, "scheduler.decay_epochs", d.decay_epochs, minimum=1),
        num_epochs=_int(cfg, "scheduler.num_epochs", d.num_epochs, minimum=1),
    )
    if settings.warmup_epochs >= settings.num_epochs:
        raise ConfigError(f"scheduler.warmup_epochs ({settings.warmup_epochs}) must be below scheduler.num_epochs "
                          f"({settings.num_epochs})")
    return settings


def _optimizer(cfg: Mapping[str, Any]) -> OptimizerSettings:
    _check_known(cfg, "optimizer", KNOWN_KEYS["optimizer"])
    if cfg.get("loss_scale", 1.0) != 1.0:
        raise ConfigError("optimizer.loss_scale must be 1.0 (as in MindOCR): set the scale in loss_scaler.loss_scale")
    d = OptimizerSettings()
    name = str(cfg.get("opt", d.name)).lower()
    if name not in OPTIMIZERS:
        raise ConfigError(f"optimizer.opt {name!r} is not supported; use one of {', '.join(OPTIMIZERS)}")
    custom = cfg.get("no_weight_decay_params") or ()
    if isinstance(custom, str) or not all(isinstance(k, str) for k in custom):
        raise ConfigError(f"optimizer.no_weight_decay_params must be a list of name substrings, got {custom!r}")
    # As MindOCR: an explicit list replaces the bias/BN filter.
    no_decay = tuple(custom) or (BIAS_AND_NORM_KEYS if cfg.get("filter_bias_and_bn", True) else ())
    eps = cfg.get("eps")
    return OptimizerSettings(
        name=name,
        weight_decay=_float(cfg, "optimizer.weight_decay", d.weight_decay),
        no_decay_keys=no_decay,
        beta1=_float(cfg, "optimizer.beta1", d.beta1),
        beta2=_float(cfg, "optimizer.beta2", d.beta2),
        eps=None if eps is None else _float(cfg, "optimizer.eps", eps),
        rho=_float(cfg, "optimizer.rho", d.rho),
        momentum=_float(cfg, "optimizer.momentum", d.momentum),
        nesterov=bool(cfg.get("nesterov", d.nesterov)),
    )


def _loss_scale(cfg: Optional[Mapping[str, Any]]) -> LossScaleSettings:
    if cfg is None:
        return LossScaleSettings()
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"loss_scaler must be a mapping, got {cfg!r}")
    _check_known(cfg, "loss_scaler", KNOWN_KEYS["loss_scaler"])
    kind = cfg.get("type", "static")
    if kind not in ("static", "dynamic"):
        raise ConfigError(f"loss_scaler.type must be static or dynamic, got {kind!r}")
    if "loss_scale" not in cfg:
        raise ConfigError("loss_scaler.loss_scale is required when loss_scaler is set (as in MindOCR)")
    factor = _float(cfg, "loss_scaler.scale_factor", 2.0, minimum=1.0)
    if not factor.is_integer() or factor < 2:
        raise ConfigError(f"loss_scaler.scale_factor must be a whole number >= 2 (MindSpore's DynamicLossScaler), "
                          f"got {factor}")
    return LossScaleSettings(
        kind=kind,
        loss_scale=_float(cfg, "loss_scaler.loss_scale", 1.0, minimum=1.0),
        scale_factor=int(factor),
        scale_window=_int(cfg, "loss_scaler.scale_window", 2000, minimum=1),
    )


def _clip_norm(train: Mapping[str, Any]) -> Optional[float]:
    if not train.get("clip_grad", False):
        return None
    norm = _float(train, "train.clip_norm", 1.0)
    if norm <= 0:
        raise ConfigError("train.clip_norm must be > 0")
    return norm


def _curriculum(cfg: Any, max_text_len: int) -> Optional[CurriculumSettings]:
    if not cfg:
        return None
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"train.curriculum must be a mapping (start_max_len, epochs), got {cfg!r}")
    _check_known(cfg, "train.curriculum", KNOWN_KEYS["train.curriculum"])
    start = _int(cfg, "train.curriculum.start_max_len", 3, minimum=1)
    if start > max_text_len:
        raise ConfigError(f"train.curriculum.start_max_len {start} exceeds common.max_text_len {max_text_len}")
    epochs = _float(cfg, "train.curriculum.epochs", 1.0)
    if epochs <= 0:
        raise ConfigError("train.curriculum.epochs must be > 0")
    return CurriculumSettings(start, epochs)


def _aux_ctc_weight(train: Mapping[str, Any]) -> float:
    weight = _float(train, "train.aux_ctc_weight", 0.0)
    if weight < 0:
        raise ConfigError(f"train.aux_ctc_weight must be >= 0 (0 turns the auxiliary CTC loss off), got {weight}")
    return weight


def _attention_warmup_steps(train: Mapping[str, Any]) -> int:
    steps = _int(train, "train.attention_warmup_steps", 0, minimum=0)
    if steps and not train.get("aux_ctc_weight"):
        raise ConfigError("train.attention_warmup_steps trains the encoder through the auxiliary CTC loss first: "
                          "set train.aux_ctc_weight > 0 too, or drop attention_warmup_steps")
    return steps


def _label_smoothing(loss: Mapping[str, Any]) -> float:
    """MindOCR's AttentionLoss (mean over characters, padding ignored) plus our `label_smoothing` key."""
    _check_known(loss, "loss", KNOWN_KEYS["loss"])
    if loss.get("name", "AttentionLoss") != "AttentionLoss":
        raise ConfigError(f"loss.name {loss.get('name')!r} is not supported by rare train; use AttentionLoss")
    if loss.get("reduction", "mean") != "mean" or loss.get("ignore_index", 0) != 0:
        raise ConfigError("loss: rare train computes AttentionLoss with reduction mean and ignore_index 0 (padding); "
                          "drop the other values")
    smoothing = _float(loss, "loss.label_smoothing", 0.0)
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


def _data_settings(raw: Mapping, split: str, config: RareConfig, max_text_len: int) -> DataSettings:
    dataset = _section(raw, f"{split}.dataset")
    kind = {"LMDBDataset": "lmdb", "RecDataset": "folder"}.get(dataset.get("type", "LMDBDataset"))
    if kind is None:
        raise ConfigError(f"{split}.dataset.type {dataset.get('type')!r} is not supported; use LMDBDataset or RecDataset")
    root = str(dataset.get("dataset_root") or "")
    dirs = tuple(Path(os.path.join(root, d)) for d in _as_list(dataset.get("data_dir")))
    if not dirs:
        raise ConfigError(f"{split}.dataset.data_dir is required (joined to {split}.dataset.dataset_root)")
    label_files = tuple(Path(os.path.join(root, f)) for f in _as_list(dataset.get("label_file")))
    if kind == "folder" and len(label_files) != len(dirs):
        raise ConfigError(f"{split}.dataset: RecDataset pairs each data_dir with a label_file; got {len(dirs)} "
                          f"dir(s) and {len(label_files)} label file(s)")
    ratio = dataset.get("sample_ratio", 1.0)
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
        raise ConfigError(f"{split}.dataset.sample_ratio must be a number in (0, 1], got {ratio!r}")
    if split == "eval":
        return DataSettings(kind=kind, dirs=dirs, label_files=label_files, sample_ratio=float(ratio), shuffle=False)
    steps = pipeline_steps(dataset.get("transform_pipeline") or [], split)
    unsupported = [op for op in steps if op not in TRAIN_TRANSFORMS]
    if unsupported:
        raise ConfigError(f"train.dataset.transform_pipeline: {unsupported[0]} is not supported by rare train "
                          f"(supported: {', '.join(TRAIN_TRANSFORMS)})")
    encode = steps.get("RecAttnLabelEncode") or {}
    # MindOCR lower-cases labels whenever it falls back to its built-in 0-9a-z dictionary.
    lower = bool(encode.get("lower", False)) or get_dotted(raw, "common.character_dict_path") is None
    if dataset.get("filter_max_len") and dataset.get("max_text_len", max_text_len) != max_text_len:
        raise ConfigError(f"train.dataset.max_text_len {dataset.get('max_text_len')} differs from the head's "
                          f"common.max_text_len {max_text_len}; set them equal")
    loader = _section(raw, "train.loader")
    shuffle = loader.get("shuffle", dataset.get("shuffle", True))
    return DataSettings(
        kind=kind, dirs=dirs, label_files=label_files, sample_ratio=float(ratio), shuffle=bool(shuffle),
        filter_max_len=bool(dataset.get("filter_max_len", False)), lower=lower,
        input=_train_input(config.spec.input, steps.get("RecResizeImg")),
        augmentation=_augmentation(steps),
    )


def _augmentation(steps: Mapping[str, Mapping[str, Any]]) -> Optional[AugmentSettings]:
    if "SVTRRecAug" not in steps:
        return None
    try:
        return augment_settings(steps["SVTRRecAug"], "train.dataset.transform_pipeline.SVTRRecAug")
    except AugmentError as e:
        raise ConfigError(str(e)) from None


def _train_input(spec_input: InputSpec, resize: Optional[Mapping[str, Any]]) -> InputSpec:
    """MindOCR's RecResizeImg: a plain resize, or (padding: true) aspect-kept resize padded with raw 0 on the right;
    normalisation and size are the network's (the config loader checked both pipelines agree)."""
    if resize is None:
        return spec_input
    padding = bool(resize.get("padding", True))
    return dataclasses.replace(spec_input, keep_ratio=padding, padding=padding)


def _as_list(value) -> Tuple[str, ...]:
    if value in (None, ""):
        return ()
    return tuple(str(v) for v in value) if isinstance(value, (list, tuple)) else (str(value),)
