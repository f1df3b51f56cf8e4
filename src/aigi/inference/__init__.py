"""Inference: the one engine that turns images into P(fake) for every command.

:class:`Predictor` (``predictor.py``) owns loading, folding, device, dtype, batching, the
score and the decision; :func:`~aigi.inference.fast.inference_forward` (``fast.py``) is
its batch → logits step.
"""

from .predictor import UNCERTAIN, Prediction, Predictor, Scores, resolve_device, resolve_threshold

__all__ = ["UNCERTAIN", "Prediction", "Predictor", "Scores", "resolve_device", "resolve_threshold"]
