"""Runtimes: every registered framework runtime gives the same probabilities, and every runtime refuses
a bad batch the same way before its framework sees it."""
import dataclasses
import sys

import numpy as np
import pytest

from mindocr_recipe import recipe
from rare_portable import build_model, get_state, load_config
from rare_portable.charset import NUM_SPECIAL, STOP
from rare_portable.nets import BackendUnavailable
from rare_portable.spec import SpecError
from rare_portable.tolerances import (CONFIDENCE_CROSS_BATCH, EXPORT_SELF_CHECK, FP32_RUNTIME, assert_allclose,
                                      assert_within, max_abs_diff)
from rare_portable.weights import write_state
from runtimes import RUNTIMES, Runtime, open_runtime

FRAMEWORK_RUNTIMES = ["torch", "mindspore", "mindspore-graph"]


@pytest.fixture(scope="module")
def spec():
    return load_config("rare_tiny").spec


@pytest.fixture(scope="module")
def recipe_weights(tmp_path_factory):
    """Non-trivial weights (MindOCR's recipe), so the heads' outputs differ from step to step."""
    shapes = {k: v.shape for k, v in get_state(build_model("rare_tiny", "torch")).items()}
    return write_state({k: recipe(k, s, seed=7) for k, s in shapes.items()},
                       tmp_path_factory.mktemp("weights") / "recipe.safetensors")


class Constant(Runtime):
    """A runtime without a framework, to test what the base class does on its own."""

    name = "constant"

    def __init__(self, spec, steps=None):
        super().__init__(spec)
        self.steps = steps or spec.head.num_steps
        self.seen = []

    def _predict(self, batch):
        self.seen.append(batch)
        probs = np.zeros((len(batch), self.steps, self.spec.num_classes), np.float32)
        probs[:, :, 1] = 1.0  # STOP at once: empty text
        return probs


def images(spec, n=3, seed=0):
    return spec.input.example_batch(n, seed)


def test_framework_runtimes_agree(spec, recipe_weights):
    import mindspore as ms

    x = images(spec)
    caller_mode = ms.get_context("mode")
    probs = {}
    for backend in FRAMEWORK_RUNTIMES:
        runtime = open_runtime(backend, "rare_tiny", recipe_weights)
        assert runtime.name == backend
        probs[backend] = runtime.predict(x)
        assert ms.get_context("mode") == caller_mode, f"{backend} left MindSpore in another mode"
    reference = probs["torch"]
    assert reference.shape == (3, spec.head.num_steps, spec.num_classes) and reference.dtype == np.float32
    assert len(set(reference.argmax(-1)[:, :5].ravel())) > 1, "recipe weights should not read one class only"
    for backend, out in probs.items():
        assert_within(max_abs_diff(out, reference), FP32_RUNTIME, backend)
        np.testing.assert_array_equal(out.argmax(-1), reference.argmax(-1))


def test_graph_and_pynative_runtimes_share_a_process(spec, recipe_weights):
    """MindSpore's mode is process-wide; each runtime must still run in its own."""
    graph = open_runtime("mindspore-graph", spec, recipe_weights)
    pynative = open_runtime("mindspore", spec, recipe_weights)
    x = images(spec, n=2)
    first = graph.predict(x)
    assert_allclose(pynative.predict(x), first, EXPORT_SELF_CHECK, "pynative vs graph")
    np.testing.assert_array_equal(graph.predict(x), first)
    assert (graph.mode, pynative.mode) == ("graph", "pynative")


def test_float64_is_narrowed_and_empty_batches_need_no_framework(spec):
    runtime = Constant(spec)
    x = images(spec, n=2)
    np.testing.assert_array_equal(runtime.predict(x.astype(np.float64)), runtime.predict(x))
    assert runtime.seen[0].dtype == np.float32 and runtime.seen[0].flags.c_contiguous
    assert runtime.predict(x[:0]).shape == (0, spec.head.num_steps, spec.num_classes)
    assert len(runtime.seen) == 2


@pytest.mark.parametrize("dtype", [np.uint8, np.int64, np.float16, bool])
def test_other_dtypes_are_refused_naming_expected_and_actual(spec, dtype):
    runtime = Constant(spec)
    with pytest.raises(SpecError, match=rf"expected a float32 batch, got {np.dtype(dtype)}"):
        runtime.predict(images(spec).astype(dtype))
    assert not runtime.seen


