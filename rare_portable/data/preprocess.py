"""The one image preprocessing every runtime uses, matching MindOCR's eval pipeline bit for bit.

MindOCR eval: `DecodeImage(img_mode=RGB)` -> `RecResizeNormForInfer(norm_before_pad=False)` -> `ToCHWImage`.
That resizes the uint8 image with bilinear `cv2.resize`, converts to float32, pads on the right with raw 0
(so a padded pixel normalises to -mean/std, not 0), then computes (x - mean) / std in float32.
We write the normalised values straight into the CHW output, so no intermediate float image is allocated.
"""
from __future__ import annotations

import math
from functools import lru_cache
from typing import List, Sequence, Tuple

import cv2
import numpy as np

from ..spec import MOST_CONFIDENT, InputSpec
from ..errors import UserError


class ImageDecodeError(UserError, ValueError):
    """Bytes that are not an image; the message names the sample."""


def decode_image(buf: bytes, name: str) -> np.ndarray:
    """HWC uint8 RGB, decoded as MindOCR does (cv2.IMREAD_COLOR, EXIF orientation applied)."""
    try:
        bgr = cv2.imdecode(np.frombuffer(buf, dtype=np.uint8), cv2.IMREAD_COLOR) if buf else None
    except cv2.error:
        bgr = None
    if bgr is None:
        raise ImageDecodeError(
            f"{name}: {len(buf)} bytes that do not decode as an image; re-encode it as PNG/JPEG or remove it"
        )
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def resized_width(height: int, width: int, spec: InputSpec) -> int:
    """Width after MindOCR's resize: the target width, or the aspect-kept width capped at it."""
    if not spec.keep_ratio:
        return spec.width
    return min(spec.width, math.ceil(spec.height * (width / float(height))))


@lru_cache(maxsize=16)
def _norm_constants(spec: InputSpec) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """mean and std shaped [C,1,1] for CHW broadcasting, and the normalised value of a raw-0 padded pixel."""
    mean = np.asarray(spec.mean, dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(spec.std, dtype=np.float32).reshape(-1, 1, 1)
    return mean, std, (np.float32(0) - mean) / std


def _check_image(image: np.ndarray, spec: InputSpec) -> None:
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != spec.channels or 0 in image.shape:
        raise ValueError(
            f"preprocess expects an HWC uint8 image with {spec.channels} channels, got {image.dtype} "
            f"{list(image.shape)}; decode images with decode_image"
        )


ROTATIONS = {"counterclockwise": cv2.ROTATE_90_COUNTERCLOCKWISE, "clockwise": cv2.ROTATE_90_CLOCKWISE}


def is_tall(image: np.ndarray, spec: InputSpec) -> bool:
    """Whether Rotate90IfVertical applies: a height/width ratio above its threshold."""
    return spec.rotate_vertical is not None and image.shape[0] / image.shape[1] > spec.rotate_vertical[0]


def upright(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """MindOCR's Rotate90IfVertical, before resizing: tall crops turned on their side. Under "most_confident"
    the crop stays as it is; `turned_both_ways` gives the Recognizer its other orientations to read."""
    if not is_tall(image, spec) or spec.rotate_vertical[1] not in ROTATIONS:
        return image
    return cv2.rotate(image, ROTATIONS[spec.rotate_vertical[1]])


def turned_both_ways(image: np.ndarray, spec: InputSpec) -> List[np.ndarray]:
    """A tall crop turned counterclockwise and clockwise, when Rotate90IfVertical is "most_confident": vertical
    words run either way (top to bottom on spines, bottom to top on signs), so both are read. None otherwise."""
    if not is_tall(image, spec) or spec.rotate_vertical[1] != MOST_CONFIDENT:
        return []
    return [cv2.rotate(image, flag) for flag in ROTATIONS.values()]


def padded_for_reread(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """The crop with its edge pixels repeated RereadPadded.margin x its height on every side: the second
    reading of an unsure crop (`Recognizer`), whose letters may touch or cross the crop's edges."""
    pixels = max(1, round(spec.reread_padded[0] * image.shape[0]))
    return cv2.copyMakeBorder(image, pixels, pixels, pixels, pixels, cv2.BORDER_REPLICATE)


def output_width(image: np.ndarray, spec: InputSpec) -> int:
    """The CHW width `preprocess` produces: fixed unless keep_ratio is on without padding."""
    image = upright(image, spec)
    if spec.keep_ratio and not spec.padding:
        return resized_width(image.shape[0], image.shape[1], spec)
    return spec.width


def content_width(image: np.ndarray, spec: InputSpec) -> int:
    """How many columns of the network input hold the image (the rest, if any, is padding)."""
    image = upright(image, spec)
    return resized_width(image.shape[0], image.shape[1], spec)


def preprocess_into(image: np.ndarray, spec: InputSpec, out: np.ndarray) -> None:
    """Write the network input for an RGB HWC uint8 `image` into `out` [C, H, output_width] float32."""
    _check_image(image, spec)
    image = upright(image, spec)
    resize_w = resized_width(image.shape[0], image.shape[1], spec)
    resized = cv2.resize(image, (resize_w, spec.height), interpolation=cv2.INTER_LINEAR)
    if resized.ndim == 2:  # cv2 drops a single channel axis
        resized = resized[:, :, None]
    chw = resized.transpose(2, 0, 1)
    if spec.color == "BGR":
        chw = chw[::-1]
    mean, std, padded_value = _norm_constants(spec)
    target = out[:, :, :resize_w]
    np.subtract(chw, mean, out=target, dtype=np.float32)
    np.divide(target, std, out=target)
    out[:, :, resize_w:] = padded_value


def preprocess(image: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Network input [C, H, W] float32 for one RGB HWC uint8 image."""
    _check_image(image, spec)
    out = np.empty((spec.channels, spec.height, output_width(image, spec)), dtype=np.float32)
    preprocess_into(image, spec, out)
    return out


def batch(images: Sequence[np.ndarray], spec: InputSpec) -> np.ndarray:
    """Network input [N, C, H, W] float32; every image must come out the same width."""
    if not images:
        return np.empty((0, spec.channels, spec.height, spec.width), dtype=np.float32)
    widths = {output_width(image, spec) for image in images}
    if len(widths) > 1:
        raise ValueError(
            f"keep_ratio without padding gives widths {sorted(widths)} in one batch; set input.padding "
            f"true or use batch size 1"
        )
    out = np.empty((len(images), spec.channels, spec.height, widths.pop()), dtype=np.float32)
    for image, target in zip(images, out):
        preprocess_into(image, spec, target)
    return out
