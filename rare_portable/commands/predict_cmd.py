"""`rare predict`: read the text in word images and write MindOCR's `rec_results.txt`.

The file is what MindOCR's deploy/py_infer writes for recognition, `name<TAB>"text"` with the text
JSON-encoded (so MindOCR's deploy/eval_utils/eval_rec.py reads it back). `--score` appends the
confidence as a third tab-separated column, as MindOCR's tools/infer/text/predict_rec.py does.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Tuple

import click

from ..cli import config_options, resolve_model
from ..config import load_config
from ..data.preprocess import ImageDecodeError, decode_image
from ..evaluation import postprocess_lower
from ..files import output_folder
from .eval_cmd import open_cli_runtime, runtime_options

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
RESULTS_FILE = "rec_results.txt"


def collect_images(inputs: List[Path]) -> List[Tuple[str, Path]]:
    """(name in the results, path) per image: a file by its base name, a folder's images (recursively,
    sorted) by their path inside it; in a folder, files without an image suffix are not images."""
    found = []
    for path in inputs:
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            found += [(p.relative_to(path).as_posix(), p) for p in files]
        else:
            found.append((path.name, path))
    return found


def result_line(name: str, text: str, score: float, with_score: bool) -> str:
    line = f"{name}\t{json.dumps(text, ensure_ascii=False)}"
    return f"{line}\t{score:.6f}\n" if with_score else f"{line}\n"


@click.command("predict")
@click.argument("inputs", nargs=-1, required=True, metavar="IMAGES...|DIR",
                type=click.Path(exists=True, path_type=Path))
@config_options
@runtime_options
@click.option("--output", "-o", type=click.Path(path_type=Path), default=RESULTS_FILE, show_default=True,
              help=f"Results file; an existing folder gets {RESULTS_FILE} inside it.")
@click.option("--score/--no-score", default=False, show_default=True,
              help="Add each prediction's confidence as a third column.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
def predict(inputs, config, opts, weights, backend, device, output, score, batch_size):
    """Read the word in each image; write rec_results.txt.

    A folder stands for every image file in it and its sub-folders, in sorted order."""
    config, weights = resolve_model(config, weights, default_model=True)
    rare_config = load_config(config, opts)
    images = collect_images(list(inputs))
    if not images:
        lmdbs = [str(path) for path in inputs if path.is_dir() and any(path.rglob("data.mdb"))]
        hint = (f"; {lmdbs[0]} holds LMDB data: rare eval --data {lmdbs[0]} --predictions FILE reads it with "
                f"each sample's reading") if lmdbs else ""
        raise click.ClickException(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in "
                                   f"{', '.join(map(str, inputs))}{hint}")
    target = output / RESULTS_FILE if output.is_dir() else output
    output_folder(target)
    runtime = open_cli_runtime(backend, rare_config, weights, device)
    lower = postprocess_lower(rare_config)
    unreadable = []

    def named_images():
        for name, path in images:
            try:
                yield name, decode_image(path.read_bytes(), str(path))
            except (ImageDecodeError, OSError) as e:
                unreadable.append(name)
                click.echo(f"skipped: {e}", err=True)

    lines = []
    for name, (text, confidence) in runtime.recognise_all(named_images(), batch_size, lower=lower):
        lines.append(result_line(name, text, confidence, score))
        click.echo(f"{name}\t{text}\t{confidence:.4f}")
    if not lines:
        raise click.ClickException(f"none of the {len(images)} image(s) could be read; nothing written to {target}")
    target.write_text("".join(lines), encoding="utf-8")
    skipped = f"; {len(unreadable)} unreadable image(s) skipped" if unreadable else ""
    click.echo(f"wrote {len(lines)} result(s) to {target}{skipped}")
