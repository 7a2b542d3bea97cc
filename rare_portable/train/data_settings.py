"""The data a config trains and validates on (MindOCR's `train`/`eval` `dataset` and `loader` sections, the train
pipeline's transforms) and our `train.curriculum`, read and checked."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Tuple

from ..config import KNOWN_KEYS, ConfigError, RareConfig, get_dotted, pipeline_steps
from ..data.augment import AugmentError, AugmentSettings, augment_settings
from ..data.datasets import config_dataset_paths
from ..spec import InputSpec
from .keys import Key, check_known, section

TRAIN_TRANSFORMS = ("DecodeImage", "RecAttnLabelEncode", "SVTRRecAug", "RecResizeImg", "NormalizeImage",
                    "ToCHWImage", "Rotate90IfVertical")
DATASET_KINDS = {"LMDBDataset": "lmdb", "RecDataset": "folder"}
CURRICULUM_START = Key("train.curriculum.start_max_len", int, 3, minimum=1)
CURRICULUM_EPOCHS = Key("train.curriculum.epochs", float, 1.0)


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


def read_data_settings(raw: Mapping, split: str, config: RareConfig, max_text_len: int) -> DataSettings:
    """`split` is "train" or "eval"; eval data takes the network's own input and is read in order."""
    dataset = section(raw, f"{split}.dataset")
    kind, dirs, label_files = _sources(dataset, split)
    ratio = dataset.get("sample_ratio", 1.0)
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio <= 1:
        raise ConfigError(f"{split}.dataset.sample_ratio must be a number in (0, 1], got {ratio!r}")
    if split == "eval":
        return DataSettings(kind=kind, dirs=dirs, label_files=label_files, sample_ratio=float(ratio), shuffle=False)
    steps = _train_steps(dataset)
    encode = steps.get("RecAttnLabelEncode") or {}
    # MindOCR lower-cases labels whenever it falls back to its built-in 0-9a-z dictionary.
    lower = bool(encode.get("lower", False)) or get_dotted(raw, "common.character_dict_path") is None
    if dataset.get("filter_max_len") and dataset.get("max_text_len", max_text_len) != max_text_len:
        raise ConfigError(f"train.dataset.max_text_len {dataset.get('max_text_len')} differs from the head's "
                          f"common.max_text_len {max_text_len}; set them equal")
    shuffle = section(raw, "train.loader").get("shuffle", dataset.get("shuffle", True))
    return DataSettings(
        kind=kind, dirs=dirs, label_files=label_files, sample_ratio=float(ratio), shuffle=bool(shuffle),
        filter_max_len=bool(dataset.get("filter_max_len", False)), lower=lower,
        input=_train_input(config.spec.input, steps.get("RecResizeImg")),
        augmentation=_augmentation(steps),
    )


def read_curriculum(cfg: Any, max_text_len: int) -> Optional[CurriculumSettings]:
    if not cfg:
        return None
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"train.curriculum must be a mapping (start_max_len, epochs), got {cfg!r}")
    check_known(cfg, "train.curriculum", KNOWN_KEYS["train.curriculum"])
    start = CURRICULUM_START.get(cfg)
    if start > max_text_len:
        raise ConfigError(f"train.curriculum.start_max_len {start} exceeds common.max_text_len {max_text_len}")
    epochs = CURRICULUM_EPOCHS.get(cfg)
    if epochs <= 0:
        raise ConfigError("train.curriculum.epochs must be > 0")
    return CurriculumSettings(start, epochs)


def _sources(dataset: Mapping[str, Any], split: str) -> Tuple[str, Tuple[Path, ...], Tuple[Path, ...]]:
    """The dataset's kind, its folders and (RecDataset) their label files."""
    kind = DATASET_KINDS.get(dataset.get("type", "LMDBDataset"))
    if kind is None:
        raise ConfigError(f"{split}.dataset.type {dataset.get('type')!r} is not supported; use LMDBDataset or RecDataset")
    dir_paths, label_paths = config_dataset_paths(dataset)
    dirs, label_files = tuple(map(Path, dir_paths)), tuple(map(Path, label_paths))
    if not dirs:
        raise ConfigError(f"{split}.dataset.data_dir is required (joined to {split}.dataset.dataset_root)")
    if kind == "folder" and len(label_files) != len(dirs):
        raise ConfigError(f"{split}.dataset: RecDataset pairs each data_dir with a label_file; got {len(dirs)} "
                          f"dir(s) and {len(label_files)} label file(s)")
    return kind, dirs, label_files


def _train_steps(dataset: Mapping[str, Any]) -> Mapping[str, Mapping[str, Any]]:
    """The train pipeline's transforms by name; each one must be one rare train runs."""
    steps = pipeline_steps(dataset.get("transform_pipeline") or [], "train")
    unsupported = [op for op in steps if op not in TRAIN_TRANSFORMS]
    if unsupported:
        raise ConfigError(f"train.dataset.transform_pipeline: {unsupported[0]} is not supported by rare train "
                          f"(supported: {', '.join(TRAIN_TRANSFORMS)})")
    return steps


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
