"""Load a RARE config (ours or MindOCR's rec yaml, unchanged), apply `--opt` overrides, build the Spec.

Our configs use MindOCR's schema, so one loader serves both; the few keys we add (backbone widths
for narrow models, TPS sampling options) are listed in `_MODEL_KEYS` and documented in docs/api-and-configs.md.
"""
from __future__ import annotations

import copy
import difflib
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import yaml

from .charset import load_charset
from .pretrained import list_pretrained, pretrained_config
from .spec import BackboneSpec, HeadSpec, InputSpec, LexiconSpec, ModelSpec, NeckSpec, SpecError, TransformSpec
from .errors import UserError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class ConfigError(UserError, ValueError):
    """A config that cannot be used; the message names the file and the key."""


# Sections MindOCR's rec configs use; their inner keys belong to the trainer/eval code that reads them.
_TOP_LEVEL = {
    "system", "common", "model", "postprocess", "metric", "loss", "scheduler", "optimizer",
    "loss_scaler", "train", "eval", "predict",
}
_MODEL_KEYS = {
    "": {"type", "transform", "backbone", "neck", "head", "pretrained", "resume", "name"},
    "backbone": {"name", "pretrained", "in_channels", "stem_channels", "depths", "widths", "layers"},
    "neck": {"name", "hidden_size", "num_layers"},
    "head": {"name", "hidden_size", "out_channels", "batch_max_length"},
    "transform": {
        "name", "in_channels", "tps_inputsize", "tps_outputsize", "num_control_points", "tps_margins",
        "stn_activation", "loc_channels", "loc_fc_hidden", "align_corners", "padding_mode",
    },
}
# The keys each section may hold: MindOCR's rec keys and ours (docs/training.md lists ours). An --opt naming a key
# in neither the config nor this table is a typo, refused with "did you mean"; `rare train` checks its sections
# against the same table (train/settings.py).
_DATASET_KEYS = ("type", "dataset_root", "data_dir", "label_file", "sample_ratio", "shuffle", "filter_max_len",
                 "max_text_len", "transform_pipeline", "output_columns", "net_input_column_index",
                 "label_column_index", "random_choice_if_none")
_LOADER_KEYS = ("shuffle", "batch_size", "drop_remainder", "max_rowsize", "num_workers")
KNOWN_KEYS = {
    "system": ("mode", "distribute", "amp_level", "amp_level_infer", "seed", "log_interval", "val_while_train",
               "val_start_epoch", "val_interval", "drop_overflow_update", "ckpt_save_policy", "ckpt_max_keep",
               "refine_batch_size", "device_target"),
    "common": ("character_dict_path", "num_classes", "max_text_len", "infer_mode", "use_space_char", "batch_size"),
    "postprocess": ("name", "character_dict_path", "use_space_char", "lower", "lexicon"),
    "metric": ("name", "main_indicator", "character_dict_path", "ignore_space", "print_flag", "filter_ood", "lower",
               "ignore_symbol"),
    "loss": ("name", "reduction", "ignore_index", "label_smoothing"),
    "scheduler": ("scheduler", "lr", "min_lr", "warmup_epochs", "warmup_factor", "decay_epochs", "num_epochs",
                  "lr_epoch_stair", "num_cycles"),
    "optimizer": ("opt", "weight_decay", "filter_bias_and_bn", "no_weight_decay_params", "beta1", "beta2", "eps",
                  "rho", "momentum", "nesterov", "loss_scale"),
    "loss_scaler": ("type", "loss_scale", "scale_factor", "scale_window"),
    "train": ("ckpt_save_dir", "dataset_sink_mode", "clip_grad", "clip_norm", "ema", "ema_decay", "pred_cast_fp32",
              "gradient_accumulation_steps", "curriculum", "aux_ctc_weight", "attention_warmup_steps",
              "guided_attention_weight", "uniform_alignment_weight", "resume_save_interval",
              "max_consecutive_nonfinite", "freeze_bn_stats", "dataset", "loader"),
    "train.curriculum": ("start_max_len", "epochs"),
    "train.dataset": _DATASET_KEYS, "train.loader": _LOADER_KEYS,
    "eval": ("ckpt_load_path", "dataset_sink_mode", "dataset", "loader"),
    "eval.dataset": _DATASET_KEYS, "eval.loader": _LOADER_KEYS,
    "predict": ("ckpt_load_path", "dataset_sink_mode", "dataset", "loader"),
    "predict.dataset": _DATASET_KEYS, "predict.loader": _LOADER_KEYS,
}  # model.* is checked whole when the spec is built (_MODEL_KEYS)
_MISSING = object()


