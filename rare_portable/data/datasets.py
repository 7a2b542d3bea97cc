"""Which datasets a path stands for, and what each is called: one rule for `rare eval`, training and
validation while training.

Every leaf LMDB under a folder is one dataset (MindOCR's hierarchical LMDBDataset), named by its path
from the folder's parent (`real_validation/IC15_train`); an image folder with a label file is one dataset
(MindOCR's RecDataset), named by the label file and its folder (`test/labels.txt`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, List, Mapping, Sequence, Tuple

from .folder import FolderDataset
from .lmdb import LmdbDataset, find_lmdb_datasets
from .samples import DataError, SampleSource


@dataclass
class NamedDataset:
    """A dataset to read, opened only when its turn comes so one bad path does not stop the others."""

    name: str
    path: str
    open: Callable[[], SampleSource]


def as_list(value: Any) -> List[str]:
    """A yaml value that may be one path or a list of them, as strings."""
    if value is None or value == "":
        return []
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


def config_dataset_paths(section: Mapping[str, Any]) -> Tuple[List[str], List[str]]:
    """(data dirs, label files) of a config's `*.dataset` section, joined to its dataset_root as MindOCR does."""
    root = str(section.get("dataset_root") or "")
    return ([os.path.join(root, d) for d in as_list(section.get("data_dir"))],
            [os.path.join(root, f) for f in as_list(section.get("label_file"))])


def find_datasets(dirs: Sequence[os.PathLike], label_files: Sequence[os.PathLike] = ()) -> List[NamedDataset]:
    """Image folders paired in order with `label_files` when there are any, else every leaf LMDB under each
    of `dirs`. A folder that holds no LMDB is a dataset whose `open` raises the DataError naming it."""
    if label_files:
        if len(label_files) != len(dirs):
            raise DataError(f"{len(label_files)} label file(s) for {len(dirs)} image folder(s); image folders and "
                            f"label files pair up in order, so give as many of each")
        return [_folder_dataset(Path(d), Path(f)) for d, f in zip(dirs, label_files)]
    return [found for root in dirs for found in _lmdb_datasets(Path(root))]


def _lmdb_datasets(root: Path) -> List[NamedDataset]:
    try:
        leaves = find_lmdb_datasets(root)
    except DataError as e:
        return [NamedDataset(root.name or str(root), str(root), _raiser(e))]
    base = root.resolve().parent
    return [NamedDataset(leaf.resolve().relative_to(base).as_posix(), str(leaf), partial(LmdbDataset, leaf))
            for leaf in leaves]


def _folder_dataset(images_dir: Path, label_file: Path) -> NamedDataset:
    name = f"{label_file.parent.name}/{label_file.name}" if label_file.parent.name else label_file.name
    return NamedDataset(name, f"{images_dir} + {label_file}", partial(FolderDataset, images_dir, label_file))


def _raiser(error: Exception) -> Callable[[], SampleSource]:
    def open_fails() -> SampleSource:
        raise error
    return open_fails


def open_all(datasets: Sequence[NamedDataset]) -> List[Tuple[str, SampleSource]]:
    """(name, opened dataset) for each; the first that cannot be opened raises its DataError."""
    return [(dataset.name, dataset.open()) for dataset in datasets]
