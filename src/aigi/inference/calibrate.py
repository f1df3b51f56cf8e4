"""``aigi calibrate``: measure a decision threshold (and an abstain band) on labelled data; write calibration.json.

The threshold meets a target false-positive rate on the data's real images
(:func:`aigi.evaluate.calibration.threshold_at_fpr`: FPR on those reals ``<= fpr``). An
abstain band is optional: ``fnr`` puts its low edge where at most that fraction of the
data's fakes score below it (:func:`~aigi.evaluate.calibration.threshold_at_fnr`) and its
high edge at the threshold, so a verdict outside the band meets both error rates on the
calibration data; when the two edges cross (the detector separates the data that well)
the band is empty. ``band_width`` instead sets the band to ``threshold ± width``.
"""

from __future__ import annotations

import hashlib
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from ..data.layouts import load_samples
from ..detectors.folder import AbstainBand, Calibration, write_calibration
from ..evaluate.calibration import threshold_at_fnr, threshold_at_fpr

__all__ = ["calibrate", "data_sha256"]


def data_sha256(paths_and_labels: list[tuple[str | os.PathLike, int]]) -> str:
    """sha256 over the sorted ``label:content-sha256`` lines of the images (names and order do not matter)."""
    lines = []
    for path, label in paths_and_labels:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        lines.append(f"{int(label)}:{h.hexdigest()}")
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()


def calibrate(
    model: Any,
    data: str | os.PathLike,
    *,
    fpr: float = 0.05,
    fnr: float | None = None,
    band_width: float | None = None,
    layout: str = "auto",
    split: str | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
    device: str | None = None,
    dtype: str = "float32",
    revision: str | None = None,
    write: bool = True,
    progress: bool = False,
) -> tuple[Calibration, list[tuple[str, str]]]:
    """Score ``data`` with ``model`` and return (the calibration, skipped files); written into the folder if ``write``."""
    from ..evaluate.runner import make_predictor

    if not 0.0 <= fpr < 1.0:
        raise ValueError(f"--fpr must be in [0, 1), got {fpr}")
    if fnr is not None and not 0.0 <= fnr < 1.0:
        raise ValueError(f"--fnr must be in [0, 1), got {fnr}")
    if fnr is not None and band_width is not None:
        raise ValueError("give the abstain band either by an error rate (--fnr) or by a width (--band-width), not both")
    predictor = make_predictor(model, revision=revision, device=device, dtype=dtype, batch_size=batch_size,
                               num_workers=num_workers)
    if write and predictor.folder is None:
        raise ValueError(f"{model} is not a detector folder: calibration.json needs a folder to be written into")
    samples = [s for s in load_samples(Path(data), layout, split=split) if s.label is not None]
    if not any(s.label == 0 for s in samples):
        raise ValueError(f"{data} holds no real (label 0) images: a threshold at a target FPR is measured on reals")
    res = predictor.score(samples, progress=progress)
    labels = np.array([s.label for s in res.samples], dtype=np.int64)
    scores = np.array(res.scores, dtype=np.float64)
    reals, fakes = scores[labels == 0], scores[labels == 1]
    if reals.size == 0:
        raise ValueError(f"none of the real images in {data} could be scored")
    threshold = threshold_at_fpr(reals, fpr)
    band = None
    if fnr is not None:
        if fakes.size == 0:
            raise ValueError(f"--fnr needs fake (label 1) images in {data} to place the band's low edge")
        low = min(threshold_at_fnr(fakes, fnr), threshold)
        band = AbstainBand(low=low, high=threshold, source="error rates", target_fnr=fnr,
                           fnr=float(np.mean(fakes < low)))
    elif band_width is not None:
        band = AbstainBand.around(threshold, band_width)
    cal = Calibration(
        threshold=threshold,
        target_fpr=fpr,
        fpr=float(np.mean(reals >= threshold)),
        tpr=float(np.mean(fakes >= threshold)) if fakes.size else None,
        n_real=int(reals.size),
        n_fake=int(fakes.size),
        data=str(data),
        data_sha256=data_sha256([(s.path, s.label) for s in res.samples]),
        date=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        dtype=dtype,
        band=band,
        method=predictor.method,
        skipped=len(res.errors),
    )
    if write:
        write_calibration(predictor.folder, cal)
    return cal, res.errors
