"""Running a plan: the worker pool, the LMDB writer, decoded words for tests, and the preview sheet."""
from __future__ import annotations

import math
import multiprocessing
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, List, Optional, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image, ImageDraw

from ..lmdb import write_lmdb
from ..preprocess import decode_image
from .base import PathLike, SynthError
from .fonts import _open_font
from .plan import SynthPlan, make_plan
from .render import WordRenderer

SAMPLES_PER_TASK = 64  # per inter-process message: big enough to amortise pickling, small for an even split


@dataclass(frozen=True)
class SynthResult:
    count: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else float("inf")


_worker_renderer: Optional[WordRenderer] = None  # one per worker process, set by its initializer


def _start_worker(plan: SynthPlan) -> None:
    global _worker_renderer
    cv2.setNumThreads(1)  # the pool already uses every core; OpenCV's own threads would only contend
    _worker_renderer = WordRenderer(plan)


def _render_task(indices: range) -> List[Tuple[bytes, str]]:
    return [_worker_renderer.encode(i) for i in indices]


def render_samples(plan: SynthPlan, count: int, workers: int = 1, start: int = 0) -> Iterator[Tuple[bytes, str]]:
    """Encoded samples `start` .. `start + count - 1`, in index order, rendered by up to `workers` processes."""
    workers = min(workers, math.ceil(count / SAMPLES_PER_TASK))  # starting a process costs ~0.5 s
    if workers <= 1:
        renderer = WordRenderer(plan)
        for index in range(start, start + count):
            yield renderer.encode(index)
        return
    stop = start + count
    tasks = [range(i, min(i + SAMPLES_PER_TASK, stop)) for i in range(start, stop, SAMPLES_PER_TASK)]
    # spawn, not fork: forked workers hung here (a fork copies locks held by threads such as OpenCV's pool).
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_start_worker, initargs=(plan,)) as pool:
        for rendered in pool.imap(_render_task, tasks):
            yield from rendered


def synthesize_lmdb(
    output: PathLike,
    plan: SynthPlan,
    count: int,
    workers: Optional[int] = None,
    overwrite: bool = False,
    on_sample: Optional[Callable[[bytes, str], None]] = None,
) -> SynthResult:
    """Render `count` samples into an LMDB at `output` (1-based keys); `on_sample` sees each as it is stored.

    An existing non-empty LMDB is refused unless `overwrite`; `workers` defaults to the CPU count.
    """
    if count < 1:
        raise SynthError(f"count must be at least 1, got {count}")
    workers = workers or os.cpu_count() or 1

    def observed(samples: Iterable[Tuple[bytes, str]]) -> Iterator[Tuple[bytes, str]]:
        for image_bytes, label in samples:
            if on_sample is not None:
                on_sample(image_bytes, label)
            yield image_bytes, label

    began = time.perf_counter()
    written = write_lmdb(output, observed(render_samples(plan, count, workers)), overwrite=overwrite)
    return SynthResult(written, time.perf_counter() - began)


def render_words(spec, count: int, seed: int) -> Tuple[List[np.ndarray], List[str]]:
    """`count` words for a model (`spec`'s input height and dictionary), decoded as a dataset's images are
    (RGB HWC uint8), with their labels: test and calibration images without writing an LMDB."""
    plan = make_plan(seed=seed, height=spec.input.height, charset=spec.charset)
    samples = list(render_samples(plan, count))
    return [decode_image(data, label) for data, label in samples], [label for _, label in samples]


def save_preview(path: PathLike, samples: Sequence[Tuple[bytes, str]], plan: SynthPlan, columns: int = 4) -> None:
    """A contact sheet of encoded samples, shown twice their size with their labels underneath."""
    tile_height, cell_width, label_height = 2 * plan.height, 320, 26
    cell_height = tile_height + label_height + 8
    rows = max(1, math.ceil(len(samples) / columns))
    sheet = Image.new("RGB", (columns * cell_width, rows * cell_height), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (image_bytes, label) in enumerate(samples):
        bgr = cv2.imdecode(np.frombuffer(image_bytes, np.uint8), cv2.IMREAD_COLOR)
        tile = Image.fromarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        scale = min(tile_height / tile.height, (cell_width - 10) / tile.width)
        tile = tile.resize((max(1, round(tile.width * scale)), max(1, round(tile.height * scale))))
        x, y = (i % columns) * cell_width + 5, (i // columns) * cell_height + 4
        sheet.paste(tile, (x, y))
        label_font = next((f for f in plan.fonts if f.chars.issuperset(label)), plan.fonts[0])
        draw.text((x, y + tile_height + 2), label, fill="black", font=_open_font(label_font.path, 18))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(str(path))
