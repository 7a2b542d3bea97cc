"""Weights as `{MindOCR name: ndarray}`, read from and written to .ckpt / .pt / .safetensors.

.ckpt and .safetensors hold MindOCR names; .pt holds a plain PyTorch state_dict, so `torch.load` +
`load_state_dict` work on it without this package. Loading accepts either naming in any format.
"""
from __future__ import annotations

import os
import zlib
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple

import numpy as np

from .nets import backend_of, framework_module
from .nets.common import TORCH_TO_CANONICAL_BN
from .errors import UserError
from .files import temp_beside
from .pretrained import resolve_weights

State = Dict[str, np.ndarray]
FORMATS = (".ckpt", ".pt", ".pth", ".safetensors")
# What MindSpore training checkpoints carry beside the network: optimizer moments and loop state.
TRAINING_STATE_PREFIXES = ("moment1.", "moment2.", "adam_m.", "adam_v.", "accum.", "global_step", "learning_rate",
                           "scale_sense", "current_iterator_step", "last_overflow_iterator_step", "epoch_num",
                           "step_num", "loss_scale")


class WeightsError(UserError, ValueError):
    """Weights that do not fit a network; the message lists the first offenders and the likely cause."""


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise WeightsError(f"{path}: unknown weights format {suffix!r}; use one of {', '.join(FORMATS)}")
    return ".pt" if suffix == ".pth" else suffix


