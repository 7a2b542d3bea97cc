"""Throughput of the eval data path: LMDB read -> image decode -> preprocess, on one core.

Builds a temporary LMDB of small word images (dark text rendered on a light, slightly noisy background),
once JPEG-encoded (like the public benchmark LMDBs) and once PNG, then times each stage cumulatively for
the 32x100 spec (rare_resnet34) and the 32x320 keep-ratio + padding spec (rare_resnet34_ch).
Best of --repeats passes, single process, OpenCV limited to one thread; the LMDB is in the page cache.

    python -m benchmarks.data_path [--samples 2000] [--repeats 3]      (from the repository root)

Prints the figures and writes them to benchmarks/results/data_path.json. The goal is >= 5000 img/s per core.
"""
from __future__ import annotations

import argparse
import json
import random
import string
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks import machine
from rare_portable.data.lmdb import LmdbDataset, write_lmdb
from rare_portable.data.preprocess import preprocess_into
from rare_portable.spec import InputSpec

GOAL_IMG_PER_S = 5000
BATCH_SIZE = 256
SPECS = {
    "32x100": InputSpec(height=32, width=100),
    "32x320_keep_ratio_padding": InputSpec(height=32, width=320, keep_ratio=True, padding=True),
}
RESULTS = Path(__file__).parent / "results" / "data_path.json"


def word_image(rng: random.Random) -> np.ndarray:
    """A 32 x (60..200) RGB crop with a random word, roughly what a text detector hands over."""
    width = rng.randint(60, 200)
    background = rng.randint(170, 250)
    image = np.full((32, width, 3), background, dtype=np.uint8)
    image += np.random.default_rng(rng.randrange(1 << 30)).integers(0, 6, image.shape, dtype=np.uint8)
    word = "".join(rng.choices(string.ascii_letters + string.digits, k=max(2, width // 16)))
    ink = tuple(rng.randint(0, 80) for _ in range(3))
    cv2.putText(image, word, (2, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.7, ink, 2, cv2.LINE_AA)
    return image


def encode(image: np.ndarray, fmt: str) -> bytes:
    params = [cv2.IMWRITE_JPEG_QUALITY, 90] if fmt == "jpg" else []
    ok, buf = cv2.imencode(f".{fmt}", image[:, :, ::-1], params)
    assert ok, "OpenCV could not encode a synthetic image"
    return buf.tobytes()


def best_rate(run, samples: int, repeats: int) -> float:
    """Images per second of the fastest pass; the first, untimed pass warms page cache and caches."""
    run()
    best = min(_timed(run) for _ in range(repeats))
    return samples / best


def _timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def read_only(dataset: LmdbDataset) -> None:
    for position in range(len(dataset)):
        dataset.read_raw(position)


def read_and_decode(dataset: LmdbDataset) -> None:
    for sample in dataset:
        assert sample.skip is None, sample.skip.message


def read_decode_preprocess(dataset: LmdbDataset, spec: InputSpec) -> None:
    out = np.empty((BATCH_SIZE, spec.channels, spec.height, spec.width), dtype=np.float32)
    for i, sample in enumerate(dataset):
        preprocess_into(sample.image, spec, out[i % BATCH_SIZE])


def measure(fmt: str, samples: int, repeats: int) -> dict:
    """Rates per stage for one image encoding."""
    rng = random.Random(0)
    encoded = [encode(word_image(rng), fmt) for _ in range(samples)]
    with tempfile.TemporaryDirectory() as tmp:
        write_lmdb(Path(tmp) / "words", ((buf, "word") for buf in encoded))
        dataset = LmdbDataset(Path(tmp) / "words")
        rates = {
            "read": best_rate(lambda: read_only(dataset), samples, repeats),
            "read+decode": best_rate(lambda: read_and_decode(dataset), samples, repeats),
        }
        for name, spec in SPECS.items():
            rates[f"read+decode+preprocess {name}"] = best_rate(
                lambda spec=spec: read_decode_preprocess(dataset, spec), samples, repeats
            )
        dataset.close()
    return {
        "mean_encoded_bytes": round(sum(map(len, encoded)) / samples),
        "img_per_s_per_core": {stage: round(rate) for stage, rate in rates.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    cv2.setNumThreads(1)  # per-core figures: no OpenCV worker threads
    described = machine.describe(opencv=cv2.__version__, numpy=np.__version__)
    report = {
        "goal_img_per_s_per_core": GOAL_IMG_PER_S,
        "samples": args.samples,
        "by_image_format": {fmt: measure(fmt, args.samples, args.repeats) for fmt in ("jpg", "png")},
    }
    report["machine"] = machine.finish(described)
    for fmt, result in report["by_image_format"].items():
        print(f"{fmt}, {result['mean_encoded_bytes']} bytes per image on average:")
        for stage, rate in result["img_per_s_per_core"].items():
            verdict = ("meets goal" if rate >= GOAL_IMG_PER_S else "below goal") if "preprocess" in stage else ""
            print(f"  {stage:<50} {rate:>8} img/s per core  {verdict}".rstrip())
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
