"""Word accuracy and normalised edit distance with MindOCR's `RecMetric` semantics.

Per pair, in MindOCR's order: drop spaces from both (ignore_space), lower-case both (lower), drop
characters outside the dictionary from the label only (filter_ood), drop symbols from both (ignore_symbol).
Then a pair is correct when the strings are equal, and contributes Levenshtein distance / longer length
(0 for two empty strings). `norm_edit_distance` is reported as 1 - the mean of that, as MindOCR does.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Sequence, Tuple

from rapidfuzz.distance import Levenshtein

from .charset import Charset

# MindOCR's pattern, quirks included: '^' inside the class is literal, so '^' counts as a letter here.
SYMBOL = re.compile(r"[^A-Z^a-z^0-9^\u4e00-\u9fa5]")


@dataclass
class RecMetric:
    """Accumulates over batches; `result()` gives {'acc', 'norm_edit_distance', 'total', 'correct'}."""

    charset: Charset
    ignore_space: bool = True
    filter_ood: bool = True
    lower: bool = True
    ignore_symbol: bool = False
    correct: int = field(default=0, init=False)
    total: int = field(default=0, init=False)
    edit_distance_sum: float = field(default=0.0, init=False)

    def __post_init__(self):
        self._dictionary = frozenset(self.charset.chars)

    def normalise(self, pred: str, label: str) -> Tuple[str, str]:
        """The (pred, label) pair as compared."""
        if self.ignore_space:
            pred, label = pred.replace(" ", ""), label.replace(" ", "")
        if self.lower:
            pred, label = pred.lower(), label.lower()
        if self.filter_ood:
            label = "".join(c for c in label if c in self._dictionary)
        if self.ignore_symbol:
            pred, label = SYMBOL.sub("", pred), SYMBOL.sub("", label)
        return pred, label

    def is_correct(self, pred: str, label: str) -> bool:
        """Whether one pair counts as read (what `update` adds to `correct`)."""
        pred, label = self.normalise(pred, label)
        return pred == label

    def update(self, preds: Sequence[str], labels: Sequence[str]) -> List[bool]:
        """Add the pairs; returns whether each counts as read, so callers need not judge them again."""
        if len(preds) != len(labels):
            raise ValueError(f"{len(preds)} predictions for {len(labels)} labels; pass one prediction per label")
        judged = []
        for pred, label in zip(preds, labels):
            pred, label = self.normalise(pred, label)
            self.edit_distance_sum += Levenshtein.normalized_distance(pred, label)
            judged.append(pred == label)
            self.correct += judged[-1]
            self.total += 1
        return judged

    def result(self) -> Dict[str, float]:
        if self.total == 0:
            raise ValueError("no samples were evaluated, so accuracy is undefined; check the dataset is not empty")
        return {
            "acc": self.correct / self.total,
            "norm_edit_distance": 1.0 - self.edit_distance_sum / self.total,
            "total": self.total,
            "correct": self.correct,
        }


def rec_metric(preds: Iterable[str], labels: Iterable[str], charset: Charset, **options) -> Dict[str, float]:
    """One-shot `RecMetric`; options are its flags (ignore_space, filter_ood, lower, ignore_symbol)."""
    metric = RecMetric(charset, **options)
    metric.update(list(preds), list(labels))
    return metric.result()
