"""The synthesis plan: every setting checked once, the words that fit the charset, the fonts that draw them."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

from ...charset import BUILTIN_LOWER_ALNUM, Charset
from ..resources import background_photos
from .base import PathLike, SynthError
from .fonts import BUILTIN_FONT_DIR, FontSurvey, SynthFont, font_files_in
from .lexicon import CASES, _case_variants, builtin_lexicon

IMAGE_FORMATS = ("png", "jpg")
MIN_HEIGHT = 8


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
