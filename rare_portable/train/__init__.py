"""Training RARE on MindSpore, kept apart from the plain network (rare_portable.nets) it trains."""
from .loop import StepInfo, TrainResult, train
from .settings import TrainError, TrainSettings, read_settings

__all__ = ["train", "read_settings", "TrainResult", "TrainSettings", "TrainError", "StepInfo"]
