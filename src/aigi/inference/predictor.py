"""The one inference engine: a :class:`Predictor` turns files (or pixel batches) into P(fake).

``eval``, ``detect``, ``calibrate``, ``bench``, ``serve`` and the Python API all score
through a Predictor, so loading, folding, device, dtype, memory format, compilation,
batching, the decode → transform → forward → sigmoid step and the decision rule mean the
same thing everywhere::

    import aigi
    predictor = aigi.Predictor.from_pretrained("runs/npr", device="auto", dtype="bfloat16")
    for p in predictor.predict(["photo.jpg", "folder/"]):
        print(p.path, p.p_fake, p.verdict)

**The score.** The detector returns a float32 logit per image (bfloat16/float16 runs
under autocast and returns float32 logits, :func:`aigi.inference.fast.inference_forward`);
P(fake) is ``sigmoid`` of that logit computed in **float64** (so scores near 0 and 1
keep distinct values, which rank metrics need, and every path gets bit-identical
numbers). A logit that is NaN or infinite is an **error for that image** ("non-finite
score"), never a verdict.

**The decision.** The threshold is the detector config's, the one in the folder's
``calibration.json`` (``calibrated=True``), or one given. An abstain band
(:class:`~aigi.detectors.folder.AbstainBand`: from the calibration, or ``band_width``
around the threshold) turns the verdict into ``real`` / ``fake`` / ``uncertain``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
from torch.utils.data import DataLoader, Sampler

from ..data.dataset import ImageDataset, collate, draft_size_for
from ..data.layouts import Sample
from ..data.transforms import PreprocessConfig, build_transform
from ..detectors.folder import CALIBRATION_NAME, AbstainBand, open_model, read_calibration
from .fast import INFERENCE_DTYPES, inference_forward

__all__ = ["BatchResult", "DEVICE_CHOICES", "NON_FINITE", "UNCERTAIN", "Prediction", "Predictor", "Scores", "ShardBatchSampler",
           "resolve_device", "resolve_threshold", "to_probabilities"]

#: the verdict of a score inside the abstain band
UNCERTAIN = "uncertain"
#: the start of the error message of an image whose logit is NaN or infinite
NON_FINITE = "non-finite score"
#: what ``--device`` accepts besides a torch device string (cpu, cuda, cuda:1, mps)
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N, mps"


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``auto`` (or None) = CUDA when present, then Apple's MPS, then the CPU; else the device named."""
    if isinstance(name, torch.device):
        return name
    if name is None or name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"unknown device {name!r}: use one of {DEVICE_CHOICES}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but this machine has no CUDA device (use --device cpu or auto)")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {name!r} asked for, but MPS is not available here (use --device cpu or auto)")
    return device


def to_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """P(fake) in float64 from logits; NaN where the logit is not finite (see the module docstring)."""
    x = logits.detach().reshape(-1).to("cpu", torch.float64)
    p = torch.sigmoid(x)
    return torch.where(torch.isfinite(x), p, torch.full_like(p, float("nan")))


def non_finite_message(path: str, logit: float) -> str:
    """The per-image error of a NaN/inf logit."""
    return f"{NON_FINITE} for {path}: the model returned a logit of {logit} (no verdict)"


def resolve_threshold(
    detector: Any,
    model_dir: str | os.PathLike | None,
    *,
    threshold: float | None = None,
    calibrated: bool = False,
) -> tuple[float, str]:
    """The decision threshold and where it came from: ``"override"``, ``"calibration.json"`` or ``"config"``."""
    if threshold is not None and calibrated:
        raise ValueError("give either an explicit threshold or --calibrated, not both")
    if threshold is not None:
        if not 0.0 <= float(threshold) <= 1.0:
            raise ValueError(f"threshold must be a P(fake) between 0 and 1, got {threshold}")
        return float(threshold), "override"
    if calibrated:
        if model_dir is None:
            raise ValueError("calibrated=True needs the model's folder (it reads its calibration.json)")
        return float(read_calibration(model_dir).threshold), CALIBRATION_NAME
    return float(detector.config.threshold), "config"


