"""`rare eval`: the evaluation step (rare_portable/evaluation.py) on one backend or several side by side,
as tables and JSON.

Every leaf LMDB under a `--data` folder is one dataset (or an image folder + label file, MindOCR's
`RecDataset`); the run fails only when no sample at all could be evaluated.
"""
from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import click

from runtimes.base import RUNTIMES

from ..cli import WEIGHTS, config_options, resolve_model
from ..pretrained import DEFAULT_MODEL, PretrainedError, shipped_name
from ..config import RareConfig, load_config
from ..data.datasets import NamedDataset, config_dataset_paths, find_datasets
from ..data.samples import DataError
from ..errors import UserError
from ..evaluation import (MESSAGES_SHOWN, METRIC_FLAGS, DatasetResult, config_metric, evaluate, postprocess_lower,
                          summarise)
from ..files import output_folder
from ..nets import BackendUnavailable

RUNTIMES_NAMES = tuple(RUNTIMES)


def runtime_options(func):
    """`--weights`, `--backend`, `--device`: which model runs, where; shared by eval and predict."""
    func = click.option("--device", default="cpu", show_default=True,
                        help="cpu, cuda/gpu[:N] or ascend[:N] (mindspore).")(func)
    func = click.option("--backend", type=click.Choice(sorted(RUNTIMES)), default="torch", show_default=True,
                        help="Runtime: a framework (mindspore-graph compiles MindSpore's graph mode).")(func)
    return click.option("--weights", "-w", type=WEIGHTS,
                        help="Weights (.ckpt/.pt/.safetensors) or a shipped model's name; for onnxruntime/mindir/"
                             f"mslite the exported model. Default: the shipped {DEFAULT_MODEL}.")(func)


def open_cli_runtime(backend: str, config: RareConfig, weights: str, device: str):
    """The runtime, or a one-line error when its framework or device is missing."""
    from runtimes import open_runtime
    from runtimes.base import ARTIFACT_BACKENDS

    name = shipped_name(weights)
    if name is not None and backend in ARTIFACT_BACKENDS:
        raise PretrainedError(f"-w {name} is a shipped model's weights; {backend} runs an exported file: "
                              f"rare export -w {name} --format ... -o FILE, then -w FILE")
    try:
        return open_runtime(backend, config, weights, device=device)
    except BackendUnavailable as e:
        raise click.ClickException(str(e)) from None


def resolve_targets(config: RareConfig, data: Sequence[str], label_files: Sequence[str]) -> List[NamedDataset]:
    """--data/--label-file, or else the config's eval.dataset paths joined to dataset_root as MindOCR does."""
    given = list(data)
    config_dirs, config_labels = config_dataset_paths(config.section("eval.dataset") or {})
    if not data:
        data = config_dirs
        if not data:
            raise click.UsageError("no --data and the config has no eval.dataset.data_dir; pass --data DIR")
    missing = [path for path in data if not Path(path).exists()]
    if missing:  # a typo in a path is not a dataset with problems: stop before any model is loaded
        source = "--data" if given else "eval.dataset"
        raise DataError(f"{source} {missing[0]}: no such file or directory; pass an LMDB, a folder of "
                        f"them (e.g. ../shared/real_validation) or an image folder with --label-file")
    label_files = label_files or config_labels
    if label_files and len(label_files) != len(data):
        raise click.UsageError(f"{len(label_files)} label file(s) for {len(data)} --data folder(s); image "
                               f"folders and label files pair up in order, so give as many of each")
    return find_datasets(data, label_files)


