"""How the shipped model reads crops taller than wide: as they are, turned one fixed way (MindOCR's
`Rotate90IfVertical`), or read every way keeping the most confident reading (`direction: most_confident`).

    python -m benchmarks.tall_crops [-w rare_small_en] [--threshold 1.5 1.2]

Counts, per real held-out split, the crops whose height/width is above each threshold and how many of them
each orientation rule reads (MindOCR's metric); writes benchmarks/results/tall_crops.json. Why: vertical
words on signs run either way, so one fixed turn reads only some of them.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import machine  # noqa: E402
from benchmarks.shipped_report import relative_to_root  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
RULES = {"as is": None, "counterclockwise": "counterclockwise", "clockwise": "clockwise",
         "most_confident": "most_confident"}


def main(argv=None):
    from rare_portable.cli import resolve_model
    from rare_portable.config import load_config
    from rare_portable.data.lmdb import LmdbDataset, find_lmdb_datasets
    from rare_portable.data.preprocess import is_tall
    from rare_portable.evaluation import config_metric
    from rare_portable.spec import MOST_CONFIDENT
    from runtimes import open_runtime

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-w", "--weights", default="rare_small_en")
    parser.add_argument("-c", "--config")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "real" / "holdout")
    parser.add_argument("--threshold", type=float, nargs="+", default=[1.5, 1.2])
    parser.add_argument("--json", type=Path, default=RESULTS / "tall_crops.json")
    args = parser.parse_args(argv)

    config_path, weights = resolve_model(args.config, args.weights)
    config = load_config(config_path)
    splits = find_lmdb_datasets(args.data)
    if not splits:
        sys.exit(f"{args.data}: no LMDB dataset; make the real held-out splits as "
                 f"rare_portable/pretrained/rare_small_en.md says (rare lmdb split)")
    samples = {path.name: [s for s in LmdbDataset(path) if s.image is not None] for path in splits}
    rows = []
    for threshold in args.threshold:
        measure = dataclasses.replace(config.spec.input, rotate_vertical=(threshold, MOST_CONFIDENT))
        tall = {split: [s for s in items if is_tall(s.image, measure)] for split, items in samples.items()}
        for rule, direction in RULES.items():
            rotate = None if direction is None else (threshold, direction)
            spec = dataclasses.replace(config.spec, input=dataclasses.replace(  # orientation alone: no RereadPadded
                config.spec.input, rotate_vertical=rotate, reread_padded=None))
            runtime = open_runtime("torch", spec, weights, device="cpu")
            for split, crops in tall.items():
                metric = config_metric(config)
                metric.update([text for text, _ in runtime.recognise([s.image for s in crops])] if crops else [],
                              [s.label for s in crops])
                rows.append({"threshold": threshold, "rule": rule, "split": split, "tall": len(crops),
                             "samples": len(samples[split]), "correct": metric.result()["correct"] if crops else 0})
                print(f"h/w > {threshold}: {split} {len(crops)} of {len(samples[split])} tall; {rule}: "
                      f"{rows[-1]['correct']} read", flush=True)
    report = {"weights": str(args.weights), "config": relative_to_root(config_path), "machine": machine.describe(),
              "rows": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
