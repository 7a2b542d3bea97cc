"""Natural-image backgrounds and word lists for the renderer, from files that installed packages ship.

Real word crops sit on brick, foliage, signs and skies, not on flat colours; photographs that ship
inside scikit-image and matplotlib give such texture without a download. Frequent English words come
from `wordfreq` (its data ships in its wheel). Both are optional: without them the renderer keeps its
built-in lexicon and synthetic backgrounds, and says so when asked for them.
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import List, Optional, Tuple

import matplotlib

from ..errors import UserError

# Colour or textured photographs; skimage's line art, charts and microscopy are left out.
SKIMAGE_PHOTOS = (
    "astronaut.png", "brick.png", "camera.png", "chelsea.png", "coffee.png", "coins.png", "color.png",
    "grass.png", "gravel.png", "hubble_deep_field.jpg", "motorcycle_left.png", "motorcycle_right.png",
    "moon.png", "retina.jpg", "rocket.jpg", "page.png", "text.png", "ihc.png",
)
MATPLOTLIB_PHOTOS = ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png")
WORD = re.compile(r"[^\W\d_]+|\d+")  # letters only or digits only: wordfreq folds other digits to 0


class ResourceError(UserError, ValueError):
    """An optional resource the settings ask for is not installed; the message names the package."""


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    return Path(spec.origin).parent if spec is not None and spec.origin else None


def background_photos() -> Tuple[str, ...]:
    """Paths of the photographs found in installed packages (matplotlib's always; scikit-image's if present)."""
    found = [Path(matplotlib.get_data_path()) / "sample_data" / name for name in MATPLOTLIB_PHOTOS]
    skimage = _package_dir("skimage")
    if skimage is not None:
        found += [skimage / "data" / name for name in SKIMAGE_PHOTOS]
    return tuple(str(path) for path in found if path.is_file())


def frequent_words(count: Optional[int], language: str = "en") -> List[str]:
    """The `count` most frequent words of `language` (wordfreq's web, subtitle and book counts), letters only, most
    frequent first; None: every word wordfreq lists."""
    try:
        import wordfreq
    except ImportError:
        raise ResourceError("frequent words need the wordfreq package: pip install 'rare-portable[synth]'") from None
    listed = wordfreq.iter_wordlist(language) if count is None else wordfreq.top_n_list(language, count * 2)
    words = [w for w in listed if WORD.fullmatch(w) and not w.isdigit()]
    return words if count is None else words[:count]
