"""What every dataset yields, and how it accounts for samples it cannot use.

Datasets never raise for one bad entry: they yield it with a `Skip`, so a consumer in another process
(a DataLoader worker) still learns about it, and a full pass in-process fills `dataset.skipped`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from typing import Iterator, List, NamedTuple, Optional, Tuple

import numpy as np

from .preprocess import ImageDecodeError, decode_image
from ..errors import UserError

IMAGE_UNDECODABLE = "image does not decode"
IMAGE_KEY_MISSING = "image key missing"
LABEL_KEY_MISSING = "label key missing"
LABEL_NOT_UTF8 = "label is not UTF-8"
IMAGE_FILE_MISSING = "image file missing"
IMAGE_FILE_UNREADABLE = "image file unreadable"
MALFORMED_LINE = "malformed label line"
ENTRY_MISSING = "image and label keys missing"

MESSAGES_KEPT = 1000  # counts stay exact; only this many individual messages are kept


class DataError(UserError, ValueError):
    """A dataset that cannot be read at all; the message names the path and the fix."""


class Skip(NamedTuple):
    reason: str  # one of the constants above: what `SkipLog.counts` is keyed by
    message: str  # one line naming the dataset, the sample and the fix


class Sample(NamedTuple):
    index: int  # 1-based LMDB index, or label-file line number
    image: Optional[np.ndarray]  # HWC uint8 RGB; None when skipped
    label: Optional[str]
    skip: Optional[Skip] = None


class RawSample(NamedTuple):
    """A sample before decoding: what `rare lmdb create` copies without re-encoding."""

    index: int
    name: str  # how messages refer to the sample
    image_bytes: Optional[bytes]
    label: Optional[str]
    skip: Optional[Skip] = None


class SkipLog:
    """Per-reason counts and the first messages of one pass over a dataset."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()
        self.messages: List[str] = []

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def record(self, skip: Skip) -> None:
        self.counts[skip.reason] += 1
        if len(self.messages) < MESSAGES_KEPT:
            self.messages.append(skip.message)

    def summary(self) -> str:
        """'3 skipped (2 image does not decode, 1 label key missing)', or '0 skipped'."""
        if not self.counts:
            return "0 skipped"
        parts = ", ".join(f"{n} {reason}" for reason, n in self.counts.most_common())
        return f"{self.total} skipped ({parts})"


def decoded(raw: RawSample) -> Sample:
    """Decode a raw sample's image; an undecodable image becomes a skip, not an exception."""
    if raw.skip is not None:
        return Sample(raw.index, None, raw.label, raw.skip)
    try:
        return Sample(raw.index, decode_image(raw.image_bytes, raw.name), raw.label)
    except ImageDecodeError as e:
        return Sample(raw.index, None, raw.label, Skip(IMAGE_UNDECODABLE, str(e)))


class SampleSource(ABC):
    """Shared access and iteration for a dataset that can list its entries and read one undecoded."""

    def __init__(self) -> None:
        self.skipped = SkipLog()

    @abstractmethod
    def __len__(self) -> int:
        """Entries, usable or not."""

    @abstractmethod
    def read_raw(self, position: int) -> RawSample:
        """Entry `position` (0-based) undecoded; never raises for a bad entry."""

    def __getitem__(self, position: int) -> Sample:
        if not 0 <= position < len(self):
            raise IndexError(f"position {position} outside 0..{len(self) - 1}")
        return decoded(self.read_raw(position))

    def iter_with_bytes(self) -> Iterator[Tuple[Sample, Optional[bytes]]]:
        """Every entry decoded, with its encoded image; a full pass refills `skipped`."""
        self.skipped = SkipLog()
        for position in range(len(self)):
            raw = self.read_raw(position)
            sample = decoded(raw)
            if sample.skip is not None:
                self.skipped.record(sample.skip)
            yield sample, raw.image_bytes

    def __iter__(self) -> Iterator[Sample]:
        """Every entry decoded, skipped ones included; a full pass refills `skipped`."""
        for sample, _ in self.iter_with_bytes():
            yield sample


class DecodedSamples:
    """A dataset's usable samples, decoded once and kept in memory: validation while training reads
    them every epoch for the cost of the forward pass alone. Iterates like a SampleSource."""

    def __init__(self, samples: List[Sample], skipped: SkipLog):
        self.samples = samples
        self.skipped = skipped

    def __len__(self) -> int:
        return len(self.samples)

    def __iter__(self) -> Iterator[Sample]:
        return iter(self.samples)
