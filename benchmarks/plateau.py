"""How many steps a fresh RARE spends on its attention plateau, per training recipe, over several seeds.

A RARE trained from scratch first learns only the language prior (loss ~2.2-2.9 per character, attention
spread over the whole image) and reads nothing until the attention locks onto the characters. This
study trains `rare_tiny` from random weights with each candidate recipe below and records the step at
which the attention loss per character (mean of the last 20 steps, never label-smoothed) first falls
below 1.0: "steps to escape". A run stops there (or at --cap steps, reported as "> cap") and reads a
held-out set, so an escape is checked to be reading; the encoder's auxiliary CTC classifier reads it too,
which says whether a run waits on the encoder's features or on the attention. Each candidate changes one
thing from the study's base, rare_tiny.yaml as it was until the study's `uniform_alignment_2` became its
recipe (its comment says where a candidate changes more). One is not from random weights:
`shipped_encoder` puts a fresh attention decoder on the shipped model's trained encoder.

Data: 64,000 words from `rare synth` (the demo's renderer settings: caseless, system fonts when
scripts/install_fonts.sh ran, photo backgrounds), seed 31; 1,000 held-out words, seed 32. Seeds change the
initial weights and the batch order; the data stays the same. Runs go seed by seed across candidates, and a
finished run's record is kept, so an interrupted study continues where it stopped. A candidate gets its next
seed only while every seed so far escaped within the cap: one seed past the cap already fails the goal, and
on 2 CPU cores a capped run costs ~9 minutes.

    python -m benchmarks.plateau [--seeds 1 2 3] [--cap 600] [--only baseline adadelta ...]

Writes benchmarks/results/plateau/<candidate>_seed<k>.json per run and benchmarks/results/plateau.json
(the summary, with the machine). Goal (issue 11): no seed above 400 steps.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import machine

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
RUNS = ROOT / "runs" / "plateau"
SYSTEM_FONTS = Path("/usr/share/fonts")
ESCAPE_LOSS = 1.0
WINDOW = 20
MARKS = (2.0, 1.5, 1.0)
GOAL_STEPS = 400
TRAIN_WORDS, HELD_OUT_WORDS = 64_000, 1_000

# easy_words' training words: (split, rare synth options).
EASY_WORDS = ("train_easy", ["--case", "lower", "--top-words", "50000", "--random-fraction", "0.15",
                             "--image-format", "jpg"])
# shipped_encoder's start: the shipped model's backbone and neck, its attention decoder left out (made by
# `shipped_encoder()`), so the decoder starts from random weights on features that already tell letters apart.
SHIPPED_ENCODER = RUNS / "data" / "shipped_encoder.safetensors"
SHIPPED_NETWORK = ("model.backbone.stem_channels", "model.backbone.depths", "model.backbone.widths",
                   "model.neck.hidden_size", "model.head.hidden_size")


def shipped_weights() -> Path:
    from rare_portable.pretrained import DEFAULT_MODEL, pretrained_weights

    return pretrained_weights(DEFAULT_MODEL)


def shipped_network_opts() -> list:
    """--opt overrides that give rare_tiny.yaml the shipped model's network, read from its config."""
    from rare_portable.config import get_dotted, load_config
    from rare_portable.pretrained import DEFAULT_MODEL, pretrained_config

    raw = load_config(pretrained_config(DEFAULT_MODEL)).raw
    return [f"{key}={get_dotted(raw, key)}" for key in SHIPPED_NETWORK]


# The study's base: rare_tiny.yaml's recipe before it took up `uniform_alignment_2` (2026-12-08), so every record
# keeps the meaning it was measured with.
STUDY_BASE = ["train.aux_ctc_weight=2.0", "train.uniform_alignment_weight=0"]

