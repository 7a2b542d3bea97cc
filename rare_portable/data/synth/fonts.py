"""Font files, the glyph judge that rejects symbol fonts, and the cached survey of what each font draws."""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, FrozenSet, Iterable, List, Optional, Tuple

import cv2
import matplotlib
import numpy as np
from PIL import ImageFont

from ...charset import BUILTIN_LOWER_ALNUM
from .base import PathLike, SynthError

BUILTIN_FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
FONT_SUFFIXES = (".ttf", ".otf", ".ttc")

# Glyph coverage and symbol-font detection.
PROBE_SIZE = 32
NOTDEF_PROBE = "\uffff"  # a non-character: every font draws its .notdef glyph for it
REFERENCE_FONTS = (
    "DejaVuSans.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf", "DejaVuSans-Oblique.ttf", "DejaVuSerif-Italic.ttf",
)
LATIN_PROBE = BUILTIN_LOWER_ALNUM + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
GLYPH_SIGNATURE_SIDE = 16
# A glyph is taken for its character when that character is among the 5 most similar references:
# case pairs (o/O) and look-alikes (l/I/1) legitimately tie.
GLYPH_RANK_TOLERANCE = 5
MIN_LATIN_GLYPHS_TO_JUDGE = 8
# Text fonts pass >= 0.87 of their letters/digits; cmsy10 0.35, cmex10 0.08.
MIN_LATIN_RECOGNISED = 0.6
# Fonts drawing only a few brackets (STIXSize*) would otherwise render random strings of brackets.
MIN_CHARS_DRAWN = 10


@dataclass(frozen=True)
class SynthFont:
    path: str
    chars: FrozenSet[str]  # the needed characters this font draws with a real glyph
    weight: float = 1.0  # how often it is drawn: a family of 40 weights counts as much as a single font


def font_files_in(folder: PathLike) -> List[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise SynthError(f"font folder {folder} is not a directory; pass a folder of .ttf/.otf files")
    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in FONT_SUFFIXES and p.is_file())
    if not found:
        raise SynthError(f"font folder {folder} holds no {'/'.join(FONT_SUFFIXES)} files")
    return found


def _open_font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size, layout_engine=ImageFont.Layout.BASIC)


def _mask_array(mask) -> np.ndarray:
    width, height = mask.size
    return np.frombuffer(bytes(mask), np.uint8).reshape(height, width)


def _glyph_signature(font: ImageFont.FreeTypeFont, char: str) -> Optional[np.ndarray]:
    """The glyph's ink, squared up without stretching and normalised, so shapes compare across fonts."""
    ink = _mask_array(font.getmask(char))
    rows, cols = np.flatnonzero(ink.any(1)), np.flatnonzero(ink.any(0))
    if rows.size == 0:
        return None
    ink = ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    side = max(ink.shape)
    square = np.zeros((side, side), np.float32)
    top, left = (side - ink.shape[0]) // 2, (side - ink.shape[1]) // 2
    square[top:top + ink.shape[0], left:left + ink.shape[1]] = ink
    vector = cv2.resize(square, (GLYPH_SIGNATURE_SIDE,) * 2, interpolation=cv2.INTER_AREA).ravel()
    vector -= vector.mean()
    norm = np.linalg.norm(vector)
    return vector / norm if norm > 0 else None


def _drawable_chars(font: ImageFont.FreeTypeFont, chars: Iterable[str]) -> FrozenSet[str]:
    """Characters the font has a glyph for: what it draws differs from its .notdef box, and is not blank."""
    notdef = font.getmask(NOTDEF_PROBE)
    notdef_pixels = bytes(notdef)
    drawable = set()
    for char in chars:
        mask = font.getmask(char)
        if mask.size == notdef.size and bytes(mask) == notdef_pixels:
            continue
        if char.isspace() or mask.getbbox() is not None:
            drawable.add(char)
    return frozenset(drawable)


