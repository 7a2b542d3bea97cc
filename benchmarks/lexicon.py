"""What LexiconCorrect (postprocess.lexicon, rare_portable/lexicon.py) gains and costs, per setting.

    python -m benchmarks.lexicon [-w rare_small_en] [--settings "{words: en}" "{words: en, prior: none}" ...]

Reads the real held-out splits (and, to count what it costs on words that are not words, the rendered held-out
words, 15% of them random strings) once without the lexicon and once per setting, with the config's other reading
rules, through `rare eval --predictions`; counts per split the words read, and the words won and lost against the
reading without it. The default settings take the shipped one ({words: en}: 2 characters, one of them may be a
skipped one, e^6, Zipf's prior, words read weighed against near words with a margin of e^1, wordfreq's 100,000 most
frequent English words) apart one part at a time, move its margin and ratio, and try it with the 50,000 most
frequent words (shipped before) and with every word wordfreq lists. Rendered words are drawn from the lexicon's own
word list, so only their losses (random strings and rare words turned into other words) mean anything. Then what
it costs: the real held-out crops read with the config's rules on torch, batch 32, without the lexicon and with
each --timed setting, alternated over rounds (best round each), as img/s and as a ratio to none. Writes
benchmarks/results/lexicon.json.
"""
from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import machine  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
# The shipped setting, the first one (same length, no prior, words kept), each part taken away, its margin and
# ratio moved.
SETTINGS = ("{words: en}", "{words: en, max_skipped: 0, prior: none, word_margin: null}", "{words: en, prior: none}",
            "{words: en, max_skipped: 0}", "{words: en, word_margin: null}", "{words: en, word_margin: 0.0}",
            "{words: en, word_margin: 2.0}", "{words: en, max_log_ratio: 4.0}", "{words: en, max_log_ratio: 5.0}",
            "{words: en, max_log_ratio: 8.0}")
# Lexicons of other sizes, wordfreq's most frequent words as `scripts/make_lexicon.py --count N` writes them (0: all):
# the shipped one is 100,000; 50,000 was shipped before.
WORD_COUNTS = (50_000, 0)
RARE = [sys.executable, "-c", "from rare_portable.cli import main; main()"]


def read(weights: str, data, lexicon: str, tmp: Path) -> dict:
    """{(dataset, index): (label, predicted, correct)} as `rare eval --predictions` writes them."""
    out = tmp / "readings.tsv"
    subprocess.run([*RARE, "eval", "-w", weights, *(a for d in data for a in ("--data", d)), "--opt",
                    f"postprocess.lexicon={lexicon}", "--predictions", out], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    with out.open(newline="") as f:
        return {(r["dataset"], r["index"]): (r["label"], r["predicted"], r["correct"] == "1")
                for r in csv.DictReader(f, delimiter="\t")}


def word_list_setting(count: int, tmp: Path) -> tuple:
    """(name, setting): the shipped setting with wordfreq's `count` most frequent words (0: all), as
    scripts/make_lexicon.py writes them, into `tmp`."""
    path = tmp / f"en_{count or 'all'}.txt"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "make_lexicon.py"), "--count", str(count), "-o", path],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    words = len(path.read_text(encoding="utf-8").splitlines())
    return f"{{words: wordfreq's {words} most frequent}}", f"{{words: {path}}}"


def reading_speed(weights: str, root: Path, settings, rounds: int, batch_size: int = 32) -> dict:
    """img/s of the whole reading (the config's rules, decoding included) per postprocess.lexicon setting."""
    from rare_portable.config import load_config
    from rare_portable.data.lmdb import LmdbDataset, find_lmdb_datasets
    from runtimes import open_runtime

    crops = [sample.image for path in find_lmdb_datasets(root) for sample in LmdbDataset(path)
             if sample.skip is None]
    # Each setting as `rare eval --opt postprocess.lexicon=...` reads it.
    runtimes = {setting: open_runtime("torch", load_config(weights, [f"postprocess.lexicon={setting}"]).spec, weights)
                for setting in ["null", *settings]}
    best = dict.fromkeys(runtimes, float("inf"))
    for _ in range(rounds):
        for setting, runtime in runtimes.items():
            start = time.perf_counter()
            for first in range(0, len(crops), batch_size):
                runtime.recognise(crops[first:first + batch_size], lower=True)
            best[setting] = min(best[setting], time.perf_counter() - start)
    speed = {"backend": "torch", "batch_size": batch_size, "crops": len(crops), "rounds": rounds,
             "img_per_s": {s: len(crops) / seconds for s, seconds in best.items()}}
    speed["ratio_to_none"] = {s: best["null"] / seconds for s, seconds in best.items()}
    for setting in runtimes:
        print(f"reading speed, lexicon {setting}: {speed['img_per_s'][setting]:.1f} img/s "
              f"({speed['ratio_to_none'][setting]:.3f}x none)", flush=True)
    return speed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-w", "--weights", default="rare_small_en")
    parser.add_argument("--data", type=Path, nargs="+",
                        default=[ROOT / "data" / "real" / "holdout", ROOT / "data" / "shipped" / "heldout"])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), help="postprocess.lexicon values")
    parser.add_argument("--word-counts", type=int, nargs="*", default=list(WORD_COUNTS),
                        help="also the shipped setting with the N most frequent words (0: every word wordfreq lists)")
    parser.add_argument("--timed", nargs="*", default=["{words: en}", "{words: en, word_margin: null}"],
                        help="settings whose reading speed is measured against none (none: skip the timing)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, default=RESULTS / "lexicon.json")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        plain = read(args.weights, args.data, "null", Path(tmp))
        rows = []
        settings = [(setting, setting) for setting in args.settings]
        settings += [word_list_setting(count, Path(tmp)) for count in args.word_counts]
        for name, setting in settings:
            corrected = read(args.weights, args.data, setting, Path(tmp))
            for dataset in sorted({d for d, _ in plain}):
                keys = [k for k in plain if k[0] == dataset]
                row = {"dataset": dataset, "setting": name, "samples": len(keys),
                       "correct_without": sum(plain[k][2] for k in keys), "correct": sum(corrected[k][2] for k in keys),
                       "won": sum(corrected[k][2] and not plain[k][2] for k in keys),
                       "lost": sum(plain[k][2] and not corrected[k][2] for k in keys),
                       "lost_words": [plain[k][0] for k in keys if plain[k][2] and not corrected[k][2]]}
                rows.append(row)
                print(f"{name}, {dataset}: {row['correct_without']} -> {row['correct']} of {row['samples']} "
                      f"(+{row['won']} -{row['lost']})", flush=True)
    report = {"weights": args.weights, "machine": machine.describe(), "rows": rows}
    if args.timed:
        report["speed"] = reading_speed(args.weights, args.data[0], args.timed, args.rounds)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
