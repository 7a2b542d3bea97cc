"""LMDB datasets in the deep-text-recognition-benchmark layout MindOCR's `LMDBDataset` reads.

Keys: `num-samples` (decimal count), then `image-%09d` (encoded image) and `label-%09d` (UTF-8 text), 1-based.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable, List, Optional, Tuple

import lmdb

from ..files import PathLike, output_folder
from .samples import (
    ENTRY_MISSING,
    IMAGE_KEY_MISSING,
    LABEL_KEY_MISSING,
    LABEL_NOT_UTF8,
    DataError,
    RawSample,
    SampleSource,
    Skip,
)

NUM_SAMPLES_KEY = b"num-samples"
LMDB_FILES = ("data.mdb", "lock.mdb")
INITIAL_MAP_SIZE = 64 << 20  # grown by doubling whenever a write fills it
SAMPLES_PER_COMMIT = 1000



def image_key(index: int) -> bytes:
    return b"image-%09d" % index


def label_key(index: int) -> bytes:
    return b"label-%09d" % index


def find_lmdb_datasets(root: PathLike) -> List[Path]:
    """Every leaf folder under `root` (root included) holding data.mdb, sorted so reports are stable.

    Like MindOCR, a folder with sub-folders is not itself read as a dataset.
    """
    root = Path(root)
    if not root.is_dir():
        what = "a file, not a directory" if root.exists() else "no such directory"
        raise DataError(f"{root}: {what}; pass the folder holding the LMDB dataset(s)")
    found = sorted(Path(d) for d, subdirs, files in os.walk(root) if not subdirs and "data.mdb" in files)
    if not found:
        raise DataError(
            f"{root}: no LMDB dataset found (no leaf folder holds data.mdb); pass a folder made by "
            f"`rare lmdb create` or one whose sub-folders are LMDBs"
        )
    return found


def _open_readonly(path: Path) -> lmdb.Environment:
    if not path.is_dir():
        raise DataError(f"{path}: not a directory; pass the folder that holds data.mdb")
    if not (path / "data.mdb").is_file():
        raise DataError(f"{path}: not an LMDB (no data.mdb); pass a folder made by `rare lmdb create`")
    try:
        return lmdb.open(str(path), readonly=True, lock=False, readahead=False, meminit=False, max_readers=32)
    except lmdb.Error as e:
        raise DataError(
            f"{path}: data.mdb cannot be opened as an LMDB ({e}); recreate it with `rare lmdb create`"
        ) from None


def _read_num_samples(env: lmdb.Environment, path: Path) -> int:
    with env.begin(write=False) as txn:
        raw = txn.get(NUM_SAMPLES_KEY)
    if raw is None:
        raise DataError(
            f"{path}: no 'num-samples' key, so it is not a text-recognition LMDB or its writing was "
            f"interrupted; recreate it with `rare lmdb create`"
        )
    try:
        count = int(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        count = -1
    if count < 0:
        raise DataError(f"{path}: 'num-samples' is {raw[:40]!r}, not a count; recreate it with `rare lmdb create`")
    return count


class LmdbDataset(SampleSource):
    """One LMDB, read-only. Picklable: each process opens its own environment on first read."""

    def __init__(self, path: PathLike):
        super().__init__()
        self.path = Path(path)
        self._env: Optional[lmdb.Environment] = _open_readonly(self.path)
        self.num_samples = _read_num_samples(self._env, self.path)
        self._txn: Optional[lmdb.Transaction] = None

    def __len__(self) -> int:
        return self.num_samples

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_env"] = state["_txn"] = None  # environments do not cross processes
        return state

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
        self._env = self._txn = None

    def read_raw(self, position: int) -> RawSample:
        if self._txn is None:
            if self._env is None:
                self._env = _open_readonly(self.path)
            self._txn = self._env.begin(write=False)
        index = position + 1
        name = f"{self.path} image-{index:09d}"
        label_buf = self._txn.get(label_key(index))
        image_buf = self._txn.get(image_key(index))
        if label_buf is None and image_buf is None:
            return _skipped(index, name, ENTRY_MISSING, f"num-samples is {self.num_samples} but entry {index} "
                                                        f"does not exist; fix num-samples or recreate the LMDB")
        if label_buf is None:
            return _skipped(index, name, LABEL_KEY_MISSING, f"no label-{index:09d} key; recreate the LMDB")
        try:
            label = label_buf.decode("utf-8")
        except UnicodeDecodeError as e:
            return _skipped(index, name, LABEL_NOT_UTF8,
                            f"label-{index:09d} is not UTF-8 ({e.reason}); write labels as UTF-8")
        if image_buf is None:
            return _skipped(index, name, IMAGE_KEY_MISSING, f"no image-{index:09d} key; recreate the LMDB")
        return RawSample(index, name, image_buf, label)


def _skipped(index: int, name: str, reason: str, detail: str) -> RawSample:
    return RawSample(index, name, None, None, Skip(reason, f"{name}: {detail}"))


def _existing_entries(path: Path) -> int:
    env = lmdb.open(str(path), readonly=True, lock=False)
    try:
        return env.stat()["entries"]
    finally:
        env.close()


def check_output_folder(path: PathLike, overwrite: bool) -> None:
    """Refuse anything that could lose data: a file, a folder with other content, a filled LMDB."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DataError(f"{path}: exists and is not a directory; choose a new output folder")
    if not path.is_dir():
        return
    names = {p.name for p in path.iterdir()}
    others = sorted(names - set(LMDB_FILES))
    if others:
        raise DataError(
            f"{path}: holds other files ({', '.join(others[:3])}); write the LMDB to an empty or new folder"
        )
    if "data.mdb" not in names or overwrite:
        return
    try:
        entries = _existing_entries(path)
    except lmdb.Error as e:
        raise DataError(
            f"{path}: holds a data.mdb that is not a readable LMDB ({e}); pass overwrite (--overwrite) to replace it"
        ) from None
    if entries:
        raise DataError(
            f"{path}: already holds an LMDB with {entries} keys; pass overwrite (--overwrite) to replace it "
            f"or choose another output folder"
        )


