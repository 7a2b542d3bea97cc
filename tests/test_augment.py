"""SVTRRecAug in the training pipeline: each part does what it claims, any crop size survives, the pixels are
a pure function of (seed, step, slot) so a resumed or data-parallel run sees the same batches, and bad
settings are refused with the key named."""
import copy
import dataclasses

import cv2
import numpy as np
import pytest

from rare_portable import load_config
from rare_portable.config import ConfigError, RareConfig
from rare_portable.data import augment as aug
from rare_portable.data.lmdb import write_lmdb
from rare_portable.train.data import BatchLoader, BatchPlan, TrainSet
from rare_portable.train.distributed import Cluster
from rare_portable.train.settings import read_settings

def word_image(word="sale", height=32) -> np.ndarray:
    image = np.full((height, 20 * len(word) + 10, 3), 255, np.uint8)
    cv2.putText(image, word, (5, height * 3 // 4), cv2.FONT_HERSHEY_SIMPLEX, height / 40, (20, 40, 200), 2)
    return image


def rng(seed=0):
    return np.random.default_rng(seed)


def test_nothing_changes_when_every_probability_is_zero():
    image = word_image()
    off = aug.AugmentSettings(geometry_p=0, deterioration_p=0, colorjitter_p=0)
    assert all(np.array_equal(aug.augment(image, off, rng(s)), image) for s in range(20))


def test_padding_repeats_the_edges_up_to_the_margin():
    """pad_p widens each side by up to pad_margin x height, repeating the crop's edge pixels outwards."""
    image = np.random.default_rng(7).integers(0, 256, (20, 50, 3), dtype=np.uint8)  # a unique place for the crop
    h, w = image.shape[:2]
    only_pad = aug.AugmentSettings(geometry_p=0, deterioration_p=0, colorjitter_p=0, pad_p=1, pad_margin=0.5)
    sides = []
    for seed in range(20):
        padded = aug.augment(image, only_pad, rng(seed))
        matches = [(t, l) for t in range(padded.shape[0] - h + 1) for l in range(padded.shape[1] - w + 1)
                   if np.array_equal(padded[t:t + h, l:l + w], image)]
        assert len(matches) == 1
        (t, l), = matches
        b, r = padded.shape[0] - h - t, padded.shape[1] - w - l
        assert all(0 <= side <= h // 2 for side in (t, b, l, r))
        assert (padded[:t, l:l + w] == image[0]).all() and (padded[t + h:, l:l + w] == image[-1]).all()
        assert (padded[t:t + h, :l] == image[:, :1]).all() and (padded[t:t + h, l + w:] == image[:, -1:]).all()
        sides += [t, b, l, r]
    assert min(sides) <= 1 and max(sides) >= h // 2 - 1  # the whole range is drawn


def test_rotation_turns_the_text_by_the_drawn_angle():
    """A horizontal bar rotated by a known angle: the principal axis of its pixels has that angle."""
    bar = np.zeros((40, 120, 3), np.uint8)
    bar[18:22, 10:110] = 255
    settings = aug.AugmentSettings(degrees=30)
    for seed in range(5):
        angle = aug._symmetric(rng(seed), settings.degrees)
        turned = aug._rotate(bar, settings, rng(seed))
        ys, xs = np.nonzero(turned[..., 0] > 128)
        measured = np.degrees(np.arctan(np.polyfit(xs, ys, 1)[0]))
        assert abs(measured - angle) < 2.0, (seed, angle, measured)
        assert turned.shape[0] >= bar.shape[0]  # the canvas grows to hold the whole turned crop


def test_deterioration_blurs_and_lowers_resolution():
    """Sharp text loses high frequencies (Laplacian energy) under every deterioration on average."""
    image = word_image(height=48)
    sharpness = lambda im: cv2.Laplacian(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()
    only_rescale = aug.AugmentSettings(rescale_factor=4)
    drawn = [aug._rescale(image, only_rescale, rng(s)) for s in range(30)]
    lowered = [d for d in drawn if not np.array_equal(d, image)]
    assert lowered and all(d.shape == image.shape for d in drawn)
    assert np.mean([sharpness(d) for d in lowered]) < 0.6 * sharpness(image)
    blurred = [aug._motion_blur(image, aug.AugmentSettings(motion_blur=12), rng(s)) for s in range(30)]
    assert np.mean([sharpness(b) for b in blurred]) < sharpness(image)


def test_colour_jitter_keeps_the_shape_and_changes_the_colours():
    image = word_image()
    jittered = [aug._color_jitter(image, aug.AugmentSettings(), rng(s)) for s in range(10)]
    assert all(j.shape == image.shape and j.dtype == np.uint8 for j in jittered)
    assert sum(not np.array_equal(j, image) for j in jittered) >= 9


@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 50, 3), (50, 2, 3), (7, 300, 3), (120, 40, 3), (32, 100, 1)])
def test_any_crop_size_comes_out_a_usable_image(shape):
    image = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    strong = aug.AugmentSettings(aug_type=1, geometry_p=1, deterioration_p=1, colorjitter_p=1, pad_p=0.5)
    for seed in range(40):
        out = aug.augment(image, strong, rng(seed))
        assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == shape[2] and min(out.shape[:2]) >= 1


def test_the_same_generator_draws_the_same_pixels():
    strong = aug.AugmentSettings(aug_type=1, geometry_p=1, deterioration_p=1, colorjitter_p=1)
    image = word_image()
    assert np.array_equal(aug.augment(image, strong, rng(4)), aug.augment(image, strong, rng(4)))
    assert not np.array_equal(aug.augment(image, strong, rng(4)), aug.augment(image, strong, rng(5)))


def pipeline_with(args):
    config = load_config("rare_tiny")
    raw = copy.deepcopy(config.raw)
    raw["train"]["dataset"]["transform_pipeline"].insert(2, {"SVTRRecAug": args})
    return RareConfig(config.spec, raw, config.source)


def test_the_pipeline_reads_svtrrecaug_as_paddleocr_writes_it():
    settings = read_settings(pipeline_with({"aug_type": 1, "geometry_p": 0.3})).train_data.augmentation
    assert settings == aug.AugmentSettings(aug_type=1, geometry_p=0.3)
    assert read_settings(load_config("rare_tiny")).train_data.augmentation is None


@pytest.mark.parametrize("args, message", [
    ({"geometry_p": 1.5}, "geometry_p must be a probability"),
    ({"aug_type": 2}, "aug_type must be 0"),
    ({"rotate_p": 0.5}, "unknown key 'rotate_p'"),
    ({"scale": 2}, "scale must be \\[low, high\\]"),
    ({"scale": [2.0, 0.5]}, "0 < low <= high"),
    ({"degrees": -5}, "degrees must be a number >= 0"),
    ({"pad_p": 2}, "pad_p must be a probability"),
    ({"pad_margin": -0.1}, "pad_margin must be a number >= 0"),
])
def test_bad_svtrrecaug_settings_name_the_key(args, message):
    with pytest.raises(ConfigError, match=message):
        read_settings(pipeline_with(args))


def loader(tmp_path, augmentation, rank=0, ranks=1, batch=4):
    config = load_config("rare_tiny", ["common.max_text_len=8", "model.head.batch_max_length=8"])
    settings = dataclasses.replace(read_settings(config).train_data, dirs=(tmp_path / "train",))
    trainset = TrainSet(settings, 0, 8, need_lengths=False)
    plan = BatchPlan(len(trainset), batch, Cluster(rank, ranks), seed=3, shuffle=True)
    return BatchLoader(trainset, plan, settings.input, config.spec.charset, 8, lower=True,
                       augmentation=augmentation)


def test_augmented_batches_are_the_same_on_resume_and_across_ranks(tmp_path):
    words = ["sale", "open", "exit", "push", "pull", "stop", "shop", "cafe"] * 2
    write_lmdb(tmp_path / "train" / "a", [(cv2.imencode(".png", word_image(w))[1].tobytes(), w) for w in words])
    settings = aug.AugmentSettings(aug_type=1, geometry_p=1, deterioration_p=0.5, colorjitter_p=0.5)
    first = loader(tmp_path, settings).load(1, 2)
    again = loader(tmp_path, settings).load(1, 2)  # a fresh loader, as a resumed run builds
    np.testing.assert_array_equal(first.images, again.images)
    plain = loader(tmp_path, None).load(1, 2)
    np.testing.assert_array_equal(first.targets, plain.targets)  # the same samples, other pixels
    assert not np.array_equal(first.images, plain.images)
    assert not np.array_equal(first.images, loader(tmp_path, settings).load(1, 3).images)
    halves = [loader(tmp_path, settings, rank, 2, batch=2).load(1, 2).images for rank in range(2)]
    np.testing.assert_array_equal(np.concatenate(halves), first.images)


def test_the_trainer_says_augmentation_is_on(tmp_path):
    from rare_portable.train.loop import Trainer

    write_lmdb(tmp_path / "train" / "a", [(cv2.imencode(".png", word_image(w))[1].tobytes(), w) for w in ["sale"] * 8])
    config = pipeline_with({"geometry_p": 0.3})
    config.raw["train"]["dataset"].update(dataset_root=str(tmp_path), data_dir="train")
    config.raw["train"]["ckpt_save_dir"] = str(tmp_path / "run")
    config.raw["common"]["batch_size"] = config.raw["train"]["loader"]["batch_size"] = 4
    config.raw["system"]["val_while_train"], config.raw["train"]["curriculum"] = False, None
    said = []
    Trainer(config, read_settings(config), echo=said.append)._describe()  # what run() prints first
    assert any("augmentation: SVTRRecAug (aug_type 0; geometry 0.3, deterioration 0.25, colour jitter 0.25)" in line
               for line in said), said

