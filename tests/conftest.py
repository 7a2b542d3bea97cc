from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures"

# MindOCR records: config, the overrides that reproduce the recorded network, the npz.
# The Chinese record was made with MindOCR's rare_resnet34_ch builder default of 25 characters.
MINDOCR_RECORDS = {
    "rare_resnet34": ([], "mindocr_rare_resnet34_seed1.npz"),
    "rare_resnet34_ch": (["model.head.batch_max_length=25", "common.max_text_len=25"],
                         "mindocr_rare_resnet34_ch_seed1.npz"),
}


@pytest.fixture(scope="session")
def mindocr_record(tmp_path_factory):
    """(config name) -> (opts, npz record, path of a MindOCR-style .ckpt holding the recipe weights)."""
    cache = {}

    def get(name):
        if name not in cache:
            from mindocr_recipe import write_mindocr_checkpoint

            opts, npz = MINDOCR_RECORDS[name]
            record = dict(np.load(FIXTURES / npz))
            ckpt = tmp_path_factory.mktemp(name) / f"{name}.ckpt"
            write_mindocr_checkpoint(record, ckpt)
            cache[name] = (opts, record, ckpt)
        return cache[name]

    return get


@pytest.fixture(autouse=True)
def _mindspore_pynative():
    """Tests that switch MindSpore to graph mode must not leak it into others."""
    yield
    import sys
    if "mindspore" in sys.modules:
        sys.modules["mindspore"].set_context(mode=sys.modules["mindspore"].PYNATIVE_MODE)


@pytest.fixture(scope="session")
def keep_ratio_config(tmp_path_factory):
    """rare_tiny resizing as the Chinese recipe does: aspect ratio kept, padded on the right to the width."""
    text = (Path(__file__).parent.parent / "configs" / "rare_tiny.yaml").read_text()
    text = text.replace("padding: False # aspect ratio", "padding: True # aspect ratio")
    text = text.replace("keep_ratio: False\n          padding: False", "keep_ratio: True\n          padding: True")
    path = tmp_path_factory.mktemp("config") / "rare_tiny_keep_ratio.yaml"
    path.write_text(text)
    from rare_portable import load_config
    assert load_config(str(path)).spec.input.keep_ratio and load_config(str(path)).spec.input.padding
    return str(path)
