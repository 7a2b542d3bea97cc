"""Training-time augmentation of word crops, under the name and keys PaddleOCR and MindOCR configs use
(`SVTRRecAug`: geometry, deterioration, colour jitter), drawn from a generator the caller seeds.

The caller seeds one generator per sample from (seed, step, position), so a resumed run sees exactly
the pixels an uninterrupted run sees. Geometry and deterioration are what real crops have and rendered
or cleanly cropped ones lack: rotation, shear, perspective, sensor noise, motion blur, low resolution.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Mapping, Optional

import cv2
import numpy as np

from ..errors import UserError

INTERPOLATIONS = (cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_CUBIC, cv2.INTER_AREA)
# The size a crop is blown up to before the pyramid steps down `factor` times: low resolution, then upsampled.
RESCALE_BASE_WIDTH, RESCALE_BASE_HEIGHT = 512, 128


class AugmentError(UserError, ValueError):
    """An augmentation setting out of range; the message names the key."""


@dataclass(frozen=True)
class AugmentSettings:
    """`SVTRRecAug`'s keys: each part runs on a sample with its probability. `aug_type` 0 applies one geometric
    transform, 1 one to three of them in random order. The magnitudes default to the ones SVTRRecAug fixes."""

    aug_type: int = 0
    geometry_p: float = 0.5
    deterioration_p: float = 0.25
    colorjitter_p: float = 0.25
    # A rare-portable extension (0: off, as in SVTRRecAug): the crop's edge pixels repeated on each side, up to
    # pad_margin x its height, before the rest. Real crops are cut close to the letters, rendered ones are not;
    # RereadPadded reads an unsure crop padded, and this lets training see real crops that way too.
    pad_p: float = 0.0
    pad_margin: float = 0.3
    # Magnitudes (SVTRRecAug's: rotation and shear in degrees, perspective as a fraction of the side).
    degrees: float = 45.0
    scale: tuple = (0.5, 2.0)
    shear: float = 45.0
    distortion: float = 0.5
    noise_variance: float = 20.0
    motion_blur: float = 6.0
    rescale_factor: float = 4.0
    brightness: float = 0.5
    contrast: float = 0.5
    saturation: float = 0.5
    hue: float = 0.1


def augment_settings(args: Optional[Mapping[str, Any]], where: str) -> AugmentSettings:
    """SVTRRecAug's arguments from a transform_pipeline; unknown keys and values out of range are refused."""
    args = dict(args or {})
    known = {f.name for f in fields(AugmentSettings)}
    unknown = sorted(set(args) - known)
    if unknown:
        raise AugmentError(f"{where}: unknown key {unknown[0]!r}; SVTRRecAug reads {', '.join(sorted(known))}")
    settings = AugmentSettings(**{k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in args.items()})
    if not isinstance(settings.scale, tuple):
        raise AugmentError(f"{where}.scale must be [low, high], got {settings.scale!r}")
    if settings.aug_type not in (0, 1):
        raise AugmentError(f"{where}.aug_type must be 0 (one geometric transform) or 1 (one to three), "
                           f"got {settings.aug_type!r}")
    for field in fields(AugmentSettings):
        value = getattr(settings, field.name)
        if field.name == "scale":
            if len(value) != 2 or not all(_number(v) and v > 0 for v in value) or value[0] > value[1]:
                raise AugmentError(f"{where}.scale must be [low, high] with 0 < low <= high, got {list(value)!r}")
        elif field.name.endswith("_p") and not (_number(value) and 0 <= value <= 1):
            raise AugmentError(f"{where}.{field.name} must be a probability in [0, 1], got {value!r}")
        elif field.name != "aug_type" and not (_number(value) and value >= 0):
            raise AugmentError(f"{where}.{field.name} must be a number >= 0, got {value!r}")
    return settings


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def augment(image: np.ndarray, settings: AugmentSettings, rng: np.random.Generator) -> np.ndarray:
    """An HWC uint8 image, changed by each part that `rng` draws; same channels, any size."""
    steps = []
    if settings.pad_p and rng.random() < settings.pad_p:  # no draw when off: runs without it see the same pixels
        steps.append(_pad_edges)
    if rng.random() < settings.geometry_p:
        geometric = (_rotate, _affine, _perspective)
        chosen = rng.permutation(3)[: rng.integers(1, 4)] if settings.aug_type else [rng.integers(0, 3)]
        steps += [geometric[i] for i in chosen]
    if rng.random() < settings.deterioration_p:
        steps += [(_noise, _motion_blur, _rescale)[i] for i in rng.permutation(3)]
    if rng.random() < settings.colorjitter_p:
        steps.append(_color_jitter)
    for step in steps:
        image = step(image, settings, rng)
        if image.ndim == 2:  # OpenCV drops a single channel's axis
            image = image[..., None]
    return image


def _symmetric(rng: np.random.Generator, magnitude: float) -> float:
    """Mostly small, either sign, at most `magnitude`."""
    return float((rng.beta(4, 4) - 0.5) * 2 * magnitude)


def _one_sided(rng: np.random.Generator, magnitude: float, size=None):
    """Mostly near 0, up to `magnitude`."""
    return rng.beta(1, 4, size) * magnitude


