"""Validation during training: the detector scored on ``data.val`` at the end of every epoch.

The validation images go through the detector's own *test* transform (as ``aigi eval``
would score them) and the metrics are the evaluation's (:func:`aigi.evaluate.metrics.binary_metrics`).
Scoring runs under ``torch.no_grad`` in eval mode with the torch RNG forked, so a run with
validation trains exactly the same weights as one without. Under several processes each
scores every ``world``-th image and the scores are gathered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..data.dataset import ImageDataset, collate
from ..data.layouts import detect_layout, load_samples
from ..data.transforms import build_transform
from ..detectors.base import Detector
from .config import DataConfig


def validation_dataset(data: DataConfig, detector: Detector, seed: int) -> ImageDataset | None:
    """The labelled validation images of ``data.val`` with the detector's test transform (None without ``val``)."""
    if not data.val:
        return None
    root = Path(data.val)
    layout = detect_layout(root) if data.val_layout == "auto" else data.val_layout
    samples = [s for s in load_samples(root, layout, split=data.val_split) if s.label is not None]
    labels = {s.label for s in samples}
    if labels != {0, 1}:
        found = "no labelled images" if not samples else f"only label {labels.pop()}"
        raise ValueError(f"validation data {root} needs real (0) and fake (1) images; found {found}")
    return ImageDataset(samples, build_transform(detector.preprocess_config(), train=False), seed=seed)


def validate(acc: Any, detector: Detector, dataset: ImageDataset, batch_size: int,
             num_workers: int = 0) -> tuple[dict[str, float | int | None], dict[str, str]]:
    """Score ``dataset``; return ``(val_* metrics, {path: reason} of unreadable images)``."""
    from accelerate.utils import gather_object

    from ..evaluate.metrics import binary_metrics

    mine = list(range(acc.process_index, len(dataset), acc.num_processes))
    loader = DataLoader(torch.utils.data.Subset(dataset, mine), batch_size=max(1, batch_size),
                        collate_fn=collate, num_workers=num_workers)
    rows: list[tuple[int, float]] = []
    errors: list[tuple[int, str]] = []
    was_training = detector.training
    detector.eval()
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        for batch in loader:
            errors.extend(batch["errors"])
            if batch["index"].numel() == 0:
                continue
            with acc.autocast():
                logits = detector(batch["pixels"].to(acc.device))
            probs = torch.sigmoid(logits.detach().double()).cpu().tolist()
            rows.extend(zip(batch["index"].tolist(), probs))
    detector.train(was_training)
    if acc.num_processes > 1:
        rows, errors = gather_object(rows), gather_object(errors)
    rows.sort()
    skipped = {str(dataset.samples[i].path): msg for i, msg in errors}
    if not rows:
        raise ValueError("no validation image could be read: " + "; ".join(list(skipped.values())[:3]))
    labels = [int(dataset.samples[i].label) for i, _ in rows]
    m = binary_metrics(labels, [p for _, p in rows], threshold=detector.config.threshold)
    return ({"val_acc": m["acc"], "val_auroc": m["auroc"], "val_ap": m["ap"], "val_r_acc": m["r_acc"],
             "val_f_acc": m["f_acc"], "val_images": len(rows)}, skipped)
