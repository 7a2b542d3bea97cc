"""FLOPs from the spec against PyTorch's own FLOP counter on the built network."""
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
