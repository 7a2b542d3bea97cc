"""Synthetic MJSynth-like word crops, so a RARE model can be trained or smoke-tested without a dataset.

Sample `i` is a pure function of (plan, seed, i): it draws from its own numpy Generator seeded with
(seed, i), so the bytes do not depend on the worker count or on which samples were rendered before.
Text is laid out with PIL's BASIC engine because raqm, where installed, would move glyphs between machines.
"""
from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, FrozenSet, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import cv2
import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..charset import BUILTIN_LOWER_ALNUM, Charset
from .lmdb import write_lmdb
from .resources import background_photos
from .preprocess import decode_image
from ..errors import UserError

PathLike = Union[str, os.PathLike]

BUILTIN_LEXICON = Path(__file__).with_name("lexicon.txt")
BUILTIN_FONT_DIR = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
FONT_SUFFIXES = (".ttf", ".otf", ".ttc")
# lower: as the lexicon has it; mixed: also Capitalised and UPPER, labelled as drawn; caseless: drawn in all
# three, labelled in lower case, for a dictionary without upper case (MindOCR's 0-9a-z reads "EXIT" as "exit").
CASES = ("lower", "mixed", "caseless")
IMAGE_FORMATS = ("png", "jpg")
MIN_HEIGHT = 8

FONT_SCALES = (1.0, 1.2, 1.4, 1.6, 1.8)  # font px per output px: rendering larger and shrinking anti-aliases
RANDOM_WORD_MAX_LENGTH = 10
SAMPLES_PER_TASK = 64  # per inter-process message: big enough to amortise pickling, small for an even split

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

MIN_TEXT_CONTRAST = 80  # luminance difference (0-255) between text and every background pixel it may hit


class SynthError(UserError, ValueError):
    """Settings that cannot produce the requested images; the message says what to change."""


@dataclass(frozen=True)
class SynthFont:
    path: str
    chars: FrozenSet[str]  # the needed characters this font draws with a real glyph
    weight: float = 1.0  # how often it is drawn: a family of 40 weights counts as much as a single font


@dataclass(frozen=True)
class SynthPlan:
    """Everything a worker needs to render any sample; picklable. Build it with `make_plan`."""

    seed: int
    height: int
    words: Tuple[Tuple[str, ...], ...]  # per lexicon entry, the case variants that fit the charset
    random_alphabet: str
    random_fraction: float
    fonts: Tuple[SynthFont, ...]
    image_format: str
    skipped_user_fonts: Tuple[str, ...] = ()  # "path: reason", for the caller to report
    skipped_lexicon_words: int = 0  # lexicon entries with characters outside the charset
    lower_labels: bool = False  # case "caseless": words are drawn in any case, labelled in lower case
    photos: Tuple[str, ...] = ()  # background photographs (data/resources.py)
    photo_fraction: float = 0.0  # share of samples drawn on a photograph instead of a synthetic background


@dataclass(frozen=True)
class SynthResult:
    count: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else float("inf")


# ---------------------------------------------------------------------------------------------- inputs


def read_lexicon(path: PathLike) -> List[str]:
    """One word per line; surrounding whitespace and blank lines are ignored."""
    path = Path(path)
    if not path.is_file():
        raise SynthError(f"lexicon {path} not found; pass a text file with one word per line")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise SynthError(f"lexicon {path} is not UTF-8 ({e.reason}); save it as UTF-8") from None
    words = [line.strip() for line in text.splitlines() if line.strip()]
    if not words:
        raise SynthError(f"lexicon {path} has no words; put one word per line")
    return words


def builtin_lexicon() -> List[str]:
    return read_lexicon(BUILTIN_LEXICON)


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


# ------------------------------------------------------------------------------------------------ plan


def _fonts_by_char(fonts: Sequence[SynthFont]) -> Dict[str, int]:
    """Bit i of entry c is set when fonts[i] draws c: a word's usable fonts are the AND over its characters."""
    masks: Dict[str, int] = {}
    for i, font in enumerate(fonts):
        for char in font.chars:
            masks[char] = masks.get(char, 0) | (1 << i)
    return masks