def format_table(results: Sequence[DatasetResult], summary: Dict[str, dict]) -> str:
    header = ("dataset", "samples", "skipped", "acc", "NED", "img/s")
    rows = [header]
    for r in results:
        speed = "-" if r.images_per_second is None else f"{r.images_per_second:.1f}"
        rows.append((r.name, str(r.samples), str(r.skipped.total), _fraction(r.acc), _fraction(r.norm_edit_distance),
                     speed))
    mean, weighted = summary["mean"], summary["weighted_mean"]
    plural = "s" if mean["datasets"] != 1 else ""
    rows.append((f"mean of {mean['datasets']} dataset{plural} (MindOCR)", "", "", _fraction(mean["acc"]),
                 _fraction(mean["norm_edit_distance"]), ""))
    rows.append(("mean weighted by samples", str(weighted["samples"]), "", _fraction(weighted["acc"]),
                 _fraction(weighted["norm_edit_distance"]), ""))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    rule = "-" * len(lines[0])
    return "\n".join([lines[0], rule, *lines[1:len(results) + 1], rule, *lines[len(results) + 1:]])


def _fraction(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.4f}"


def echo_problems(results: Sequence[DatasetResult]) -> None:
    """Per dataset: why it could not be opened, or what was skipped with the first messages."""
    for r in results:
        if r.error:
            click.echo(f"{r.name}: not evaluated: {r.error}", err=True)
            continue
        if r.skipped.total:
            click.echo(f"{r.name}: {r.skipped.summary()}", err=True)
            for message in r.skipped.messages[:MESSAGES_SHOWN]:
                click.echo(f"  {message}", err=True)
        if not r.entries:
            click.echo(f"{r.name}: empty, nothing to evaluate", err=True)


ARTIFACT_SUFFIXES = {"onnxruntime": ".onnx", "mindir": ".mindir", "mslite": ".ms", "openvino": ".onnx",
                     "openvino-bf16": ".onnx"}
EXAMPLES_SHOWN = 3  # differing words shown per backend


@dataclass
class BackendResult:
    backend: str
    weights: str
    datasets: List[DatasetResult]
    summary: Dict[str, dict]

    def to_json(self) -> dict:
        return {"backend": self.backend, "weights": self.weights, "datasets": [r.to_json() for r in self.datasets],
                **self.summary}


def backend_weights(backends: Sequence[str], weights: Sequence[str], artifacts: Optional[Path],
                    skip_missing: bool) -> Tuple[Dict[str, str], Dict[str, str]]:
    """({backend: weights}, {backend: why skipped}). `-w FILE` is for the framework backends (or for the one
    backend asked for), `-w BACKEND=FILE` for that backend; artifact backends otherwise take the one file with
    their suffix in --artifacts. Under `--backend all` (skip_missing) an artifact backend without a file is
    skipped; named explicitly, it is an error saying what to pass."""
    from runtimes.base import ARTIFACT_BACKENDS

    plain, per_backend = [], {}
    for value in weights:
        name, sep, path = value.partition("=")
        if sep and name in RUNTIMES_NAMES:
            per_backend[name] = WEIGHTS.convert(path, None, None)
        else:
            plain.append(WEIGHTS.convert(value, None, None))
    if len(plain) > 1:
        raise click.UsageError(f"-w given {len(plain)} times without a backend; write -w BACKEND=FILE for each "
                               f"exported file (e.g. -w onnxruntime=rare.onnx)")
    unused = sorted(set(per_backend) - set(backends))
    if unused:
        raise click.UsageError(f"-w {unused[0]}=...: --backend {unused[0]} is not asked for")
    chosen, skipped = {}, {}
    for backend in backends:
        if backend in per_backend:
            chosen[backend] = per_backend[backend]
        elif backend not in ARTIFACT_BACKENDS or (plain and len(backends) == 1):
            chosen[backend] = plain[0] if plain else DEFAULT_MODEL
        else:
            found = sorted(artifacts.glob("*" + ARTIFACT_SUFFIXES[backend])) if artifacts else []
            if len(found) == 1:
                chosen[backend] = str(found[0])
                continue
            names = ", ".join(f.name for f in found)
            why = (f"{len(found)} {ARTIFACT_SUFFIXES[backend]} files in {artifacts} ({names})"
                   if found else f"no {ARTIFACT_SUFFIXES[backend]} file" + (f" in {artifacts}" if artifacts else ""))
            if not skip_missing or found:
                raise click.UsageError(f"--backend {backend} runs an exported file and there is {why}: pass "
                                       f"-w {backend}=FILE" + ("" if artifacts else " or --artifacts DIR"))
            skipped[backend] = why
    return chosen, skipped


