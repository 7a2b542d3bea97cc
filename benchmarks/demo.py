"""The main job on a small embedded default (`tox -e demo`): nothing downloaded beyond packages.

1. render a training set, a validation set and a held-out test set of words (`rare synth`);
2. train `rare_tiny` on MindSpore for a few minutes (`rare train`);
3. export ONNX, MindIR and (where MindSpore Lite is provisioned) a Lite model (`rare export`);
4. check numeric parity of every available runtime (`rare parity`);
5. evaluate the held-out set on every backend (`rare eval`);
then print one summary table and the paths of what was made. Each step is the CLI a user would run,
printed before it runs.

    python benchmarks/demo.py [--minutes 11] [--train-words 52000] [--out runs/demo]
"""
from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from rare_portable.data.lmdb import LmdbDataset

ROOT = Path(__file__).resolve().parent.parent
RARE = [sys.executable, "-c", "from rare_portable.cli import main; main()"]
REAL_WORDS = ROOT.parent / "shared" / "real_words"


def rare(*args, check=True):
    shown = "rare " + " ".join(shlex.quote(str(a)) for a in args)
    print(f"\n$ {shown}", flush=True)
    started = time.perf_counter()
    result = subprocess.run([*RARE, *map(str, args)], cwd=ROOT)
    if check and result.returncode != 0:
        sys.exit(f"demo step failed ({result.returncode}): {shown}")
    return time.perf_counter() - started


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "demo")
    parser.add_argument("--minutes", type=float, default=11.0, help="training time on this machine")
    parser.add_argument("--train-words", type=int, default=52000, help="more than 11 minutes of training can use")
    parser.add_argument("--test-words", type=int, default=1000)
    args = parser.parse_args(argv)
    out = args.out.resolve()
    data, model = out / "data", out / "model"
    started = time.perf_counter()

    for split, count, seed in (("training/synth", args.train_words, 1), ("validation/synth", 500, 2),
                               ("evaluation/synth_test", args.test_words, 3)):
        if not (data / split / "data.mdb").exists() or len(LmdbDataset(data / split)) != count:
            rare("synth", "--output", data / split, "--count", count, "--seed", seed, "--overwrite",
                 *(["--preview", out / "synth_preview.png"] if seed == 1 else []))
    opts = ["--opt", f"train.dataset.dataset_root={data}", "--opt", "train.dataset.data_dir=training",
            "--opt", f"eval.dataset.dataset_root={data}", "--opt", "eval.dataset.data_dir=validation",
            "--opt", f"train.ckpt_save_dir={model}",
            # rare_tiny's 2-epoch recipe, cut by --minutes: the learning rate stays high (>= 1.1e-3) through
            # epoch 1, while the attention leaves its plateau (~1,200 steps), and the short-word curriculum lasts
            # ~800 steps. A machine that ends epoch 1 early (7 of 11 minutes here) goes on into epoch 2.
            "--opt", "scheduler.num_epochs=2", "--opt", "scheduler.decay_epochs=2", "--opt", "scheduler.warmup_epochs=0",
            "--opt", "train.curriculum.epochs=0.5"]
    rare("train", "-c", "rare_tiny", *opts, "--max-minutes", args.minutes, "--force")
    weights = model / "last.ckpt"  # the time limit may end the epoch before its validation (and best.ckpt)

    artifacts = {"onnxruntime": out / "rare_tiny.onnx", "mindir": out / "rare_tiny.mindir", "mslite": out / "rare_tiny.ms"}
    rare("export", "-c", "rare_tiny", "-w", weights, "--format", "onnx", "-o", artifacts["onnxruntime"])
    rare("export", "-c", "rare_tiny", "-w", weights, "--format", "mindir", "-o", artifacts["mindir"])
    from runtimes.mslite_bridge import availability
    lite_missing = availability()
    if lite_missing:
        print(f"\nMindSpore Lite skipped: {lite_missing}")
        del artifacts["mslite"]
    else:
        rare("export", "-c", "rare_tiny", "-w", weights, "--format", "mslite", "-o", artifacts["mslite"])

    parity_json = out / "parity.json"
    images = ["--images", REAL_WORDS] if REAL_WORDS.is_dir() else []
    rare("parity", "-c", "rare_tiny", "-w", weights, "--words", 32, *images, "--json", parity_json,
         "--workdir", out / "parity", check=False)
    parity = json.loads(parity_json.read_text())

    backends = {"torch": weights, "mindspore": weights, "mindspore-graph": weights, **artifacts}
    evals = {}
    for backend, artifact in backends.items():
        path = out / f"eval_{backend}.json"
        rare("eval", "-c", "rare_tiny", "-w", artifact, "--backend", backend, "--data", data / "evaluation",
             "--json", path)
        evals[backend] = json.loads(path.read_text())

    print("\n" + "=" * 78)
    print(f"rare_tiny trained {args.minutes:g} min on {args.train_words} rendered words; "
          f"held-out: {args.test_words} rendered words (other seed)")
    print(f"{'backend':<17}{'accuracy':>9}{'NED':>8}{'img/s':>9}   parity vs torch")
    verdicts = {r["backend"]: r for rows in parity["results"].values() for r in rows if not r["violations"]}
    failures = {r["backend"] for rows in parity["results"].values() for r in rows if r["violations"]}
    for backend, report in evals.items():
        d = report["datasets"][0]
        verdict = ("reference" if backend == "torch" else "FAIL" if backend in failures
                   else "ok" if backend in verdicts else "not run")
        print(f"{backend:<17}{d['acc']:>9.3f}{d['norm_edit_distance']:>8.3f}{d['images_per_second']:>9.1f}   {verdict}")
    print(f"parity verdict: {'OK' if parity['ok'] else 'VIOLATED'} (fp32 tolerance {parity['tolerance']:.0e})")
    print(f"\nartifacts: {weights}, " + ", ".join(str(p) for p in artifacts.values()))
    print(f"pictures: {model / 'curves.png'}, {out / 'synth_preview.png'}")
    print(f"reports: {parity_json}, {out}/eval_*.json; took {(time.perf_counter() - started) / 60:.1f} min")
    print("\nThe full recipe: `rare train -c configs/rare_resnet34.yaml --opt train.dataset.dataset_root=...` on "
          "MJSynth+SynthText LMDBs; on Ascend/GPU set system.distribute: true and launch with "
          "`msrun --worker_num=8 --local_worker_num=8 rare train -c ...` (README: Training).")
    if not parity["ok"]:
        sys.exit("parity violated: see the table above")


if __name__ == "__main__":
    main()
