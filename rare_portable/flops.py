"""Floating-point operations per image, counted from the spec (2 per multiply-add, direct convolution).

Benchmarks divide these by measured time to report achieved GFLOP/s against the machine's SGEMM peak.
Element-wise work (BN, ReLU, pooling, softmax, gates) is left out: it is not what bounds the model.
`in_image=True` counts only the kernel taps that land inside the image: padding multiplies zeros, and
kernels that skip it (ONNX Runtime's, oneDNN's) never do that work, which on rare_resnet34's 2- and
4-row feature maps is up to a third of the direct count.
"""
from __future__ import annotations

from typing import Dict

from .spec import ModelSpec


def _taps(n: int, k: int, stride: int, in_image: bool) -> int:
    """Kernel taps along one axis of n pixels, summed over the outputs of a conv padded by (k - 1) // 2."""
    pad = (k - 1) // 2
    starts = range(-pad, n + pad - k + 1, stride)
    return sum(min(n, s + k) - max(0, s) for s in starts) if in_image else k * len(starts)


def _conv(cin: int, cout: int, k: int, h: int, w: int, in_image: bool, stride=(1, 1)) -> int:
    """FLOPs of a k x k convolution over an h x w input."""
    return 2 * cin * cout * _taps(h, k, stride[0], in_image) * _taps(w, k, stride[1], in_image)


def flops_per_image(spec: ModelSpec, in_image: bool = False) -> Dict[str, int]:
    """{part: FLOPs} for one image; `total` sums them. `in_image`: convolutions count no padding taps."""
    i, b = spec.input, spec.backbone
    parts: Dict[str, int] = {}
    if spec.transform is not None:
        t = spec.transform
        h, w = t.tps_inputsize
        loc, cin = 0, i.channels
        for n, cout in enumerate(t.loc_channels):
            if n:
                h, w = h // 2, w // 2
            loc += _conv(cin, cout, 3, h, w, in_image)
            cin = cout
        loc += 2 * t.loc_flat_features * t.loc_fc_hidden + 2 * t.loc_fc_hidden * 2 * t.num_control_points
        out_h, out_w = t.tps_outputsize
        loc += 2 * out_h * out_w * t.num_control_points * 2  # grid = grid_from_points @ points
        parts["transform"] = loc
    h, w = i.height, i.width
    s0, s1, s2 = b.stem_channels
    conv = sum(_conv(c_in, c_out, 3, h, w, in_image) for c_in, c_out in ((i.channels, s0), (s0, s1), (s1, s2)))
    h, w = -(-h // 2), -(-w // 2)
    cin = s2
    for stage, (depth, cout) in enumerate(zip(b.depths, b.widths)):
        for block in range(depth):
            sh, sw = b.stage_stride(stage) if block == 0 else (1, 1)
            ho, wo = -(-h // sh), -(-w // sw)
            conv += _conv(cin, cout, 3, h, w, in_image, (sh, sw)) + _conv(cout, cout, 3, ho, wo, in_image)
            if block == 0:
                conv += _conv(cin, cout, 1, ho, wo, in_image)  # shortcut projection (after the vd average pool)
            h, w, cin = ho, wo, cout
    parts["backbone"] = conv
    steps, hidden, c = spec.sequence_length, spec.neck.hidden_size, b.out_channels
    lstm, inputs = 0, c
    for _ in range(spec.neck.num_layers):
        lstm += 2 * steps * 2 * 4 * hidden * (inputs + hidden)  # two directions
        inputs = 2 * hidden
    parts["neck"] = lstm
    hd, enc, n_cls = spec.head.hidden_size, spec.neck.out_channels, spec.num_classes
    per_step = (2 * hd * hd  # h2h
                + 2 * steps * hd  # score
                + 2 * steps * enc  # context
                + 2 * 3 * hd * (enc + hd)  # GRU (the one-hot input is a gather, no FLOPs)
                + 2 * hd * n_cls)  # generator
    parts["head"] = 2 * steps * enc * hd + spec.head.num_steps * per_step  # i2h once + each step
    parts["total"] = sum(parts.values())
    return parts
