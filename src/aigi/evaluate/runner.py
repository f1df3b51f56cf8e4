"""Scoring many images with a detector: the shared path of ``eval`` and ``detect``.

Images are decoded and preprocessed exactly as the detector's saved config says (a caller
may pass an explicit ``preprocess`` override, which is then recorded with the results).
Unreadable files are reported with their reason and skipped; they never stop the run.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import torch
from torch.utils.data import DataLoader

from ..data.dataset import ImageDataset, collate
from ..data.io import sniff_is_image
from ..data.layouts import Sample, load_samples
from ..data.transforms import PreprocessConfig, build_transform
from ..detectors.base import Detector, load_detector
from .metrics import evaluate_scores

#: extensions taken from a folder without sniffing; other files are sniffed by content
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".heic", ".heif",
                  ".avif", ".jfif", ".ppm", ".pgm"}
#: exit code of ``aigi detect`` when some files could not be scored
EXIT_SOME_SKIPPED = 3


@dataclass
class Scores:
    """Scores of the images that could be read, and the reasons for the others."""

    samples: list[Sample] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)


def score_samples(
    detector: Detector,
    samples: Sequence[Sample],
    *,
    batch_size: int = 32,
    num_workers: int = 0,
    preprocess: PreprocessConfig | None = None,
    progress: bool = False,
    device: str | torch.device = "cpu",
) -> Scores:
    """P(fake) for every readable sample, in order."""
    pre = preprocess or detector.preprocess_config()
    dataset = ImageDataset(list(samples), build_transform(pre, train=False))
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate,
                        num_workers=num_workers, persistent_workers=False)
    detector = detector.to(device)
    detector.eval()
    out = Scores()
    bar = _bar(progress, len(dataset))
    try:
        with torch.inference_mode():
            for batch in loader:
                for idx, msg in batch.get("errors", []):
                    out.errors.append((str(dataset.samples[idx].path), msg))
                idx = batch["index"]
                if idx.numel():
                    probs = torch.sigmoid(detector(batch["pixels"].to(device)).float()).cpu().tolist()
                    out.samples.extend(dataset.samples[i] for i in idx.tolist())
                    out.scores.extend(probs)
                if bar is not None:
                    bar.advance(len(idx) + len(batch.get("errors", [])))
    finally:
        if bar is not None:
            bar.close()
    return out


def evaluate(
    model: Detector | str | os.PathLike,
    data: str | os.PathLike,
    *,
    layout: str = "auto",
    split: str | None = None,
    output: str | os.PathLike | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
    preprocess: PreprocessConfig | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Score a labelled dataset and compute per-subset and mean metrics.

    With ``output``, writes ``metrics.json`` and ``scores.csv`` (path, subset, label, score).
    """
    detector = model if isinstance(model, Detector) else load_detector(model)
    samples = [s for s in load_samples(Path(data), layout, split=split) if s.label is not None]
    if not samples:
        raise ValueError(f"no labelled images in {data}")
    res = score_samples(detector, samples, batch_size=batch_size, num_workers=num_workers,
                        preprocess=preprocess, progress=progress)
    if not res.scores:
        raise ValueError(f"none of the {len(samples)} images in {data} could be read")
    threshold = float(detector.config.threshold)
    metrics = evaluate_scores([s.label for s in res.samples], res.scores, [s.subset for s in res.samples], threshold)
    report = {
        "method": detector.method,
        "model": str(model) if not isinstance(model, Detector) else None,
        "data": str(data),
        "layout": layout,
        "threshold": threshold,
        "preprocess": (preprocess or detector.preprocess_config()).model_dump(mode="json"),
        "preprocess_overridden": preprocess is not None,
        **metrics,
        "skipped": [{"path": p, "reason": r} for p, r in res.errors],
    }
    if output is not None:
        out = Path(output)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
        with (out / "scores.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["path", "subset", "label", "score"])
            for s, p in zip(res.samples, res.scores):
                w.writerow([str(s.path), s.subset, s.label, f"{p:.6f}"])
    return report


def collect_images(paths: Iterable[str | os.PathLike]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Files named directly, and images found recursively in folders.

    In folders, files with an image extension are always taken (a broken one is reported
    later); other files are taken only if their content sniffs as an image, so a README
    beside the photos is silently ignored. Missing paths are returned as errors.
    """
    files: list[Path] = []
    missing: list[tuple[str, str]] = []
    for raw in paths:
        p = Path(raw)
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            for root, dirs, names in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                for name in sorted(names):
                    if name.startswith("."):
                        continue
                    f = Path(root) / name
                    if f.suffix.lower() in IMAGE_SUFFIXES or sniff_is_image(f):
                        files.append(f)
        else:
            missing.append((str(p), f"cannot decode {p}: unreadable (no such file or folder)"))
    return files, missing


def detect(
    model: Detector | str | os.PathLike,
    paths: Sequence[str | os.PathLike],
    *,
    output: str | os.PathLike | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
    threshold: float | None = None,
    progress: bool = False,
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Score files and folders; returns (rows, errors) and writes CSV or JSONL if asked."""
    detector = model if isinstance(model, Detector) else load_detector(model)
    thr = float(detector.config.threshold if threshold is None else threshold)
    files, errors = collect_images(paths)
    samples = [Sample(path=f, label=None, subset="") for f in files]
    res = score_samples(detector, samples, batch_size=batch_size, num_workers=num_workers, progress=progress)
    label_names = detector.config.labels
    rows = [
        {"path": str(s.path), "p_fake": round(p, 6), "verdict": label_names[1] if p >= thr else label_names[0]}
        for s, p in zip(res.samples, res.scores)
    ]
    errors = errors + res.errors
    if output is not None:
        write_rows(Path(output), rows)
    return rows, errors


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """CSV or JSONL by the output's suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".jsonl":
        with path.open("w") as fh:
            for r in rows:
                fh.write(json.dumps(r) + "\n")
    elif path.suffix.lower() == ".csv":
        with path.open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=["path", "p_fake", "verdict"])
            w.writeheader()
            w.writerows(rows)
    else:
        raise ValueError(f"output {path} must end in .csv or .jsonl")


class _Bar:
    def __init__(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.p = Progress(TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        self.t = self.p.add_task("score", total=total)
        self.p.start()

    def advance(self, n: int) -> None:
        self.p.advance(self.t, n)

    def close(self) -> None:
        self.p.stop()


def _bar(enabled: bool, total: int) -> _Bar | None:
    return _Bar(total) if enabled else None