class ShardBatchSampler(Sampler[list[int]]):
    """Process ``rank`` of ``world`` takes global batches ``rank, rank + world, ...``.

    The global batches are the ones a single process would make (``batch_size``
    consecutive samples), so every image is scored in a batch of the same composition
    as in one process, and the shards differ in size by at most one batch.
    """

    def __init__(self, n: int, batch_size: int, rank: int = 0, world: int = 1) -> None:
        if batch_size <= 0 or world <= 0 or not 0 <= rank < world:
            raise ValueError(f"bad shard: batch_size={batch_size}, rank={rank}, world={world}")
        self.n, self.batch_size, self.rank, self.world = n, batch_size, rank, world

    def __len__(self) -> int:
        batches = -(-self.n // self.batch_size)
        return len(range(self.rank, batches, self.world))

    def __iter__(self):
        for start in range(self.rank * self.batch_size, self.n, self.world * self.batch_size):
            yield list(range(start, min(start + self.batch_size, self.n)))


@dataclass
class Scores:
    """Scores of the images that could be scored, and the reasons for the others."""

    samples: list[Sample] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    #: position of each scored sample in the list given to :meth:`Predictor.score`
    indices: list[int] = field(default_factory=list)
    #: the float32 logit of each scored sample
    logits: list[float] = field(default_factory=list)
    #: positions of the samples in ``errors`` (same order)
    error_indices: list[int] = field(default_factory=list)


@dataclass
class BatchResult:
    """One batch's outcome: positions, P(fake) and logits of the scored images, and the failures."""

    indices: list[int]
    scores: list[float]
    logits: list[float]
    errors: list[tuple[int, str]]


@dataclass
class Prediction:
    """One file's result: P(fake) and the verdict, or the reason it has none."""

    path: str
    p_fake: float | None
    verdict: str | None
    error: str | None = None


class Predictor:
    """A detector ready to score: folded, on its device, with its dtype, batching and decision rule.

    ``detector`` is a loaded detector (folded here unless ``fold=False``); ``folder`` its
    folder (needed for ``calibrated``). ``device``: see :func:`resolve_device`.
    ``dtype``: float32, bfloat16 or float16 (autocast). ``channels_last`` (None: for
    convolutional networks) and ``compile`` are :func:`inference_forward`'s. ``threads``
    sets torch's intra-op threads while scoring files; ``num_workers``/``prefetch_factor``
    are the DataLoader's; ``draft`` decodes JPEGs at reduced scale when the preprocessing
    resizes (off by default: pixels differ slightly). ``preprocess`` overrides the
    detector's test-time preprocessing (the benchmark's preprocessing task).
    """

    def __init__(
        self,
        detector: Any,
        *,
        folder: str | os.PathLike | None = None,
        device: str | torch.device | None = "auto",
        dtype: str = "float32",
        channels_last: bool | None = None,
        compile: bool | str = False,
        batch_size: int = 32,
        num_workers: int = 0,
        prefetch_factor: int | None = None,
        threads: int | None = None,
        draft: bool = False,
        preprocess: PreprocessConfig | None = None,
        threshold: float | None = None,
        calibrated: bool = False,
        band_width: float | None = None,
        fold: bool = True,
    ) -> None:
        if dtype not in INFERENCE_DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(INFERENCE_DTYPES)}, got {dtype!r}")
        if batch_size <= 0:
            raise ValueError(f"batch size must be a positive number, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"workers must be 0 or more, got {num_workers}")
        if threads is not None and threads <= 0:
            raise ValueError(f"threads must be a positive number, got {threads}")
        self.folder = None if folder is None else Path(folder)
        self.device = resolve_device(device)
        self.dtype = dtype
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.prefetch_factor = prefetch_factor
        self.threads = threads
        self.draft = draft
        self.detector = detector.for_inference() if fold else detector
        self.method = getattr(detector, "method", type(detector).__name__)
        self.preprocess_overridden = preprocess is not None
        self.preprocess = preprocess or detector.preprocess_config()
        self.transform = build_transform(self.preprocess, train=False)
        self.labels: tuple[str, str] = tuple(detector.config.labels)  # type: ignore[assignment]
        self.threshold, self.threshold_source = resolve_threshold(detector, self.folder, threshold=threshold,
                                                                  calibrated=calibrated)
        self.calibration = read_calibration(self.folder) if calibrated else None
        self.band: AbstainBand | None = None
        if band_width is not None:
            self.band = AbstainBand.around(self.threshold, band_width)
        elif self.calibration is not None and self.calibration.band is not None:
            self.band = self.calibration.band
        self._forward = inference_forward(self.detector, device=self.device, dtype=dtype,
                                          channels_last=channels_last, compile=compile)

    @classmethod
    def from_pretrained(cls, spec: str | os.PathLike, *, revision: str | None = None, **options: Any) -> "Predictor":
        """Open ``spec`` (a folder, ``zoo:NAME``, ``FILE.onnx``, a Hub id ``user/repo``) and wrap it."""
        opened = open_model(spec, revision)
        return cls(opened.detector, folder=opened.folder, **options)

    # -- the decision ------------------------------------------------------------------
    def verdict(self, p: float) -> str:
        """Label 1 at or above the threshold (or the band's top), label 0 below it (or its bottom), else uncertain."""
        if self.band is not None:
            if p >= self.band.high:
                return self.labels[1]
            if p < self.band.low:
                return self.labels[0]
            return UNCERTAIN
        return self.labels[1] if p >= self.threshold else self.labels[0]

    def decision(self) -> dict[str, Any]:
        """The decision rule, for reports and the model card."""
        return {"threshold": self.threshold, "threshold_source": self.threshold_source,
                "band": None if self.band is None else {"low": self.band.low, "high": self.band.high}}

    # -- pixels -> P(fake) ---------------------------------------------------------------
    def logits(self, pixels: torch.Tensor) -> torch.Tensor:
        """Float32 logits (B,) of preprocessed pixels, on the CPU."""
        with torch.inference_mode():
            return self._forward(pixels).float().reshape(-1).cpu()

    def probabilities(self, pixels: torch.Tensor) -> torch.Tensor:
        """P(fake) (B,) in float64 of preprocessed pixels; NaN marks a non-finite logit."""
        return to_probabilities(self.logits(pixels))

    # -- files -> P(fake) ----------------------------------------------------------------
    def score(
        self,
        samples: Sequence[Sample],
        *,
        on_batch: Callable[[list[Sample], list[float]], None] | None = None,
        shard: tuple[int, int] | None = None,
        batches: Sequence[Sequence[int]] | None = None,
        transform: Callable[..., torch.Tensor] | None = None,
        on_result: Callable[[BatchResult], None] | None = None,
        progress: bool = False,
    ) -> Scores:
        """P(fake) of every sample that can be scored, in order; the others with their reason.

        ``on_batch(samples, probs)`` is called after every batch with its scored samples
        (callers write results incrementally); ``on_result`` gets the whole
        :class:`BatchResult` (positions, scores, logits and failures). ``shard=(rank, world)`` scores only that process's share
        (:class:`ShardBatchSampler`); ``batches`` gives the batches explicitly (positions
        into ``samples``); ``transform`` replaces the preprocessing (the benchmark's
        degradations).
        """
        tf = transform or self.transform
        dataset = ImageDataset(list(samples), tf,
                               draft_size=draft_size_for(tf) if self.draft and transform is None else None)
        if batches is not None:
            sampler: Iterable[Sequence[int]] = [list(b) for b in batches]
            total = sum(len(b) for b in batches)
        else:
            rank, world = shard or (0, 1)
            native = getattr(tf, "output_size", ()) is None  # sizes follow the images: one per batch
            sampler = ShardBatchSampler(len(dataset), 1 if native else self.batch_size, rank, world)
            total = len(dataset)
        loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=self.num_workers,
                            persistent_workers=False,
                            prefetch_factor=self.prefetch_factor if self.num_workers > 0 else None,
                            pin_memory=self.device.type == "cuda")
        out = Scores()
        bar = _Bar(total) if progress else None
        old_threads = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        try:
            for batch in (loader if self.num_workers else _fetch_single_threaded(loader)):
                failed = [(int(i), msg) for i, msg in batch.get("errors", [])]
                result = BatchResult([], [], [], failed)
                idx = batch["index"]
                if idx.numel():
                    logits = self.logits(batch["pixels"])
                    probs = to_probabilities(logits).tolist()
                    scored, kept = [], []
                    for i, logit, p in zip(idx.tolist(), logits.tolist(), probs):
                        if math.isnan(p):
                            failed.append((i, non_finite_message(str(dataset.samples[i].path), logit)))
                            continue
                        out.indices.append(i)
                        out.samples.append(dataset.samples[i])
                        out.scores.append(p)
                        out.logits.append(logit)
                        result.indices.append(i)
                        result.scores.append(p)
                        result.logits.append(logit)
                        scored.append(dataset.samples[i])
                        kept.append(p)
                    if on_batch is not None and scored:
                        on_batch(scored, kept)
                for i, msg in failed:
                    out.errors.append((str(dataset.samples[i].path), msg))
                    out.error_indices.append(i)
                if on_result is not None:
                    on_result(result)
                if bar is not None:
                    bar.advance(len(idx) + len(batch.get("errors", [])))
        finally:
            torch.set_num_threads(old_threads)
            if bar is not None:
                bar.close()
        return out

    def predict(self, paths: Iterable[str | os.PathLike]) -> list[Prediction]:
        """One :class:`Prediction` per image in ``paths`` (files, and images found in folders), in order."""
        from ..data.layouts import collect_images

        files, missing = collect_images(paths)
        res = self.score([Sample(path=f, label=None, subset="") for f in files])
        by_index: dict[int, Prediction] = {}
        for i, p in zip(res.indices, res.scores):
            by_index[i] = Prediction(str(files[i]), p, self.verdict(p))
        for i, (path, reason) in zip(res.error_indices, res.errors):
            by_index[i] = Prediction(path, None, None, reason)
        return [Prediction(p, None, None, r) for p, r in missing] + [by_index[i] for i in sorted(by_index)]


def _fetch_single_threaded(loader: DataLoader) -> Iterable[dict[str, Any]]:
    """Batches of a worker-less loader, decoded with one torch thread, computed with the rest.

    The per-image tensor work of preprocessing is far too small to share between threads;
    on a busy machine OpenMP's hand-offs made it ~100x slower (measured: 66 ms vs 0.4 ms per
    224x224 image). DataLoader workers already run with one thread each.
    """
    compute = torch.get_num_threads()
    it = iter(loader)
    while True:
        torch.set_num_threads(1)
        try:
            batch = next(it)
        except StopIteration:
            return
        finally:
            torch.set_num_threads(compute)
        yield batch


class _Bar:
    """A rich progress bar over images."""

    def __init__(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.p = Progress(TextColumn("scoring"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
        self.t = self.p.add_task("score", total=total)
        self.p.start()

    def advance(self, n: int) -> None:
        self.p.advance(self.t, n)

    def close(self) -> None:
        self.p.stop()
