"""`rare parity`: export what is needed, run every available runtime on the same inputs, compare."""
from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from ..cli import WEIGHTS, config_options, resolve_model
from ..files import output_folder, writable_folder
from ..parity import FP32_TOLERANCE, INT8_MAX_WORD_DISAGREEMENT


RENDERED_WORDS_SEED = 1234  # not the int8 calibration seed: parity checks on words calibration never saw


def rendered_words(spec, count: int) -> np.ndarray:
    """A batch of rendered words (`rare synth`), preprocessed as every runtime receives them."""
    from ..data.preprocess import batch
    from ..data.synth import render_words

    images, _ = render_words(spec, count, RENDERED_WORDS_SEED)
    return batch(images, spec.input)


def image_folder(spec, folder: Path) -> np.ndarray:
    from ..data.preprocess import ImageDecodeError, batch, decode_image

    images = []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp")):
        try:
            images.append(decode_image(path.read_bytes(), str(path)))
        except ImageDecodeError as e:
            click.echo(f"skipped: {e}", err=True)
    if not images:
        raise click.ClickException(f"{folder}: no readable images")
    return batch(images, spec.input)


@click.command()
@config_options
@click.option("--weights", "-w", type=WEIGHTS,
              help="Weights (.ckpt/.pt/.safetensors); fresh seeded weights without it.")
@click.option("--backend", "backends", multiple=True,
              help="Runtimes to compare (default: every fp32 one available; openvino-bf16 when named).")
@click.option("--inputs", "npz_inputs", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An .npz with a preprocessed batch `x` (e.g. the MindOCR fixtures); repeatable.")
@click.option("--images", "image_dirs", multiple=True, type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A folder of word images; repeatable.")
@click.option("--words", type=int, default=16, show_default=True, help="Rendered words to add (0: none).")
@click.option("--artifact", "artifacts", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="An exported .onnx/.mindir/.ms file to check as it is (e.g. an int8 model from `rare export "
                   "--int8`) against the weights; repeatable. With `--backend torch` only these are checked.")
@click.option("--tolerance", type=float, default=None, help=f"Max |diff| of probabilities (default {FP32_TOLERANCE:g}, fp32).")
@click.option("--max-word-disagreement", type=click.FloatRange(0.0, 1.0), default=INT8_MAX_WORD_DISAGREEMENT,
              show_default=True, help="int8 artifacts: the largest share of samples whose greedy word may differ "
                                      "from the fp32 reference.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path),
              help="Keep the exported artifacts here (default: a temporary folder).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the report.")
def parity(config, opts, weights, backends, npz_inputs, image_dirs, words, artifacts, tolerance, max_word_disagreement,
           workdir, json_path):
    """Numeric parity of every runtime against the PyTorch network; exits 1 on any violation.

    int8 artifacts are their own tolerance class: their words, not their probabilities, are compared."""
    from ..config import load_config
    from ..parity import ALL_BACKENDS, FP32_TOLERANCE, format_report, run_parity

    config, weights = resolve_model(config, weights)
    spec = load_config(config, opts).spec
    if json_path:
        output_folder(json_path)  # before the runtimes run, not after
    if workdir:
        writable_folder(workdir)
    inputs = {}
    for path in npz_inputs:
        with np.load(path) as data:
            if "x" not in data:
                raise click.ClickException(f"{path}: no array 'x' (a preprocessed N x C x H x W batch)")
            inputs[path.stem] = data["x"].astype(np.float32)
    for folder in image_dirs:
        inputs[folder.name] = image_folder(spec, folder)
    if words:
        inputs["rendered words"] = rendered_words(spec, words)
    if not inputs:
        raise click.ClickException("no inputs: give --inputs, --images or --words N")
    report = run_parity(spec, weights, inputs, backends=backends or ALL_BACKENDS,
                        tolerance=tolerance or FP32_TOLERANCE, workdir=workdir,
                        progress=lambda msg: click.echo(f"... {msg}", err=True), artifacts=artifacts,
                        max_word_disagreement=max_word_disagreement)
    click.echo(format_report(report))
    if json_path:
        json_path.write_text(json.dumps(report.to_json(), indent=1, ensure_ascii=False))
    if not report.ok:
        raise SystemExit(1)
