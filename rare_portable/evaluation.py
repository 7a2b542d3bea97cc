"""Word accuracy and normalised edit distance per dataset, as MindOCR's multi-dataset eval: the one
evaluation step behind `rare eval`, validation while training and the benchmarks.

Samples that cannot be read are skipped and counted per dataset; a dataset that cannot be opened is a
result too (its error), so one bad path does not stop the others. The summary gives MindOCR's unweighted
mean over datasets, and the mean weighted by samples, because papers quote one or the other.
"""
from __future__ import annotations

import itertools
import time
from dataclasses import dataclass, field
from typing import Dict, List, NamedTuple, Optional, Sequence

from tqdm import tqdm

from .config import RareConfig
from .data.datasets import NamedDataset
from .data.samples import DataError, SkipLog
from .metrics import RecMetric
from .recognizer import Recognizer

MESSAGES_SHOWN = 3  # skip messages printed (and written to --json) per dataset
METRIC_FLAGS = ("ignore_space", "filter_ood", "lower", "ignore_symbol")  # MindOCR RecMetric options we honour


def metric_options(config: RareConfig) -> Dict[str, bool]:
    """The config's `metric:` flags; absent ones keep MindOCR's defaults (RecMetric's defaults)."""
    section = config.section("metric") or {}
    return {key: bool(section[key]) for key in METRIC_FLAGS if key in section}


def postprocess_lower(config: RareConfig) -> bool:
    """MindOCR's `RecAttnLabelDecode(lower=...)`: lower-case predictions only when the config asks."""
    return bool(config.section("postprocess.lower", False))


def config_metric(config: RareConfig) -> RecMetric:
    """A fresh metric with the config's dictionary and flags (one per dataset)."""
    return RecMetric(config.spec.charset, **metric_options(config))


class Reading(NamedTuple):
    """One evaluated sample: which one, its label, what was read, how sure, and whether the metric counts it."""
    index: int  # 1-based LMDB index, or label-file line number
    label: str
    text: str
    confidence: float
    correct: bool


@dataclass
class DatasetResult:
    name: str
    path: str
    entries: int = 0  # entries read (num-samples, or label lines), up to the limit
    samples: int = 0  # entries evaluated
    skipped: SkipLog = field(default_factory=SkipLog)
    error: Optional[str] = None  # why the dataset could not be opened at all
    correct: int = 0
    acc: Optional[float] = None
    norm_edit_distance: Optional[float] = None
    seconds: float = 0.0
    readings: List[Reading] = field(default_factory=list)  # in reading order

    @property
    def images_per_second(self) -> Optional[float]:
        return self.samples / self.seconds if self.samples and self.seconds > 0 else None

    def problem(self) -> str:
        """Why nothing of this dataset was evaluated, naming the path (and key), for the final error."""
        if self.error:
            return self.error
        if self.skipped.messages:
            return self.skipped.messages[0]
        return f"{self.path}: empty (no entries)"

    def to_json(self) -> dict:
        return {
            "name": self.name, "path": self.path, "entries": self.entries, "samples": self.samples,
            "skipped": self.skipped.total, "skip_reasons": dict(self.skipped.counts),
            "skip_messages": self.skipped.messages[:MESSAGES_SHOWN], "error": self.error,
            "correct": self.correct, "acc": self.acc, "norm_edit_distance": self.norm_edit_distance,
            "images_per_second": self.images_per_second,
        }


def evaluate(recognizer: Recognizer, dataset: NamedDataset, metric: RecMetric, batch_size: int,
             limit: Optional[int] = None, lower: bool = False) -> DatasetResult:
    """Read, preprocess, predict, decode and score one dataset; a dataset that cannot be opened is a result too."""
    result = DatasetResult(dataset.name, dataset.path)
    start = time.perf_counter()
    try:
        source = dataset.open()
    except DataError as e:
        result.error = str(e)
        return result
    result.entries = len(source) if limit is None else min(limit, len(source))
    try:
        with tqdm(total=result.entries, desc=dataset.name, unit="img", leave=False, disable=None) as progress:
            def labelled_images():
                for sample in itertools.islice(source, result.entries):
                    progress.update()
                    if sample.skip is None:
                        yield (sample.index, sample.label), sample.image

            for (index, label), (text, confidence) in recognizer.recognise_all(labelled_images(), batch_size,
                                                                               lower=lower):
                (correct,) = metric.update([text], [label])
                result.readings.append(Reading(index, label, text, confidence, correct))
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()  # one open LMDB environment per dataset, not one per dataset evaluated so far
    result.seconds = time.perf_counter() - start
    result.skipped = source.skipped
    if metric.total:
        scores = metric.result()
        result.samples, result.correct = scores["total"], scores["correct"]
        result.acc, result.norm_edit_distance = scores["acc"], scores["norm_edit_distance"]
    return result


def summarise(results: Sequence[DatasetResult]) -> Dict[str, dict]:
    """MindOCR's average (each dataset counts once) and the sample-weighted one, over scored datasets."""
    scored = [r for r in results if r.samples]
    samples = sum(r.samples for r in scored)
    return {
        "mean": {
            "acc": sum(r.acc for r in scored) / len(scored),
            "norm_edit_distance": sum(r.norm_edit_distance for r in scored) / len(scored),
            "datasets": len(scored),
        },
        "weighted_mean": {
            "acc": sum(r.correct for r in scored) / samples,
            "norm_edit_distance": sum(r.norm_edit_distance * r.samples for r in scored) / samples,
            "samples": samples,
        },
    }
