"""LexiconCorrect (a rare-portable extension): a reading that is not a word becomes the word the model nearly read.

A reading missing from the lexicon is replaced by the lexicon word of the same length, differing in at most
`max_substitutions` characters, that the model's own step probabilities make likeliest, when that word is at most
e^`max_log_ratio` times less likely than the reading. Scene text is mostly words, and many of the model's misses on
real crops are a letter or two off a frequent one ("hcllo"); a reading the model is sure of, one no word is near
(a name), and one with a digit where the words have none (a code, a number) stay as they are. It works on the probabilities every runtime returns, so every backend
corrects alike.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Type

import numpy as np

from .charset import NUM_SPECIAL, Charset
from .errors import UserError
from .files import PathLike
from .spec import LexiconSpec

SHIPPED_LEXICONS = Path(__file__).with_name("lexicons")  # en.txt: python -m scripts.make_lexicon (package data)
TINY = 1e-12  # log(0) guard: a probability a float32 softmax rounded to zero


class LexiconError(UserError, ValueError):
    """A lexicon that cannot be used; the message names the file and the fix."""


def read_words(path: PathLike, error: Type[UserError] = LexiconError) -> List[str]:
    """One word per line, UTF-8; surrounding whitespace and blank lines are ignored."""
    path = Path(path)
    if not path.is_file():
        raise error(f"lexicon {path} not found; pass a text file with one word per line")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise error(f"lexicon {path} is not UTF-8 ({e.reason}); save it as UTF-8") from None
    words = [line.strip() for line in text.splitlines() if line.strip()]
    if not words:
        raise error(f"lexicon {path} has no words; put one word per line")
    return words


def lexicon_path(words: str) -> Path:
    """A shipped lexicon's name (`en`) or a word-list file."""
    shipped = SHIPPED_LEXICONS / f"{words}.txt"
    if "/" not in words and shipped.is_file():
        return shipped
    path = Path(words)
    if not path.is_file():
        names = ", ".join(sorted(p.stem for p in SHIPPED_LEXICONS.glob("*.txt")))
        raise LexiconError(f"lexicon {words} not found: set postprocess.lexicon.words to a shipped lexicon "
                           f"({names}) or a text file with one word per line")
    return path


class Lexicon:
    """The words a dictionary can spell, grouped by length as class-id arrays for scoring all at once."""

    def __init__(self, spec: LexiconSpec, charset: Charset):
        self.spec = spec
        path = lexicon_path(spec.words)
        index = {c: i + NUM_SPECIAL for i, c in enumerate(charset.chars)}
        spelled = [w for w in dict.fromkeys(read_words(path)) if all(c in index for c in w)]
        if not spelled:
            raise LexiconError(f"lexicon {path}: none of its words can be spelled with the dictionary "
                               f"{charset.source}; use a lexicon in that dictionary's characters")
        self.words = frozenset(spelled)
        # In a lexicon of words without digits (the shipped one), a reading with a digit is a code or a number: kept.
        self._kept_ids = frozenset() if any(c.isdigit() for w in spelled for c in w) else frozenset(
            i for c, i in index.items() if c.isdigit())
        by_length: Dict[int, List[str]] = {}
        for word in spelled:
            by_length.setdefault(len(word), []).append(word)
        self._by_length = {n: (words, np.array([[index[c] for c in w] for w in words], dtype=np.int64))
                           for n, words in by_length.items()}

    def correct(self, probs: np.ndarray, ids: np.ndarray) -> Optional[Tuple[str, float]]:
        """The replacement (word, confidence) for one reading, or None to keep it.

        `probs` [T, num_classes] are the sample's step probabilities and `ids` the reading's class ids, one per
        step before STOP. A word's likelihood is the product of its characters' probabilities at their steps and
        STOP's after them, all read off the greedy path: an approximation (the decoder fed the read character,
        not the word's, to the steps after a change) that needs no second pass, so exported runtimes can use it."""
        length = len(ids)
        if not length or length >= len(probs) or length not in self._by_length or not self._kept_ids.isdisjoint(
                ids.tolist()):
            return None
        words, candidates = self._by_length[length]
        near = (candidates != ids).sum(axis=1) <= self.spec.max_substitutions
        if not near.any():
            return None
        steps = np.arange(length)
        log_probs = np.log(probs[:length] + TINY)
        reading = log_probs[steps, ids].sum()
        scores = np.where(near, log_probs[steps, candidates].sum(axis=1), -np.inf)
        best = int(scores.argmax())
        # STOP's probability at the same step is common to every candidate and the reading, so it cancels.
        if reading - scores[best] > self.spec.max_log_ratio:
            return None
        return words[best], float(probs[steps, candidates[best]].mean())


@functools.lru_cache(maxsize=4)
def load_lexicon(spec: LexiconSpec, charset: Charset) -> Lexicon:
    """Each lexicon is read once per process: every batch a Recognizer decodes uses it."""
    return Lexicon(spec, charset)
