"""`rare train`: train RARE on MindSpore from our yaml or MindOCR's rec yaml, as MindOCR's tools/train.py does.

Exit status: 0 when the run completes (or stops at --max-minutes, saved), 130 when stopped by Ctrl-C
(saved, resumable), 1 when it stopped on repeated non-finite losses or could not start.
"""
from __future__ import annotations

import sys

import click

from ..cli import WEIGHTS, config_options, resolve_model
from ..config import load_config

EXIT_INTERRUPTED = 130


@click.command("train")
@config_options
@click.option("--resume", metavar="CKPT|auto",
              help="Continue a run: its train_resume.ckpt, or `auto` for the one in train.ckpt_save_dir.")
@click.option("--weights", "-w", type=WEIGHTS,
              help="Fine-tune from these weights (as model.pretrained); layers that do not fit start afresh.")
@click.option("--force", is_flag=True,
              help="Start over in an output folder holding an earlier run (its files are moved to a subfolder).")
@click.option("--max-minutes", type=click.FloatRange(min=0, min_open=True),
              help="Stop (and save, resumable) after this many minutes of training.")
def train(config, opts, resume, weights, force, max_minutes):
    """Train on the config's LMDB data; writes best/last/train_resume.ckpt, CSV logs and curves.png.

    Data-parallel with system.distribute: true under msrun (which starts `python ARGS` per worker):
    `msrun --worker_num=2 --local_worker_num=2 python -m rare_portable.commands.train_cmd -c X.yaml`."""
    from ..train import train as run_training

    config, weights = resolve_model(config, weights)
    rare_config = load_config(config, opts)
    try:
        result = run_training(rare_config, opts, resume=resume, weights=weights, force=force,
                              time_limit_s=None if max_minutes is None else max_minutes * 60)
    except KeyboardInterrupt:  # a second Ctrl-C: the user did not wait for the save
        click.echo("aborted: nothing saved since the last checkpoint", err=True)
        sys.exit(EXIT_INTERRUPTED)
    if result.stop_reason == "interrupted":
        sys.exit(EXIT_INTERRUPTED)
    if result.stop_reason == "nonfinite":
        sys.exit(1)


if __name__ == "__main__":  # `python -m rare_portable.commands.train_cmd ...`, the way msrun starts workers
    from ..cli import main

    sys.argv[1:1] = ["train"]
    main()