def test_non_arrays_are_refused(spec):
    with pytest.raises(SpecError, match="expected a numpy float32 array, got list"):
        Constant(spec).predict(images(spec).tolist())


@pytest.mark.parametrize("shape, message", [
    ((3, 32, 100), r"expected a batch N x 3 x 32 x 100 \(NCHW\), got shape \[3, 32, 100\]"),
    ((1, 1, 32, 100), "input has 1 channels, the model expects 3"),
    ((1, 3, 32, 128), "input is 32x128, the model expects 32x100"),
    ((1, 32, 100, 3), "input has 32 channels"),
])
def test_bad_shapes_are_refused_before_the_framework(spec, shape, message):
    runtime = Constant(spec)
    with pytest.raises(SpecError, match=message):
        runtime.predict(np.zeros(shape, np.float32))
    assert not runtime.seen


@pytest.mark.parametrize("backend", ["torch", "mindspore"])
def test_framework_runtimes_validate_too(spec, backend):
    runtime = open_runtime(backend, spec)
    with pytest.raises(SpecError, match="expected a float32 batch, got int32"):
        runtime.predict(images(spec).astype(np.int32))


def test_a_runtime_returning_the_wrong_shape_is_caught(spec):
    with pytest.raises(RuntimeError, match=r"shape \[2, 5, 38\], expected \[2, 26, 38\]"):
        Constant(spec, steps=5).predict(images(spec, n=2))


def test_recognise_preprocesses_predicts_and_decodes(spec):
    runtime = Constant(spec)
    words = [np.full((20, 60, 3), 255, np.uint8), np.zeros((40, 30, 3), np.uint8)]
    assert runtime.recognise(words) == [("", 0.0), ("", 0.0)]
    assert runtime.seen[0].shape == (2, 3, 32, 100)


def test_unknown_backend_lists_the_registered_ones():
    with pytest.raises(ValueError, match="unknown backend 'tensorflow'; choose one of torch, mindspore"):
        open_runtime("tensorflow", "rare_tiny")
    assert set(FRAMEWORK_RUNTIMES) <= set(RUNTIMES)


def test_missing_framework_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now fails as if not installed
    monkeypatch.delitem(sys.modules, "runtimes.torch_rt", raising=False)
    with pytest.raises(BackendUnavailable, match=r"needs torch.*pip install .*rare-portable\[torch\]"):
        open_runtime("torch", "rare_tiny")


def test_options_are_checked():
    with pytest.raises(ValueError, match="mode must be one of pynative, graph"):
        open_runtime("mindspore", "rare_tiny", mode="eager")
    with pytest.raises(ValueError, match="threads must be at least 1"):
        open_runtime("torch", "rare_tiny", threads=0)
    with pytest.raises(BackendUnavailable, match="mindspore does not know device 'tpu'"):
        open_runtime("mindspore", "rare_tiny", device="tpu")
    with pytest.raises(BackendUnavailable, match="torch does not know device 'tpu'"):
        open_runtime("torch", "rare_tiny", device="tpu")


def test_config_overrides_reach_the_runtime():
    runtime = open_runtime("torch", "rare_tiny", opts=["model.head.batch_max_length=10", "common.max_text_len=10"])
    assert runtime.predict(images(runtime.spec, n=1)).shape == (1, 11, 38)


def test_recognise_all_batches_by_width_and_answers_in_input_order(keep_ratio_config, recipe_weights):
    """Keep-ratio + padding: the runtime sees batches sorted by resized width; the caller gets its order back
    and the same readings as unsorted, one-image batches."""
    runtime = open_runtime("torch", keep_ratio_config, recipe_weights)
    rng = np.random.default_rng(3)
    widths = [int(w) for w in rng.integers(20, 200, 11)]
    # pixels 1..255: no raw 0, so only padding normalises to (0 - 127) / 127 = -1
    words = [rng.integers(1, 256, (32, w, 3), dtype=np.uint8) for w in widths]
    seen, predict = [], runtime._predict
    runtime._predict = lambda batch: (seen.append(batch), predict(batch))[1]

    results = list(runtime.recognise_all(((f"w{i}", image) for i, image in enumerate(words)), batch_size=4))

    assert [len(batch) for batch in seen] == [4, 4, 3]
    content_widths = [int((sample != -1.0).any(axis=(0, 1)).sum()) for batch in seen for sample in batch]
    assert content_widths == sorted(min(100, w) for w in widths)  # height 32: resized width = w, capped at 100
    assert [key for key, _ in results] == [f"w{i}" for i in range(len(words))]
    alone = [runtime.recognise([image])[0] for image in words]
    assert len({text for text, _ in alone}) > 1  # the readings differ, so a mix-up would show
    assert [text for _, (text, _) in results] == [text for text, _ in alone]
    batched, single = np.array([c for _, (_, c) in results]), np.array([c for _, c in alone])
    assert_within(np.max(np.abs(batched - single) / np.abs(single)), CONFIDENCE_CROSS_BATCH, "confidences")