# Each candidate is the study's base plus these --opt overrides (one change each), likeliest to escape first.
CANDIDATES = {
    # CTC alone shapes the encoder for 200 steps, then the attention loss joins.
    "ctc_warmup": ["train.attention_warmup_steps=200"],
    # DTRB's recipe: Adadelta, lr 1 (constant), rho 0.95, eps 1e-8, no weight decay, clip 5.
    "adadelta": ["optimizer.opt=adadelta", "optimizer.rho=0.95", "optimizer.eps=1.0e-8", "optimizer.weight_decay=0",
                 "scheduler.scheduler=constant", "scheduler.lr=1.0"],
    # A left-to-right attention prior on the teacher-forced attention weights (train/step.py), training only.
    "guided_attention": ["train.guided_attention_weight=1.0"],
    # The same prior ten times as strong: at 1.0 it was the lowest at the cap, by 0.06.
    "guided_attention_10": ["train.guided_attention_weight=10.0"],
    # The encoder's CTC loss five times as strong (2.0 -> 10.0): if the plateau waits on the features.
    "aux_ctc_10": ["train.aux_ctc_weight=10.0"],
    # A peak learning rate 2.5 times the baseline's (decaying to 5e-4): if the plateau is the encoder learning slowly.
    "lr_5e-3": ["scheduler.lr=0.005", "scheduler.min_lr=0.0005"],
    # Four times the words per step (32 -> 128, the same lr): if the encoder waits on the number of words it sees.
    "batch_128": ["train.loader.batch_size=128"],
    # Every encoder column labelled with the character at its relative position (cross-entropy on the CTC
    # classifier): letters to learn from the first step, where CTC must first find the alignment.
    "uniform_alignment": ["train.uniform_alignment_weight=1.0"],
    # The labels as the classifier's main loss, CTC at 0.1 instead of 2.0 (two changes): the two disagree on blanks.
    # rare_tiny.yaml's recipe since 2026-12-08.
    "uniform_alignment_2": ["train.uniform_alignment_weight=2.0", "train.aux_ctc_weight=0.1"],
    # Five times as strong again (two changes): if the encoder's letters come sooner the harder they are pressed.
    "uniform_alignment_10": ["train.uniform_alignment_weight=10.0", "train.aux_ctc_weight=0.1"],
    # With the encoder's labels (three changes): words of every length from the start (more letters a step), or a
    # higher lr.
    "uniform_alignment_all_lengths": ["train.uniform_alignment_weight=2.0", "train.aux_ctc_weight=0.1",
                                      "train.curriculum=null"],
    "uniform_alignment_lr_5e-3": ["train.uniform_alignment_weight=2.0", "train.aux_ctc_weight=0.1",
                                  "scheduler.lr=0.005", "scheduler.min_lr=0.0005"],
    # With the encoder learning letters early, the attention prior too (three changes).
    "uniform_alignment_guided": ["train.uniform_alignment_weight=2.0", "train.aux_ctc_weight=0.1",
                                 "train.guided_attention_weight=1.0"],
    # Trained features, a fresh decoder: the shipped network, its encoder from the shipped weights. Not a recipe
    # from random weights; it says how long the attention itself takes once the encoder knows letters.
    "shipped_encoder": [*shipped_network_opts(), f"model.pretrained={SHIPPED_ENCODER.relative_to(ROOT)}"],
    # The shipped model onto another dictionary (MindOCR's en, 94 characters; the labels stay lower case), as
    # `rare train -w rare_small_en` does it: only the classifier and the decoder's one-hot columns start afresh.
    "shipped_new_dictionary": [*shipped_network_opts(), "common.character_dict_path=mindocr/utils/dict/en_dict.txt",
                               "common.num_classes=96", "model.head.out_channels=96",
                               f"model.pretrained={shipped_weights().relative_to(ROOT)}"],
    "baseline": [],  # AdamW 2e-3, clip 5, short-word curriculum over 0.5 epoch (1,000 steps), aux CTC 2.0
    "label_smoothing": ["loss.label_smoothing=0.1"],
    # Short words for 200 steps instead of 1,000; and no curriculum at all.
    "fast_curriculum": ["train.curriculum.epochs=0.1"],
    "no_curriculum": ["train.curriculum=null"],
    # Easier words: lower case only, matplotlib's ~40 fonts, synthetic backgrounds (the demo's old renderer).
    "easy_words": [f"train.dataset.data_dir={EASY_WORDS[0]}"],
}


