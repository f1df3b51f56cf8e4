"""Detectors: the shared interface (``base``), the registry, and one module per method."""

from .base import CheckpointError, Detector, DetectorConfig, load_detector
from .registry import create_detector, detector_class, list_detectors, register

__all__ = [
    "CheckpointError",
    "Detector",
    "DetectorConfig",
    "create_detector",
    "detector_class",
    "list_detectors",
    "load_detector",
    "register",
]