class ReadsTopRows(Runtime):
    """Reads one letter from how bright the input's top rows are: "a" dark, "b" half, "c" bright, with that
    brightness as its confidence; so which orientation of a crop it was given shows in the text."""

    name = "reads-top-rows"

    def __init__(self, spec):
        super().__init__(spec)
        self.seen = []

    def _predict(self, batch):
        self.seen.append(len(batch))
        brightness = (batch[:, 0, :4].mean(axis=(1, 2)) + 1) / 2  # normalised [-1, 1] back to [0, 1]
        probs = np.zeros((len(batch), self.spec.head.num_steps, self.spec.num_classes), np.float32)
        letters = np.array([NUM_SPECIAL + self.spec.charset.chars.index(c) for c in "abc"])
        probs[np.arange(len(batch)), 0, letters[np.rint(brightness * 2).astype(int)]] = 0.1 + 0.8 * brightness
        probs[:, 1, STOP] = 1.0
        return probs


def with_rotate_vertical(spec, rotate_vertical):
    return dataclasses.replace(spec, input=dataclasses.replace(spec.input, rotate_vertical=rotate_vertical))


@pytest.mark.parametrize("rotate_vertical, letter", [
    (None, "b"), ((1.5, "counterclockwise"), "a"), ((1.5, "clockwise"), "c"), ((1.5, "most_confident"), "c"),
    ((3.5, "most_confident"), "b"),  # not tall enough: read as it is
])
def test_tall_crops_are_read_in_the_orientation_asked_for(spec, rotate_vertical, letter):
    """A 60x20 crop, its left half white: turned clockwise the white is on top, counterclockwise at the bottom.
    "most_confident" reads all three and keeps the most confident (white on top)."""
    tall = np.zeros((60, 20, 3), np.uint8)
    tall[:, :10] = 255
    runtime = ReadsTopRows(with_rotate_vertical(spec, rotate_vertical))
    (text, confidence), = runtime.recognise([tall])
    assert text == letter
    assert runtime.seen == ([1, 1, 1] if rotate_vertical == (1.5, "most_confident") else [1])  # batches of one


def test_most_confident_reads_only_tall_crops_again_in_batches_no_larger_than_asked(spec):
    runtime = ReadsTopRows(with_rotate_vertical(spec, (1.5, "most_confident")))
    tall = np.zeros((60, 20, 3), np.uint8)
    tall[:, :10] = 255
    wide = np.full((20, 60, 3), 255, np.uint8)
    readings = runtime.recognise([wide, tall, tall])
    assert [text for text, _ in readings] == ["c", "c", "c"]
    assert runtime.seen == [3, 3, 1]  # three crops, then each tall one turned two ways: 4 images in batches of 3


def test_recognise_all_reads_a_windows_turned_crops_in_whole_batches(spec):
    """The turned copies of every tall crop in a window share batches, so a runtime that pads each batch to its
    built size does not run a whole batch for a few turned crops."""
    runtime = ReadsTopRows(with_rotate_vertical(spec, (1.5, "most_confident")))
    tall = np.zeros((60, 20, 3), np.uint8)
    tall[:, :10] = 255
    wide = np.full((20, 60, 3), 255, np.uint8)
    crops = [tall, wide, wide, wide, tall, wide, wide, wide]
    results = list(runtime.recognise_all(enumerate(crops), batch_size=4))
    assert [key for key, _ in results] == list(range(8))
    assert [text for _, (text, _) in results] == ["c"] * 8
    assert runtime.seen == [4, 4, 4]  # 8 crops, then the 2 tall ones turned two ways: one batch, not two of 2