def render(split: str, count: int, seed: int, options=None) -> Path:
    """`count` words of `rare synth` at runs/plateau/data/<split>; `options` default to the demo's renderer."""
    from rare_portable.data.lmdb import LmdbDataset

    path = RUNS / "data" / split
    if (path / "data.mdb").exists() and len(LmdbDataset(path)) == count:
        return path
    if options is None:
        fonts = ["--fonts", str(SYSTEM_FONTS)] if SYSTEM_FONTS.is_dir() else []
        options = ["--case", "caseless", "--top-words", "50000", "--photo-fraction", "0.3", "--random-fraction",
                   "0.15", "--image-format", "jpg", *fonts]
    subprocess.run([sys.executable, "-c", "from rare_portable.cli import main; main()", "synth", "-o", str(path),
                    "-n", str(count), "--seed", str(seed), *options, "--overwrite"], check=True)
    return path


def shipped_encoder() -> Path:
    """The shipped weights without `head.*`, at SHIPPED_ENCODER: fine-tuning loads the rest and logs the decoder's
    tensors as not loaded, so they keep their random initialisation."""
    from safetensors.numpy import load_file, save_file

    state = load_file(str(shipped_weights()))
    SHIPPED_ENCODER.parent.mkdir(parents=True, exist_ok=True)
    save_file({name: value for name, value in state.items() if not name.startswith("head.")}, str(SHIPPED_ENCODER))
    return SHIPPED_ENCODER


def run_opts(candidate: str, seed: int) -> list:
    out = RUNS / f"{candidate}_seed{seed}"
    return ["system.distribute=False", "system.val_while_train=False", "system.log_interval=10",
            f"system.seed={seed}", f"train.dataset.dataset_root={RUNS / 'data'}", "train.dataset.data_dir=train",
            f"train.ckpt_save_dir={out}", *STUDY_BASE, *CANDIDATES[candidate]]


def encoder_reads(config, run_dir: Path, held_out: Path, limit: int = 500):
    """The share of held-out words the auxiliary CTC classifier reads from the encoder alone (greedy CTC,
    MindOCR's metric), or None without one. It tells which part a run waits on: an encoder whose CTC reads
    words while the attention loss is still high waits on the attention; one that reads nothing waits on
    its features."""
    import mindspore as ms

    from rare_portable.charset import NUM_SPECIAL
    from rare_portable.data.lmdb import LmdbDataset
    from rare_portable.data.preprocess import batch
    from rare_portable.evaluation import config_metric
    from rare_portable.nets import build_network
    from rare_portable.train.checkpoint import OPTIMIZER_PREFIX
    from rare_portable.train.step import AuxiliaryCTC

    params = ms.load_checkpoint(str(run_dir / "train_resume.ckpt"))
    network = build_network(config.spec, "mindspore")
    classifier = AuxiliaryCTC(config.spec.neck.out_channels, config.spec.num_classes, seed=0)
    saved = {name[len(OPTIMIZER_PREFIX):]: value for name, value in params.items() if name.startswith(OPTIMIZER_PREFIX)}
    if ms.load_param_into_net(classifier, saved)[0]:  # a run without the auxiliary CTC loss
        return None
    ms.load_param_into_net(network, params)
    network.set_train(False)
    metric = config_metric(config)
    samples = [s for s in LmdbDataset(held_out) if s.image is not None][:limit]
    correct = 0
    for start in range(0, len(samples), 50):
        part = samples[start:start + 50]
        features = network.encode(ms.Tensor(batch([s.image for s in part], config.spec.input)))
        classes = classifier.log_probs(features).asnumpy().argmax(-1).T  # [N, T]
        for row, sample in zip(classes, part):
            kept = [k for i, k in enumerate(row) if k >= NUM_SPECIAL and (i == 0 or k != row[i - 1])]
            correct += metric.is_correct("".join(config.spec.charset.chars[k - NUM_SPECIAL] for k in kept),
                                         sample.label)
    return correct / len(samples)


