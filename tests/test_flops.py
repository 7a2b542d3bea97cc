"""FLOPs from the spec against PyTorch's own FLOP counter on the built network, and against the taps
PyTorch finds inside the image for every convolution it runs."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from rare_portable import build_model, list_configs, load_config
from rare_portable.flops import flops_per_image


@pytest.mark.parametrize("config", [c for c in list_configs() if c != "rare_resnet34_ch"] + ["rare_tiny_tps"])
def test_backbone_and_transform_flops_match_torch_counter(config):
    opts = ["model.transform.name=STN_ON"] if config == "rare_tiny_tps" else []
    name = "rare_tiny" if config == "rare_tiny_tps" else config
    spec = load_config(name, opts).spec
    net = build_model(spec, "torch")
    i = spec.input
    x = torch.zeros(1, i.channels, i.height, i.width)
    counted = {}
    for part in ("transform", "backbone"):
        module = getattr(net, part)
        if module is None:
            continue
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            module(x)
        counted[part] = counter.get_total_flops()
    ours = flops_per_image(spec)
    assert ours["backbone"] == counted["backbone"]
    if "transform" in counted:
        assert ours["transform"] == counted["transform"]


def test_rare_resnet34_is_about_7_gflop():
    assert 6.9e9 < flops_per_image(load_config("rare_resnet34").spec)["total"] < 7.2e9


def _conv_flops_seen_by_torch(module, x):
    """(direct, in-image) FLOPs of every Conv2d `module` runs on `x`, from the shapes each one receives:
    the in-image taps are a convolution of ones with ones, zero-padded as the layer pads."""
    direct, in_image = [], []

    def hook(conv, args, out):
        _, _, h, w = args[0].shape
        ones = torch.ones(1, 1, h, w)
        taps = torch.nn.functional.conv2d(ones, torch.ones(1, 1, *conv.kernel_size), stride=conv.stride,
                                          padding=conv.padding, dilation=conv.dilation).sum().item()
        per_tap = 2 * conv.in_channels // conv.groups * conv.out_channels
        direct.append(per_tap * out.shape[2] * out.shape[3] * conv.kernel_size[0] * conv.kernel_size[1])
        in_image.append(per_tap * int(taps))

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.inference_mode():
        module(x)
    for h in handles:
        h.remove()
    return sum(direct), sum(in_image)


@pytest.mark.parametrize("config", [c for c in list_configs() if c != "rare_resnet34_ch"] + ["rare_tiny_tps"])
def test_in_image_flops_drop_exactly_the_padding_taps(config):
    opts = ["model.transform.name=STN_ON"] if config == "rare_tiny_tps" else []
    spec = load_config("rare_tiny" if config == "rare_tiny_tps" else config, opts).spec
    net = build_model(spec, "torch")
    i = spec.input
    x = torch.zeros(1, i.channels, i.height, i.width)
    direct, in_image = flops_per_image(spec), flops_per_image(spec, in_image=True)
    for part in ("transform", "backbone"):
        module = getattr(net, part)
        if module is None:
            continue
        torch_direct, torch_in_image = _conv_flops_seen_by_torch(module, x)
        assert direct[part] - in_image[part] == torch_direct - torch_in_image > 0
