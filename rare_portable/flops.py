"""Floating-point operations per image, counted from the spec (2 per multiply-add, direct convolution).

Benchmarks divide these by measured time to report achieved GFLOP/s against the machine's SGEMM peak.
Element-wise work (BN, ReLU, pooling, softmax, gates) is left out: it is not what bounds the model.
"""
from __future__ import annotations

from typing import Dict

from .spec import ModelSpec


def _conv(cin: int, cout: int, k: int, h_out: int, w_out: int) -> int:
    return 2 * cin * cout * k * k * h_out * w_out


def flops_per_image(spec: ModelSpec) -> Dict[str, int]:
    """{part: FLOPs} for one image; `total` sums them."""
    i, b = spec.input, spec.backbone
    parts: Dict[str, int] = {}
    if spec.transform is not None:
        t = spec.transform
        h, w = t.tps_inputsize
        loc, cin = 0, i.channels
        for n, cout in enumerate(t.loc_channels):
            if n:
                h, w = h // 2, w // 2
            loc += _conv(cin, cout, 3, h, w)
            cin = cout
        loc += 2 * t.loc_flat_features * t.loc_fc_hidden + 2 * t.loc_fc_hidden * 2 * t.num_control_points
        out_h, out_w = t.tps_outputsize
        loc += 2 * out_h * out_w * t.num_control_points * 2  # grid = grid_from_points @ points
        parts["transform"] = loc
    h, w = i.height, i.width
    s0, s1, s2 = b.stem_channels
    conv = _conv(i.channels, s0, 3, h, w) + _conv(s0, s1, 3, h, w) + _conv(s1, s2, 3, h, w)
    h, w = -(-h // 2), -(-w // 2)
    cin = s2
    for stage, (depth, cout) in enumerate(zip(b.depths, b.widths)):
        for block in range(depth):
            sh, sw = b.stage_stride(stage) if block == 0 else (1, 1)
            ho, wo = -(-h // sh), -(-w // sw)
            conv += _conv(cin, cout, 3, ho, wo) + _conv(cout, cout, 3, ho, wo)
            if block == 0:
                conv += _conv(cin, cout, 1, ho, wo)  # shortcut projection
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
