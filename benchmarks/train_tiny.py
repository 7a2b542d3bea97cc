"""rare_tiny trained from scratch on this CPU for at most --minutes, on `rare synth` data; held-out accuracy.

1. Renders a training LMDB and a held-out LMDB (different seeds, so different images) with the synthesizer
   `rare synth` uses; an LMDB of the requested size already in --data is reused.
2. Measures training throughput side by side on one fixed batch: a plain MindSpore step (`value_and_grad`
   + the same AdamW, compiled with `ms.jit`) against our compiled TrainStep (which adds loss scaling,
   the finite check, batch-norm rollback, clipping when configured, the lr schedule), and reports the ratio.
   The trainer's own loop speed (data loading, logging included) comes from the run's steps.csv.
3. Trains with `rare_portable.train.train` for at most --minutes (scheduler.num_epochs sized from the
   measured speed unless --epochs is given), validating on the held-out set every epoch, then evaluates
   last.ckpt on it.

    python -m benchmarks.train_tiny [--minutes 30] [--train-samples 100000] [--opt KEY=VALUE ...] [--tag NAME]

Writes benchmarks/results/train_tiny.json and train_tiny_curves.png (the run's curves.png); with --tag NAME,
train_tiny_NAME.json and train_tiny_NAME_curves.png, so a recipe compared with the reference run keeps its own
record. Goal: >= 90% held-out word accuracy within 30 minutes.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from benchmarks import machine
from rare_portable.config import load_config
from rare_portable.data.lmdb import LmdbDataset
from rare_portable.data.synth import make_plan, synthesize_lmdb
from rare_portable.train import read_settings, train
from rare_portable.train.validate import Validator, load_eval_sets

RESULTS = Path(__file__).parent / "results"
GOAL_ACC = 0.90
TRAIN_SEED, HELD_OUT_SEED = 1, 2


def render(path: Path, count: int, seed: int, charset) -> float:
    """Seconds spent rendering; 0 when an LMDB of `count` samples is already there."""
    if (path / "data.mdb").is_file() and len(LmdbDataset(path)) == count:
        return 0.0
    started = time.perf_counter()
    synthesize_lmdb(path, make_plan(seed=seed, charset=charset), count, overwrite=True)
    return time.perf_counter() - started


def fixed_batch(config, settings, batch_size: int):
    """The first training batch, as the trainer's loader makes it."""
    from rare_portable.train.data import BatchLoader, BatchPlan, TrainSet
    from rare_portable.train.distributed import Cluster

    spec = config.spec
    trainset = TrainSet(settings.train_data, settings.seed, spec.head.batch_max_length, need_lengths=False)
    plan = BatchPlan(len(trainset), batch_size, Cluster(), settings.seed, True)
    loader = BatchLoader(trainset, plan, settings.train_data.input, spec.charset, spec.head.batch_max_length,
                         settings.train_data.lower)
    batch = loader.load(0, 0)
    return batch.images, batch.targets


def seconds_per_step(step, args, steps: int) -> float:
    """After two untimed (compiling) steps; the loss is read every step, as the trainer does."""
    for _ in range(2):
        step(*args)[0].asnumpy()
    started = time.perf_counter()
    for _ in range(steps):
        step(*args)[0].asnumpy()
    return (time.perf_counter() - started) / steps


def measure_throughput(config, settings, steps: int, rounds: int = 2) -> dict:
    """img/s of a plain compiled MindSpore step and of our TrainStep, same network, optimizer and batch;
    timed in alternating rounds, best round each, so a burst of load on a shared machine hits both."""
    import mindspore as ms

    from rare_portable.api import build_model
    from rare_portable.train.optim import build_loss_scaler, build_optimizer
    from rare_portable.train.step import NetworkWithLoss, TrainStep, compiled

    images, targets = fixed_batch(config, settings, settings.batch_size)
    x, t, lr = ms.Tensor(images), ms.Tensor(targets), ms.Tensor(np.float32(settings.schedule.lr))
    one = ms.Tensor(np.float32(1.0))  # the attention loss's weight: MindOCR's objective

    def network_and_optimizer():
        net = build_model(config.spec, "mindspore", seed=settings.seed, train=True)
        return net, build_optimizer(net.trainable_params(), settings.optimizer, settings.schedule.lr)

    def make_plain_step():
        """MindSpore's documented functional training step."""
        net, optimizer = network_and_optimizer()
        grad = ms.value_and_grad(NetworkWithLoss(net), None, optimizer.parameters, has_aux=True)

        @ms.jit
        def plain_step(images, targets):
            (loss, _), grads = grad(images, targets, one)
            optimizer(grads)
            return (loss,)

        return plain_step

    def make_trainer_step():
        net, optimizer = network_and_optimizer()
        return compiled(TrainStep(NetworkWithLoss(net), optimizer, build_loss_scaler(settings.loss_scale), settings.clip_norm),
                        graph_mode=True)

    plain_step, ours = make_plain_step(), make_trainer_step()
    plain, trainer_step = float("inf"), float("inf")
    for _ in range(rounds):
        plain = min(plain, seconds_per_step(plain_step, (x, t), steps))
        trainer_step = min(trainer_step, seconds_per_step(ours, (x, t, lr, one), steps))
    batch = settings.batch_size
    return {
        "batch_size": batch, "steps_timed": steps, "rounds": rounds,
        "plain_mindspore_step_img_per_s": round(batch / plain, 2),
        "trainer_step_img_per_s": round(batch / trainer_step, 2),
        "trainer_step_vs_plain": round(plain / trainer_step, 3),
    }


