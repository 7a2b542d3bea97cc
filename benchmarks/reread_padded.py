"""What reading unsure crops again with their edges repeated (`RereadPadded`) gains, per margin and threshold.

    python -m benchmarks.reread_padded [-w rare_small_en] [--margin 0.1 0.25 0.4] [--below 0.8 0.9 0.95 1.0]

Reads every real held-out split once with the config's reading rules but without RereadPadded, then once per
margin with every crop read again (below_confidence 1.0): a crop read again has its edge pixels repeated margin x
its height on every side, and the more confident reading is kept. Which crops a lower below_confidence reads again
depends only on the first reading's confidence, so each threshold's readings follow from those two. Counts, per split,
the words read (MindOCR's metric), the crops read again, and the words won and lost against the single reading;
with --trained-on, also the shipped setting on crops the model was trained on. Writes
benchmarks/results/reread_padded.json. Why: real crops (IC15's above all) are cut close to the letters, and a
letter that touches the crop's edge is read worse than one with background around it, as rendered words have.
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


def main(argv=None):
    from rare_portable.cli import resolve_model
    from rare_portable.config import load_config
    from rare_portable.data.lmdb import LmdbDataset, find_lmdb_datasets
    from rare_portable.evaluation import config_metric
    from runtimes import open_runtime

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-w", "--weights", default="rare_small_en")
    parser.add_argument("-c", "--config")
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "real" / "holdout")
    parser.add_argument("--trained-on", type=Path, help="crops the model was trained on (data/real/finetune)")
    parser.add_argument("--margin", type=float, nargs="+", default=[0.1, 0.25, 0.4])
    parser.add_argument("--below", type=float, nargs="+", default=[0.8, 0.9, 0.95, 1.0])
    parser.add_argument("--json", type=Path, default=RESULTS / "reread_padded.json")
    args = parser.parse_args(argv)

    config_path, weights = resolve_model(args.config, args.weights)
    config = load_config(config_path)
    shipped = config.spec.input.reread_padded

    def reader(reread_padded):
        spec = dataclasses.replace(config.spec, input=dataclasses.replace(config.spec.input,
                                                                           reread_padded=reread_padded))
        return open_runtime("torch", spec, weights, device="cpu")

    metric = config_metric(config)

    def read(runtime, crops):
        """(confidence, correct) per crop, MindOCR's metric."""
        return [(confidence, metric.is_correct(text, sample.label))
                for (text, confidence), sample in zip(runtime.recognise([s.image for s in crops]), crops)]

    def measure(folder: Path, margins, belows, tag: str):
        splits = find_lmdb_datasets(folder)
        if not splits:
            sys.exit(f"{folder}: no LMDB dataset; make the real splits as "
                     f"rare_portable/pretrained/rare_small_en.md says (rare lmdb split)")
        crops = {path.name: [s for s in LmdbDataset(path) if s.image is not None] for path in splits}
        once = reader(None)
        first = {split: read(once, items) for split, items in crops.items()}
        rows = []
        for margin in margins:
            every = reader((margin, 1.0))
            again = {split: read(every, items) for split, items in crops.items()}
            for below in belows:
                for split, items in crops.items():
                    right_once = [right for _, right in first[split]]
                    right = [redone if confidence < below else kept
                             for (confidence, kept), (_, redone) in zip(first[split], again[split])]
                    rows.append({"data": tag, "split": split, "samples": len(items), "margin": margin,
                                 "below": below, "read_again": sum(c < below for c, _ in first[split]),
                                 "correct_once": sum(right_once), "correct": sum(right),
                                 "won": sum(r and not o for r, o in zip(right, right_once)),
                                 "lost": sum(o and not r for r, o in zip(right, right_once))})
                    r = rows[-1]
                    print(f"{tag} {split}: margin {margin}, below {below}: {r['read_again']} of {r['samples']} "
                          f"read again; {r['correct_once']} -> {r['correct']} read (+{r['won']} -{r['lost']})",
                          flush=True)
        return rows

    rows = measure(args.data, args.margin, args.below, "held-out")
    if args.trained_on and shipped:
        rows += measure(args.trained_on, [shipped[0]], [shipped[1]], "trained-on")
    report = {"weights": str(args.weights), "config": relative_to_root(config_path), "shipped": shipped,
              "machine": machine.describe(), "rows": rows}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
