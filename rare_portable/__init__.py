"""rare-portable: RARE scene-text recognition with one spec for MindSpore, PyTorch and exported runtimes."""
__version__ = "0.1.0"

from .api import build_model, resolve_spec, set_mode
from .config import ConfigError, RareConfig, list_configs, load_config
from .weights import WeightsError, get_state, load_weights, save_weights

__all__ = [
    "build_model", "load_weights", "save_weights", "get_state", "load_config", "list_configs", "resolve_spec",
    "set_mode", "RareConfig", "ConfigError", "WeightsError",
]
