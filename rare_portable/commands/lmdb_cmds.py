"""`rare lmdb ...`: build LMDB datasets from MindOCR's image folder + label file layout, and split them."""
from __future__ import annotations

import itertools
from pathlib import Path

import click

from ..data.folder import FolderDataset
from ..data.lmdb import LmdbDataset, check_output_folder, find_lmdb_datasets, write_lmdb
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


@lmdb.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--hold-out", "hold_out", required=True, type=click.FloatRange(0.0, 1.0),
              help="Share of each dataset held out: its last samples, as one block (1.0 holds it all out).")
@click.option("--output", "-o", required=True, type=click.Path(path_type=Path),
              help="Writes OUTPUT/finetune/NAME and OUTPUT/holdout/NAME per source LMDB (NAME: its folder name).")
@click.option("--overwrite", is_flag=True, help="Replace LMDBs already at those places.")
def split(sources, hold_out: float, output: Path, overwrite: bool) -> None:
    """Split LMDBs into a fine-tuning part and a disjoint held-out part, bytes unchanged.

    The held-out part is the trailing block, not every n-th sample: IC15 and IIIT5K list the words of one
    photograph together, so an interleaved split would put the same scene on both sides.
    """
    try:
        datasets = [path for source in sources for path in find_lmdb_datasets(source)]
        names = [path.name for path in datasets]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise DataError(f"two sources are both named {repeated[0]}; split them into different --output folders")
        for path in datasets:
            dataset = LmdbDataset(path)
            kept = len(dataset) - int(round(len(dataset) * hold_out))
            parts = {"finetune": range(kept), "holdout": range(kept, len(dataset))}
            for part, positions in parts.items():
                if not positions:
                    continue
                raws = (dataset.read_raw(position) for position in positions)
                written = write_lmdb(output / part / path.name,
                                     ((raw.image_bytes, raw.label) for raw in raws if raw.skip is None),
                                     overwrite=overwrite)
                first, last = positions.start + 1, positions.stop
                click.echo(f"{path} samples {first}-{last} -> {output / part / path.name} ({written} written)")
    except DataError as e:
        raise click.ClickException(str(e)) from None