def _common_fonts(word: str, fonts_by_char: Dict[str, int], all_fonts: int) -> int:
    usable = all_fonts
    for char in set(word):
        usable &= fonts_by_char.get(char, 0)
    return usable


def _case_variants(word: str, case: str) -> Tuple[str, ...]:
    if case == "lower":
        return (word.lower(),)
    # UPPER twice: signs, plates and shop fronts (most of IC15 and all of SVT) are upper case.
    variants = (word, word.lower(), word[:1].upper() + word[1:].lower(), word.upper())
    return tuple(dict.fromkeys(variants)) + ((word.upper(),) if case == "caseless" else ())


def _describe_chars(chars: Iterable[str], limit: int = 20) -> str:
    chars = sorted(chars)
    shown = " ".join(f"{c!r}({ord(c):04X})" if not c.isprintable() or c.isspace() else c for c in chars[:limit])
    return shown + (f" ... ({len(chars)} in all)" if len(chars) > limit else "")


def make_plan(
    seed: int = 0,
    height: int = 32,
    charset: Union[Charset, Iterable[str]] = BUILTIN_LOWER_ALNUM,
    case: str = "lower",
    lexicon: Optional[Sequence[str]] = None,
    font_dirs: Sequence[PathLike] = (),
    random_fraction: float = 0.1,
    image_format: str = "png",
    photo_fraction: float = 0.0,
    photos: Sequence[PathLike] = (),
) -> SynthPlan:
    """Check every setting once, up front, so workers never fail half-way through a dataset.

    `charset` is a dictionary (any iterable of single characters, or a `Charset`): every label uses only
    its characters. `lexicon` defaults to the built-in English list; `random_fraction` of the samples are
    random strings over the charset instead. `case="mixed"` also draws Capitalised and UPPER variants;
    `case="caseless"` draws them too and labels them in lower case. `photo_fraction` of the samples are drawn
    on a crop of one of `photos` (default: `data.resources.background_photos()`).
    """
    chars = tuple(charset.chars if isinstance(charset, Charset) else charset)
    bad = [c for c in chars if not isinstance(c, str) or len(c) != 1]
    if not chars or bad:
        raise SynthError(f"charset must be a non-empty sequence of single characters, got {bad[:3] or 'nothing'}")
    allowed = frozenset(chars)
    if case not in CASES:
        raise SynthError(f"case must be one of {', '.join(CASES)}, got {case!r}")
    if case == "mixed" and not any(c.isupper() for c in allowed):
        raise SynthError("case 'mixed' needs upper-case letters in the charset; use case 'lower' or a larger charset")
    if image_format not in IMAGE_FORMATS:
        raise SynthError(f"image format must be one of {', '.join(IMAGE_FORMATS)}, got {image_format!r}")
    if height < MIN_HEIGHT:
        raise SynthError(f"height must be at least {MIN_HEIGHT} pixels, got {height}")
    if not 0.0 <= random_fraction <= 1.0:
        raise SynthError(f"random fraction must be between 0 and 1, got {random_fraction}")
    if not 0.0 <= photo_fraction <= 1.0:
        raise SynthError(f"photo fraction must be between 0 and 1, got {photo_fraction}")
    photos = tuple(str(p) for p in photos) or (background_photos() if photo_fraction > 0 else ())
    missing = [p for p in photos if not Path(p).is_file()]
    if missing:
        raise SynthError(f"background photo {missing[0]} not found; pass existing image files")
    if photo_fraction > 0 and not photos:
        raise SynthError("photo backgrounds need images: install scikit-image or pass photos")
    lower_labels = case == "caseless"
    fits = (lambda text: allowed.issuperset(text.lower())) if lower_labels else allowed.issuperset
    if not isinstance(seed, int) or seed < 0:
        raise SynthError(f"seed must be a non-negative integer, got {seed!r}")

    words: Tuple[Tuple[str, ...], ...] = ()
    skipped_words = 0
    if random_fraction < 1.0:
        source = builtin_lexicon() if lexicon is None else list(lexicon)
        fitting = {}
        for word in source:
            variants = tuple(v for v in _case_variants(word, case) if fits(v))
            if variants:
                fitting.setdefault(variants, None)
            else:
                skipped_words += 1
        if not fitting:
            raise SynthError(
                f"none of the {len(source)} lexicon words fits the charset with case {case!r}; "
                f"use a lexicon written in the charset's characters, or a larger charset"
            )
        words = tuple(fitting)
    alphabet = "".join(c for c in chars if not c.isspace() and (case == "mixed" or not c.isupper()))
    if random_fraction > 0.0 and not alphabet:
        raise SynthError("the charset has no characters to build random strings from; set random fraction to 0")

    needed = frozenset("".join(v for variants in words for v in variants)) | (
        frozenset(alphabet + (alphabet.upper() if lower_labels else "")) if random_fraction > 0.0 else frozenset()
    )
    survey = FontSurvey(needed)
    fonts, skipped_user = [], []
    for path in sorted(BUILTIN_FONT_DIR.glob("*.ttf")):
        font, _ = survey.font(path)
        if font is not None:
            fonts.append(font)
    for folder in font_dirs:
        paths, skipped_here = font_files_in(folder), []
        for path in paths:
            font, reason = survey.font(path)
            if font is None:
                skipped_here.append(f"{path}: {reason}")
            else:
                fonts.append(font)
        if len(skipped_here) == len(paths):
            raise SynthError(f"no font in {folder} is usable: " + "; ".join(skipped_here[:3]))
        skipped_user += skipped_here
    survey.save()
    fonts = _weighted_by_family(fonts)
    undrawable = needed - frozenset().union(*(f.chars for f in fonts))
    if undrawable:
        raise SynthError(
            f"no available font can render these characters: {_describe_chars(undrawable)}; "
            f"pass --fonts DIR with a font that has them (for Chinese, a CJK font such as Noto Sans CJK)"
        )
    fonts_by_char, all_fonts = _fonts_by_char(fonts), (1 << len(fonts)) - 1
    split = [v for variants in words for v in variants if not _common_fonts(v, fonts_by_char, all_fonts)]
    if split:
        raise SynthError(
            f"{len(split)} lexicon words (e.g. {', '.join(split[:5])}) have characters that no single font "
            f"draws together; pass --fonts DIR with a font that has all of them"
        )
    return SynthPlan(
        seed=seed,
        height=height,
        words=words,
        random_alphabet=alphabet,
        random_fraction=random_fraction,
        fonts=tuple(fonts),
        image_format=image_format,
        skipped_user_fonts=tuple(skipped_user),
        skipped_lexicon_words=skipped_words,
        lower_labels=lower_labels,
        photos=photos,
        photo_fraction=photo_fraction,
    )