def one_run(candidate: str, seed: int, cap: int) -> dict:
    """Train until the escape or the cap (in this process), then read the held-out words."""
    import numpy as np

    from rare_portable.config import load_config
    from rare_portable.train import train

    opts = run_opts(candidate, seed)
    config = load_config("rare_tiny", opts)
    losses, marks = [], {}

    def on_step(info) -> bool:
        if info.finite:
            losses.append(info.loss)
        mean = float(np.mean(losses[-WINDOW:])) if len(losses) >= WINDOW else float("inf")
        for mark in MARKS:
            if mean < mark and str(mark) not in marks:
                marks[str(mark)] = info.global_step
        return mean < ESCAPE_LOSS or info.global_step >= cap

    started = time.perf_counter()
    result = train(config, opts, force=True, on_step=on_step, echo=lambda m: None)
    seconds = time.perf_counter() - started
    steps = result.state.global_step
    held_out = RUNS / f"{candidate}_seed{seed}" / "held_out.json"
    network_opts = [f"--opt={opt}" for opt in CANDIDATES[candidate]
                    if opt.startswith(("model.", "common.")) and not opt.startswith("model.pretrained")]
    subprocess.run([sys.executable, "-c", "from rare_portable.cli import main; main()", "eval", "-c", "rare_tiny",
                    *network_opts, "-w", str(result.output_dir / "last.ckpt"),
                    "--data", str(RUNS / "data" / "heldout"),
                    "--json", str(held_out)], check=True, stdout=subprocess.DEVNULL)
    accuracy = json.loads(held_out.read_text())["datasets"][0]["acc"]
    ctc_accuracy = encoder_reads(config, result.output_dir, RUNS / "data" / "heldout")
    escaped = str(ESCAPE_LOSS) in marks
    return {
        "candidate": candidate, "seed": seed, "opts": CANDIDATES[candidate], "cap": cap,
        "steps_to_escape": marks.get(str(ESCAPE_LOSS)), "escaped": escaped, "steps_run": steps,
        "steps_to_loss": marks, "held_out_acc_at_stop": accuracy, "encoder_ctc_acc_at_stop": ctc_accuracy,
        "loss_every_10_steps": [round(float(np.mean(losses[i:i + 10])), 4) for i in range(0, len(losses), 10)],
        "train_seconds": round(seconds, 1), "images_per_second": round(result.images_per_second, 1),
        "stop_reason": result.stop_reason, "nonfinite_steps": result.state.nonfinite_steps,
    }


def summarise(records: list, cap: int) -> dict:
    by_candidate = {}
    for name in CANDIDATES:
        runs = sorted((r for r in records if r["candidate"] == name and r["cap"] >= cap), key=lambda r: r["seed"])
        if not runs:
            continue
        steps = [r["steps_to_escape"] for r in runs]
        by_candidate[name] = {
            "opts": CANDIDATES[name], "seeds": [r["seed"] for r in runs],
            "steps_to_escape": [s if s is not None else f"> {r['steps_run']}" for s, r in zip(steps, runs)],
            "worst": (max(steps) if all(s is not None for s in steps) else f"> {cap}"),
            "held_out_acc_at_stop": [r["held_out_acc_at_stop"] for r in runs],
            "encoder_ctc_acc_at_stop": [r.get("encoder_ctc_acc_at_stop") for r in runs],
            "meets_goal": len(runs) >= 3 and all(s is not None and s <= GOAL_STEPS for s in steps),
            "loss_at_cap_or_stop": [r["loss_every_10_steps"][-1] for r in runs],
        }
    return by_candidate