def _interpolation(rng: np.random.Generator) -> int:
    return INTERPOLATIONS[rng.integers(len(INTERPOLATIONS))]


def _warp_to_fit(image: np.ndarray, matrix: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Apply a 3x3 forward transform on a canvas that holds the whole transformed crop."""
    h, w = image.shape[:2]
    corners = np.array([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]], dtype=np.float64).T
    moved = matrix @ corners
    moved = moved[:2] / moved[2]
    low, high = moved.min(axis=1), moved.max(axis=1)
    shift = np.array([[1, 0, -low[0]], [0, 1, -low[1]], [0, 0, 1]])
    size = (max(1, int(np.ceil(high[0] - low[0]))), max(1, int(np.ceil(high[1] - low[1]))))
    return cv2.warpPerspective(image, shift @ matrix, size, flags=_interpolation(rng),
                               borderMode=cv2.BORDER_REPLICATE)


def _about_centre(image: np.ndarray, linear: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    to_origin = np.array([[1, 0, -w / 2], [0, 1, -h / 2], [0, 0, 1]])
    back = np.array([[1, 0, w / 2], [0, 1, h / 2], [0, 0, 1]])
    return back @ linear @ to_origin


def _rotation(angle_degrees: float) -> np.ndarray:
    a = np.radians(angle_degrees)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])


def _rotate(image, settings: AugmentSettings, rng):
    return _warp_to_fit(image, _about_centre(image, _rotation(_symmetric(rng, settings.degrees))), rng)


def _affine(image, settings: AugmentSettings, rng):
    """Rotation, scale and horizontal shear together (SVTRRecAug draws no translation)."""
    scale = rng.uniform(*settings.scale)
    shear = np.array([[1, np.tan(np.radians(_symmetric(rng, settings.shear))), 0], [0, 1, 0], [0, 0, 1]])
    linear = _rotation(_symmetric(rng, settings.degrees)) @ shear @ np.diag([scale, scale, 1])
    return _warp_to_fit(image, _about_centre(image, linear), rng)


def _perspective(image, settings: AugmentSettings, rng):
    """Each corner pulled inwards by up to `distortion` of half the side."""
    h, w = image.shape[:2]
    dx = _one_sided(rng, settings.distortion * w / 2, 4)
    dy = _one_sided(rng, settings.distortion * h / 2, 4)
    source = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    target = np.float32([[dx[0], dy[0]], [w - dx[1], dy[1]], [w - dx[2], h - dy[2]], [dx[3], h - dy[3]]])
    if cv2.contourArea(target) < 1:
        return image
    return _warp_to_fit(image, cv2.getPerspectiveTransform(source, target).astype(np.float64), rng)


def _pad_edges(image, settings: AugmentSettings, rng):
    """Each side widened by up to pad_margin x the crop's height, its edge pixels repeated."""
    top, bottom, left, right = np.rint(rng.uniform(0, settings.pad_margin * image.shape[0], 4)).astype(int)
    return cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_REPLICATE)


def _noise(image, settings: AugmentSettings, rng):
    variance = max(int(_one_sided(rng, settings.noise_variance)), 1)
    noisy = image.astype(np.float32) + rng.normal(0, variance ** 0.5, image.shape).astype(np.float32)
    return np.clip(noisy, 0, 255).astype(np.uint8)


def _motion_blur(image, settings: AugmentSettings, rng):
    length = max(int(_one_sided(rng, settings.motion_blur)), 1)
    if length == 1:
        return image
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1
    turn = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), rng.uniform(-90, 90), 1.0)
    kernel = cv2.warpAffine(kernel, turn, (length, length))
    total = kernel.sum()
    return image if total <= 0 else cv2.filter2D(image, -1, kernel / total)


def _rescale(image, settings: AugmentSettings, rng):
    """Low resolution: a Gaussian pyramid `factor` steps down from a fixed size, back to the crop's size."""
    steps = int(round(rng.uniform(0, settings.rescale_factor)))
    if not steps:
        return image
    h, w = image.shape[:2]
    small = cv2.resize(image, (RESCALE_BASE_WIDTH, RESCALE_BASE_HEIGHT), interpolation=_interpolation(rng))
    for _ in range(steps):
        small = cv2.pyrDown(small)
    return cv2.resize(small, (w, h), interpolation=_interpolation(rng))


def _color_jitter(image, settings: AugmentSettings, rng):
    """Brightness, contrast, saturation and hue, each by a uniform factor, in random order."""
    out = image.astype(np.float32)
    for i in rng.permutation(4):
        if i == 0:
            out *= rng.uniform(1 - settings.brightness, 1 + settings.brightness)
        elif i == 1:
            grey = out.mean(axis=2, keepdims=True).mean()
            out = grey + (out - grey) * rng.uniform(1 - settings.contrast, 1 + settings.contrast)
        elif i == 2:
            grey = out.mean(axis=2, keepdims=True)
            out = grey + (out - grey) * rng.uniform(1 - settings.saturation, 1 + settings.saturation)
        elif out.shape[2] == 3:
            hsv = cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV)
            hsv[..., 0] = (hsv[..., 0].astype(np.int32) + int(rng.uniform(-settings.hue, settings.hue) * 180)) % 180
            out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).astype(np.float32)
        out = np.clip(out, 0, 255)
    return out.astype(np.uint8)
