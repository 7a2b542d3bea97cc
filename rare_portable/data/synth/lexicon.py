"""Word lists: reading a lexicon, the built-in one, and the case variants drawn from each word."""
from __future__ import annotations

from pathlib import Path
from typing import List, Tuple

from ...lexicon import read_words
from .base import PathLike, SynthError

BUILTIN_LEXICON = Path(__file__).parents[1] / "lexicon.txt"  # data/lexicon.txt: package data (pyproject.toml)

# lower: as the lexicon has it; mixed: also Capitalised and UPPER, labelled as drawn; caseless: drawn in all
# three, labelled in lower case, for a dictionary without upper case (MindOCR's 0-9a-z reads "EXIT" as "exit").
CASES = ("lower", "mixed", "caseless")


def read_lexicon(path: PathLike) -> List[str]:
    """One word per line; surrounding whitespace and blank lines are ignored."""
    return read_words(path, SynthError)


def builtin_lexicon() -> List[str]:
    return read_lexicon(BUILTIN_LEXICON)


def _case_variants(word: str, case: str) -> Tuple[str, ...]:
    if case == "lower":
        return (word.lower(),)
    # UPPER twice: signs, plates and shop fronts (most of IC15 and all of SVT) are upper case.
    variants = (word, word.lower(), word[:1].upper() + word[1:].lower(), word.upper())
    return tuple(dict.fromkeys(variants)) + ((word.upper(),) if case == "caseless" else ())
