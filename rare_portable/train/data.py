"""Training batches as MindOCR's train pipeline makes them, in an order that is a pure function of the seed.

Which samples form step `s` of epoch `e` depends only on (seed, e, s): epoch `e` is a permutation drawn from
`default_rng([seed, e])`, and a curriculum step from `default_rng([seed, CURRICULUM_STREAM, global_step])`.
A resumed run therefore needs no saved RNG state to see exactly the batches an uninterrupted run sees, and
a data-parallel run gives rank `r` slice `r` of the global batch one process would have used.
"""
from __future__ import annotations

import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple

import numpy as np

from ..charset import Charset
from ..data.augment import AugmentSettings, augment
from ..data.datasets import find_datasets, open_all
from ..data.preprocess import preprocess_into
from ..data.samples import DataError, SampleSource, SkipLog, decoded
from ..labels import LabelStats, encode
from ..spec import InputSpec
from .distributed import Cluster
from .data_settings import CurriculumSettings, DataSettings
from .settings import TrainError

CURRICULUM_STREAM = 1
AUGMENT_STREAM = 2


def open_sources(settings: DataSettings) -> List[Tuple[str, SampleSource]]:
    """(name, dataset) for every LMDB under the data dirs (MindOCR's hierarchical LMDBDataset), or every
    image folder + label file pair (RecDataset), named as `rare eval` names them; a missing or empty
    location is an error naming it."""
    return open_all(find_datasets(settings.dirs, settings.label_files if settings.kind == "folder" else ()))


class TrainSet:
    """Every training entry as (source, position), after `sample_ratio` and `filter_max_len`; unreadable
    entries stay listed and are replaced when a batch meets them (BatchLoader)."""

    def __init__(self, settings: DataSettings, seed: int, max_text_len: int, need_lengths: bool):
        try:
            named = open_sources(settings)
        except DataError as e:
            raise TrainError(f"training data: {e}") from None
        self.names = [name for name, _ in named]
        self.sources = [source for _, source in named]
        refs = np.concatenate([np.stack([np.full(len(s), i), np.arange(len(s))], 1) for i, s in enumerate(self.sources)])
        if not len(refs):
            where = ", ".join(str(d) for d in settings.dirs)
            raise TrainError(f"the training set is empty: {where} hold(s) no samples; check train.dataset.dataset_root "
                             f"and data_dir")
        if settings.sample_ratio < 1.0:  # MindOCR keeps a fixed random subset
            keep = np.random.default_rng([seed]).permutation(len(refs))[:round(len(refs) * settings.sample_ratio)]
            refs = refs[np.sort(keep)]
        self.too_long_filtered = 0
        self.lengths: Optional[np.ndarray] = None
        if settings.filter_max_len or need_lengths:
            lengths = np.array([self._label_length(tuple(r)) for r in refs])
            if settings.filter_max_len:
                keep = lengths <= max_text_len
                self.too_long_filtered = int((~keep).sum())
                refs, lengths = refs[keep], lengths[keep]
            self.lengths = lengths
        if not len(refs):
            raise TrainError(f"no training sample is left after train.dataset.filter_max_len removed "
                             f"{self.too_long_filtered} labels longer than {max_text_len}")
        self.refs = refs

    def _label_length(self, ref: Tuple[int, int]) -> int:
        """Unreadable entries count as too long: never chosen by a curriculum, replaced in batches."""
        raw = self.sources[ref[0]].read_raw(int(ref[1]))
        return len(raw.label) if raw.skip is None and raw.label is not None else np.iinfo(np.int32).max

    def __len__(self) -> int:
        return len(self.refs)


