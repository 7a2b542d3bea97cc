"""`rare rectify`: what the TPS rectifier does to real images, as pictures a person can look at."""
from __future__ import annotations

from pathlib import Path

import click
import cv2
import numpy as np

from ..cli import WEIGHTS, config_options, resolve_model
from ..files import writable_folder


def _to_uint8(chw: np.ndarray, mean, std) -> np.ndarray:
    """Undo the network's normalisation: CHW float -> HWC uint8 for display."""
    hwc = chw.transpose(1, 2, 0) * np.asarray(std, np.float32) + np.asarray(mean, np.float32)
    return np.clip(np.rint(hwc), 0, 255).astype(np.uint8)


def rectify_images(net, backend: str, batch: np.ndarray) -> np.ndarray:
    if backend == "torch":
        import torch
        with torch.inference_mode():
            return net.transform(torch.from_numpy(batch)).numpy()
    import mindspore as ms
    return net.transform(ms.Tensor(batch)).asnumpy()


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@config_options
@click.option("--weights", "-w", type=WEIGHTS, help="Trained weights (.ckpt/.pt/.safetensors).")
@click.option("--backend", type=click.Choice(["torch", "mindspore"]), default="torch", show_default=True)
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path), default="rectified", show_default=True,
              help="Folder for one PNG per image: network input left, rectified right.")
@click.option("--scale", type=int, default=3, show_default=True, help="Enlarge pictures this many times.")
def rectify(images, config, opts, weights, backend, output, scale):
    """Write each IMAGE as the network sees it beside the TPS-rectified version."""
    from ..api import build_model
    from ..data.preprocess import ImageDecodeError, decode_image, preprocess

    config, weights = resolve_model(config, weights)
    writable_folder(output)
    net = build_model(config, backend, opts=opts, weights=weights)
    spec = net.spec
    if spec.transform is None:
        raise click.ClickException(f"config {config} has no model.transform: nothing rectifies; use a TPS config "
                                   f"such as rare_tps_resnet34 or --opt model.transform.name=STN_ON")
    if weights is None:
        click.echo("note: no --weights, the rectifier starts as the identity, so both halves look alike", err=True)
    for path in images:
        try:
            image = decode_image(path.read_bytes(), str(path))
        except ImageDecodeError as e:
            click.echo(f"skipped: {e}", err=True)
            continue
        x = preprocess(image, spec.input)[None]
        rectified = rectify_images(net, backend, x)[0]
        i = spec.input
        gap = np.full((i.height, 4, i.channels), 255, np.uint8)
        pair = np.concatenate([_to_uint8(x[0], i.mean, i.std), gap, _to_uint8(rectified, i.mean, i.std)], axis=1)
        pair = cv2.resize(pair, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        bgr = pair if i.color == "BGR" else cv2.cvtColor(pair, cv2.COLOR_RGB2BGR)
        target = output / f"{path.stem}_rectified.png"
        cv2.imwrite(str(target), bgr)
        click.echo(str(target))
