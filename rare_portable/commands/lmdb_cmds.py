"""`rare lmdb ...`: build LMDB datasets from MindOCR's image folder + label file layout."""
from __future__ import annotations

import itertools
from pathlib import Path

import click

from ..data.folder import FolderDataset
from ..data.lmdb import check_output_folder, write_lmdb
from ..data.samples import DataError, SkipLog

SKIPS_SHOWN = 20


@click.group()
def lmdb():
    """Create LMDB datasets in the layout MindOCR's LMDBDataset reads."""


@lmdb.command()
@click.option("--images", required=True, type=click.Path(path_type=Path),
              help="Folder the image paths in the label file are relative to.")
@click.option("--labels", required=True, type=click.Path(path_type=Path),
              help="Label file, one `image_path<TAB>text` per line.")
@click.option("--output", required=True, type=click.Path(path_type=Path), help="Folder to write the LMDB to.")
@click.option("--overwrite", is_flag=True, help="Replace an LMDB already at --output.")
def create(images: Path, labels: Path, output: Path, overwrite: bool) -> None:
    """Copy every readable image (bytes unchanged) and its label into an LMDB; report what was skipped."""
    try:
        check_output_folder(output, overwrite)
        dataset = FolderDataset(images, labels)
        usable = ((image_bytes, s.label) for s, image_bytes in dataset.iter_with_bytes() if s.skip is None)
        first = next(usable, None)
        if first is None:
            _echo_skips(dataset.skipped)
            raise DataError(f"{labels}: no usable sample ({dataset.skipped.summary()}); nothing written to {output}")
        written = write_lmdb(output, itertools.chain([first], usable), overwrite=overwrite)
    except DataError as e:
        raise click.ClickException(str(e)) from None
    _echo_skips(dataset.skipped)
    click.echo(f"wrote {written} samples to {output}; {dataset.skipped.summary()}")


def _echo_skips(skipped: SkipLog) -> None:
    for message in skipped.messages[:SKIPS_SHOWN]:
        click.echo(f"skipped {message}", err=True)
    if skipped.total > SKIPS_SHOWN:
        click.echo(f"... and {skipped.total - SKIPS_SHOWN} more skipped", err=True)
