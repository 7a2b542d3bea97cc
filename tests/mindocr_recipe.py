"""The public weight recipe of ../shared/conformance/README.md: MindOCR's checkpoint content, by name."""
import zlib

import numpy as np


def recipe(name: str, shape, seed: int) -> np.ndarray:
    rng = np.random.default_rng(zlib.crc32(name.encode()) + seed)
    n = rng.standard_normal(shape)
    leaf = name.rsplit(".", 1)[-1]
    if leaf == "gamma":
        v = 1.0 + 0.1 * n
    elif leaf in ("beta", "moving_mean") or "bias" in leaf:
        v = 0.1 * n
    elif leaf == "moving_variance":
        v = 1.0 + 0.1 * np.abs(n)
    else:
        fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        gain = 8.0 if name.startswith("head.generator.") else 1.0
        v = gain * n * (2.0 / fan_in) ** 0.5
    return v.astype(np.float32)


def sharp_decoder(state: dict, scale: float = 3.0) -> dict:
    """`state` with the head's weights scaled: tanh inputs beyond +-5 and a peaked softmax (mean top
    probability 0.94 on rare_tiny), as in a trained decoder, where approximate kernels show."""
    return {k: v * scale if k.startswith("head.") and "weight" in k else v for k, v in state.items()}


def write_mindocr_checkpoint(record, path) -> None:
    """A .ckpt as MindOCR would save it, written with MindSpore's own API (not ours)."""
    import mindspore as ms

    shapes = [tuple(int(s) for s in shape.strip("()").split(",") if s.strip()) for shape in record["param_shapes"]]
    seed = int(record["seed"])
    ms.save_checkpoint(
        [{"name": str(n), "data": ms.Tensor(recipe(str(n), s, seed))} for n, s in zip(record["param_names"], shapes)],
        str(path),
    )
