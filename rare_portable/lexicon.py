"""LexiconCorrect (a rare-portable extension): a reading that is not a word becomes the word the model nearly read.

A reading missing from the lexicon is replaced by the lexicon word that the model's own step probabilities make
likeliest among the words of its length differing in at most `max_substitutions` characters and, with
`max_skipped: 1`, the words one character longer (a character the model skipped, or stopped before), when that word
is at most e^`max_log_ratio` times less likely than the reading. With `prior: zipf` the lexicon lists its words most
frequent first and, among the words that pass, a word's likelihood is weighed by 1/rank (Zipf's law): "sale"
before "sme". With `word_margin`, a reading that is a word competes with the near words on the same terms and is
replaced by one whose likelihood x prior is over e^word_margin times its own: a rare word the model half read
("nem", "oft") gives way to a frequent one ("new", "off"). Scene text is mostly words, and many of the model's
misses on real crops are a letter or two off a frequent one ("hcllo", "warehous"); a reading the model is sure of,
one no word is near (a name), and one with a digit where the words have none (a code, a number) stay as they are.
It works on the probabilities every runtime returns, so every backend corrects alike.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Type

import numpy as np

from .charset import NUM_SPECIAL, STOP, Charset
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
        # A word is spelled one character per class (a dictionary line of several characters spells none).
        index = {c: i + NUM_SPECIAL for i, c in enumerate(charset.chars) if len(c) == 1}
        spellable = frozenset(index)
        spelled = [(rank, w) for rank, w in enumerate(dict.fromkeys(read_words(path)), 1) if spellable.issuperset(w)]
        if not spelled:
            raise LexiconError(f"lexicon {path}: none of its words can be spelled with the dictionary "
                               f"{charset.source}; use a lexicon in that dictionary's characters")
        # In a lexicon of words without digits (the shipped one), a reading with a digit is a code or a number: kept.
        self._kept_ids = frozenset() if any(c.isdigit() for c in set("".join(w for _, w in spelled))) else frozenset(
            i for c, i in index.items() if c.isdigit())
        # Compact class ids (uint8 for up to 256 classes): every correction compares the reading with each word.
        self._id_type = np.min_scalar_type(charset.num_classes)
        to_ids = str.maketrans({c: chr(i) for c, i in index.items()})

        def columns(words: List[str]) -> np.ndarray:
            """The words' class ids as columns [length, words]: a reading is compared with every word one position
            at a time, across all words at once."""
            ids = np.frombuffer("".join(words).translate(to_ids).encode("utf-32-le"), dtype=np.uint32)
            return ids.astype(self._id_type).reshape(len(words), -1).T.copy()

        by_length: Dict[int, List[Tuple[int, str]]] = {}
        for rank, word in spelled:
            by_length.setdefault(len(word), []).append((rank, word))
        zipf = spec.prior == "zipf"
        self._by_length = {n: ([w for _, w in ranked], columns([w for _, w in ranked]),
                               -np.log([r for r, _ in ranked]) if zipf else np.zeros(len(ranked)))
                           for n, ranked in by_length.items()}
        self.log_prior = {w: float(p) for words, _, prior in self._by_length.values() for w, p in zip(words, prior)}

    @property
    def words(self):
        """The lexicon's words (those the dictionary can spell), as a set view."""
        return self.log_prior.keys()

    def correct(self, probs: np.ndarray, ids: np.ndarray, text: str) -> Optional[Tuple[str, float]]:
        """The replacement (word, confidence) for one reading, or None to keep it.

        `probs` [T, num_classes] are the sample's step probabilities and `ids` the reading's class ids, one per
        step before STOP, that spell `text`. A word's likelihood is the product of its characters' probabilities at
        the steps it is aligned to, all read off the greedy path: an approximation (the decoder fed the read
        character, not the word's, to the steps after a change) that needs no second pass, so exported runtimes
        can use it."""
        length = len(ids)
        if not length or length >= len(probs) or not self._kept_ids.isdisjoint(ids.tolist()):
            return None
        own_prior = self.log_prior.get(text)  # None: not a word
        if own_prior is not None and self.spec.word_margin is None:
            return None
        ids = ids.astype(self._id_type)
        log_probs = np.log(probs[:length + 1] + TINY)
        # Every candidate is scored over the same steps, the reading's STOP step included: there a word of the
        # reading's length pays for stopping, as a word one longer pays for its last character.
        own = log_probs[np.arange(length), ids].sum() + log_probs[length, STOP]
        floor = own - self.spec.max_log_ratio
        likeliest = self._likeliest_bound(log_probs, own)
        if likeliest < floor:
            return None
        # A word read gives way only to a word whose prior makes up for the margin, and for what it is less likely:
        # the words are listed most frequent first, so those are the first few of each length.
        least_prior = None if own_prior is None else own + own_prior + self.spec.word_margin - likeliest
        if least_prior is not None and least_prior >= 0:  # no prior is above 1/1 (log 0)
            return None
        found = [best for best in (self._same_length(log_probs, ids, floor, least_prior),
                                   self._one_longer(log_probs, ids, floor, least_prior)) if best is not None]
        if not found:
            return None
        score, word, confidence = max(found, key=lambda best: best[0])
        # A word read stays unless a near word (the reading itself is one, at its own score) beats it by the margin.
        if own_prior is not None and score <= own + own_prior + self.spec.word_margin:
            return None
        return word, confidence

    def _likeliest_bound(self, log_probs: np.ndarray, own: float) -> float:
        """A log-likelihood no candidate is above: most readings are settled by it, at a fraction of the cost of
        scoring the near words. A candidate takes, at one step at least, a class the model ranked below the
        reading's (at best the runner-up); a word with its skipped character before the last step takes a step's
        runner-up and the best class at every other step but STOP's."""
        runner_up, best = np.partition(log_probs, -2, axis=1)[:, -2:].T
        likeliest = own - float((best - runner_up).min())
        if self.spec.max_skipped:
            likeliest = max(likeliest, own - float(log_probs[-1, STOP]) + float(runner_up[:-1].max()))
        return likeliest + 1e-9  # sums in another order round differently

    def _same_length(self, log_probs: np.ndarray, ids: np.ndarray, floor: float,
                     least_prior: Optional[float]) -> Optional[Tuple[float, str, float]]:
        """Words of the reading's length, character t at step t, then STOP where the reading stopped."""
        length = len(ids)
        if length not in self._by_length:
            return None
        words, columns, prior = self._frequent_enough(length, least_prior)
        near = np.flatnonzero(_count(columns != ids[:, None]) <= self.spec.max_substitutions)
        chars = log_probs[np.arange(length), columns[:, near].T][:, None, :]  # [near words, 1 alignment, length]
        return self._likeliest(words, near, prior, chars, np.ones(chars.shape[:2], dtype=bool), floor,
                               log_probs[length, STOP])

    def _one_longer(self, log_probs: np.ndarray, ids: np.ndarray, floor: float,
                    least_prior: Optional[float]) -> Optional[Tuple[float, str, float]]:
        """Words with a character k the reading skipped: the characters before it at their steps, it at step k
        (which saw the word's own prefix, so its probability there is the model's), and the rest one step early,
        where the reading has them; the skip counts as one of `max_substitutions`."""
        length = len(ids)
        if not self.spec.max_skipped or length + 1 not in self._by_length:
            return None
        words, columns, prior = self._frequent_enough(length + 1, least_prior)
        budget = self.spec.max_substitutions - 1
        differ_before = columns[:length] != ids[:, None]  # the reading's character t against the word's t
        differ_after = columns[1:] != ids[:, None]  # ... against the word's t + 1
        # Wherever the skip is, character t is compared with one of the two: where both differ it is a substitution.
        maybe = np.flatnonzero(_count(differ_before & differ_after) <= budget)
        differ_before, differ_after = differ_before[:, maybe].T, differ_after[:, maybe].T  # [maybe, length]
        zero = np.zeros((len(maybe), 1), dtype=np.int64)
        before = np.concatenate([zero, np.cumsum(differ_before, axis=1)], axis=1)  # substitutions before k
        after = np.concatenate([np.cumsum(differ_after[:, ::-1], axis=1)[:, ::-1], zero], axis=1)
        # A skip where the reading has the word's character is one step later ("hel" -> "hell" skipped at step 3,
        # not 2): scoring it at k would count the read character's probability twice.
        skips_here = np.concatenate([differ_before, np.ones_like(zero, dtype=bool)], axis=1)  # after the last: always
        allowed = skips_here & (before + after <= budget)  # [words, k]
        keep = allowed.any(axis=1)
        near, allowed = maybe[keep], allowed[keep]
        rows = columns[:, near].T  # [near words, length + 1]
        at_step = log_probs[np.arange(length + 1), rows]  # character t at step t (step `length`: STOP's)
        early = log_probs[np.arange(length), rows[:, 1:]]  # character t + 1 at step t
        chars = np.stack([np.concatenate([at_step[:, :k + 1], early[:, k:]], axis=1) for k in range(length + 1)],
                         axis=1)  # [near words, k, length + 1]
        return self._likeliest(words, near, prior, chars, allowed, floor)

    def _frequent_enough(self, length: int, least_prior: Optional[float]) -> Tuple[List[str], np.ndarray, np.ndarray]:
        """The words of `length` (words, class-id columns, log priors) whose prior is `least_prior` or above: the
        first ones, since each length lists its words most frequent first."""
        words, columns, prior = self._by_length[length]
        if least_prior is None:
            return words, columns, prior
        count = int(np.searchsorted(-prior, -least_prior, side="right"))
        return words[:count], columns[:, :count], prior[:count]

    @staticmethod
    def _likeliest(words: List[str], near: np.ndarray, prior: np.ndarray, chars: np.ndarray, allowed: np.ndarray,
                   floor: float, stop: float = 0.0) -> Optional[Tuple[float, str, float]]:
        """(likelihood x prior, word, confidence) of the best allowed (word, alignment) whose likelihood (its
        characters' and `stop`) is above `floor`; `chars` [near words, alignments, characters] are log-probabilities
        of the words `near` indexes."""
        if not len(near):
            return None
        likelihood = chars.sum(axis=2) + stop
        scores = np.where(allowed & (likelihood >= floor), likelihood + prior[near, None], -np.inf)
        word, alignment = np.unravel_index(int(scores.argmax()), scores.shape)
        if not np.isfinite(scores[word, alignment]):
            return None
        return float(scores[word, alignment]), words[near[word]], float(np.exp(chars[word, alignment]).mean())


def _count(differ: np.ndarray) -> np.ndarray:
    """Per word, how many of its positions differ: `differ` [positions, words] summed down its columns (in uint8:
    words are only compared with readings, which are shorter than the decoder's steps)."""
    return differ.view(np.uint8).sum(axis=0, dtype=np.uint8)


@functools.lru_cache(maxsize=4)
def load_lexicon(spec: LexiconSpec, charset: Charset) -> Lexicon:
    """Each lexicon is read once per process: every batch a Recognizer decodes uses it."""
    return Lexicon(spec, charset)
