"""Taking a detector out of Python training code: ONNX export and the ONNX-backed detector.

``onnx``, ``onnxscript`` and ``onnxruntime`` are optional (``pip install 'aigi[onnx]'``);
they are imported only when an export or an ONNX file is used.
"""

from .onnx import ExportError, ExportResult, OnnxDetector, export_onnx, load_onnx_detector

__all__ = ["ExportError", "ExportResult", "OnnxDetector", "export_onnx", "load_onnx_detector"]
