"""`rare synth`: render MJSynth-like word images into an LMDB, for training without a downloaded dataset."""
from __future__ import annotations

import os
from typing import List, Optional, Tuple

import click
from tqdm import tqdm

from ..charset import CharsetError, load_charset
from ..data.resources import ResourceError, frequent_words
from ..data.samples import DataError
from ..data.synth import (
    CASES,
    IMAGE_FORMATS,
    MIN_HEIGHT,
    SynthError,
    make_plan,
    read_lexicon,
    save_preview,
    synthesize_lmdb,
)

PREVIEW_SAMPLES = 32
FONT_SKIPS_SHOWN = 5


@click.command("synth")
@click.option("--output", "-o", required=True, type=click.Path(file_okay=False),
              help="Folder for the LMDB (created; must not hold a non-empty LMDB unless --overwrite).")
@click.option("--count", "-n", required=True, type=click.IntRange(min=1), help="How many images to render.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="Same seed and options give byte-identical images, whatever --workers is.")
@click.option("--lexicon", type=click.Path(dir_okay=False),
              help="Word list, one word per line (UTF-8). Default: the built-in English lexicon.")
@click.option("--top-words", type=click.IntRange(min=1),
              help="Use the N most frequent English words (wordfreq; the 'synth' extra) instead of --lexicon.")
@click.option("--fonts", "font_dirs", multiple=True, type=click.Path(file_okay=False),
              help="Folder of extra .ttf/.otf fonts, added to matplotlib's; repeatable. Needed for Chinese.")
@click.option("--charset", "charset_path",
              help="Dictionary file (one character per line, or a shipped one: en_dict.txt, ch_dict.txt); "
                   "labels use only its characters. Default: 0-9a-z.")
@click.option("--case", default="lower", show_default=True, type=click.Choice(CASES),
              help="'mixed' also renders Capitalised and UPPER-case words (needs upper case in the charset); 'caseless' "
                   "renders them too and labels them in lower case, for a dictionary without upper case.")
@click.option("--height", default=32, show_default=True, type=click.IntRange(min=MIN_HEIGHT),
              help="Image height in pixels; width follows the word.")
@click.option("--random-fraction", default=0.1, show_default=True, type=click.FloatRange(0.0, 1.0),
              help="Share of random character strings instead of lexicon words.")
@click.option("--photo-fraction", default=0.0, show_default=True, type=click.FloatRange(0.0, 1.0),
              help="Share of words drawn on crops of photographs that installed packages ship (scikit-image, "
                   "matplotlib) instead of synthetic backgrounds.")
@click.option("--image-format", default="png", show_default=True, type=click.Choice(IMAGE_FORMATS),
              help="How images are stored in the LMDB.")
@click.option("--workers", type=click.IntRange(min=1), help="Rendering processes. Default: the CPU count.")
@click.option("--overwrite", is_flag=True, help="Replace an existing LMDB at --output.")
@click.option("--preview", type=click.Path(dir_okay=False),
              help=f"Also write a PNG contact sheet of the first {PREVIEW_SAMPLES} samples with their labels.")
def synth(
    output: str,
    count: int,
    seed: int,
    lexicon: Optional[str],
    top_words: Optional[int],
    font_dirs: Tuple[str, ...],
    charset_path: Optional[str],
    case: str,
    height: int,
    random_fraction: float,
    photo_fraction: float,
    image_format: str,
    workers: Optional[int],
    overwrite: bool,
    preview: Optional[str],
) -> None:
    """Render synthetic word images (MJSynth-like) into an LMDB in the deep-text-recognition-benchmark layout."""
    workers = workers or os.cpu_count() or 1
    if lexicon and top_words:
        raise click.UsageError("pass either --lexicon or --top-words, not both")
    try:
        charset = load_charset(charset_path)
        words = read_lexicon(lexicon) if lexicon else frequent_words(top_words) if top_words else None
        plan = make_plan(
            seed=seed,
            height=height,
            charset=charset,
            case=case,
            lexicon=words,
            font_dirs=font_dirs,
            random_fraction=random_fraction,
            image_format=image_format,
            photo_fraction=photo_fraction,
        )
    except (CharsetError, SynthError, ResourceError) as e:
        raise click.ClickException(str(e)) from None
    for skipped in plan.skipped_user_fonts[:FONT_SKIPS_SHOWN]:
        click.echo(f"warning: font skipped: {skipped}", err=True)
    if len(plan.skipped_user_fonts) > FONT_SKIPS_SHOWN:  # a system font folder holds hundreds of non-Latin faces
        click.echo(f"warning: ... {len(plan.skipped_user_fonts) - FONT_SKIPS_SHOWN} more fonts skipped; "
                   f"{len(plan.fonts)} fonts used", err=True)
    if plan.skipped_lexicon_words:
        click.echo(f"warning: {plan.skipped_lexicon_words} lexicon words skipped: they have characters outside "
                   f"the charset ({charset.source}, case {case})", err=True)

    shown: List[Tuple[bytes, str]] = []
    with tqdm(total=count, unit="img", desc="synth", delay=0.5) as bar:  # delay: no bar before an early error
        def on_sample(image_bytes: bytes, label: str) -> None:
            if len(shown) < PREVIEW_SAMPLES:
                shown.append((image_bytes, label))
            bar.update()

        try:
            result = synthesize_lmdb(output, plan, count, workers=workers, overwrite=overwrite, on_sample=on_sample)
        except (DataError, SynthError) as e:
            raise click.ClickException(str(e)) from None
    click.echo(f"wrote {result.count} images to {output} in {result.seconds:.1f} s: "
               f"{result.images_per_second:.0f} images/s with {workers} worker(s)")
    if preview:
        save_preview(preview, shown, plan)
        click.echo(f"preview of the first {len(shown)} samples: {preview}")