class GlyphJudge:
    """Tells a font's real glyph for a character from an unrelated glyph at its code point.

    Symbol fonts (cmsy10, cmex10) and TeX-encoded ones (cm* punctuation: `<` is an inverted `!`) map
    ASCII code points to other shapes; they pass a coverage test but not a comparison with DejaVu's glyphs.
    """

    def __init__(self, chars: Iterable[str]):
        fonts = [_open_font(str(BUILTIN_FONT_DIR / name), PROBE_SIZE) for name in REFERENCE_FONTS]
        wanted = frozenset(chars) | frozenset(LATIN_PROBE)
        drawn = [_drawable_chars(font, wanted) for font in fonts]
        self.chars = sorted(c for c in frozenset().union(*drawn) if not c.isspace())
        self.position = {c: i for i, c in enumerate(self.chars)}
        blank = np.zeros(GLYPH_SIGNATURE_SIDE ** 2, np.float32)  # a reference font without the glyph
        self.references = np.stack([
            [_glyph_signature(font, c) if c in drawn_here else blank for c in self.chars]
            for font, drawn_here in zip(fonts, drawn)
        ])  # (reference font, character, signature)

    def judge(self, font: ImageFont.FreeTypeFont, char: str) -> Optional[bool]:
        """Whether the glyph looks like `char`; None when DejaVu has no glyph to compare with (e.g. Han)."""
        if char not in self.position:
            return None
        signature = _glyph_signature(font, char)
        if signature is None:
            return False
        similarity = (self.references @ signature).max(0)
        return int((similarity > similarity[self.position[char]]).sum()) < GLYPH_RANK_TOLERANCE


def survey_font(path: PathLike, needed: Iterable[str], judge: GlyphJudge) -> Tuple[Optional[SynthFont], str]:
    """The font restricted to the needed characters it draws correctly, or None and why it is unusable."""
    try:
        font = _open_font(str(path), PROBE_SIZE)
    except OSError as e:
        return None, f"cannot be opened ({e})"
    needed = frozenset(needed)
    latin = frozenset(LATIN_PROBE)
    drawable = _drawable_chars(font, needed | latin)
    correct = frozenset(c for c in drawable if judge.judge(font, c) is not False)
    if len(drawable & latin) >= MIN_LATIN_GLYPHS_TO_JUDGE:
        recognised = len(correct & latin) / len(drawable & latin)
        if recognised < MIN_LATIN_RECOGNISED:
            return None, f"symbol font: only {recognised:.0%} of its letters/digits look like Latin ones"
    enough = min(MIN_CHARS_DRAWN, len(needed))
    if len(correct & needed) < enough:
        return None, f"draws only {len(correct & needed)} of the needed characters (at least {enough} required)"
    return SynthFont(str(path), correct & needed), ""


class FontSurvey:
    """`survey_font` with its answers kept on disk: judging ~1,600 system fonts takes ~40 s, every time.

    An answer is keyed by the font file (path, size, modification time) and the characters needed, so a
    changed font or another charset is surveyed afresh. The cache lives in $RARE_CACHE_DIR (default
    ~/.cache/rare_portable); a cache that cannot be read or written is ignored.
    """

    def __init__(self, needed: FrozenSet[str]):
        self.needed = needed
        self._needed_key = hashlib.sha1("".join(sorted(needed)).encode("utf-8")).hexdigest()[:16]
        self._judge: Optional[GlyphJudge] = None
        folder = Path(os.environ.get("RARE_CACHE_DIR") or Path.home() / ".cache" / "rare_portable")
        self.path = folder / "font_survey.json"
        try:
            self._answers: Dict[str, List[str]] = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            self._answers = {}
        self._changed = False

    def font(self, path: PathLike) -> Tuple[Optional[SynthFont], str]:
        try:
            stat = Path(path).stat()
        except OSError as e:
            return None, f"cannot be read ({e})"
        key = f"{Path(path).resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{self._needed_key}"
        if key not in self._answers:
            if self._judge is None:
                self._judge = GlyphJudge(self.needed)
            font, reason = survey_font(path, self.needed, self._judge)
            self._answers[key] = ["".join(sorted(font.chars)) if font else "", reason]
            self._changed = True
        chars, reason = self._answers[key]
        return (SynthFont(str(path), frozenset(chars)), "") if not reason else (None, reason)

    def save(self) -> None:
        if not self._changed:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(self._answers), encoding="utf-8")
            os.replace(tmp, self.path)
        except OSError:
            pass  # a read-only home: the next plan surveys again
