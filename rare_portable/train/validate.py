"""Validation while training: MindOCR's multi-dataset eval through the one evaluation step
(rare_portable/evaluation.py), with the network's compiled forward as the recognizer.

The eval datasets are decoded once, when training starts, so a missing or empty set stops the run before
any step and each validation costs only preprocessing and the forward pass.
"""
from __future__ import annotations

from typing import Callable, Dict, List

import numpy as np

from ..data.datasets import NamedDataset
from ..data.samples import DataError, DecodedSamples
from ..evaluation import evaluate, summarise
from ..metrics import RecMetric
from ..recognizer import FixedBatchRecognizer
from ..spec import ModelSpec
from .data import open_sources
from .data_settings import DataSettings
from .settings import TrainError

Forward = Callable[[np.ndarray], np.ndarray]  # preprocessed batch [N, C, H, W] -> probabilities [N, T, C]


def load_eval_sets(settings: DataSettings) -> List[NamedDataset]:
    """The eval datasets with their first `sample_ratio` of entries decoded; one without a readable sample
    stops training before its first step."""
    try:
        named = open_sources(settings)
    except DataError as e:
        raise TrainError(f"validation data (eval.dataset): {e}; fix the path or set system.val_while_train: false") from None
    sets = []
    for name, source in named:
        samples = []
        for position in range(round(len(source) * settings.sample_ratio)):
            sample = source[position]
            if sample.skip is None:
                samples.append(sample)
            else:
                source.skipped.record(sample.skip)
        if not samples:
            raise TrainError(f"validation dataset {name} has no readable sample ({source.skipped.summary()}); "
                             f"fix eval.dataset or set system.val_while_train: false")
        decoded = DecodedSamples(samples, source.skipped)
        sets.append(NamedDataset(name, name, lambda decoded=decoded: decoded))
    return sets


class Validator:
    def __init__(self, sets: List[NamedDataset], spec: ModelSpec, batch_size: int, lower: bool,
                 metric_options: Dict[str, bool]):
        if spec.input.keep_ratio and not spec.input.padding:
            raise TrainError("validation batches need one width: the eval pipeline keeps the aspect ratio without "
                             "padding; set RecResizeNormForInfer padding: true or system.val_while_train: false")
        self.sets = sets
        self.spec = spec
        self.batch_size = batch_size
        self.lower = lower
        self.metric_options = metric_options

    @property
    def names(self) -> List[str]:
        return [s.name for s in self.sets]

    def evaluate(self, forward: Forward) -> Dict:
        """{'acc', 'norm_edit_distance'} (unweighted means) and per-dataset numbers under 'datasets'."""
        recognizer = FixedBatchRecognizer(self.spec, forward, self.batch_size)
        results = [evaluate(recognizer, eval_set, RecMetric(self.spec.charset, **self.metric_options),
                            self.batch_size, lower=self.lower) for eval_set in self.sets]
        mean = summarise(results)["mean"]
        return {
            "acc": mean["acc"], "norm_edit_distance": mean["norm_edit_distance"],
            "datasets": {r.name: {"acc": r.acc, "norm_edit_distance": r.norm_edit_distance, "total": r.samples,
                                  "correct": r.correct} for r in results},
        }
