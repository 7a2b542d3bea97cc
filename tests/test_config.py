"""Config loading (ours and MindOCR's schema), overrides, and the clear errors bad input gets."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rare_portable import ConfigError, WeightsError, build_model, load_config, save_weights
from rare_portable.charset import CharsetError, load_charset
from rare_portable.config import CONFIG_DIR
from rare_portable.spec import SpecError

ROOT = Path(__file__).resolve().parent.parent


def test_mindocr_recipes_read_unchanged():
    """configs/rare_resnet34*.yaml are MindOCR's files byte for byte; the spec says what MindOCR builds."""
    en = load_config("rare_resnet34").spec
    assert (en.num_classes, en.input.height, en.input.width, en.input.keep_ratio) == (38, 32, 100, False)
    assert (en.neck.hidden_size, en.head.hidden_size, en.head.num_steps, en.transform) == (256, 256, 26, None)
    assert en.input.mean == (127.0,) * 3 and en.input.color == "RGB"
    assert en.sequence_length == 25
    ch = load_config("rare_resnet34_ch").spec
    assert (ch.num_classes, ch.input.width, ch.input.keep_ratio, ch.input.padding) == (6625, 320, True, True)
    assert (ch.neck.hidden_size, ch.head.batch_max_length, ch.sequence_length) == (64, 40, 80)
    assert len(ch.charset.chars) == 6623 and "\u3000" in ch.charset.chars
    assert ch.input.rotate_vertical == (2.0, "counterclockwise")
    assert ch.input.reading_rules() == ("crops over 2x taller than wide read turned counterclockwise instead",)
    assert en.input.rotate_vertical is None


def test_overrides_are_yaml_typed_and_reach_the_spec():
    cfg = load_config("rare_tiny", ["common.batch_size=8", "model.neck.hidden_size=32",
                                    "model.transform.name=STN_ON", "train.dataset.dataset_root=data/x"])
    assert cfg.spec.neck.hidden_size == 32 and cfg.spec.transform is not None
    assert cfg.section("common.batch_size") == 8 and cfg.section("train.dataset.dataset_root") == "data/x"


@pytest.mark.parametrize("opts,message", [
    (["model.neck.hiden=3"], "model.neck.hiden (did you mean 'hidden_size'?)"),
    (["modle.x=1"], "unknown section 'modle'"),
    (["common.batch_size"], "expected dotted.key=value"),
    (["model.head.out_channels=40"], "model.head.out_channels=40 contradicts common.num_classes=38"),
    (["model.head.out_channels=40", "common.num_classes=40"], "dictionary (builtin:0-9a-z) has 36 characters"),
    (["model.head.batch_max_length=30"], "contradicts common.max_text_len=25"),
    (["model.backbone.name=rec_resnet34"], "rec_resnet34 fixes it"),
    (["model.neck.name=RNN"], "RARE uses RNNEncoder"),
    (["model.transform.name=STN_ON", "model.transform.tps_outputsize=[32,64]"], "must equal the input size"),
    (["eval.dataset.transform_pipeline=[{RecResizeNormForInfer: {target_height: 48, target_width: 100}}]"],
     "disagree on the input height"),
    (["eval.dataset.transform_pipeline=[{DecodeImage: {img_mode: RGB}}, {Rotate90IfVertical: {direction: up}}]"],
     "Rotate90IfVertical.direction must be one of counterclockwise, clockwise, most_confident, got 'up'"),
    (["eval.dataset.transform_pipeline=[{DecodeImage: {img_mode: RGB}}, {RereadPadded: {margins: 0.2}}]"],
     "RereadPadded takes margin and below_confidence, not 'margins'"),
    (["eval.dataset.transform_pipeline=[{DecodeImage: {img_mode: RGB}}, {RereadPadded: {margin: 0}}]"],
     "RereadPadded.margin must be in (0, 1]"),
    (["eval.dataset.transform_pipeline=[{DecodeImage: {img_mode: RGB}}, {RereadPadded: {below_confidence: 2}}]"],
     "RereadPadded.below_confidence must be in (0, 1], got 2.0"),
    (["common.character_dict_path=nowhere/missing.txt"], "dictionary nowhere/missing.txt not found"),
    (["common.nosuchkey=3"], "--opt common.nosuchkey: "),
    (["common.batch_sise=8"], "(did you mean 'batch_size'?)"),
    (["train.loader.num_worker=2"], "(did you mean 'num_workers'?)"),
])
def test_bad_configs_name_the_key(opts, message):
    with pytest.raises(ConfigError) as err:
        load_config("rare_tiny", opts)
    assert message in str(err.value)
    assert "rare_tiny.yaml" in str(err.value) or str(err.value).startswith("--opt ")


def test_exponent_floats_read_as_numbers(tmp_path):
    """PyYAML (YAML 1.1) reads `1e-8` as a string; MindOCR users write it, in yaml and in --opt."""
    cfg = load_config("rare_tiny", ["optimizer.eps=1e-8", "scheduler.lr=2E-3"])
    assert cfg.section("optimizer.eps") == 1e-8 and cfg.section("scheduler.lr") == 2e-3
    path = tmp_path / "c.yaml"
    path.write_text((CONFIG_DIR / "rare_tiny.yaml").read_text().replace("lr: 0.002", "lr: 2e-3"))
    assert load_config(str(path)).section("scheduler.lr") == 2e-3


