"""Image folder + label file, MindOCR's `RecDataset` layout.

Each line is `image_path<TAB>text` (MindOCR also accepts one space instead of the tab when the line has
no tab); the line is stripped first, and the path is joined to the image folder with `os.path.join`,
so an absolute path in the label file is used as is. Blank lines are ignored.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import List, NamedTuple, Optional, Tuple

from ..files import PathLike
from .samples import (
    IMAGE_FILE_MISSING,
    IMAGE_FILE_UNREADABLE,
    MALFORMED_LINE,
    DataError,
    RawSample,
    SampleSource,
    Skip,
)


class LabelLine(NamedTuple):
    line_no: int
    image_path: Optional[str]
    label: Optional[str]
    problem: Optional[str]  # why the line cannot be used, with the fix


def parse_label_line(line: str) -> Tuple[str, str]:
    """(image name, text) from one line, split as MindOCR does; ValueError says what is wrong."""
    stripped = line.strip()
    separator = "\t" if "\t" in stripped else " " if " " in stripped else None
    if separator is None:
        raise ValueError("no tab between image path and text; write `image_path<TAB>text`")
    fields = stripped.split(separator)
    if len(fields) != 2:
        what = "tabs" if separator == "\t" else "spaces and no tab"
        raise ValueError(f"{len(fields) - 1} {what}; write `image_path<TAB>text` with exactly one tab")
    return fields[0], fields[1]


def read_label_file(label_file: Path, images_dir: Path) -> List[LabelLine]:
    try:
        data = label_file.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{label_file}: no such label file; pass the `image_path<TAB>text` file") from None
    except OSError as e:
        raise DataError(f"{label_file}: cannot be read ({e.strerror}); pass a readable label file") from None
    data = data.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte order mark some editors write
    entries = []
    for line_no, raw_line in enumerate(data.split(b"\n"), 1):
        try:
            line = raw_line.decode("utf-8")
        except UnicodeDecodeError as e:
            entries.append(LabelLine(line_no, None, None, f"not UTF-8 ({e.reason}); save the label file as UTF-8"))
            continue
        if not line.strip():
            continue
        try:
            image_name, label = parse_label_line(line)
        except ValueError as e:
            entries.append(LabelLine(line_no, None, None, str(e)))
            continue
        entries.append(LabelLine(line_no, os.path.join(images_dir, image_name), label, None))
    return entries


class FolderDataset(SampleSource):
    """Samples listed in a label file; missing or unreadable images and malformed lines become skips."""

    def __init__(self, images_dir: PathLike, label_file: PathLike):
        super().__init__()
        self.images_dir = Path(images_dir)
        self.label_file = Path(label_file)
        if not self.images_dir.is_dir():
            raise DataError(f"{self.images_dir}: no such image folder; pass the folder the label paths are relative to")
        self.lines = read_label_file(self.label_file, self.images_dir)

    def __len__(self) -> int:
        return len(self.lines)

    def read_raw(self, position: int) -> RawSample:
        entry = self.lines[position]
        where = f"{self.label_file}:{entry.line_no}"
        if entry.problem is not None:
            return RawSample(entry.line_no, where, None, None, Skip(MALFORMED_LINE, f"{where}: {entry.problem}"))
        name = f"{where} ({entry.image_path})"
        try:
            with open(entry.image_path, "rb") as f:
                return RawSample(entry.line_no, name, f.read(), entry.label)
        except FileNotFoundError:
            skip = Skip(IMAGE_FILE_MISSING, f"{name}: image file not found; fix the path or add the image")
        except OSError as e:
            skip = Skip(IMAGE_FILE_UNREADABLE, f"{name}: image file cannot be read ({e.strerror}); fix its permissions")
        return RawSample(entry.line_no, name, None, entry.label, skip)
