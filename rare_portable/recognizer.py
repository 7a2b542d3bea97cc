"""Image in, word out: the one preprocess -> predict -> decode path every reader of images uses.

`rare eval`, `rare predict`, `rare parity` and validation while training all read words through a
`Recognizer`; a runtime (runtimes/) is a Recognizer whose `_predict` runs a framework or an exported file,
and training validation wraps its compiled forward in `FixedBatchRecognizer`. The batch is checked here,
before any framework sees it, so every one of them rejects the same mistake with the same message.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple, TypeVar

import numpy as np

from .data.preprocess import batch as preprocess_batch, content_width, padded_for_reread, turned_both_ways
from .labels import decode
from .lexicon import load_lexicon
from .spec import ModelSpec, SpecError

# `recognise_all` sorts images by width within windows of this many batches: wide enough to group similar
# widths, small enough that a large folder is never held in memory at once.
SORT_WINDOW_BATCHES = 16
Key = TypeVar("Key")


class Recognizer(ABC):
    """Reads words with one RARE model; subclasses implement `_predict` on an already checked batch."""

    name: str

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        # Read once, here: a lexicon that cannot be used fails when the runtime opens, not after a first batch.
        self.lexicon = load_lexicon(spec.lexicon, spec.charset) if spec.lexicon is not None else None

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities [N, steps, num_classes] float32 for a batch [N, C, H, W] from `preprocess`."""
        batch = self.check_batch(batch)
        expected = (len(batch), self.spec.head.num_steps, self.spec.num_classes)
        if not len(batch):
            return np.zeros(expected, dtype=np.float32)
        probs = np.asarray(self._predict(batch), dtype=np.float32)
        if probs.shape != expected:
            raise RuntimeError(f"{self.name} returned probabilities of shape {list(probs.shape)}, expected "
                               f"{list(expected)} (batch, head.num_steps, num_classes): the model does not match "
                               f"config {self.spec.name}")
        return probs

    def recognise(self, images: Sequence[np.ndarray], lower: bool = False) -> List[Tuple[str, float]]:
        """(text, confidence) per RGB HWC uint8 image: the one preprocessing, `predict`, MindOCR's decoding;
        under Rotate90IfVertical "most_confident" or RereadPadded, `_keep_most_confident` on top."""
        readings = self._read(images, lower)
        self._keep_most_confident(images, readings, max(len(images), 1), lower)
        return readings

    def _read(self, images: Sequence[np.ndarray], lower: bool) -> List[Tuple[str, float]]:
        return decode(self.predict(preprocess_batch(images, self.spec.input)), self.spec.charset, lower, self.lexicon)

    def _keep_most_confident(self, images: Sequence[np.ndarray], readings: List[Tuple[str, float]],
                             batch_size: int, lower: bool) -> None:
        """Other readings of some crops, read together in batches of `batch_size`; a more confident one replaces
        the one in `readings` (the first reading wins a tie). Under Rotate90IfVertical "most_confident", every
        tall crop turned each way; then, under RereadPadded, every crop still below its confidence, padded in
        the orientation that gave its reading."""
        read_from = list(images)
        self._read_instead(
            [(i, image) for i, crop in enumerate(images) for image in turned_both_ways(crop, self.spec.input)],
            readings, read_from, batch_size, lower)
        if self.spec.input.reread_padded is not None:
            below = self.spec.input.reread_padded[1]
            self._read_instead([(i, padded_for_reread(read_from[i], self.spec.input))
                                for i in range(len(images)) if readings[i][1] < below],
                               readings, read_from, batch_size, lower)

    def _read_instead(self, others: List[Tuple[int, np.ndarray]], readings: List[Tuple[str, float]],
                      read_from: List[np.ndarray], batch_size: int, lower: bool) -> None:
        """Reads (crop index, image) pairs in batches; a more confident reading replaces `readings[i]`, and its
        image `read_from[i]`."""
        for start in range(0, len(others), batch_size):
            chunk = others[start:start + batch_size]
            for (i, image), reading in zip(chunk, self._read([image for _, image in chunk], lower)):
                if reading[1] > readings[i][1]:
                    readings[i], read_from[i] = reading, image

    def recognise_all(self, items: Iterable[Tuple[Key, np.ndarray]], batch_size: int,
                      lower: bool = False) -> Iterator[Tuple[Key, Tuple[str, float]]]:
        """(key, (text, confidence)) per (key, RGB HWC uint8 image), in input order, `batch_size` per `predict`.

        With a ratio-keeping resize and padding, images are batched in order of their resized width (within
        windows of SORT_WINDOW_BATCHES batches) so each batch holds similar widths. Every runtime here takes
        the full padded width (MindOCR pads to input.width, and trimming would change the outputs), so the
        results are those of unsorted batches."""
        window: List[Tuple[Key, np.ndarray]] = []
        for item in items:
            window.append(item)
            if len(window) == batch_size * SORT_WINDOW_BATCHES:
                yield from self._recognise_window(window, batch_size, lower)
                window = []
        if window:
            yield from self._recognise_window(window, batch_size, lower)

    def _recognise_window(self, window: List[Tuple[Key, np.ndarray]], batch_size: int,
                          lower: bool) -> List[Tuple[Key, Tuple[str, float]]]:
        order = list(range(len(window)))
        if self.spec.input.keep_ratio and self.spec.input.padding:
            order.sort(key=lambda i: content_width(window[i][1], self.spec.input))
        results: List[Optional[Tuple[str, float]]] = [None] * len(window)
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            for i, result in zip(chunk, self._read([window[i][1] for i in chunk], lower)):
                results[i] = result
        # The window's other readings fill whole batches, not a padded batch per batch of crops.
        self._keep_most_confident([image for _, image in window], results, batch_size, lower)
        return [(key, result) for (key, _), result in zip(window, results)]

    def check_batch(self, batch: np.ndarray) -> np.ndarray:
        """The batch as a C-contiguous float32 array; float64 is narrowed, anything else is refused."""
        if not isinstance(batch, np.ndarray):
            raise SpecError(f"{self.name}: expected a numpy float32 array, got {type(batch).__name__}")
        if batch.dtype == np.float64:
            batch = batch.astype(np.float32)
        elif batch.dtype != np.float32:
            raise SpecError(f"{self.name}: expected a float32 batch, got {batch.dtype}; integer pixels must go "
                            f"through rare_portable.data.preprocess, which normalises them")
        self.spec.check_input_shape(batch.shape)
        return np.ascontiguousarray(batch)

    @abstractmethod
    def _predict(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities for a batch `check_batch` accepted (never empty)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} {self.spec.name}>"


def padded_to_built(batch: np.ndarray, built: Iterable[int]) -> np.ndarray:
    """`batch` with zero images appended up to the smallest size in `built` that holds it (as it is where
    none does). Models built per batch size (MindSpore Lite, MindIR: seconds each; a compiled training
    forward) run a dataset's last, smaller batch on a model they have instead of building another; no
    sample sees another, so the caller keeps the first len(batch) outputs."""
    sizes = [size for size in built if size >= len(batch)]
    if not sizes or min(sizes) == len(batch):
        return batch
    return np.concatenate([batch, np.zeros((min(sizes) - len(batch), *batch.shape[1:]), batch.dtype)])


class FixedBatchRecognizer(Recognizer):
    """A forward function compiled for one batch size (validation while training): every call gets that
    size, so the graph is compiled once."""

    name = "training network"

    def __init__(self, spec: ModelSpec, forward: Callable[[np.ndarray], np.ndarray], batch_size: int):
        super().__init__(spec)
        self.forward = forward
        self.batch_size = batch_size

    def _predict(self, batch: np.ndarray) -> np.ndarray:
        return np.asarray(self.forward(padded_to_built(batch, [self.batch_size])))[:len(batch)]