def agreement(reference: BackendResult, other: BackendResult) -> dict:
    """How many predicted words differ between two backends on the same samples, with a few of them."""
    compared, differ, examples = 0, 0, []
    for ours, theirs in zip(reference.datasets, other.datasets):
        for first, second in zip(ours.readings, theirs.readings):
            compared += 1
            if first.text != second.text:
                differ += 1
                if len(examples) < EXAMPLES_SHOWN:
                    examples.append({"dataset": ours.name, "index": first.index, "label": first.label,
                                     reference.backend: first.text, other.backend: second.text})
    return {"backend": other.backend, "reference": reference.backend, "compared": compared, "differ": differ,
            "examples": examples}


def format_backends_table(results: Sequence[BackendResult], agreements: Dict[str, dict]) -> str:
    """One row per dataset and backend; the agreement column counts words that differ from the first backend."""
    header = ("dataset", "backend", "samples", "acc", "NED", "img/s", "differ")
    rows = [header]
    for index in range(len(results[0].datasets)):
        for position, result in enumerate(results):
            r = result.datasets[index]
            differ = "-" if position == 0 else str(sum(
                1 for a, b in zip(results[0].datasets[index].readings, r.readings) if a.text != b.text))
            speed = "-" if r.images_per_second is None else f"{r.images_per_second:.1f}"
            rows.append((r.name if position == 0 else "", result.backend, str(r.samples), _fraction(r.acc),
                         _fraction(r.norm_edit_distance), speed, differ))
    for position, result in enumerate(results):
        mean = result.summary["mean"]
        differ = "-" if position == 0 else str(agreements[result.backend]["differ"])
        rows.append(("mean (MindOCR)" if position == 0 else "", result.backend, "", _fraction(mean["acc"]),
                     _fraction(mean["norm_edit_distance"]), "", differ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
             for row in rows]
    rule = "-" * len(lines[0])
    body = len(results[0].datasets) * len(results)
    return "\n".join([lines[0], rule, *lines[1:body + 1], rule, *lines[body + 1:]])


def run_backend(backend: str, weights: str, rare_config: RareConfig, targets, device: str, batch_size: int,
                limit: Optional[int]) -> BackendResult:
    runtime = open_cli_runtime(backend, rare_config, weights, device)
    lower = postprocess_lower(rare_config)
    results = [evaluate(runtime, target, config_metric(rare_config), batch_size, limit, lower) for target in targets]
    echo_problems(results)
    if not any(r.samples for r in results):
        raise click.ClickException("no sample could be evaluated: " + "; ".join(r.problem() for r in results))
    return BackendResult(runtime.name, str(weights), results, summarise(results))


@click.command("eval")
@config_options
@click.option("--weights", "-w", "weights", multiple=True, metavar="FILE|NAME|BACKEND=FILE",
              help="Weights (.ckpt/.pt/.safetensors) or a shipped model's name for the framework backends; "
                   "BACKEND=FILE gives one backend its exported file (e.g. onnxruntime=rare.onnx). With one "
                   f"--backend, FILE is that backend's. Default: the shipped {DEFAULT_MODEL}.")
@click.option("--backend", "backends", multiple=True, type=click.Choice(sorted(RUNTIMES_NAMES) + ["all"]),
              help="Runtime; repeat it to evaluate several side by side (one table, and how many words each "
                   "predicts differently from the first). all: every backend that can run here.  [default: torch]")
@click.option("--artifacts", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A folder of exported files (`rare export`): each artifact backend takes the one file with its "
                   "suffix (.onnx, .mindir, .ms) unless -w BACKEND=FILE names it.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda/gpu[:N] or ascend[:N] (mindspore).")
@click.option("--data", "data", multiple=True, metavar="DIR",
              help="An LMDB or a folder of them (each leaf LMDB is one dataset), or an image folder with "
                   "--label-file; repeatable. Default: the config's eval.dataset.")
@click.option("--label-file", "label_files", multiple=True, metavar="FILE",
              help="`image_path<TAB>text` file for the image folder given as --data (pairs up in order).")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--limit", type=click.IntRange(min=1), help="Read at most this many entries per dataset.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the per-dataset numbers and both means to this file.")
@click.option("--predictions", "predictions_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write every sample's reading to this TSV (backend, dataset, index, label, predicted, "
                   "confidence, correct), to see which words fail.")
def eval_command(config, opts, weights, backends, artifacts, device, data, label_files, batch_size, limit, json_path,
                 predictions_path):
    """Accuracy and NED per dataset, and their means, on one backend or several side by side.

    Datasets are LMDBs (every leaf LMDB under --data is one) or image folders with label files."""
    for path in (json_path, predictions_path):
        if path is not None:
            output_folder(path)  # before any model loads, not after the evaluation
    every = "all" in backends
    backends = list(dict.fromkeys(RUNTIMES_NAMES if every else (backends or ("torch",))))
    framework = next((w for w in weights if w.partition("=")[0] not in RUNTIMES_NAMES), None)
    config, framework = resolve_model(config, framework, default_model=True)
    chosen, skipped = backend_weights(backends, weights, artifacts, skip_missing=every)
    rare_config = load_config(config, opts)
    targets = resolve_targets(rare_config, data, label_files)
    results = []
    for backend, backend_file in chosen.items():
        try:
            results.append(run_backend(backend, backend_file, rare_config, targets, device, batch_size, limit))
        except (click.ClickException, UserError) as e:
            if not every:
                raise
            skipped[backend] = e.format_message() if isinstance(e, click.ClickException) else str(e)
    if not results:
        raise click.ClickException("no backend could run: " + "; ".join(f"{b}: {w}" for b, w in skipped.items()))
    metric = {k: getattr(config_metric(rare_config), k) for k in METRIC_FLAGS}
    reading = list(rare_config.spec.reading_rules())
    run = {"config": rare_config.source, "opts": list(opts), "device": device, "batch_size": batch_size,
           "limit": limit, "metric": metric, "reading": reading}
    if len(backends) == 1:
        only = results[0]
        click.echo(format_table(only.datasets, only.summary))
        report = {**run, "weights": only.weights, "backend": only.backend,
                  "datasets": [r.to_json() for r in only.datasets], **only.summary}
    else:
        agreements = {r.backend: agreement(results[0], r) for r in results[1:]}
        click.echo(format_backends_table(results, agreements))
        for a in agreements.values():
            click.echo(f"{a['backend']} vs {a['reference']}: {a['differ']} of {a['compared']} words differ")
            for example in a["examples"]:
                click.echo(f"  {example['dataset']} #{example['index']} (label {example['label']!r}): "
                           f"{a['reference']} {example[a['reference']]!r}, {a['backend']} {example[a['backend']]!r}")
        for backend, why in skipped.items():
            click.echo(f"{backend}: skipped: {why}", err=True)
        report = {**run, "backends": [r.to_json() for r in results], "agreement": list(agreements.values()),
                  "skipped": skipped}
    click.echo("read: each crop once, as it is" + "".join(f"; {rule}" for rule in reading))
    if json_path is not None:
        json_path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        click.echo(f"wrote {json_path}")
    if predictions_path is not None:
        write_predictions(results, predictions_path)
        click.echo(f"wrote {predictions_path}")


PREDICTION_COLUMNS = ("backend", "dataset", "index", "label", "predicted", "confidence", "correct")


def write_predictions(results: Sequence[BackendResult], path: Path) -> None:
    """One row per backend and sample; index is the LMDB index or the label file's line, so a row finds its image."""
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(PREDICTION_COLUMNS)
        for result in results:
            for dataset in result.datasets:
                for r in dataset.readings:
                    writer.writerow((result.backend, dataset.name, r.index, r.label, r.text, f"{r.confidence:.4f}",
                                     int(r.correct)))
