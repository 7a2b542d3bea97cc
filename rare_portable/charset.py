"""Dictionaries: which characters a model reads, and their class ids (GO=0, STOP=1, chars from 2)."""
from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple
from .errors import UserError

GO, STOP = 0, 1
NUM_SPECIAL = 2
BUILTIN_LOWER_ALNUM = string.digits + string.ascii_lowercase
SHIPPED_DICTS = Path(__file__).with_name("dicts")


class CharsetError(UserError, ValueError):
    """A dictionary that cannot be used; the message names the file and line."""


@dataclass(frozen=True)
class Charset:
    chars: Tuple[str, ...]
    source: str  # "builtin:0-9a-z" or the dictionary file, for messages and artifacts

    @property
    def num_classes(self) -> int:
        return len(self.chars) + NUM_SPECIAL

    @property
    def lowercase_only(self) -> bool:
        """MindOCR lower-cases labels when the dictionary has no upper-case letters."""
        return not any(c.isupper() for c in self.chars)


def resolve_dict_path(path: str) -> Path:
    """A path as written in a config; MindOCR's own `mindocr/utils/dict/X.txt` falls back to the copy we ship."""
    p = Path(path)
    if p.is_file():
        return p
    shipped = SHIPPED_DICTS / p.name
    if shipped.is_file():
        return shipped
    raise CharsetError(
        f"dictionary {path} not found (shipped dictionaries: "
        f"{', '.join(sorted(f.name for f in SHIPPED_DICTS.glob('*.txt')))}); "
        f"set common.character_dict_path to an existing file, or null for 0-9a-z"
    )


def read_dict_file(path: Path) -> Tuple[str, ...]:
    """One character per line, as MindOCR reads it: only the line break is stripped (U+3000 is a character)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise CharsetError(f"{path}: not UTF-8 ({e}); save the dictionary as UTF-8") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline
    chars, seen = [], {}
    for lineno, line in enumerate(lines, 1):
        ch = line.rstrip("\r")
        if ch == "":
            raise CharsetError(f"{path}:{lineno}: empty line; a dictionary has one character per line, remove it")
        if ch in seen:
            raise CharsetError(
                f"{path}:{lineno}: {ch!r} repeats line {seen[ch]}; duplicates make class ids ambiguous, remove one"
            )
        seen[ch] = lineno
        chars.append(ch)
    if not chars:
        raise CharsetError(f"{path}: empty dictionary")
    return tuple(chars)


def load_charset(dict_path: Optional[str], use_space_char: bool = False) -> Charset:
    """`None` is MindOCR's default dictionary: lower-case letters and digits."""
    if dict_path is None:
        chars, source = tuple(BUILTIN_LOWER_ALNUM), "builtin:0-9a-z"
    else:
        path = resolve_dict_path(dict_path)
        chars, source = read_dict_file(path), str(path)
    if use_space_char and " " not in chars:
        chars = chars + (" ",)
    return Charset(chars=chars, source=source)
