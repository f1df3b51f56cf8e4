"""Training on Hugging Face Accelerate: recipes, the loop, checkpoints and resume."""

from .config import TrainConfig, load_recipe
from .loop import TrainResult, train

__all__ = ["TrainConfig", "TrainResult", "load_recipe", "train"]
