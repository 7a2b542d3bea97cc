"""The evaluation report of a candidate for the shipped model, and whether it beats the one shipped now.

Scores the weights on the real held-out words (`rare lmdb split` of ../shared/real_validation: the last
quarter of IC15_train and IIIT5k_train, all of SVT_train; none of them trained on), on rendered held-out
words (the training renderer, another seed; read without the config's lexicon, which is the renderer's word
list), and on the 16 crops in ../shared/real_words (`rare predict`), all with MindOCR's metric through
`rare eval`/`rare predict`; the real held-out words are also read without the lexicon. Then writes the report.

    python -m benchmarks.shipped_report -w runs/rare_small_en/finetune/best.ckpt [--ship]

--ship copies the weights (as .safetensors) and the report into rare_portable/pretrained/ when both the mean
of the three real held-out splits and the share of all their words read are higher than the shipped
report's (or nothing is shipped yet): a gain on the small SVT split alone does not replace a model that
reads more words. With -c naming another config (a network grown deeper, say), that config ships too.
--ship --same-model instead ships weights that read exactly as many words as the shipped ones on every real
held-out split and of ../shared/real_words: the same model stored another way (float16, say).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import machine
from rare_portable.config import load_config
from rare_portable.evaluation import metric_options
from rare_portable.metrics import rec_metric

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
PRETRAINED = ROOT / "rare_portable" / "pretrained"
RARE = [sys.executable, "-c", "from rare_portable.cli import main; main()"]
NO_LEXICON = "postprocess.lexicon=null"  # LexiconCorrect off (rare_portable/lexicon.py)


def rare(*args) -> None:
    subprocess.run([*RARE, *map(str, args)], cwd=ROOT, check=True)


def evaluate(config: str, weights: str, data: Path, *opts: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "eval.json"
        rare("eval", "-c", config, "-w", weights, "--data", data, "--json", path, *(a for o in opts for a in ("--opt", o)))
        report = json.loads(path.read_text())
    return {"datasets": {d["name"]: {k: d[k] for k in ("samples", "correct", "acc", "norm_edit_distance")}
                         for d in report["datasets"]},
            "mean": report["mean"], "weighted_mean": report["weighted_mean"], "metric": report["metric"]}


def real_words(config: str, weights: str) -> dict:
    labels = dict(line.split("\t", 1) for line in (SHARED / "real_words" / "labels.tsv").read_text().splitlines()
                  if "\t" in line)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "rec_results.txt"
        rare("predict", SHARED / "real_words", "-c", config, "-w", weights, "-o", out)
        predicted = {name: json.loads(text) for name, text in
                     (line.split("\t")[:2] for line in out.read_text().splitlines())}

    rows = {name: {"label": label.strip(), "predicted": predicted.get(name, "")} for name, label in labels.items()}
    score = rec_metric([r["predicted"] for r in rows.values()], [r["label"] for r in rows.values()],
                       load_config(config).spec.charset,
                         **metric_options(load_config(config)))  # MindOCR's metric, as `rare eval` scores
    return {"correct": score["correct"], "total": len(rows), "words": rows}


def relative_to_root(path: str) -> str:
    """`path` as the report shows it: from the project root where it lies inside, so no machine's folder shows."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(ROOT)) if resolved.is_relative_to(ROOT) else path


def word_counts(report: dict) -> dict:
    """Words read per real held-out split and of real_words: what --same-model compares."""
    counts = {name: d["correct"] for name, d in report["real_holdout"]["datasets"].items()}
    return {**counts, "real_words": report["real_words"]["correct"]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-w", "--weights", required=True)
    parser.add_argument("-c", "--config", default=str(PRETRAINED / "rare_small_en.yaml"))
    parser.add_argument("--real-holdout", type=Path, default=ROOT / "data" / "real" / "holdout")
    parser.add_argument("--rendered-holdout", type=Path, default=ROOT / "data" / "shipped" / "heldout")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "shipped_report.json")
    parser.add_argument("--ship", action="store_true")
    parser.add_argument("--same-model", action="store_true",
                        help="with --ship: ship when every real split and real_words read exactly as the shipped")
    parser.add_argument("--name", default="rare_small_en")
    args = parser.parse_args(argv)
    if args.same_model and not args.ship:
        parser.error("--same-model chooses how --ship decides; add --ship, or leave it out to only write the report")

    # Rendered words come from the word list the shipped lexicon is made of: read without it, they judge the model.
    report = {
        "weights": args.weights, "config": relative_to_root(args.config), "machine": machine.describe(),
        "real_holdout": evaluate(args.config, args.weights, args.real_holdout),
        "real_holdout_without_lexicon": evaluate(args.config, args.weights, args.real_holdout, NO_LEXICON),
        "rendered_holdout": evaluate(args.config, args.weights, args.rendered_holdout, NO_LEXICON),
        "real_words": real_words(args.config, args.weights),
        "holdout_rule": "real: the last 25% of IC15_train (samples 3352-4468) and IIIT5k_train (1501-2000), all of "
                        "SVT_train (rare lmdb split --hold-out 0.25 / 1.0); rendered: rare synth --seed 99 (2,000), "
                        "read without the config's lexicon (its words are the renderer's)",
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    real, rendered = report["real_holdout"], report["rendered_holdout"]
    for name, d in real["datasets"].items():
        print(f"real {name}: {d['acc']:.4f} ({d['correct']}/{d['samples']})")
    print(f"real held-out mean {real['mean']['acc']:.4f} "
          f"({report['real_holdout_without_lexicon']['mean']['acc']:.4f} without the lexicon); rendered held-out {rendered['mean']['acc']:.4f}; "
          f"real_words {report['real_words']['correct']}/{report['real_words']['total']}; wrote {args.json}")

    if args.ship:
        shipped = PRETRAINED / f"{args.name}.json"
        shipped_report = json.loads(shipped.read_text()) if shipped.is_file() else None
        before = shipped_report and shipped_report["real_holdout"]
        previous = before and before["mean"]["acc"]
        if args.same_model:
            if not shipped_report or word_counts(report) != word_counts(shipped_report):
                sys.exit(f"not shipped: --same-model needs the shipped model's words read per real split and of "
                         f"real_words, {shipped_report and word_counts(shipped_report)}; these weights read "
                         f"{word_counts(report)}")
        elif before and any(real[key]["acc"] <= before[key]["acc"] for key in ("mean", "weighted_mean")):
            sys.exit(f"not shipped: real held-out mean {real['mean']['acc']:.4f} (shipped {previous:.4f}) and words "
                     f"read {real['weighted_mean']['acc']:.4f} (shipped {before['weighted_mean']['acc']:.4f}) must "
                     f"both be higher")
        from rare_portable.weights import read_state, write_state

        write_state(read_state(args.weights), PRETRAINED / f"{args.name}.safetensors")
        report["weights"] = f"rare_portable/pretrained/{args.name}.safetensors (from {args.weights})"
        config = PRETRAINED / f"{args.name}.yaml"
        if Path(args.config).resolve() != config.resolve():  # another network (e.g. grown deeper): its config ships
            config.write_text(Path(args.config).read_text())
            report["config"] = f"rare_portable/pretrained/{args.name}.yaml (from {args.config})"
        shipped.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
        print(f"shipped {args.name} (real held-out mean {previous} -> {real['mean']['acc']:.4f})")


if __name__ == "__main__":
    main()
