"""Training on Hugging Face Accelerate: recipes, the loop, checkpoints, resume and validation."""

from .checkpoint import TrainCheckpointError
from .config import TrainConfig, load_recipe
from .loop import TrainResult, train

__all__ = ["TrainCheckpointError", "TrainConfig", "TrainResult", "load_recipe", "train"]
