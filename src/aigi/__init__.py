"""aigi: generalizable detection of AI-generated images.

The public entry points::

    import aigi
    model = aigi.create_detector("npr")            # any registered method, by name
    model = aigi.load_detector("runs/npr")         # a saved, self-describing detector
    aigi.list_detectors()                          # name -> one-line summary
"""

__version__ = "0.1.0"

from .detectors import CheckpointError, Detector, create_detector, list_detectors, load_detector  # noqa: E402

__all__ = ["CheckpointError", "Detector", "__version__", "create_detector", "list_detectors", "load_detector"]