def test_an_opt_may_add_a_key_rare_or_mindocr_reads():
    """rare_resnet34.yaml writes no curriculum, device target or label smoothing: an --opt adds them."""
    cfg = load_config("rare_resnet34", ["train.curriculum.epochs=0.2", "system.device_target=CPU",
                                        "loss.label_smoothing=0.1", "train.ema=True"])
    assert cfg.section("train.curriculum.epochs") == 0.2 and cfg.section("loss.label_smoothing") == 0.1


def test_an_unknown_opt_key_is_one_line_exit_2_from_the_cli():
    run = subprocess.run([sys.executable, "-c", "from rare_portable.cli import main; main()", "eval", "-c", "rare_tiny",
                          "--opt", "common.nosuchkey=3", "--data", "nowhere"], capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        f"Error: --opt common.nosuchkey: {CONFIG_DIR / 'rare_tiny.yaml'} has no such key and rare does not read it "
        f"(known: batch_size, character_dict_path, infer_mode, max_text_len, num_classes, use_space_char)"]


def test_malformed_yaml_names_file_and_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  backbone:\n    name: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: line \d+ malformed yaml"):
        load_config(str(bad))
    bad.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping of sections"):
        load_config(str(bad))


def test_unknown_config_name_lists_shipped():
    with pytest.raises(ConfigError, match="rare_tiny"):
        load_config("rare_nonexistent")


@pytest.mark.parametrize("content,message", [
    ("a\nb\na\n", r"dict.txt:3: 'a' repeats line 1"),
    ("a\n\nb\n", r"dict.txt:2: empty line"),
    ("", "empty dictionary"),
])
def test_bad_dictionaries_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "dict.txt"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(CharsetError, match=message):
        load_charset(str(path))


def test_dictionary_lines_keep_whitespace_characters(tmp_path):
    path = tmp_path / "dict.txt"
    path.write_bytes("x\r\n\u3000\r\ny".encode())
    assert load_charset(str(path)).chars == ("x", "\u3000", "y")
    assert load_charset(str(path), use_space_char=True).num_classes == 6


def test_checkpoint_of_another_model_lists_offenders_and_cause(tmp_path):
    ch_like = build_model("rare_tiny", "torch", opts=["common.num_classes=96", "model.head.out_channels=96",
                                                      "common.character_dict_path=en_dict.txt"])
    path = save_weights(ch_like, tmp_path / "en.safetensors")
    with pytest.raises(WeightsError) as err:
        build_model("rare_tiny", "mindspore", weights=path)
    text = str(err.value)
    assert "head.generator.weight file (96, 64) vs model (38, 64)" in text
    assert "96 classes and the config's dictionary gives 38" in text
    other = save_weights(build_model("rare_tiny", "torch", opts=["model.transform.name=STN_ON"]), tmp_path / "t.ckpt")
    with pytest.raises(WeightsError, match=r"38 unexpected: transform\..*\(TPS\) is on in one and off"):
        build_model("rare_tiny", "torch", weights=other)


def test_corrupt_weight_file_is_a_clear_error(tmp_path):
    for suffix in (".ckpt", ".pt", ".safetensors"):
        path = tmp_path / f"broken{suffix}"
        path.write_bytes(b"not a checkpoint")
        with pytest.raises(WeightsError, match=f"broken{suffix}: cannot read as"):
            build_model("rare_tiny", "torch", weights=path)
    with pytest.raises(WeightsError, match="unknown weights format '.h5'"):
        build_model("rare_tiny", "torch", weights=tmp_path / "w.h5")


@pytest.mark.parametrize("backend", ["torch", "mindspore"])
@pytest.mark.parametrize("shape,message", [
    ((1, 1, 32, 100), "input has 1 channels, the model expects 3"),
    ((1, 3, 48, 100), "input is 48x100, the model expects 32x100"),
    ((3, 32, 100), "expected a batch N x 3 x 32 x 100"),
])
def test_wrong_input_is_one_clear_error(backend, shape, message):
    net = build_model("rare_tiny", backend)
    x = np.zeros(shape, np.float32)
    if backend == "torch":
        import torch
        x = torch.from_numpy(x)
    else:
        import mindspore as ms
        x = ms.Tensor(x)
    with pytest.raises(SpecError, match=message):
        net(x)


def test_cli_prints_one_line_not_a_traceback(tmp_path):
    image = tmp_path / "w.png"
    import cv2
    cv2.imwrite(str(image), np.full((20, 60, 3), 200, np.uint8))
    run = subprocess.run([sys.executable, "-c", "from rare_portable.cli import main; main()", "rectify", str(image),
                          "-c", "rare_tiny", "--opt", "model.neck.hiden=3"], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        f"Error: {CONFIG_DIR / 'rare_tiny.yaml'}: unknown key model.neck.hiden (did you mean 'hidden_size'?)"]


def test_rectify_writes_side_by_side_pictures(tmp_path):
    import cv2
    image = tmp_path / "word.png"
    cv2.imwrite(str(image), np.random.default_rng(0).integers(0, 255, (24, 80, 3), dtype=np.uint8))
    run = subprocess.run([sys.executable, "-c", "from rare_portable.cli import main; main()", "rectify", str(image),
                          "-c", "rare_tiny", "--opt", "model.transform.name=STN_ON", "-o", str(tmp_path / "out"),
                          "--scale", "1"], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    picture = cv2.imread(str(tmp_path / "out" / "word_rectified.png"))
    assert picture.shape == (32, 100 + 4 + 100, 3)