def _check_opt_key(raw: Mapping[str, Any], key: str, source: str) -> None:
    """An --opt overrides a key the config has, or adds one rare or MindOCR reads; anything else is refused."""
    if key.startswith("model.") or get_dotted(raw, key, _MISSING) is not _MISSING:
        return
    parent, _, leaf = key.rpartition(".")
    existing = get_dotted(raw, parent)
    known = set(KNOWN_KEYS.get(parent, ())) | (set(existing) if isinstance(existing, Mapping) else set())
    if leaf in known or not known:  # no known keys: a section neither MindOCR's configs nor we define
        return
    raise ConfigError(f"--opt {key}: {source} has no such key and rare does not read it{_suggest(leaf, known)}")


# `rec_resnet34` is MindOCR's fixed ResNet34-vd; `rec_resnet_vd` takes its shape from the config.
_BACKBONE_PRESETS = {"rec_resnet34": BackboneSpec(), "rec_resnet_vd": None}


@dataclass(frozen=True)
class RareConfig:
    spec: ModelSpec
    raw: Dict[str, Any]  # the merged yaml: train/eval/optimizer sections for the code that needs them
    source: str

    def section(self, dotted: str, default=None):
        return get_dotted(self.raw, dotted, default)


def list_configs() -> List[str]:
    """Names of the configs we ship (a registry the tests parameterise over)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def resolve_config_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.is_file():
        return p
    shipped = CONFIG_DIR / f"{p.stem}.yaml"
    if p.suffix in ("", ".yaml") and shipped.is_file():
        return shipped
    if p.suffix in ("", ".yaml") and p.stem in list_pretrained():
        return pretrained_config(p.stem)
    names = ", ".join(list_configs() + list_pretrained())
    raise ConfigError(f"config {name_or_path} not found; give a yaml path or one of: {names}")


def get_dotted(tree: Mapping, dotted: str, default=None):
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return default
        node = node[part]
    return node


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader reading `1e-8` as a float (YAML 1.2), not the string YAML 1.1 makes of it."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def read_yaml(text: str):
    return yaml.load(text, Loader=_Loader)


def parse_opt(opt: str):
    """`a.b.c=value` with a yaml-typed value, as MindOCR users write `--opt`."""
    key, sep, value = opt.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--opt {opt!r}: expected dotted.key=value, e.g. common.batch_size=64")
    try:
        return key.strip(), read_yaml(value) if value.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"--opt {opt!r}: value is not valid yaml ({e.problem})") from None


def apply_overrides(raw: Dict[str, Any], opts: Iterable[str], source: str = "the config") -> Dict[str, Any]:
    merged = copy.deepcopy(raw)
    for opt in opts:
        key, value = parse_opt(opt)
        parts = key.split(".")
        if parts[0] not in _TOP_LEVEL:
            raise ConfigError(f"--opt {key}: unknown section {parts[0]!r}{_suggest(parts[0], _TOP_LEVEL)}")
        _check_opt_key(raw, key, source)
        node = merged
        for depth, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"--opt {key}: {'.'.join(parts[:depth + 1])} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return merged


def load_config(name_or_path: str, opts: Sequence[str] = ()) -> RareConfig:
    path = resolve_config_path(name_or_path)
    try:
        raw = read_yaml(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} malformed yaml: {getattr(e, 'problem', e)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (model:, common:, ...), got {type(raw).__name__}")
    raw = apply_overrides(raw, opts, str(path))
    try:
        return RareConfig(spec=spec_from_config(raw, name=path.stem), raw=raw, source=str(path))
    except (ConfigError, SpecError, ValueError) as e:
        raise ConfigError(f"{path}: {e}") from None


def spec_from_config(raw: Mapping[str, Any], name: str = "rare") -> ModelSpec:
    unknown = set(raw) - _TOP_LEVEL
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(f"unknown top-level key {key!r}{_suggest(key, _TOP_LEVEL)}")
    model = raw.get("model")
    if not isinstance(model, Mapping):
        raise ConfigError("missing section 'model'")
    _check_keys(model, "")
    if model.get("type", "rec") != "rec":
        raise ConfigError(f"model.type is {model.get('type')!r}; RARE is a 'rec' model")
    common = raw.get("common") or {}

    charset = load_charset(common.get("character_dict_path"), bool(common.get("use_space_char", False)))
    input_spec = _input_from_pipelines(raw)
    transform = _transform(model.get("transform"))
    backbone = _backbone(model.get("backbone") or {}, input_spec.channels)
    neck_cfg = model.get("neck") or {}
    _check_keys(neck_cfg, "neck")
    _check_name(neck_cfg, "neck", NeckSpec.name)
    neck = NeckSpec(**_pick(neck_cfg, NeckSpec, exclude={"name"}))
    head = _head(model.get("head") or {}, common)
    lexicon = _lexicon((raw.get("postprocess") or {}).get("lexicon"))
    return ModelSpec(name=name, charset=charset, input=input_spec, transform=transform, backbone=backbone, neck=neck,
                     head=head, lexicon=lexicon)


def _lexicon(cfg: Any) -> Optional[LexiconSpec]:
    """postprocess.lexicon (LexiconCorrect, a rare-portable extension): null, or {words, max_substitutions,
    max_log_ratio, max_skipped, prior, word_margin}."""
    if cfg is None:
        return None
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"postprocess.lexicon must be a mapping ({{words: en}}) or null, got {cfg!r}")
    keys = {f.name for f in fields(LexiconSpec)}
    unknown = sorted(set(cfg) - keys)
    if unknown:
        raise ConfigError(f"postprocess.lexicon takes {', '.join(sorted(keys))}, not {unknown[0]!r}")
    return LexiconSpec(**cfg)


def _head(cfg: Mapping[str, Any], common: Mapping[str, Any]) -> HeadSpec:
    _check_keys(cfg, "head")
    _check_name(cfg, "head", HeadSpec.name)
    num_classes = _agreeing(cfg, "out_channels", common, "num_classes")
    max_len = _agreeing(cfg, "batch_max_length", common, "max_text_len")
    kwargs = {"hidden_size": cfg.get("hidden_size", HeadSpec.hidden_size)}
    if num_classes is not None:
        kwargs["num_classes"] = int(num_classes)
    else:
        raise ConfigError("model.head.out_channels (or common.num_classes) is required: dictionary size + 2")
    if max_len is not None:
        kwargs["batch_max_length"] = int(max_len)
    return HeadSpec(**kwargs)


def _agreeing(cfg: Mapping, key: str, common: Mapping, common_key: str):
    """MindOCR writes some values twice through yaml anchors; after an override they may disagree."""
    a, b = cfg.get(key), common.get(common_key)
    if a is not None and b is not None and a != b:
        raise ConfigError(
            f"model.head.{key}={a} contradicts common.{common_key}={b}; set both (e.g. --opt model.head.{key}=N "
            f"--opt common.{common_key}=N)"
        )
    return a if a is not None else b


def _backbone(cfg: Mapping[str, Any], channels: int) -> BackboneSpec:
    _check_keys(cfg, "backbone")
    name = cfg.get("name", "rec_resnet34")
    if name not in _BACKBONE_PRESETS:
        raise ConfigError(f"model.backbone.name {name!r} is not supported; use one of {sorted(_BACKBONE_PRESETS)}")
    if cfg.get("pretrained"):
        raise ConfigError("model.backbone.pretrained: MindOCR has no pretrained rec_resnet34; use model.pretrained")
    shape = _pick(cfg, BackboneSpec, exclude={"name", "in_channels"})
    preset = _BACKBONE_PRESETS[name]
    if preset is not None:
        for key, value in shape.items():
            if tuple(value) != getattr(preset, key):
                raise ConfigError(f"model.backbone.{key}: {name} fixes it to {list(getattr(preset, key))}; "
                                  f"use name: rec_resnet_vd for a custom shape")
    in_channels = cfg.get("in_channels", channels)
    return BackboneSpec(name=name, in_channels=in_channels, **{k: tuple(v) for k, v in shape.items()})


def _transform(cfg: Optional[Mapping[str, Any]]) -> Optional[TransformSpec]:
    if not cfg:
        return None
    _check_keys(cfg, "transform")
    kwargs = _pick(cfg, TransformSpec)
    for key in ("tps_inputsize", "tps_outputsize", "tps_margins", "loc_channels"):
        if key in kwargs:
            kwargs[key] = tuple(kwargs[key])
    return TransformSpec(**kwargs)


def _input_from_pipelines(raw: Mapping[str, Any]) -> InputSpec:
    """The network input as MindOCR's eval pipeline makes it, checked against the train pipeline."""
    found: Dict[str, Dict[str, Any]] = {}
    for split in ("eval", "train"):
        steps = get_dotted(raw, f"{split}.dataset.transform_pipeline") or []
        found[split] = _input_from_steps(steps, split)
    eval_in, train_in = found["eval"], found["train"]
    for key in ("height", "width", "mean", "std", "color", "rotate_vertical"):
        if key in eval_in and key in train_in and eval_in[key] != train_in[key]:
            raise ConfigError(
                f"train and eval pipelines disagree on the input {key}: {train_in[key]} vs {eval_in[key]}; "
                f"the network sees one input format"
            )
    merged = {**train_in, **eval_in}  # inference decides resizing (keep_ratio/padding)
    return InputSpec(**merged)