def table(summary: dict) -> str:
    lines = ["| candidate | steps to escape (per seed) | loss/char at stop | held-out acc at stop "
             "| encoder's CTC acc at stop | goal (<= 400, 3 seeds) |", "| --- | --- | --- | --- | --- | --- |"]
    for name, s in summary.items():
        accs = " / ".join(f"{a:.1%}" for a in s["held_out_acc_at_stop"])
        losses = " / ".join(f"{v:.2f}" for v in s["loss_at_cap_or_stop"])
        ctc = " / ".join("not measured" if a is None else f"{a:.1%}" for a in s["encoder_ctc_acc_at_stop"])
        lines.append(f"| {name} (`{' '.join(s['opts']) or 'the base'}`) | {' / '.join(map(str, s['steps_to_escape']))} "
                     f"| {losses} | {accs} | {ctc} | {'met' if s['meets_goal'] else 'not met'} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--cap", type=int, default=600, help="steps; a run that has not escaped by then stops")
    parser.add_argument("--only", nargs="+", choices=sorted(CANDIDATES), default=list(CANDIDATES))
    parser.add_argument("--run", nargs=2, metavar=("CANDIDATE", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    records_dir = RESULTS / "plateau"
    records_dir.mkdir(parents=True, exist_ok=True)
    if args.run:  # one run, in a fresh process (its own MindSpore graphs and seeds)
        candidate, seed = args.run[0], int(args.run[1])
        record = one_run(candidate, seed, args.cap)
        (records_dir / f"{candidate}_seed{seed}.json").write_text(json.dumps(record, indent=1))
        return
    render("train", TRAIN_WORDS, 31)
    render("heldout", HELD_OUT_WORDS, 32)
    if "easy_words" in args.only:
        render(EASY_WORDS[0], TRAIN_WORDS, 31, EASY_WORDS[1])
    if "shipped_encoder" in args.only:
        shipped_encoder()
    host = machine.describe()
    for seed in args.seeds:
        for candidate in args.only:
            path = records_dir / f"{candidate}_seed{seed}.json"
            if path.is_file() and json.loads(path.read_text())["cap"] >= args.cap:
                continue
            earlier = [records_dir / f"{candidate}_seed{s}.json" for s in args.seeds[:args.seeds.index(seed)]]
            if any(not p.is_file() or not json.loads(p.read_text())["escaped"] for p in earlier):
                print(f"{candidate}, seed {seed}: not run (an earlier seed did not escape within the cap)")
                continue
            print(f"{candidate}, seed {seed} ...", flush=True)
            subprocess.run([sys.executable, "-m", "benchmarks.plateau", "--cap", str(args.cap),
                            "--run", candidate, str(seed)], cwd=ROOT, check=True)
            record = json.loads(path.read_text())
            print(f"  escaped at step {record['steps_to_escape']} (ran {record['steps_run']}, "
                  f"{record['train_seconds']:.0f} s), held-out {record['held_out_acc_at_stop']:.1%}", flush=True)
    records = [json.loads(p.read_text()) for p in sorted(records_dir.glob("*.json"))]
    summary = summarise(records, args.cap)
    report = {"escape": f"attention loss per character, mean of the last {WINDOW} steps, below {ESCAPE_LOSS}",
              "config": "rare_tiny", "train_words": TRAIN_WORDS, "held_out_words": HELD_OUT_WORDS,
              "cap": args.cap, "goal_steps": GOAL_STEPS, "candidates": summary, "machine": machine.finish(host)}
    (RESULTS / "plateau.json").write_text(json.dumps(report, indent=1))
    print(table(summary))
    print(f"wrote {RESULTS / 'plateau.json'}")


if __name__ == "__main__":
    main()