def read_state(path) -> State:
    """Every tensor in a weights file, by the name stored in it; a shipped model's name reads its weights."""
    path = resolve_weights(path)
    fmt = _format(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such weights file")
    try:
        if fmt == ".safetensors":
            from safetensors.numpy import load_file
            return dict(load_file(str(path)))
        if fmt == ".pt":
            import torch
            state = torch.load(str(path), map_location="cpu", weights_only=True)
            if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
                state = state["state_dict"]
            return {k: v.numpy() for k, v in state.items() if hasattr(v, "numpy")}
        ms = _import_mindspore(path)
        return {k: v.asnumpy() for k, v in ms.load_checkpoint(str(path)).items()}
    except WeightsError:
        raise
    except Exception as e:  # a framework's own parse error: say which file and what we expected
        raise WeightsError(f"{path}: cannot read as {fmt} weights ({type(e).__name__}: {e})") from None


def write_state(state: Mapping[str, np.ndarray], path, torch_names: Optional[Mapping[str, str]] = None) -> Path:
    """Atomically: a temp file in the same folder renamed over the target, so a crash never leaves half a file."""
    path = Path(path)
    fmt = _format(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_beside(path, path.suffix)
    try:
        if fmt == ".safetensors":
            from safetensors.numpy import save_file
            save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, tmp)
        elif fmt == ".pt":
            import torch
            names = torch_names or {k: k for k in state}
            torch.save({key: torch.from_numpy(np.ascontiguousarray(state[canon])) for key, canon in names.items()}, tmp)
        else:
            ms = _import_mindspore(path)
            ms.save_checkpoint([{"name": k, "data": ms.Tensor(np.ascontiguousarray(v))} for k, v in state.items()], tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return path


def _import_mindspore(path: Path):
    try:
        import mindspore
    except ImportError:
        raise WeightsError(f"{path}: .ckpt files need MindSpore: pip install -c constraints.txt "
                           f"'rare-portable[mindspore]', or use .safetensors") from None
    return mindspore


def get_state(net) -> State:
    """The network's weights under MindOCR's names, whichever framework built it."""
    return framework_module(backend_of(net)).get_state(net)


def to_canonical(net, stored: Mapping[str, np.ndarray]) -> Tuple[State, list]:
    """Rename a file's tensors to MindOCR names (accepting PyTorch names too); training state is set aside."""
    table = framework_module(backend_of(net)).canonical_names(net)
    canonical = set(table.values())
    out, ignored = {}, []
    for key, value in stored.items():
        if key.startswith(TRAINING_STATE_PREFIXES) or key.endswith("num_batches_tracked"):
            ignored.append(key)
            continue
        out[table.get(key) or _from_torch_bn_name(key, canonical)] = np.asarray(value)
    return out, ignored


def _from_torch_bn_name(key: str, canonical: set) -> str:
    """A PyTorch batch-norm key (`norm.weight`) read into a MindSpore network (`norm.gamma`)."""
    owner, _, leaf = key.rpartition(".")
    renamed = f"{owner}.{TORCH_TO_CANONICAL_BN.get(leaf, leaf)}"
    return renamed if key not in canonical and renamed in canonical else key


def check_fit(expected: Mapping[str, Tuple[int, ...]], given: Mapping[str, np.ndarray], source: str) -> None:
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    wrong = [(k, tuple(given[k].shape), tuple(expected[k])) for k in expected
             if k in given and tuple(given[k].shape) != tuple(expected[k])]
    if not (missing or unexpected or wrong):
        return
    parts = []
    if wrong:
        parts.append(f"{len(wrong)} shape mismatch(es): " + ", ".join(f"{k} file {f} vs model {m}" for k, f, m in wrong[:3]))
    if missing:
        parts.append(f"{len(missing)} missing: " + ", ".join(missing[:3]))
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected: " + ", ".join(unexpected[:3]))
    raise WeightsError(f"{source} does not fit this model: {'; '.join(parts)}.{_likely_cause(wrong, missing, unexpected)}")


def _likely_cause(wrong, missing, unexpected) -> str:
    names = {k for k, *_ in wrong}
    generator = [(f, m) for k, f, m in wrong if k == "head.generator.weight" and f[0] != m[0]]
    if generator:
        (f, m), = generator
        return (f" Likely cause: the weights have {f[0]} classes and the config's dictionary gives {m[0]} "
                f"(dictionary size + 2): use the dictionary they were trained with, or fine-tune "
                f"(`rare train --weights`) to re-initialise the classifier")
    if any(k.startswith("transform.") for k in missing + unexpected):
        return " Likely cause: model.transform (TPS) is on in one and off in the other"
    if any(k.startswith("backbone.") for k in missing + unexpected + list(names)):
        return " Likely cause: a checkpoint of another backbone/architecture (compare model.backbone)"
    if any(k.startswith("neck.") for k in names):
        return " Likely cause: model.neck.hidden_size differs from the one the weights were trained with"
    return ""


def expected_shapes(net) -> Dict[str, Tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in get_state(net).items()}


def load_weights(net, path, strict: bool = True):
    """Load a .ckpt/.pt/.safetensors file into a network of either framework, by MindOCR names.

    With `strict=False`, tensors whose name or shape do not fit are skipped (fine-tuning onto another
    dictionary); the names not loaded are returned so callers can say exactly what was re-initialised."""
    state, _ = to_canonical(net, read_state(path))
    expected = expected_shapes(net)
    if strict:
        check_fit(expected, state, str(path))
        skipped = []
    else:
        skipped = [k for k in expected if k not in state or tuple(state[k].shape) != expected[k]]
        current = get_state(net)
        state = {k: (current[k] if k in skipped else state[k]) for k in expected}
    framework_module(backend_of(net)).set_state(net, state)
    return skipped


def save_weights(net, path) -> Path:
    """Save a network's weights; the suffix picks the format (.pt keeps PyTorch's own key names)."""
    path = Path(path)
    torch_names = framework_module(backend_of(net)).pt_names(net) if _format(path) == ".pt" else None
    return write_state(get_state(net), path, torch_names=torch_names)


def initial_state(shapes: Mapping[str, Tuple[int, ...]], seed: int, special: Mapping[str, np.ndarray] = ()) -> State:
    """Framework-neutral initialisation, so a fresh MindSpore and a fresh PyTorch network are identical.

    Conv/linear: He-normal on fan-in; recurrent weights and biases: U(+-1/sqrt(hidden)) as both frameworks'
    LSTM/GRU defaults; batch-norm: identity. Each tensor's stream comes from (seed, name), so adding a
    layer does not reshuffle the others."""
    state = {}
    for name, shape in shapes.items():
        rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
        leaf = name.rsplit(".", 1)[-1]
        if name in special:
            value = np.broadcast_to(np.asarray(special[name]).reshape(-1) if np.ndim(special[name]) else special[name], shape)
        elif leaf in ("gamma", "moving_variance"):
            value = np.ones(shape)
        elif leaf in ("beta", "moving_mean"):
            value = np.zeros(shape)
        elif ".rnn." in name or ".seq_encoder." in name:
            hidden = shape[0] // (4 if ".seq_encoder." in name else 3)
            value = rng.uniform(-1, 1, shape) / np.sqrt(hidden)
        elif leaf == "bias":
            value = np.zeros(shape)
        else:
            fan_in = int(np.prod(shape[1:]))
            value = rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)
        state[name] = np.array(value, dtype=np.float32)
    return state

