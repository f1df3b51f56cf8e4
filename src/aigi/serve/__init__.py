"""Serving detectors over HTTP, with a web page."""
