"""Evaluation: metrics, calibration and the scoring runs of `eval` and `detect`."""

from .metrics import METRIC_NAMES, binary_metrics, evaluate_scores, mean_metrics
from .runner import EXIT_SOME_SKIPPED, detect, evaluate, score_samples

__all__ = ["EXIT_SOME_SKIPPED", "METRIC_NAMES", "binary_metrics", "detect", "evaluate", "evaluate_scores",
           "mean_metrics", "score_samples"]
