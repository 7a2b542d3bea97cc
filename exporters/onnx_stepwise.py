"""A decoder that stops at STOP: the network as two ONNX graphs, an encoder and one attention step, that a
runtime drives step by step until every word in the batch has emitted STOP (issue 14).

The unrolled graph (`onnx_export.export_onnx`) always runs all `head.num_steps` steps; words average 5-6
characters. Here the encoder file (`rare.onnx`) carries the spec and names its step file (`rare.step.onnx`,
beside it) in its metadata; `runtimes.onnxruntime_rt` sees that and loops. Probabilities up to each word's
STOP equal the unrolled graph's; the steps after every word stopped are filled with STOP (one-hot), which
decodes identically. Lite and Ascend keep the unrolled graph (they cannot loop from Python).
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

from rare_portable import __version__
from rare_portable.artifact import FLAVOUR_KEY, INPUT_NAME, SPEC_KEY, STEP_KEY, VERSION_KEY, output_folder, step_path
from rare_portable.files import temp_beside
from rare_portable.spec import ModelSpec, spec_to_dict

ENCODER_OUTPUTS = ("batch_h", "batch_h_proj")
STEP_INPUTS = ("hidden", "batch_h", "batch_h_proj", "prev_ids")
STEP_OUTPUTS = ("next_hidden", "step_probs")


def _graphs(net):
    """(encoder, one step) as torch modules sharing the network's layers."""
    import torch
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, images):
            batch_h = self.net.encode(images).permute(1, 0, 2)
            return batch_h, self.net.head.attention_cell.i2h(batch_h)

    class Step(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = net.head

        def forward(self, hidden, batch_h, batch_h_proj, prev_ids):
            hidden = self.head.attention_cell(hidden, batch_h, batch_h_proj, prev_ids)
            return hidden, torch.softmax(self.head.generator(hidden), dim=1)

    return Encoder().eval(), Step().eval()


def export_stepwise(net, output, opset: int = 17) -> Path:
    """Write `output` (the encoder, with the spec) and its step graph beside it; dynamic batch."""
    import onnx
    import torch

    spec: ModelSpec = net.spec
    output = Path(output)
    output_folder(output)
    net = net.eval()
    encoder, step = _graphs(net)
    x = torch.from_numpy(spec.input.example_batch(2))
    with torch.inference_mode():
        batch_h, batch_h_proj = encoder(x)
    hidden = torch.zeros(2, spec.head.hidden_size)
    prev = torch.zeros(2, dtype=torch.long)
    batch_axis = {0: "batch"}
    written = []
    try:
        for module, args, inputs, outputs, path in (
                (encoder, (x,), [INPUT_NAME], list(ENCODER_OUTPUTS), output),
                (step, (hidden, batch_h, batch_h_proj, prev), list(STEP_INPUTS), list(STEP_OUTPUTS),
                 step_path(output))):
            tmp = temp_beside(path, ".onnx")
            written.append(tmp)
            with torch.inference_mode(), warnings.catch_warnings():
                warnings.simplefilter("ignore")
                torch.onnx.export(module, args, tmp, dynamo=False, opset_version=opset, input_names=inputs,
                                  output_names=outputs, dynamic_axes={n: batch_axis for n in inputs + outputs},
                                  do_constant_folding=True)
            model = onnx.load(tmp)
            meta = {SPEC_KEY: json.dumps(spec_to_dict(spec), ensure_ascii=False), FLAVOUR_KEY: "stepwise",
                    VERSION_KEY: __version__}
            if path == output:
                meta[STEP_KEY] = step_path(output).name
            for key, value in meta.items():
                model.metadata_props.add(key=key, value=value)
            onnx.checker.check_model(model, full_check=True)
            onnx.save(model, tmp)
        os.replace(written[1], step_path(output))  # the step first: an encoder never names a missing file
        os.replace(written[0], output)
    finally:
        for tmp in written:
            if os.path.exists(tmp):
                os.remove(tmp)
    return output