def _put_all(env: lmdb.Environment, items: List[Tuple[bytes, bytes]]) -> None:
    """One transaction; a full map is doubled and the transaction retried, so callers need not size it."""
    while True:
        try:
            with env.begin(write=True) as txn:
                for key, value in items:
                    txn.put(key, value)
            return
        except lmdb.MapFullError:
            env.set_mapsize(env.info()["map_size"] * 2)


def _write_to(folder: Path, samples: Iterable[Tuple[bytes, str]], map_size: int) -> int:
    env = lmdb.open(str(folder), map_size=map_size)
    try:
        pending: List[Tuple[bytes, bytes]] = []
        count = 0
        for image_bytes, label in samples:
            count += 1
            pending += [(image_key(count), image_bytes), (label_key(count), label.encode("utf-8"))]
            if count % SAMPLES_PER_COMMIT == 0:
                _put_all(env, pending)
                pending = []
        # num-samples goes last: a reader never sees a count the entries do not back.
        _put_all(env, pending + [(NUM_SAMPLES_KEY, str(count).encode("ascii"))])
        return count
    finally:
        env.close()


def write_lmdb(
    path: PathLike,
    samples: Iterable[Tuple[bytes, str]],
    map_size: Optional[int] = None,
    overwrite: bool = False,
) -> int:
    """Write (encoded image, label) pairs as an LMDB at `path`; returns how many were written.

    The LMDB is built in a sibling staging folder and moved into place only when complete, so an
    interrupted write, or a failing `samples` iterator, leaves whatever was at `path` untouched.
    `map_size` is the initial map size in bytes; it grows as needed.
    """
    path = Path(path)
    check_output_folder(path, overwrite)
    output_folder(path, DataError)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
    try:
        count = _write_to(staging, samples, map_size or INITIAL_MAP_SIZE)
        path.mkdir(exist_ok=True)
        for name in LMDB_FILES:
            if (staging / name).exists():
                os.replace(staging / name, path / name)
            else:
                (path / name).unlink(missing_ok=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return count