def with_reread_padded(spec, reread_padded, rotate_vertical=None):
    return dataclasses.replace(spec, input=dataclasses.replace(spec.input, reread_padded=reread_padded,
                                                               rotate_vertical=rotate_vertical))


def white_top_rows(height, width, rows):
    crop = np.zeros((height, width, 3), np.uint8)
    crop[:rows] = 255
    return crop


def test_unsure_readings_are_read_again_padded_and_the_more_confident_kept(spec):
    """A 20x60 crop, its top 2 rows white: resized to 32 rows, the stub's top 4 rows are 80% white (confidence
    0.74); padded by a quarter of its height (5 rows of white repeated on top), all white (0.9). A white crop
    reads at 0.9 at once and is not read again."""
    unsure, sure = white_top_rows(20, 60, 2), white_top_rows(20, 60, 20)
    runtime = ReadsTopRows(with_reread_padded(spec, (0.25, 0.9)))
    (text, unsure_confidence), (_, sure_confidence) = runtime.recognise([unsure, sure])
    assert text == "c" and unsure_confidence == pytest.approx(0.9, abs=0.01) and sure_confidence == pytest.approx(0.9, abs=0.01)
    assert runtime.seen == [2, 1]  # both, then the unsure one padded
    plain = ReadsTopRows(spec).recognise([unsure])[0][1]
    assert plain == pytest.approx(0.74, abs=0.02)
    below_it = ReadsTopRows(with_reread_padded(spec, (0.25, 0.7)))  # 0.74 is sure enough: read once
    assert below_it.recognise([unsure])[0][1] == pytest.approx(plain) and below_it.seen == [1]


def test_a_tall_crop_is_read_again_padded_in_the_orientation_that_won(spec):
    """A 60x20 crop, its left 2 columns white: turned clockwise it is the unsure crop above (0.74), and only that
    orientation padded reads at 0.9; padded as it is, it reads dark (under 0.3)."""
    tall = np.zeros((60, 20, 3), np.uint8)
    tall[:, :2] = 255
    runtime = ReadsTopRows(with_reread_padded(spec, (0.25, 0.9), rotate_vertical=(1.5, "most_confident")))
    (text, confidence), = runtime.recognise([tall])
    assert text == "c" and confidence == pytest.approx(0.9, abs=0.01)
    assert runtime.seen == [1, 1, 1, 1]  # as it is, each way turned, then padded


def test_recognise_all_reads_a_windows_padded_crops_in_whole_batches(spec):
    runtime = ReadsTopRows(with_reread_padded(spec, (0.25, 0.9)))
    unsure, sure = white_top_rows(20, 60, 2), white_top_rows(20, 60, 20)
    crops = [unsure, sure, sure, sure, unsure, sure, sure, sure]
    results = list(runtime.recognise_all(enumerate(crops), batch_size=4))
    assert [confidence for _, (_, confidence) in results] == pytest.approx([0.9] * 8, abs=0.01)
    assert runtime.seen == [4, 4, 2]  # 8 crops, then the 2 unsure ones padded in one batch


def test_recognise_all_keeps_input_order_in_batches_without_keep_ratio(spec):
    """Every image is stretched to the full width: nothing to sort, batches follow the input."""
    runtime = Constant(spec)
    grey_levels = (30, 10, 20)
    words = [np.full((32, w, 3), level, np.uint8) for w, level in zip((90, 20, 60), grey_levels)]
    assert [key for key, _ in runtime.recognise_all(zip("abc", words), batch_size=2)] == ["a", "b", "c"]
    first_pixels = [float(sample[0, 0, 0]) for batch in runtime.seen for sample in batch]
    assert first_pixels == pytest.approx([(level - 127) / 127 for level in grey_levels])
    assert [len(batch) for batch in runtime.seen] == [2, 1]


def test_padded_to_built_reuses_the_smallest_model_that_holds_the_batch():
    from rare_portable.recognizer import padded_to_built

    batch = np.ones((8, 3, 32, 100), np.float32)
    padded = padded_to_built(batch, {1, 32, 64})
    assert padded.shape == (32, 3, 32, 100)
    np.testing.assert_array_equal(padded[:8], batch)
    assert not padded[8:].any()
    assert padded_to_built(batch, {1, 8, 32}) is batch  # a model of its own size: as it is
    assert padded_to_built(batch, {1, 4}) is batch  # none holds it: the runtime builds one
