"""Both builders against outputs recorded from MindOCR's own implementation (../shared/conformance).

Tolerances (fp32) and why; the bounds and the values they were set from are the CONFORMANCE_* classes
in rare_portable/tolerances.py:
- eval_neck: max |diff| <= 1.2e-4 (measured 3.8e-5), eval_probs: <= 1e-4, identical greedy ids.
- eval_backbone: activations reach ~700, where one fp32 ulp is 6e-5 and 36 conv layers accumulate
  rounding differently per kernel; we bound max |diff| by 1e-5 of the tensor's largest magnitude
  (measured 2e-6 for both builders).
- train_logits: |diff| <= 5e-4 + 1e-4 |ref| (numpy allclose; see test_train_logits_record_is_beyond_1e4_of_float64),
  train_loss: 1e-4 + 1e-4 |ref|.
- gradients: ||diff|| / ||ref|| <= 1e-3, except backbone.conv1_1: 3.5e-2 (see test_first_conv_gradient).
"""
import numpy as np
import pytest

from backends import EVAL_BACKENDS, eval_outputs, set_ms_mode, train_outputs
from conftest import MINDOCR_RECORDS
from rare_portable import build_model
from rare_portable.tolerances import (
    CONFORMANCE_BACKBONE, CONFORMANCE_FIRST_CONV_GRADIENT, CONFORMANCE_GRADIENT, CONFORMANCE_NECK, CONFORMANCE_PROBS,
    CONFORMANCE_TRAIN_LOGITS, CONFORMANCE_TRAIN_LOSS, MARGIN, assert_allclose, assert_within, max_abs_diff)

FIRST_CONV = "grad/backbone.conv1_1.conv.weight"
# Train logits (CONFORMANCE_TRAIN_LOGITS): MindOCR's record is 1.2e-4 from the same logits in float64, ours 1.1e-4
# (AMD Zen 3, AVX2 kernels), so the two fp32 runs may differ by their sum: measured 1.6e-4 on Zen 3 and on Zen 5
# (AVX-512); bound with 3x margin.


def _rel(a, b):
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.mark.parametrize("config", sorted(MINDOCR_RECORDS))
@pytest.mark.parametrize("backend,mode", EVAL_BACKENDS, ids=["torch", "ms-pynative", "ms-graph"])
def test_eval_matches_mindocr(config, backend, mode, mindocr_record):
    opts, record, ckpt = mindocr_record(config)
    set_ms_mode(mode)
    net = build_model(config, backend, opts=opts, weights=ckpt)
    out = eval_outputs(net, backend, record["x"])
    ref_bb = record["eval_backbone"]
    assert out["backbone"].shape == ref_bb.shape
    assert_within(max_abs_diff(out["backbone"], ref_bb) / np.abs(ref_bb).max(), CONFORMANCE_BACKBONE, "eval_backbone")
    assert_within(max_abs_diff(out["neck"], record["eval_neck"]), CONFORMANCE_NECK, "eval_neck")
    assert_within(max_abs_diff(out["probs"], record["eval_probs"]), CONFORMANCE_PROBS, "eval_probs")
    np.testing.assert_array_equal(out["probs"].argmax(-1), record["eval_probs"].argmax(-1))


@pytest.mark.parametrize("config", sorted(MINDOCR_RECORDS))
@pytest.mark.parametrize("backend", ["torch", "mindspore"])
def test_train_matches_mindocr(config, backend, mindocr_record):
    opts, record, ckpt = mindocr_record(config)
    net = build_model(config, backend, opts=opts, weights=ckpt, train=True)
    grad_keys = [k for k in record if k.startswith("grad/")]
    logits, loss, grads = train_outputs(net, backend, record["x"], record["targets"], [k[5:] for k in grad_keys])
    assert_allclose(logits, record["train_logits"], CONFORMANCE_TRAIN_LOGITS, "train_logits")
    assert_allclose(loss, record["train_loss"], CONFORMANCE_TRAIN_LOSS, "train_loss")
    for key in grad_keys:
        tolerance = CONFORMANCE_FIRST_CONV_GRADIENT if key == FIRST_CONV else CONFORMANCE_GRADIENT
        assert_within(_rel(grads[key[5:]], record[key]), tolerance, key)


def test_first_conv_gradient_is_ill_conditioned_in_fp32(mindocr_record):
    """Why backbone.conv1_1's gradient gets 3.5e-2, not 1e-3: the same network in float64 sits
    ~1e-2 from MindOCR's fp32 record (and ~4e-3 from our fp32), so no fp32 implementation,
    MindOCR's included, reproduces it to 1e-3. The float64 run still has to land closer to our
    fp32 than the bound, which shows the bound is about rounding, not a layout error."""
    import torch

    opts, record, ckpt = mindocr_record("rare_resnet34")
    results = {}
    for dtype in (torch.float32, torch.float64):
        net = build_model("rare_resnet34", "torch", opts=opts, weights=ckpt, train=True).to(dtype)
        _, _, grads = train_outputs(net, "torch", record["x"].astype(np.float64 if dtype == torch.float64 else np.float32),
                                    record["targets"], [FIRST_CONV[5:]])
        results[dtype] = grads[FIRST_CONV[5:]].astype(np.float64)
    record_err = _rel(record[FIRST_CONV], results[torch.float64])
    ours_err = _rel(results[torch.float32], results[torch.float64])
    assert CONFORMANCE_GRADIENT.bound < record_err
    assert_within(record_err, CONFORMANCE_FIRST_CONV_GRADIENT, "MindOCR's fp32 record vs float64")
    assert_within(ours_err, CONFORMANCE_FIRST_CONV_GRADIENT, "our fp32 vs float64")


def test_backbone_record_is_beyond_1e4_of_float64(mindocr_record):
    """Why eval_backbone is bounded relative to its scale, not at 1e-4 absolute: MindOCR's own fp32
    record sits ~1.5e-3 from the same network in float64 (values reach ~700), so 1e-4 absolute is
    below what fp32 resolves here; our fp32 backbone is closer to float64 than the record is."""
    import torch

    opts, record, ckpt = mindocr_record("rare_resnet34")
    net = build_model("rare_resnet34", "torch", opts=opts, weights=ckpt)
    with torch.no_grad():
        ours = net.backbone(torch.from_numpy(record["x"])).numpy().astype(np.float64)
        exact = net.double().backbone(torch.from_numpy(record["x"]).double()).numpy()
    record_err = np.abs(record["eval_backbone"] - exact).max()
    assert record_err > 1e-4
    assert np.abs(ours - exact).max() < record_err


def test_train_logits_record_is_beyond_1e4_of_float64(mindocr_record):
    """Why train_logits get 5e-4, not 1e-4: MindOCR's own fp32 record sits more than 1e-4 from the same network
    evaluated in float64, so a 1e-4 bound asks more than fp32 gives; our fp32 logits are within the bound of
    float64 with room to spare, which shows the bound is about rounding, not a layout error."""
    import torch

    opts, record, ckpt = mindocr_record("rare_resnet34")
    logits = {}
    for dtype in (torch.float32, torch.float64):
        net = build_model("rare_resnet34", "torch", opts=opts, weights=ckpt, train=True).to(dtype)
        x = record["x"].astype(np.float64 if dtype == torch.float64 else np.float32)
        logits[dtype] = train_outputs(net, "torch", x, record["targets"], [])[0].astype(np.float64)
    exact = logits[torch.float64]
    assert np.abs(record["train_logits"] - exact).max() > 1e-4
    assert np.abs(logits[torch.float32] - exact).max() < CONFORMANCE_TRAIN_LOGITS.bound / MARGIN