class BatchPlan:
    """The sample positions (into `TrainSet.refs`) of every rank's batch at every step; drop-remainder epochs."""

    def __init__(self, num_samples: int, batch_size: int, cluster: Cluster, seed: int, shuffle: bool,
                 curriculum: Optional[CurriculumSettings] = None, lengths: Optional[np.ndarray] = None,
                 max_text_len: int = 0):
        self.batch_size = batch_size
        self.global_batch = batch_size * cluster.size
        self.rank = cluster.rank
        self.seed = seed
        self.shuffle = shuffle
        self.num_samples = num_samples
        self.steps_per_epoch = num_samples // self.global_batch
        if not self.steps_per_epoch:
            raise TrainError(f"{num_samples} training samples are fewer than one batch ({batch_size} x {cluster.size} "
                             f"process(es)); lower common.batch_size or add data")
        self.curriculum = curriculum
        self.lengths = lengths
        self.max_text_len = max_text_len
        self.curriculum_steps = 0
        if curriculum is not None:
            self.curriculum_steps = max(1, round(curriculum.epochs * self.steps_per_epoch))
            if not (lengths <= curriculum.start_max_len).any():
                raise TrainError(f"no training label has at most train.curriculum.start_max_len="
                                 f"{curriculum.start_max_len} characters; raise it")
        self._epoch_order: Tuple[int, Optional[np.ndarray]] = (-1, None)

    def max_len_at(self, global_step: int) -> Optional[int]:
        """The curriculum's label-length limit at this step; None once it is over (or without one)."""
        if global_step >= self.curriculum_steps:
            return None
        start = self.curriculum.start_max_len
        return start + (self.max_text_len - start) * global_step // self.curriculum_steps

    def positions(self, epoch: int, step: int) -> np.ndarray:
        global_step = epoch * self.steps_per_epoch + step
        limit = self.max_len_at(global_step)
        if limit is not None:
            eligible = np.flatnonzero(self.lengths <= limit)
            rng = np.random.default_rng([self.seed, CURRICULUM_STREAM, global_step])
            chosen = rng.choice(eligible, self.global_batch, replace=len(eligible) < self.global_batch)
        else:
            chosen = self._order(epoch)[step * self.global_batch:(step + 1) * self.global_batch]
        return chosen[self.rank * self.batch_size:(self.rank + 1) * self.batch_size]

    def _order(self, epoch: int) -> np.ndarray:
        if self._epoch_order[0] != epoch:
            order = (np.random.default_rng([self.seed, epoch]).permutation(self.num_samples) if self.shuffle
                     else np.arange(self.num_samples))
            self._epoch_order = (epoch, order)
        return self._epoch_order[1]


@dataclass
class Batch:
    images: np.ndarray  # [B, C, H, W] float32
    targets: np.ndarray  # [B, max_text_len + 2] int32
    labels: LabelStats
    skipped: SkipLog


class BatchLoader:
    """Reads, decodes, preprocesses and encodes batches in `workers` threads, in step order, ahead of training.

    LMDB reads are serialised (one read transaction per dataset); decoding and resizing run in parallel
    (OpenCV releases the GIL). A sample that cannot be read is replaced by the next entry that can."""

    def __init__(self, trainset: TrainSet, plan: BatchPlan, spec: InputSpec, charset: Charset, max_text_len: int,
                 lower: bool, workers: int = 1, augmentation: Optional[AugmentSettings] = None):
        self.trainset = trainset
        self.augmentation = augmentation
        self.plan = plan
        self.spec = spec
        self.charset = charset
        self.max_text_len = max_text_len
        self.lower = lower
        self.workers = max(1, workers)
        self._read_lock = threading.Lock()
        if spec.keep_ratio and not spec.padding:
            raise TrainError("training needs one image width per batch: RecResizeImg keeps the ratio only with padding")

    def load(self, epoch: int, step: int) -> Batch:
        positions = self.plan.positions(epoch, step)
        s = self.spec
        images = np.empty((len(positions), s.channels, s.height, s.width), dtype=np.float32)
        targets = np.empty((len(positions), self.max_text_len + 2), dtype=np.int32)
        labels, skipped = LabelStats(self.max_text_len), SkipLog()
        global_step = epoch * self.plan.steps_per_epoch + step
        for row, position in enumerate(positions):
            image, label = self._usable_sample(int(position), skipped)
            if self.augmentation is not None:  # one generator per sample of the global batch: exact on resume
                slot = self.plan.rank * self.plan.batch_size + row
                image = augment(image, self.augmentation, np.random.default_rng([self.plan.seed, AUGMENT_STREAM,
                                                                            global_step, slot]))
            preprocess_into(image, s, images[row])
            targets[row] = encode(label, self.charset, self.max_text_len, self.lower, labels)
        return Batch(images, targets, labels, skipped)

    def _usable_sample(self, position: int, skipped: SkipLog):
        refs = self.trainset.refs
        for offset in range(len(refs)):
            source, index = refs[(position + offset) % len(refs)]
            with self._read_lock:
                raw = self.trainset.sources[source].read_raw(int(index))
            sample = decoded(raw)
            if sample.skip is not None:
                skipped.record(sample.skip)
                continue
            return sample.image, sample.label
        raise TrainError(f"no training sample can be read ({skipped.summary()}): {skipped.messages[0]}")

    def batches(self, epoch: int, first_step: int) -> Iterator[Tuple[int, Batch]]:
        """(step, batch) from `first_step` to the end of the epoch, `workers + 1` batches loaded ahead."""
        steps = iter(range(first_step, self.plan.steps_per_epoch))
        with ThreadPoolExecutor(self.workers, thread_name_prefix="rare-batches") as pool:
            pending = deque()
            try:
                for step in steps:
                    pending.append((step, pool.submit(self.load, epoch, step)))
                    if len(pending) > self.workers:
                        break
                while pending:
                    step, future = pending.popleft()
                    following = next(steps, None)
                    if following is not None:
                        pending.append((following, pool.submit(self.load, epoch, following)))
                    yield step, future.result()
            finally:
                for _, future in pending:
                    future.cancel()

