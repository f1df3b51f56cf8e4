"""aigi: generalizable detection of AI-generated images.

The public entry points::

    import aigi
    model = aigi.create_detector("npr")            # any registered method, by name
    model = aigi.load_detector("runs/npr")         # a saved detector: folder, zoo:NAME, FILE.onnx, user/repo
    aigi.list_detectors()                          # name -> one-line summary
    aigi.audit("data/test").verdicts               # shortcuts (format, size, EXIF...) per subset
    predictor = aigi.Predictor.from_pretrained("runs/npr", device="auto")
    predictor.predict(["photo.jpg", "folder/"])    # P(fake) and verdict per image
"""

__version__ = "0.1.0"

from .detectors import CheckpointError, Detector, create_detector, list_detectors  # noqa: E402
from .detectors.folder import load_model as load_detector  # noqa: E402
from .inference import Prediction, Predictor  # noqa: E402
from .audit import audit  # noqa: E402  (the function; the package stays importable as aigi.audit.*)

__all__ = ["CheckpointError", "Detector", "Prediction", "Predictor", "__version__", "audit", "create_detector",
           "list_detectors", "load_detector"]
