"""Preprocessing against independent computations of MindOCR's eval recipe."""
import dataclasses
import math

import cv2
import numpy as np
import pytest

from rare_portable.data.preprocess import ImageDecodeError, batch, decode_image, preprocess
from rare_portable.spec import InputSpec
from rare_portable.tolerances import PREPROCESS_FP32, assert_allclose

FIXED = InputSpec(height=32, width=100)
PADDED = InputSpec(height=32, width=320, keep_ratio=True, padding=True)
ODD_NORM = InputSpec(height=32, width=100, mean=(10.0, 20.0, 30.0), std=(2.0, 4.0, 8.0))


def rgb_constant(h, w, rgb):
    return np.broadcast_to(np.array(rgb, dtype=np.uint8), (h, w, 3)).copy()


def normalised(values, spec):
    """Per-channel (v - mean) / std in float32, the formula, not our code path."""
    return (np.float32(values) - np.float32(spec.mean)) / np.float32(spec.std)


def test_decode_image_returns_rgb():
    rgb = np.random.default_rng(0).integers(0, 256, (7, 11, 3), dtype=np.uint8)
    ok, png = cv2.imencode(".png", rgb[:, :, ::-1])  # cv2 writes BGR
    np.testing.assert_array_equal(decode_image(png.tobytes(), "sample-1"), rgb)


@pytest.mark.parametrize("buf", [b"not an image at all", b""])
def test_undecodable_bytes_name_the_sample(buf):
    with pytest.raises(ImageDecodeError, match=r"^train/image-000000007: .* do not decode as an image"):
        decode_image(buf, "train/image-000000007")


def test_same_size_image_is_only_normalised_and_made_chw():
    image = np.random.default_rng(1).integers(0, 256, (32, 100, 3), dtype=np.uint8)
    out = preprocess(image, ODD_NORM)
    assert out.shape == (3, 32, 100) and out.dtype == np.float32
    for c in range(3):
        np.testing.assert_array_equal(out[c], (image[:, :, c].astype(np.float32) - ODD_NORM.mean[c]) / ODD_NORM.std[c])


def test_halving_resize_is_a_2x2_block_mean():
    # Bilinear with half-pixel centres at exactly 1/2 scale averages 2x2 blocks; multiples of 4 keep it integral.
    image = (np.random.default_rng(2).integers(0, 64, (64, 200, 3)) * 4).astype(np.uint8)
    block_mean = image.reshape(32, 2, 100, 2, 3).astype(np.float64).mean(axis=(1, 3))
    expected = normalised(block_mean, FIXED).transpose(2, 0, 1)
    assert_allclose(preprocess(image, FIXED), expected, PREPROCESS_FP32, "halving resize")


def test_bgr_spec_reverses_channel_order():
    out = preprocess(rgb_constant(32, 100, (10, 20, 30)), InputSpec(color="BGR"))
    expected_bgr = [(30 - 127) / 127, (20 - 127) / 127, (10 - 127) / 127]
    assert [float(out[c, 0, 0]) for c in range(3)] == pytest.approx(expected_bgr)


def test_keep_ratio_padding_layout_and_pad_value():
    # 16x40 -> height 32 keeps ratio 2.5 -> width ceil(32 * 2.5) = 80; columns 80.. are raw 0 normalised.
    spec = InputSpec(height=32, width=320, keep_ratio=True, padding=True, mean=(10.0, 20.0, 30.0), std=(2.0, 4.0, 8.0))
    out = preprocess(rgb_constant(16, 40, (50, 60, 70)), spec)
    assert out.shape == (3, 32, 320)
    content = normalised([50, 60, 70], spec)
    pad = normalised([0, 0, 0], spec)  # -mean/std, not 0: MindOCR pads before normalising
    for c in range(3):
        assert np.all(out[c, :, :80] == content[c])
        assert np.all(out[c, :, 80:] == pad[c])


def test_keep_ratio_width_rounds_up():
    # 30x31 -> 32 * 31/30 = 33.07 -> 34 columns of image.
    out = preprocess(rgb_constant(30, 31, (200, 200, 200)), PADDED)
    assert np.all(out[:, :, :34] == normalised([200] * 3, PADDED)[:, None, None])
    assert np.all(out[:, :, 34:] == normalised([0] * 3, PADDED)[:, None, None])


def test_keep_ratio_caps_wide_images_at_the_target_width():
    out = preprocess(rgb_constant(32, 1000, (90, 90, 90)), PADDED)
    assert out.shape == (3, 32, 320) and np.all(out == normalised([90] * 3, PADDED)[:, None, None])


def test_matches_mindocr_recipe_on_random_images():
    """RecResizeNormForInfer(keep_ratio, padding, norm_before_pad=False) written out step by step."""
    rng = np.random.default_rng(3)
    for spec in (FIXED, PADDED):
        for h, w in [(31, 77), (40, 250), (20, 600), (32, 100), (64, 33)]:
            image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            if spec.keep_ratio:
                resize_w = min(spec.width, int(math.ceil(spec.height * (w / float(h)))))
            else:
                resize_w = spec.width
            resized = cv2.resize(image, (resize_w, spec.height), interpolation=cv2.INTER_LINEAR).astype("float32")
            canvas = np.zeros((spec.height, spec.width, 3), dtype=np.float32)
            canvas[:, :resize_w] = resized
            expected = ((canvas - np.float32(spec.mean)) / np.float32(spec.std)).transpose(2, 0, 1)
            np.testing.assert_array_equal(preprocess(image, spec), expected)


def test_keep_ratio_without_padding_keeps_the_resized_width():
    spec = InputSpec(height=32, width=320, keep_ratio=True)
    assert preprocess(rgb_constant(16, 40, (1, 2, 3)), spec).shape == (3, 32, 80)
    with pytest.raises(ValueError, match=r"widths \[80, 100\].*set input.padding"):
        batch([rgb_constant(16, 40, (1, 2, 3)), rgb_constant(16, 50, (1, 2, 3))], spec)


def test_batch_stacks_preprocessed_images():
    rng = np.random.default_rng(4)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(32, 60), (28, 200), (50, 90)]]
    out = batch(images, PADDED)
    assert out.shape == (3, 3, 32, 320)
    for image, row in zip(images, out):
        np.testing.assert_array_equal(row, preprocess(image, PADDED))
    assert batch([], FIXED).shape == (0, 3, 32, 100)


@pytest.mark.parametrize("bad", [np.zeros((32, 100, 3), np.float32), np.zeros((32, 100), np.uint8)])
def test_rejects_images_that_are_not_hwc_uint8(bad):
    with pytest.raises(ValueError, match="expects an HWC uint8 image with 3 channels"):
        preprocess(bad, FIXED)


def test_tall_crops_are_turned_before_resizing_as_mindocr_rotate90():
    """The Chinese recipe's Rotate90IfVertical(threshold 2, counterclockwise), read from its config."""
    from rare_portable.config import load_config
    from rare_portable.data.preprocess import preprocess

    spec = load_config("rare_resnet34_ch").spec.input
    tall = np.random.default_rng(0).integers(0, 255, (90, 40, 3), dtype=np.uint8)  # h/w = 2.25 > 2
    turned = np.ascontiguousarray(np.rot90(tall))  # numpy's rot90 is counterclockwise
    plain = dataclasses.replace(spec, rotate_vertical=None)
    np.testing.assert_array_equal(preprocess(tall, spec), preprocess(turned, plain))
    squat = tall[:70]  # h/w = 1.75: left as it is
    np.testing.assert_array_equal(preprocess(squat, spec), preprocess(squat, plain))