def _weighted_by_family(fonts: Sequence[SynthFont]) -> List[SynthFont]:
    """Each folder (a Debian package, matplotlib's set) shares one unit of weight among its fonts, so a
    package of 400 display faces does not drown the book and signage faces."""
    per_folder: Dict[str, int] = {}
    for font in fonts:
        folder = str(Path(font.path).parent)
        per_folder[folder] = per_folder.get(folder, 0) + 1
    return [SynthFont(f.path, f.chars, 1.0 / per_folder[str(Path(f.path).parent)]) for f in fonts]


# ------------------------------------------------------------------------------------------- rendering


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114], np.float32)


def _random_colours(rng: np.random.Generator, count: int) -> np.ndarray:
    """Mostly muted colours, as paint and signage are; uniform RGB would be mostly garish. (count, 3) RGB."""
    hsv = np.stack([rng.integers(0, 180, count), 255 * rng.beta(1.0, 2.5, count), rng.integers(0, 256, count)], 1)
    return cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2RGB)[0].astype(np.float32)


def _contrasting_colour(rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    """A colour at least MIN_TEXT_CONTRAST darker than `low` or lighter than `high`; black/white if none is."""
    candidates = _random_colours(rng, 16)
    lum = _luminance(candidates)
    fitting = np.flatnonzero((lum <= low - MIN_TEXT_CONTRAST) | (lum >= high + MIN_TEXT_CONTRAST))
    if fitting.size:
        return candidates[fitting[0]]
    return np.zeros(3, np.float32) if low >= 255 - high else np.full(3, 255, np.float32)


def _lerp_field(first: np.ndarray, second: np.ndarray, weight: np.ndarray) -> np.ndarray:
    return first + (second - first) * weight[..., None]


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Flat, gradient, cloudy or cluttered; its two colours stay close so the text keeps its contrast."""
    base = _random_colours(rng, 1)[0]
    other = np.clip(base + rng.normal(0, 40, 3), 0, 255).astype(np.float32)
    kind = rng.choice(4, p=(0.2, 0.3, 0.3, 0.2))
    if kind == 0:
        return np.broadcast_to(base, (height, width, 3)).astype(np.float32)
    if kind in (1, 3):
        angle = rng.uniform(0, 2 * math.pi)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        ramp = xs * math.cos(angle) + ys * math.sin(angle)
        ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
        canvas = _lerp_field(base, other, ramp)
        if kind == 1:
            return canvas
        for _ in range(rng.integers(2, 6)):
            colour = np.clip(base + rng.normal(0, 35, 3), 0, 255).tolist()
            p1 = (int(rng.integers(-width // 2, width)), int(rng.integers(-height, height)))
            p2 = (int(rng.integers(0, width * 3 // 2)), int(rng.integers(0, 2 * height)))
            if rng.random() < 0.5:
                cv2.rectangle(canvas, p1, p2, colour, -1)
            else:
                cv2.line(canvas, p1, p2, colour, int(rng.integers(1, max(2, height // 6))))
        return cv2.GaussianBlur(canvas, (0, 0), rng.uniform(0.8, 2.0))
    cells_y = int(rng.integers(2, 6))
    cells_x = max(2, cells_y * width // height)
    clouds = cv2.resize(rng.random((cells_y, cells_x), dtype=np.float32), (width, height),
                        interpolation=cv2.INTER_CUBIC)
    return _lerp_field(base, other, np.clip(clouds, 0, 1))


def _pick(rng: np.random.Generator, choices: Sequence):
    return choices[rng.integers(0, len(choices))]


class WordRenderer:
    """Renders any sample of one plan. Caches FreeType faces per (font, size): keep one per process."""

    def __init__(self, plan: SynthPlan):
        self.plan = plan
        self._faces: Dict[Tuple[int, int], ImageFont.FreeTypeFont] = {}
        self._fonts_by_char = _fonts_by_char(plan.fonts)
        self._all_fonts = (1 << len(plan.fonts)) - 1
        self._alphabet_by_font = ["".join(c for c in plan.random_alphabet if c in f.chars) for f in plan.fonts]
        self._photos: Dict[int, np.ndarray] = {}

    def _photo(self, index: int) -> np.ndarray:
        if index not in self._photos:
            bgr = cv2.imread(self.plan.photos[index], cv2.IMREAD_COLOR)
            if bgr is None:
                raise SynthError(f"background photo {self.plan.photos[index]} cannot be decoded; pass an image file")
            self._photos[index] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32)
        return self._photos[index]

    def _photo_background(self, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
        """A window of a photograph at a random scale, recoloured, its contrast squeezed so text stays readable."""
        photo = self._photo(int(rng.integers(0, len(self.plan.photos))))
        photo_h, photo_w = photo.shape[:2]
        window_h = int(np.clip(rng.uniform(0.04, 0.4) * photo_h, 8, photo_h))
        window_w = int(np.clip(window_h * width / height, 8, photo_w))
        y0, x0 = int(rng.integers(0, photo_h - window_h + 1)), int(rng.integers(0, photo_w - window_w + 1))
        canvas = cv2.resize(photo[y0:y0 + window_h, x0:x0 + window_w], (width, height), interpolation=cv2.INTER_AREA)
        canvas = canvas[..., rng.permutation(3)]
        if rng.random() < 0.2:
            canvas = 255 - canvas
        grey = _luminance(canvas)
        if rng.random() < 0.5:  # paint and stone are duller than the photographs' subjects
            canvas = canvas + (grey[..., None] - canvas) * rng.uniform(0.3, 1.0)
        low, high = np.percentile(grey, (2, 98))
        squeeze = min(1.0, rng.uniform(40, 110) / max(float(high - low), 1.0))
        level = rng.uniform(20, 235)
        return np.clip(level + (canvas - float(grey.mean())) * squeeze, 0, 255).astype(np.float32)

    @staticmethod
    def _neighbours(rng: np.random.Generator, masks: np.ndarray, face, alphabet: str) -> np.ndarray:
        """Parts of the letters beside the word, cut by the crop's edge, as a detector's tight box leaves them."""
        height = masks.shape[0]
        masks = masks.copy()
        for side in ("left", "right"):
            if not alphabet or rng.random() >= 0.5:
                continue
            glyph = _mask_array(face.getmask(_pick(rng, alphabet)))
            if glyph.size == 0 or glyph.shape[0] > height:
                continue
            shown = max(1, int(glyph.shape[1] * rng.uniform(0.15, 0.5)))
            part = glyph[:, -shown:] if side == "left" else glyph[:, :shown]
            part = part[:, :masks.shape[1]]
            top = int(rng.integers(0, height - glyph.shape[0] + 1))
            columns = slice(0, part.shape[1]) if side == "left" else slice(masks.shape[1] - part.shape[1], None)
            region = masks[top:top + glyph.shape[0], columns]
            np.maximum(region, part[..., None], out=region)
        return masks

    def _face(self, font_index: int, size: int) -> ImageFont.FreeTypeFont:
        key = (font_index, size)
        if key not in self._faces:
            self._faces[key] = _open_font(self.plan.fonts[font_index].path, size)
        return self._faces[key]

    def _pick_font(self, rng: np.random.Generator, usable: int) -> int:
        indices = [i for i in range(len(self.plan.fonts)) if usable >> i & 1]
        weights = np.array([self.plan.fonts[i].weight for i in indices])
        position = int(np.searchsorted(np.cumsum(weights), rng.random() * weights.sum(), side="right"))
        return indices[min(position, len(indices) - 1)]

    def _word_and_font(self, rng: np.random.Generator) -> Tuple[str, int]:
        """A lexicon word or random string, and a font that draws all of it."""
        plan = self.plan
        if rng.random() >= plan.random_fraction:
            word = _pick(rng, _pick(rng, plan.words))
            return word, self._pick_font(rng, _common_fonts(word, self._fonts_by_char, self._all_fonts))
        length = int(rng.integers(1, RANDOM_WORD_MAX_LENGTH + 1))
        word = "".join(_pick(rng, plan.random_alphabet) for _ in range(length))
        if plan.lower_labels and rng.random() < 0.5:
            word = word.upper()
        usable = _common_fonts(word, self._fonts_by_char, self._all_fonts)
        if usable:
            return word, self._pick_font(rng, usable)
        # Characters from fonts with disjoint coverage: keep the first, draw the rest from one of its fonts.
        font_index = self._pick_font(rng, self._fonts_by_char[word[0]])
        alphabet = self._alphabet_by_font[font_index]
        return word[0] + "".join(_pick(rng, alphabet) for _ in range(length - 1)), font_index

    def _text_masks(self, rng: np.random.Generator, word: str, face: ImageFont.FreeTypeFont, size: int):
        """Fill and outline coverage (H, W, 2) on a padded canvas, and whether there is an outline (when
        not, the outline channel repeats the fill). Letter spacing is sometimes widened or tightened."""
        outline = int(max(1, round(size * rng.uniform(0.03, 0.08)))) if rng.random() < 0.2 else 0
        tracking = rng.uniform(-0.05, 0.3) * size if rng.random() < 0.25 else 0.0
        pieces = list(word) if tracking else [word]
        advances = [face.getlength(piece) + tracking for piece in pieces]
        ascent, descent = face.getmetrics()
        pad = size // 2 + outline
        width = int(math.ceil(sum(advances) - tracking)) + 2 * pad
        canvas_size = (max(width, 2 * pad + 1), ascent + descent + 2 * pad)
        layers = []
        for stroke in (0, outline) if outline else (0,):
            layer = Image.new("L", canvas_size, 0)
            draw = ImageDraw.Draw(layer)
            x = float(pad)
            for piece, advance in zip(pieces, advances):
                draw.text((x, pad), piece, font=face, fill=255, stroke_width=stroke, stroke_fill=255)
                x += advance
            layers.append(np.asarray(layer))
        return np.dstack(layers * (3 - len(layers))), bool(outline)

    @staticmethod
    def _curve(rng: np.random.Generator, masks: np.ndarray, size: int) -> np.ndarray:
        """Bend the baseline along a sine, as text printed on a bottle or a wavy banner."""
        height, width = masks.shape[:2]
        amplitude = rng.uniform(0.05, 0.25) * size
        period = rng.uniform(1.0, 3.0) * width
        phase = rng.uniform(0, 2 * math.pi)
        extra = int(math.ceil(amplitude))
        xs = np.arange(width, dtype=np.float32)
        shift = amplitude * np.sin(2 * math.pi * xs / period + phase) + extra
        map_x = np.broadcast_to(xs, (height + 2 * extra, width))
        map_y = np.arange(height + 2 * extra, dtype=np.float32)[:, None] - shift[None, :]
        return cv2.remap(masks, np.ascontiguousarray(map_x), map_y.astype(np.float32), cv2.INTER_LINEAR)

    @staticmethod
    def _perspective(rng: np.random.Generator, masks: np.ndarray, size: int) -> np.ndarray:
        """Rotation, shear and corner jitter in one homography; the canvas grows so nothing is clipped."""
        height, width = masks.shape[:2]
        angle = math.radians(float(np.clip(rng.normal(0, 5), -15, 15)))
        shear = rng.uniform(-0.3, 0.3) if rng.random() < 0.2 else 0.0
        corners = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
        centred = corners - (width / 2, height / 2)
        sheared = centred + np.stack([-shear * centred[:, 1], np.zeros(4)], 1)
        rotation = np.float32([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        moved = sheared @ rotation.T + rng.uniform(-0.12, 0.12, (4, 2)) * size
        moved = (moved - moved.min(0)).astype(np.float32)
        out_w, out_h = (int(v) + 1 for v in np.ceil(moved.max(0)))
        homography = cv2.getPerspectiveTransform(corners, moved)
        return cv2.warpPerspective(masks, homography, (out_w, out_h), flags=cv2.INTER_LINEAR)

    @staticmethod
    def _crop(rng: np.random.Generator, masks: np.ndarray, size: int) -> np.ndarray:
        """The ink's bounding box plus a small random margin on each side."""
        height, width = masks.shape[:2]
        # The outline channel covers the fill; faint anti-aliasing fringes do not count as ink.
        _, ink = cv2.threshold(np.ascontiguousarray(masks[..., 1]), 16, 255, cv2.THRESH_TOZERO)
        x, y, ink_w, ink_h = cv2.boundingRect(ink)
        if ink_w == 0:  # only whitespace was drawn: keep the whole canvas
            x, y, ink_w, ink_h = 0, 0, width, height
        top, bottom = (int(round(rng.uniform(0.05, 0.25) * size)) for _ in range(2))
        left, right = (int(round(rng.uniform(0.05, 0.35) * size)) for _ in range(2))
        y0, y1 = y - top, y + ink_h + bottom
        x0, x1 = x - left, x + ink_w + right
        crop = masks[max(y0, 0):min(y1, height), max(x0, 0):min(x1, width)]
        return cv2.copyMakeBorder(crop, max(-y0, 0), max(y1 - height, 0), max(-x0, 0), max(x1 - width, 0),
                                  cv2.BORDER_CONSTANT, value=0)

    def _compose(self, rng: np.random.Generator, masks: np.ndarray, has_outline: bool) -> np.ndarray:
        height, width = masks.shape[:2]
        on_photo = self.plan.photo_fraction > 0 and rng.random() < self.plan.photo_fraction
        canvas = self._photo_background(rng, height, width) if on_photo else _background(rng, height, width)
        lum = _luminance(canvas)
        low, high = np.percentile(lum, (1, 99)) if on_photo else (lum.min(), lum.max())
        text_colour = _contrasting_colour(rng, float(low), float(high))
        fill, outline = masks[..., 0].astype(np.float32) / 255, masks[..., 1].astype(np.float32) / 255
        if rng.random() < 0.15:
            dx, dy = rng.uniform(-0.1, 0.1, 2) * height
            shifted = cv2.warpAffine(outline, np.float32([[1, 0, dx], [0, 1, dy]]), (width, height))
            shadow = cv2.GaussianBlur(shifted, (0, 0), rng.uniform(0.5, 1.5)) * rng.uniform(0.4, 0.8)
            canvas = _lerp_field(canvas, np.zeros(3, np.float32), shadow)
        if has_outline:
            text_lum = float(_luminance(text_colour))
            outline_colour = _contrasting_colour(rng, text_lum, text_lum)
            canvas = _lerp_field(canvas, outline_colour, outline)
        return _lerp_field(canvas, text_colour, fill)

    @staticmethod
    def _degrade(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
        """Camera and compression damage: uneven light, low resolution, defocus and motion blur, noise, JPEG."""
        height, width = image.shape[:2]
        if rng.random() < 0.25:  # light falling off across the sign, or a shadow's soft edge
            angle = rng.uniform(0, 2 * math.pi)
            ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
            ramp = xs * math.cos(angle) / width + ys * math.sin(angle) / height
            ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
            if rng.random() < 0.4:
                ramp = 1 / (1 + np.exp(-(ramp - rng.uniform(0.2, 0.8)) * rng.uniform(8, 30)))
            image = image * (1 - rng.uniform(0.3, 0.7) * ramp)[..., None]
        if rng.random() < 0.25:
            factor = rng.uniform(0.25, 0.7)
            small = cv2.resize(image, (max(1, round(width * factor)), max(1, round(height * factor))),
                               interpolation=cv2.INTER_AREA)
            image = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
        if rng.random() < 0.35:
            image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.3, 1.1))
        elif rng.random() < 0.1:  # defocus: a disc, not a Gaussian
            radius = rng.uniform(1.0, 2.2)
            side = 2 * int(math.ceil(radius)) + 1
            disc = cv2.circle(np.zeros((side, side), np.float32), (side // 2, side // 2), int(round(radius)), 1.0, -1)
            image = cv2.filter2D(image, -1, disc / disc.sum())
        elif rng.random() < 0.1:
            length = int(rng.choice((3, 5)))
            kernel = np.zeros((length, length), np.float32)
            kernel[length // 2] = 1.0 / length
            rotation = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), rng.uniform(-30, 30), 1.0)
            image = cv2.filter2D(image, -1, cv2.warpAffine(kernel, rotation, (length, length)))
        if rng.random() < 0.5:
            image = image + rng.normal(0, rng.uniform(1, 10), image.shape).astype(np.float32)
        image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        if rng.random() < 0.4:
            quality = int(rng.integers(15, 76))
            bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
            _, buffer = cv2.imencode(".jpg", bgr, (cv2.IMWRITE_JPEG_QUALITY, quality))
            image = cv2.cvtColor(cv2.imdecode(buffer, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        return image

    def render(self, index: int) -> Tuple[np.ndarray, str]:
        """Sample `index` as an RGB uint8 array (plan.height tall, width following the word) and its label."""
        rng = np.random.default_rng([self.plan.seed, index])
        word, font_index = self._word_and_font(rng)
        size = int(round(self.plan.height * FONT_SCALES[rng.integers(0, len(FONT_SCALES))]))
        masks, has_outline = self._text_masks(rng, word, self._face(font_index, size), size)
        if rng.random() < 0.2:
            masks = self._curve(rng, masks, size)
        if rng.random() < 0.7:
            masks = self._perspective(rng, masks, size)
        masks = self._crop(rng, masks, size)
        if rng.random() < 0.15:
            masks = self._neighbours(rng, masks, self._face(font_index, size), self._alphabet_by_font[font_index])
        height = self.plan.height
        width = max(1, int(round(masks.shape[1] * height / masks.shape[0])))
        shrinking = masks.shape[0] > height
        masks = cv2.resize(masks, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        label = word.lower() if self.plan.lower_labels else word
        return self._degrade(rng, self._compose(rng, masks, has_outline)), label

    def encode(self, index: int) -> Tuple[bytes, str]:
        image, label = self.render(index)
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        if self.plan.image_format == "png":
            _, buffer = cv2.imencode(".png", bgr, (cv2.IMWRITE_PNG_COMPRESSION, 1))
        else:
            _, buffer = cv2.imencode(".jpg", bgr, (cv2.IMWRITE_JPEG_QUALITY, 95))
        return buffer.tobytes(), label


# --------------------------------------------------------------------------------------------- running

_worker_renderer: Optional[WordRenderer] = None  # one per worker process, set by its initializer


def _start_worker(plan: SynthPlan) -> None:
    global _worker_renderer
    cv2.setNumThreads(1)  # the pool already uses every core; OpenCV's own threads would only contend
    _worker_renderer = WordRenderer(plan)


def _render_task(indices: range) -> List[Tuple[bytes, str]]:
    return [_worker_renderer.encode(i) for i in indices]


def render_samples(plan: SynthPlan, count: int, workers: int = 1, start: int = 0) -> Iterator[Tuple[bytes, str]]:
    """Encoded samples `start` .. `start + count - 1`, in index order, rendered by up to `workers` processes."""
    workers = min(workers, math.ceil(count / SAMPLES_PER_TASK))  # starting a process costs ~0.5 s
    if workers <= 1:
        renderer = WordRenderer(plan)
        for index in range(start, start + count):
            yield renderer.encode(index)
        return
    stop = start + count
    tasks = [range(i, min(i + SAMPLES_PER_TASK, stop)) for i in range(start, stop, SAMPLES_PER_TASK)]
    # spawn, not fork: forked workers hung here (a fork copies locks held by threads such as OpenCV's pool).
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_start_worker, initargs=(plan,)) as pool:
        for rendered in pool.imap(_render_task, tasks):
            yield from rendered


def synthesize_lmdb(
    output: PathLike,
    plan: SynthPlan,
    count: int,
    workers: Optional[int] = None,
    overwrite: bool = False,
    on_sample: Optional[Callable[[bytes, str], None]] = None,
) -> SynthResult:
    """Render `count` samples into an LMDB at `output` (1-based keys); `on_sample` sees each as it is stored.

    An existing non-empty LMDB is refused unless `overwrite`; `workers` defaults to the CPU count.
    """
    if count < 1:
        raise SynthError(f"count must be at least 1, got {count}")
    workers = workers or os.cpu_count() or 1

    def observed(samples: Iterable[Tuple[bytes, str]]) -> Iterator[Tuple[bytes, str]]:
        for image_bytes, label in samples:
            if on_sample is not None:
                on_sample(image_bytes, label)
            yield image_bytes, label

    began = time.perf_counter()
    written = write_lmdb(output, observed(render_samples(plan, count, workers)), overwrite=overwrite)
    return SynthResult(written, time.perf_counter() - began)


def render_words(spec, count: int, seed: int) -> Tuple[List[np.ndarray], List[str]]:
    """`count` words for a model (`spec`'s input height and dictionary), decoded as a dataset's images are
    (RGB HWC uint8), with their labels: test and calibration images without writing an LMDB."""
    plan = make_plan(seed=seed, height=spec.input.height, charset=spec.charset)
    samples = list(render_samples(plan, count))
    return [decode_image(data, label) for data, label in samples], [label for _, label in samples]


def save_preview(path: PathLike, samples: Sequence[Tuple[bytes, str]], plan: SynthPlan, columns: int = 4) -> None:
    """A contact sheet of encoded samples, shown twice their size with their labels underneath."""
    tile_height, cell_width, label_height = 2 * plan.height, 320, 26
    cell_height = tile_height + label_height + 8
    rows = max(1, math.ceil(len(samples) / columns))
    sheet = Image.new("RGB", (columns * cell_width, rows * cell_height), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (image_bytes, label) in enumerate(samples):
        bgr = cv2.imdecode(np.frombuffer(image_bytes, np.uint8), cv2.IMREAD_COLOR)
        tile = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        scale = min(tile_height / tile.height, (cell_width - 10) / tile.width)
        tile = tile.resize((max(1, round(tile.width * scale)), max(1, round(tile.height * scale))))
        x, y = (i % columns) * cell_width + 5, (i // columns) * cell_height + 4
        sheet.paste(tile, (x, y))
        label_font = next((f for f in plan.fonts if f.chars.issuperset(label)), plan.fonts[0])
        draw.text((x, y + tile_height + 2), label, fill="black", font=_open_font(label_font.path, 18))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(str(path))
