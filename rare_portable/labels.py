"""Label ids for the attention head, with MindOCR's `RecAttnLabelEncode` / `RecAttnLabelDecode` semantics.

Encoding: [GO] + (dictionary index + 2 per kept character) + [STOP] + GO(=0) padding, `max_text_len + 2` long.
MindOCR never drops a sample for its label: a label that is empty, longer than `max_text_len`, or has no
dictionary character becomes the empty target [GO, STOP, 0, ...]. We do the same and count these cases in
`LabelStats` so the caller can say how many labels were affected.

Decoding: greedy argmax, text up to the first STOP (none found: empty text, confidence 0, as MindOCR);
confidence is the mean max-probability of every step before STOP (STOP's own step is not included).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Dict, List, Optional, Tuple

import numpy as np

from .charset import GO, NUM_SPECIAL, STOP, Charset

if TYPE_CHECKING:
    from .lexicon import Lexicon

TOO_LONG = "too_long"
NO_VALID_CHARS = "no_valid_chars"
OOD_CHARS_DROPPED = "ood_chars_dropped"


@dataclass
class LabelStats:
    """What encoding did to a stream of labels, for one warning line instead of silence."""

    max_text_len: int
    total: int = 0
    counts: Counter = field(default_factory=Counter)

    def warnings(self) -> List[str]:
        """One line per kind of altered label; empty when every label was encoded as written."""
        lines = []
        if self.counts[TOO_LONG]:
            lines.append(
                f"{self.counts[TOO_LONG]} of {self.total} labels longer than max_text_len={self.max_text_len} "
                f"were encoded as empty targets (MindOCR behaviour); raise common.max_text_len to keep them"
            )
        if self.counts[NO_VALID_CHARS]:
            lines.append(
                f"{self.counts[NO_VALID_CHARS]} of {self.total} labels had no dictionary character and were "
                f"encoded as empty targets; check the dictionary matches the data"
            )
        if self.counts[OOD_CHARS_DROPPED]:
            lines.append(
                f"{self.counts[OOD_CHARS_DROPPED]} of {self.total} labels lost characters that are not in the "
                f"dictionary; use a dictionary that covers them if they matter"
            )
        return lines


_CLASS_IDS_CACHE: Dict[int, Tuple[Charset, Dict[str, int]]] = {}
_CLASS_IDS_CACHE_SIZE = 8


def _class_ids(charset: Charset) -> Dict[str, int]:
    """Cached by identity: hashing a 6000-character Charset costs ten times encoding a label.

    The cache holds each charset, so its id cannot be reused by another object while cached.
    """
    cached = _CLASS_IDS_CACHE.get(id(charset))
    if cached is None:
        if len(_CLASS_IDS_CACHE) >= _CLASS_IDS_CACHE_SIZE:
            _CLASS_IDS_CACHE.clear()
        cached = _CLASS_IDS_CACHE[id(charset)] = (charset, {c: i + NUM_SPECIAL for i, c in enumerate(charset.chars)})
    return cached[1]


def encode(
    text: str, charset: Charset, max_text_len: int, lower: bool, stats: Optional[LabelStats] = None
) -> np.ndarray:
    """int32 ids of length `max_text_len + 2`; `ids[1] == STOP` marks an empty target (see module doc)."""
    ids = _class_ids(charset)
    kept: List[int] = []
    problem = None
    # MindOCR measures the label as written, before lower-casing and dictionary filtering.
    if len(text) > max_text_len:
        problem = TOO_LONG
    else:
        chars = text.lower() if lower else text
        kept = [ids[c] for c in chars if c in ids]
        if not kept:
            problem = NO_VALID_CHARS
        elif len(kept) > max_text_len:  # lower() can lengthen text (e.g. 'İ' -> 'i̇')
            problem, kept = TOO_LONG, []
        elif len(kept) < len(chars):
            problem = OOD_CHARS_DROPPED
    if stats is not None:
        stats.total += 1
        if problem:
            stats.counts[problem] += 1
    encoded = np.full(max_text_len + 2, GO, dtype=np.int32)
    encoded[1 : len(kept) + 1] = kept
    encoded[len(kept) + 1] = STOP
    return encoded


def decode_ids(
    ids: np.ndarray, charset: Charset, step_probs: Optional[np.ndarray] = None, lower: bool = False
) -> List[Tuple[str, float]]:
    """(text, confidence) per row of `ids` [N, T]; `step_probs` [N, T] are the per-step max probabilities.

    GO ids before STOP contribute to the confidence (as in MindOCR) but never to the text.
    Without `step_probs` the confidence is 0.0.
    """
    ids = np.asarray(ids)
    results = []
    for row, token_ids in enumerate(ids.tolist()):
        try:
            stop_at = token_ids.index(STOP)
        except ValueError:
            results.append(("", 0.0))  # never stopped: MindOCR reads nothing
            continue
        text = "".join(charset.chars[i - NUM_SPECIAL] for i in token_ids[:stop_at] if i >= NUM_SPECIAL)
        # An immediate STOP leaves no steps to average; MindOCR's mean would be NaN, we report 0.0.
        confidence = float(np.mean(step_probs[row, :stop_at])) if step_probs is not None and stop_at else 0.0
        results.append((text.lower() if lower else text, confidence))
    return results


def decode(probs: np.ndarray, charset: Charset, lower: bool = False,
           lexicon: Optional["Lexicon"] = None) -> List[Tuple[str, float]]:
    """(text, confidence) per sample from head probabilities [N, T, num_classes]; with a `lexicon`
    (LexiconCorrect), a reading may become the word the model nearly read."""
    probs = np.asarray(probs)
    if probs.ndim != 3 or probs.shape[2] != charset.num_classes:
        raise ValueError(
            f"decode expects probabilities [N, T, {charset.num_classes}] for dictionary {charset.source}, "
            f"got shape {list(probs.shape)}; the model and dictionary do not match"
        )
    ids = probs.argmax(axis=2)
    results = decode_ids(ids, charset, probs.max(axis=2))
    if lexicon is not None:
        for row, (text, _) in enumerate(results):
            # A GO inside the reading leaves its characters off their steps: such a reading is kept as it is.
            if text and ids[row, len(text)] == STOP:
                results[row] = lexicon.correct(probs[row], ids[row, :len(text)], text) or results[row]
    return [(text.lower(), confidence) for text, confidence in results] if lower else results

