"""Rendering one sample: text masks, geometry, backgrounds and colours, camera damage, encoding."""
from __future__ import annotations

import math
from typing import Dict, Sequence, Tuple

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .base import SynthError
from .fonts import _mask_array, _open_font
from .plan import SynthPlan, _common_fonts, _fonts_by_char

FONT_SCALES = (1.0, 1.2, 1.4, 1.6, 1.8)  # font px per output px: rendering larger and shrinking anti-aliases
RANDOM_WORD_MAX_LENGTH = 10
MIN_TEXT_CONTRAST = 80  # luminance difference (0-255) between text and every background pixel it may hit


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114], np.float32)


def _random_colours(rng: np.random.Generator, count: int) -> np.ndarray:
    """Mostly muted colours, as paint and signage are; uniform RGB would be mostly garish. (count, 3) RGB."""
    hsv = np.stack([rng.integers(0, 180, count), 255 * rng.beta(1.0, 2.5, count), rng.integers(0, 256, count)], 1)
    return cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2RGB)[0].astype(np.float32)


def _contrasting_colour(rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    """A colour at least MIN_TEXT_CONTRAST darker than `low` or lighter than `high`; black/white if none is."""
    candidates = _random_colours(rng, 16)
    lum = _luminance(candidates)
    fitting = np.flatnonzero((lum <= low - MIN_TEXT_CONTRAST) | (lum >= high + MIN_TEXT_CONTRAST))
    if fitting.size:
        return candidates[fitting[0]]
    return np.zeros(3, np.float32) if low >= 255 - high else np.full(3, 255, np.float32)


def _lerp_field(first: np.ndarray, second: np.ndarray, weight: np.ndarray) -> np.ndarray:
    return first + (second - first) * weight[..., None]


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Flat, gradient, cloudy or cluttered; its two colours stay close so the text keeps its contrast."""
    base = _random_colours(rng, 1)[0]
    other = np.clip(base + rng.normal(0, 40, 3), 0, 255).astype(np.float32)
    kind = rng.choice(4, p=(0.2, 0.3, 0.3, 0.2))
    if kind == 0:
        return np.broadcast_to(base, (height, width, 3)).astype(np.float32)
    if kind in (1, 3):
        angle = rng.uniform(0, 2 * math.pi)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        ramp = xs * math.cos(angle) + ys * math.sin(angle)
        ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
        canvas = _lerp_field(base, other, ramp)
        if kind == 1:
            return canvas
        for _ in range(rng.integers(2, 6)):
            colour = np.clip(base + rng.normal(0, 35, 3), 0, 255).tolist()
            p1 = (int(rng.integers(-width // 2, width)), int(rng.integers(-height, height)))
            p2 = (int(rng.integers(0, width * 3 // 2)), int(rng.integers(0, 2 * height)))
            if rng.random() < 0.5:
                cv2.rectangle(canvas, p1, p2, colour, -1)
            else:
                cv2.line(canvas, p1, p2, colour, int(rng.integers(1, max(2, height // 6))))
        return cv2.GaussianBlur(canvas, (0, 0), rng.uniform(0.8, 2.0))
    cells_y = int(rng.integers(2, 6))
    cells_x = max(2, cells_y * width // height)
    clouds = cv2.resize(rng.random((cells_y, cells_x), dtype=np.float32), (width, height),
                        interpolation=cv2.INTER_CUBIC)
    return _lerp_field(base, other, np.clip(clouds, 0, 1))


def _pick(rng: np.random.Generator, choices: Sequence):
    return choices[rng.integers(0, len(choices))]


class WordRenderer:
    """Renders any sample of one plan. Caches FreeType faces per (font, size): keep one per process."""

    def __init__(self, plan: SynthPlan):
        self.plan = plan
        self._faces: Dict[Tuple[int, int], ImageFont.FreeTypeFont] = {}
        self._fonts_by_char = _fonts_by_char(plan.fonts)
        self._all_fonts = (1 << len(plan.fonts)) - 1
        self._alphabet_by_font = ["".join(c for c in plan.random_alphabet if c in f.chars) for f in plan.fonts]
        self._photos: Dict[int, np.ndarray] = {}

    def _photo(self, index: int) -> np.ndarray:
        if index not in self._photos:
            bgr = cv2.imread(self.plan.photos[index], cv2.IMREAD_COLOR)
            if bgr is None:
                raise SynthError(f"background photo {self.plan.photos[index]} cannot be decoded; pass an image file")
            self._photos[index] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32)
        return self._photos[index]

    def _photo_background(self, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
        """A window of a photograph at a random scale, recoloured, its contrast squeezed so text stays readable."""
        photo = self._photo(int(rng.integers(0, len(self.plan.photos))))
        photo_h, photo_w = photo.shape[:2]
        window_h = int(np.clip(rng.uniform(0.04, 0.4) * photo_h, 8, photo_h))
        window_w = int(np.clip(window_h * width / height, 8, photo_w))
        y0, x0 = int(rng.integers(0, photo_h - window_h + 1)), int(rng.integers(0, photo_w - window_w + 1))
        canvas = cv2.resize(photo[y0:y0 + window_h, x0:x0 + window_w], (width, height), interpolation=cv2.INTER_AREA)
        canvas = canvas[..., rng.permutation(3)]
        if rng.random() < 0.2:
            canvas = 255 - canvas
        grey = _luminance(canvas)
        if rng.random() < 0.5:  # paint and stone are duller than the photographs' subjects
            canvas = canvas + (grey[..., None] - canvas) * rng.uniform(0.3, 1.0)
        low, high = np.percentile(grey, (2, 98))
        squeeze = min(1.0, rng.uniform(40, 110) / max(float(high - low), 1.0))
        level = rng.uniform(20, 235)
        return np.clip(level + (canvas - float(grey.mean())) * squeeze, 0, 255).astype(np.float32)

    @staticmethod
    def _neighbours(rng: np.random.Generator, masks: np.ndarray, face, alphabet: str) -> np.ndarray:
        """Parts of the letters beside the word, cut by the crop's edge, as a detector's tight box leaves them."""
        height = masks.shape[0]
        masks = masks.copy()
        for side in ("left", "right"):
            if not alphabet or rng.random() >= 0.5:
                continue
            glyph = _mask_array(face.getmask(_pick(rng, alphabet)))
            if glyph.size == 0 or glyph.shape[0] > height:
                continue
            shown = max(1, int(glyph.shape[1] * rng.uniform(0.15, 0.5)))
            part = glyph[:, -shown:] if side == "left" else glyph[:, :shown]
            part = part[:, :masks.shape[1]]
            top = int(rng.integers(0, height - glyph.shape[0] + 1))
            columns = slice(0, part.shape[1]) if side == "left" else slice(masks.shape[1] - part.shape[1], None)
            region = masks[top:top + glyph.shape[0], columns]
            np.maximum(region, part[..., None], out=region)
        return masks

    def _face(self, font_index: int, size: int) -> ImageFont.FreeTypeFont:
        key = (font_index, size)
        if key not in self._faces:
            self._faces[key] = _open_font(self.plan.fonts[font_index].path, size)
        return self._faces[key]

    def _pick_font(self, rng: np.random.Generator, usable: int) -> int:
        indices = [i for i in range(len(self.plan.fonts)) if usable >> i & 1]
        weights = np.array([self.plan.fonts[i].weight for i in indices])
        position = int(np.searchsorted(np.cumsum(weights), rng.random() * weights.sum(), side="right"))
        return indices[min(position, len(indices) - 1)]

    def _word_and_font(self, rng: np.random.Generator) -> Tuple[str, int]:
        """A lexicon word or random string, and a font that draws all of it."""
        plan = self.plan
        if rng.random() >= plan.random_fraction:
            word = _pick(rng, _pick(rng, plan.words))
            return word, self._pick_font(rng, _common_fonts(word, self._fonts_by_char, self._all_fonts))
        length = int(rng.integers(1, RANDOM_WORD_MAX_LENGTH + 1))
        word = "".join(_pick(rng, plan.random_alphabet) for _ in range(length))
        if plan.lower_labels and rng.random() < 0.5:
            word = word.upper()
        usable = _common_fonts(word, self._fonts_by_char, self._all_fonts)
        if usable:
            return word, self._pick_font(rng, usable)
        # Characters from fonts with disjoint coverage: keep the first, draw the rest from one of its fonts.
        font_index = self._pick_font(rng, self._fonts_by_char[word[0]])
        alphabet = self._alphabet_by_font[font_index]
        return word[0] + "".join(_pick(rng, alphabet) for _ in range(length - 1)), font_index

    def _text_masks(self, rng: np.random.Generator, word: str, face: ImageFont.FreeTypeFont, size: int):
        """Fill and outline coverage (H, W, 2) on a padded canvas, and whether there is an outline (when
        not, the outline channel repeats the fill). Letter spacing is sometimes widened or tightened."""
        outline = int(max(1, round(size * rng.uniform(0.03, 0.08)))) if rng.random() < 0.2 else 0
        tracking = rng.uniform(-0.05, 0.3) * size if rng.random() < 0.25 else 0.0
        pieces = list(word) if tracking else [word]
        advances = [face.getlength(piece) + tracking for piece in pieces]
        ascent, descent = face.getmetrics()
        pad = size // 2 + outline
        width = int(math.ceil(sum(advances) - tracking)) + 2 * pad
        canvas_size = (max(width, 2 * pad + 1), ascent + descent + 2 * pad)
        layers = []
        for stroke in (0, outline) if outline else (0,):
            layer = Image.new("L", canvas_size, 0)
            draw = ImageDraw.Draw(layer)
            x = float(pad)
            for piece, advance in zip(pieces, advances):
                draw.text((x, pad), piece, font=face, fill=255, stroke_width=stroke, stroke_fill=255)
                x += advance
            layers.append(np.asarray(layer))
        return np.dstack(layers * (3 - len(layers))), bool(outline)

    @staticmethod
    def _curve(rng: np.random.Generator, masks: np.ndarray, size: int) -> np.ndarray:
        """Bend the baseline along a sine, as text printed on a bottle or a wavy banner."""
        height, width = masks.shape[:2]
        amplitude = rng.uniform(0.05, 0.25) * size
        period = rng.uniform(1.0, 3.0) * width
        phase = rng.uniform(0, 2 * math.pi)
        extra = int(math.ceil(amplitude))
        xs = np.arange(width, dtype=np.float32)
        shift = amplitude * np.sin(2 * math.pi * xs / period + phase) + extra
        map_x = np.broadcast_to(xs, (height + 2 * extra, width))
        map_y = np.arange(height + 2 * extra, dtype=np.float32)[:, None] - shift[None, :]
        return cv2.remap(masks, np.ascontiguousarray(map_x), map_y.astype(np.float32), cv2.INTER_LINEAR)

    @staticmethod
    def _perspective(rng: np.random.Generator, masks: np.ndarray, size: int) -> np.ndarray:
        """Rotation, shear and corner jitter in one homography; the canvas grows so nothing is clipped."""
        height, width = masks.shape[:2]
        angle = math.radians(float(np.clip(rng.normal(0, 5), -15, 15)))
        shear = rng.uniform(-0.3, 0.3) if rng.random() < 0.2 else 0.0
        corners = np.float32([[0, 0], [width, 0], [width, height], [0, height]])
        centred = corners - (width / 2, height / 2)
        sheared = centred + np.stack([-shear * centred[:, 1], np.zeros(4)], 1)
        rotation = np.float32([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        moved = sheared @ rotation.T + rng.uniform(-0.12, 0.12, (4, 2)) * size
        moved = (moved - moved.min(0)).astype(np.float32)
        out_w, out_h = (int(v) + 1 for v in np.ceil(moved.max(0)))
        homography = cv2.getPerspectiveTransform(corners, moved)
        return cv2.warpPerspective(masks, homography, (out_w, out_h), flags=cv2.INTER_LINEAR)

    @staticmethod
    def _crop(rng: np.random.Generator, masks: np.ndarray, size: int) -> np.ndarray:
        """The ink's bounding box plus a small random margin on each side."""
        height, width = masks.shape[:2]
        # The outline channel covers the fill; faint anti-aliasing fringes do not count as ink.
        _, ink = cv2.threshold(np.ascontiguousarray(masks[..., 1]), 16, 255, cv2.THRESH_TOZERO)
        x, y, ink_w, ink_h = cv2.boundingRect(ink)
        if ink_w == 0:  # only whitespace was drawn: keep the whole canvas
            x, y, ink_w, ink_h = 0, 0, width, height
        top, bottom = (int(round(rng.uniform(0.05, 0.25) * size)) for _ in range(2))
        left, right = (int(round(rng.uniform(0.05, 0.35) * size)) for _ in range(2))
        y0, y1 = y - top, y + ink_h + bottom
        x0, x1 = x - left, x + ink_w + right
        crop = masks[max(y0, 0):min(y1, height), max(x0, 0):min(x1, width)]
        return cv2.copyMakeBorder(crop, max(-y0, 0), max(y1 - height, 0), max(-x0, 0), max(x1 - width, 0),
                                  cv2.BORDER_CONSTANT, value=0)

    def _compose(self, rng: np.random.Generator, masks: np.ndarray, has_outline: bool) -> np.ndarray:
        height, width = masks.shape[:2]
        on_photo = self.plan.photo_fraction > 0 and rng.random() < self.plan.photo_fraction
        canvas = self._photo_background(rng, height, width) if on_photo else _background(rng, height, width)
        lum = _luminance(canvas)
        low, high = np.percentile(lum, (1, 99)) if on_photo else (lum.min(), lum.max())
        text_colour = _contrasting_colour(rng, float(low), float(high))
        fill, outline = masks[..., 0].astype(np.float32) / 255, masks[..., 1].astype(np.float32) / 255
        if rng.random() < 0.15:
            dx, dy = rng.uniform(-0.1, 0.1, 2) * height
            shifted = cv2.warpAffine(outline, np.float32([[1, 0, dx], [0, 1, dy]]), (width, height))
            shadow = cv2.GaussianBlur(shifted, (0, 0), rng.uniform(0.5, 1.5)) * rng.uniform(0.4, 0.8)
            canvas = _lerp_field(canvas, np.zeros(3, np.float32), shadow)
        if has_outline:
            text_lum = float(_luminance(text_colour))
            outline_colour = _contrasting_colour(rng, text_lum, text_lum)
            canvas = _lerp_field(canvas, outline_colour, outline)
        return _lerp_field(canvas, text_colour, fill)

    @staticmethod
    def _degrade(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
        """Camera and compression damage: uneven light, low resolution, defocus and motion blur, noise, JPEG."""
        height, width = image.shape[:2]
        if rng.random() < 0.25:  # light falling off across the sign, or a shadow's soft edge
            angle = rng.uniform(0, 2 * math.pi)
            ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
            ramp = xs * math.cos(angle) / width + ys * math.sin(angle) / height
            ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
            if rng.random() < 0.4:
                ramp = 1 / (1 + np.exp(-(ramp - rng.uniform(0.2, 0.8)) * rng.uniform(8, 30)))
            image = image * (1 - rng.uniform(0.3, 0.7) * ramp)[..., None]
        if rng.random() < 0.25:
            factor = rng.uniform(0.25, 0.7)
            small = cv2.resize(image, (max(1, round(width * factor)), max(1, round(height * factor))),
                               interpolation=cv2.INTER_AREA)
            image = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
        if rng.random() < 0.35:
            image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.3, 1.1))
        elif rng.random() < 0.1:  # defocus: a disc, not a Gaussian
            radius = rng.uniform(1.0, 2.2)
            side = 2 * int(math.ceil(radius)) + 1
            disc = cv2.circle(np.zeros((side, side), np.float32), (side // 2, side // 2), int(round(radius)), 1.0, -1)
            image = cv2.filter2D(image, -1, disc / disc.sum())
        elif rng.random() < 0.1:
            length = int(rng.choice((3, 5)))
            kernel = np.zeros((length, length), np.float32)
            kernel[length // 2] = 1.0 / length
            rotation = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), rng.uniform(-30, 30), 1.0)
            image = cv2.filter2D(image, -1, cv2.warpAffine(kernel, rotation, (length, length)))
        if rng.random() < 0.5:
            image = image + rng.normal(0, rng.uniform(1, 10), image.shape).astype(np.float32)
        image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        if rng.random() < 0.4:
            quality = int(rng.integers(15, 76))
            bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
            _, buffer = cv2.imencode(".jpg", bgr, (cv2.IMWRITE_JPEG_QUALITY, quality))
            image = cv2.cvtColor(cv2.imdecode(buffer, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
        return image

    def render(self, index: int) -> Tuple[np.ndarray, str]:
        """Sample `index` as an RGB uint8 array (plan.height tall, width following the word) and its label."""
        rng = np.random.default_rng([self.plan.seed, index])
        word, font_index = self._word_and_font(rng)
        size = int(round(self.plan.height * FONT_SCALES[rng.integers(0, len(FONT_SCALES))]))
        masks, has_outline = self._text_masks(rng, word, self._face(font_index, size), size)
        if rng.random() < 0.2:
            masks = self._curve(rng, masks, size)
        if rng.random() < 0.7:
            masks = self._perspective(rng, masks, size)
        masks = self._crop(rng, masks, size)
        if rng.random() < 0.15:
            masks = self._neighbours(rng, masks, self._face(font_index, size), self._alphabet_by_font[font_index])
        height = self.plan.height
        width = max(1, int(round(masks.shape[1] * height / masks.shape[0])))
        shrinking = masks.shape[0] > height
        masks = cv2.resize(masks, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        label = word.lower() if self.plan.lower_labels else word
        return self._degrade(rng, self._compose(rng, masks, has_outline)), label

    def encode(self, index: int) -> Tuple[bytes, str]:
        image, label = self.render(index)
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
        if self.plan.image_format == "png":
            _, buffer = cv2.imencode(".png", bgr, (cv2.IMWRITE_PNG_COMPRESSION, 1))
        else:
            _, buffer = cv2.imencode(".jpg", bgr, (cv2.IMWRITE_JPEG_QUALITY, 95))
        return buffer.tobytes(), label
