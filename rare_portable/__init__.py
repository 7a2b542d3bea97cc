"""rare-portable: RARE scene-text recognition with one spec for MindSpore, PyTorch and exported runtimes."""
import os

# MindSpore's generated protobuf modules need the pure-Python protobuf backend, and MindSpore switches
# to it when imported; if onnx imported protobuf first, with its compiled backend, MindSpore's checkpoint
# code then fails ("Descriptors cannot be created directly"). Choosing it before either is imported keeps
# any import order working (measured cost: loading a 100 MB ONNX model takes 0.26 s instead of 0.12 s).
os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")

__version__ = "0.1.0"

from .api import build_model, resolve_spec, set_mode
from .config import ConfigError, RareConfig, list_configs, load_config
from .weights import WeightsError, get_state, load_weights, save_weights

__all__ = [
    "build_model", "load_weights", "save_weights", "get_state", "load_config", "list_configs", "resolve_spec",
    "set_mode", "RareConfig", "ConfigError", "WeightsError",
]