def pipeline_steps(steps: Sequence[Any], split: str) -> Dict[str, Mapping[str, Any]]:
    """A MindOCR transform_pipeline as {op name: args}, in order."""
    found: Dict[str, Mapping[str, Any]] = {}
    for step in steps:
        if isinstance(step, str):
            step = {step: None}
        if not isinstance(step, Mapping) or len(step) != 1:
            raise ConfigError(f"{split}.dataset.transform_pipeline: each step is one 'Name: {{args}}' mapping, got {step!r}")
        (op, args), = step.items()
        found[op] = args or {}
    return found


def _input_from_steps(steps: Sequence[Any], split: str) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    decode_mode, bgr_to_rgb = "BGR", False
    for op, args in pipeline_steps(steps, split).items():
        if op == "DecodeImage":
            decode_mode = args.get("img_mode", "BGR")
        elif op == "NormalizeImage":
            bgr_to_rgb = bool(args.get("bgr_to_rgb", False))
            out["mean"], out["std"] = _floats(args.get("mean")), _floats(args.get("std"))
        elif op == "RecResizeImg":
            h, w = args["image_shape"][-2:]
            out.update(height=int(h), width=int(w), keep_ratio=bool(args.get("padding", True)),
                       padding=bool(args.get("padding", True)))
        elif op == "Rotate90IfVertical":
            out["rotate_vertical"] = (float(args.get("threshold", 1.5)), str(args.get("direction", "counterclockwise")))
        elif op == "RereadPadded":  # rare-portable extension (spec.InputSpec.reread_padded)
            unknown = sorted(set(args) - {"margin", "below_confidence"})
            if unknown:
                raise ConfigError(f"{split}.dataset.transform_pipeline: RereadPadded takes margin and "
                                  f"below_confidence, not {unknown[0]!r}")
            out["reread_padded"] = (float(args.get("margin", 0.25)), float(args.get("below_confidence", 0.9)))
        elif op == "RecResizeNormForInfer":
            out.update(height=int(args.get("target_height", 32)), width=int(args.get("target_width", 320)),
                       keep_ratio=bool(args.get("keep_ratio", True)),
                       padding=bool(args.get("padding", False)) and bool(args.get("keep_ratio", True)),
                       mean=_floats(args.get("mean", [127.0] * 3)), std=_floats(args.get("std", [127.0] * 3)))
    if steps:
        rgb = (decode_mode == "RGB") != bgr_to_rgb
        out["color"] = "RGB" if rgb else "BGR"
    return {k: v for k, v in out.items() if v is not None}


def _floats(values):
    return None if values is None else tuple(float(v) for v in values)


def _pick(cfg: Mapping[str, Any], cls, exclude=frozenset()) -> Dict[str, Any]:
    names = {f.name for f in fields(cls)} - set(exclude)
    return {k: v for k, v in cfg.items() if k in names}


def _check_name(cfg: Mapping[str, Any], part: str, expected: str):
    name = cfg.get("name", expected)
    if name != expected:
        raise ConfigError(f"model.{part}.name {name!r} is not supported; RARE uses {expected}")


def _check_keys(cfg: Mapping[str, Any], part: str):
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"model.{part or 'model'} must be a mapping, got {cfg!r}")
    allowed = _MODEL_KEYS[part]
    for key in cfg:
        if key not in allowed:
            where = f"model.{part}.{key}" if part else f"model.{key}"
            raise ConfigError(f"unknown key {where}{_suggest(key, allowed)}")


def _suggest(key: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(sorted(choices))})"