def loop_speed(steps_csv: Path) -> float:
    """Median img/s over the run's log intervals, the first (compilation) left out."""
    rows = [line.split(",") for line in steps_csv.read_text().splitlines()[1:]]
    speeds = [float(r[6]) for r in rows[1:] if r[6]]
    return float(np.median(speeds)) if speeds else float("nan")


def held_out_accuracy(config, settings, weights: Path) -> dict:
    import mindspore as ms

    from rare_portable.api import build_model

    net = build_model(config.spec, "mindspore", weights=weights)
    infer = ms.jit(net.construct)
    validator = Validator(load_eval_sets(settings.eval_data), config.spec, settings.eval_batch_size,
                          settings.eval_lower, settings.metric_options)
    result = validator.evaluate(lambda batch: infer(ms.Tensor(batch)).asnumpy())
    return {"acc": result["acc"], "norm_edit_distance": result["norm_edit_distance"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0, help="Training time budget (rendering not included).")
    parser.add_argument("--train-samples", type=int, default=100_000)
    parser.add_argument("--held-out-samples", type=int, default=2000)
    parser.add_argument("--epochs", type=int, help="scheduler.num_epochs; default: what fits --minutes.")
    parser.add_argument("--throughput-steps", type=int, default=20)
    parser.add_argument("--data", type=Path, default=Path("runs/train_tiny/data"),
                        help="Where the rendered LMDBs are kept (and reused).")
    parser.add_argument("--output", type=Path, default=Path("runs/train_tiny/run"),
                        help="train.ckpt_save_dir (replaced).")
    parser.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                        help="Config override, as `rare train --opt` (repeatable), e.g. optimizer.opt=adadelta.")
    parser.add_argument("--tag", help="Name of this recipe's record: train_tiny_TAG.json (default: train_tiny.json).")
    args = parser.parse_args()
    record = "train_tiny" + (f"_{args.tag}" if args.tag else "")

    described = machine.describe()
    base = load_config("rare_tiny")
    render_seconds = {
        "train": render(args.data / "train" / "synth", args.train_samples, TRAIN_SEED, base.spec.charset),
        "held_out": render(args.data / "held_out" / "synth", args.held_out_samples, HELD_OUT_SEED, base.spec.charset),
    }
    data_opts = [
        "system.distribute=False", "system.val_while_train=True", "system.log_interval=10",
        f"train.dataset.dataset_root={args.data}", "train.dataset.data_dir=train",
        f"eval.dataset.dataset_root={args.data}", "eval.dataset.data_dir=held_out",
        f"train.ckpt_save_dir={args.output}",
    ]
    opts = data_opts + args.opt
    config = load_config("rare_tiny", opts)
    settings = read_settings(config, opts)
    throughput = measure_throughput(config, settings, args.throughput_steps)

    epochs = args.epochs
    if epochs is None:  # what the measured step speed allows, keeping ~15% for validation and data loading
        images_in_budget = args.minutes * 60 * throughput["trainer_step_img_per_s"] * 0.85
        epochs = max(1, int(images_in_budget // args.train_samples))
    warmup = 1 if epochs >= 4 else 0
    schedule_opts = [f"scheduler.num_epochs={epochs}", f"scheduler.warmup_epochs={warmup}",
                     f"scheduler.decay_epochs={epochs - warmup}"]
    opts = data_opts + schedule_opts + args.opt  # --opt wins over the sizing
    config = load_config("rare_tiny", opts)
    shutil.rmtree(args.output, ignore_errors=True)
    started = time.perf_counter()
    result = train(config, opts, time_limit_s=args.minutes * 60)
    train_minutes = (time.perf_counter() - started) / 60
    final = held_out_accuracy(config, read_settings(config, opts), args.output / "last.ckpt")
    loop = loop_speed(args.output / "steps.csv")
    curves = RESULTS / f"{record}_curves.png"
    shutil.copyfile(args.output / "curves.png", curves)

    report = {
        "config": "rare_tiny", "opts": opts, "minutes_budget": args.minutes,
        "train_samples": args.train_samples, "held_out_samples": args.held_out_samples,
        "seeds": {"train": TRAIN_SEED, "held_out": HELD_OUT_SEED}, "render_seconds": render_seconds,
        "throughput": {**throughput, "trainer_loop_img_per_s": round(loop, 2),
                       "trainer_loop_vs_plain_step": round(loop / throughput["plain_mindspore_step_img_per_s"], 3)},
        "epochs_planned": epochs, "stop_reason": result.stop_reason, "train_minutes": round(train_minutes, 2),
        "global_steps": result.state.global_step, "epochs_completed": result.state.epoch,
        "nonfinite_steps": result.state.nonfinite_steps,
        "held_out_last": final, "best_val_acc": result.state.best_acc if result.state.best_epoch else None,
        "goal_acc": GOAL_ACC, "goal_met": final["acc"] >= GOAL_ACC,
        "machine": machine.finish(described),
        "curves": str(curves), "run_dir": str(args.output),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{record}.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
