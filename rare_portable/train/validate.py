"""Validation while training: MindOCR's multi-dataset eval (RecMetric per dataset, unweighted mean).

The eval datasets are decoded once, when training starts, so a missing or empty set stops the run before
any step and each validation costs only preprocessing and the forward pass.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List

import numpy as np

from ..charset import Charset
from ..data.preprocess import batch as preprocess_batch
from ..data.samples import DataError, SkipLog
from ..labels import decode
from ..metrics import RecMetric
from ..spec import InputSpec
from .data import open_sources
from .settings import DataSettings, TrainError

Predict = Callable[[np.ndarray], np.ndarray]  # preprocessed batch [N, C, H, W] -> probabilities [N, T, C]


@dataclass
class EvalSet:
    name: str
    images: List[np.ndarray]  # decoded RGB HWC uint8
    labels: List[str]
    skipped: SkipLog


def load_eval_sets(settings: DataSettings) -> List[EvalSet]:
    try:
        named = open_sources(settings)
    except DataError as e:
        raise TrainError(f"validation data (eval.dataset): {e}; fix the path or set system.val_while_train: false") from None
    sets = []
    for name, source in named:
        count = round(len(source) * settings.sample_ratio)
        images, labels = [], []
        for position in range(count):
            sample = source[position]
            if sample.skip is None:
                images.append(sample.image)
                labels.append(sample.label)
            else:
                source.skipped.record(sample.skip)
        if not images:
            raise TrainError(f"validation dataset {name} has no readable sample ({source.skipped.summary()}); "
                             f"fix eval.dataset or set system.val_while_train: false")
        sets.append(EvalSet(name, images, labels, source.skipped))
    return sets


class Validator:
    def __init__(self, sets: List[EvalSet], spec: InputSpec, charset: Charset, batch_size: int, lower: bool,
                 metric_options: Dict[str, bool]):
        if spec.keep_ratio and not spec.padding:
            raise TrainError("validation batches need one width: the eval pipeline keeps the aspect ratio without "
                             "padding; set RecResizeNormForInfer padding: true or system.val_while_train: false")
        self.sets = sets
        self.spec = spec
        self.charset = charset
        self.batch_size = batch_size
        self.lower = lower
        self.metric_options = metric_options

    @property
    def names(self) -> List[str]:
        return [s.name for s in self.sets]

    def evaluate(self, predict: Predict) -> Dict:
        """{'acc', 'norm_edit_distance'} (unweighted means) and per-dataset numbers under 'datasets'."""
        per_set = {}
        for eval_set in self.sets:
            metric = RecMetric(self.charset, **self.metric_options)
            for start in range(0, len(eval_set.images), self.batch_size):
                images = eval_set.images[start:start + self.batch_size]
                probs = self._predict_padded(predict, preprocess_batch(images, self.spec))
                metric.update([text for text, _ in decode(probs, self.charset, lower=self.lower)],
                              eval_set.labels[start:start + self.batch_size])
            per_set[eval_set.name] = metric.result()
        return {
            "acc": float(np.mean([r["acc"] for r in per_set.values()])),
            "norm_edit_distance": float(np.mean([r["norm_edit_distance"] for r in per_set.values()])),
            "datasets": per_set,
        }

    def _predict_padded(self, predict: Predict, batch: np.ndarray) -> np.ndarray:
        """Every call sees the full batch size, so a compiled forward is compiled once."""
        count = len(batch)
        if count < self.batch_size:
            batch = np.concatenate([batch, np.zeros((self.batch_size - count,) + batch.shape[1:], batch.dtype)])
        return np.asarray(predict(batch))[:count]
