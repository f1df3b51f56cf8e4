"""Scoring many images with a detector: the shared path of ``eval`` and ``detect``.

Images are decoded and preprocessed exactly as the detector's saved config says (a caller
may pass an explicit ``preprocess`` override, which is then recorded with the results).
Unreadable files are reported with their reason and skipped; they never stop the run.

Speed options (see docs/performance.md for what each one measured): ``dtype="bfloat16"``
(autocast), ``channels_last`` (default: on for convolutional networks), ``compile``
(``torch.compile``), ``threads``, DataLoader ``num_workers``/``prefetch_factor``, and
``draft`` (JPEG draft decoding for resize preprocessing). Under ``accelerate launch
--num_processes N`` :func:`evaluate` shards the images across the processes and gathers
the scores to the main process, which writes the same files as a single process.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import torch
from torch.utils.data import DataLoader, Sampler

from ..data.dataset import ImageDataset, collate, draft_size_for
from ..data.io import sniff_is_image
from ..data.layouts import Sample, load_samples
from ..data.transforms import PreprocessConfig, build_transform
from ..detectors.base import Detector, load_detector
from ..inference.fast import INFERENCE_DTYPES, inference_forward, is_convolutional  # noqa: F401 (re-exported)
from .metrics import evaluate_scores

#: extensions taken from a folder without sniffing; other files are sniffed by content
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".heic", ".heif",
                  ".avif", ".jfif", ".ppm", ".pgm"}
#: exit code of ``aigi detect`` when some files could not be scored
EXIT_SOME_SKIPPED = 3
#: file in a detector folder holding a calibrated decision threshold:
#: ``{"threshold": t, "target_fpr": f, ...}`` with ``t`` a P(fake) in [0, 1]
CALIBRATION_NAME = "calibration.json"
#: columns of ``aigi detect`` output files
DETECT_FIELDS = ("path", "p_fake", "verdict")


@dataclass
class Scores:
    """Scores of the images that could be read, and the reasons for the others."""

    samples: list[Sample] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    #: position of each scored sample in the list given to :func:`score_samples`
    indices: list[int] = field(default_factory=list)


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


def score_samples(
    detector: Detector,
    samples: Sequence[Sample],
    *,
    batch_size: int = 32,
    num_workers: int = 0,
    preprocess: PreprocessConfig | None = None,
    progress: bool = False,
    device: str | torch.device = "cpu",
    on_batch: Callable[[list[Sample], list[float]], None] | None = None,
    dtype: str = "float32",
    channels_last: bool | None = None,
    compile: bool | str = False,
    threads: int | None = None,
    prefetch_factor: int | None = None,
    draft: bool = False,
    shard: tuple[int, int] | None = None,
) -> Scores:
    """P(fake) for every readable sample, in order.

    ``on_batch(samples, probs)`` is called after each batch with that batch's scored
    samples, so a caller can write results incrementally. ``dtype``, ``channels_last``
    and ``compile`` are :func:`inference_forward`'s; ``threads`` sets torch's intra-op
    threads for the call; ``prefetch_factor`` is the DataLoader's (with workers);
    ``draft`` decodes JPEGs at reduced scale when the preprocessing resizes (the safe
    rule of :func:`aigi.data.dataset.draft_size_for`; pixels differ slightly from a
    full decode, so it is off by default). ``shard=(rank, world)`` scores only that
    process's share (:class:`ShardBatchSampler`).
    """
    if threads is not None and threads <= 0:
        raise ValueError(f"threads must be a positive number, got {threads}")
    pre = preprocess or detector.preprocess_config()
    transform = build_transform(pre, train=False)
    dataset = ImageDataset(list(samples), transform, draft_size=draft_size_for(transform) if draft else None)
    rank, world = shard or (0, 1)
    loader = DataLoader(dataset, batch_sampler=ShardBatchSampler(len(dataset), batch_size, rank, world),
                        collate_fn=collate, num_workers=num_workers, persistent_workers=False,
                        prefetch_factor=prefetch_factor if num_workers > 0 else None,
                        pin_memory=torch.device(device).type == "cuda")
    forward = inference_forward(detector, device=device, dtype=dtype, channels_last=channels_last, compile=compile)
    out = Scores()
    bar = _bar(progress, len(dataset))
    old_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            for batch in (loader if num_workers else _fetch_single_threaded(loader)):
                for idx, msg in batch.get("errors", []):
                    out.errors.append((str(dataset.samples[idx].path), msg))
                idx = batch["index"]
                if idx.numel():
                    probs = torch.sigmoid(forward(batch["pixels"]).float()).cpu().tolist()
                    positions = idx.tolist()
                    scored = [dataset.samples[i] for i in positions]
                    out.indices.extend(positions)
                    out.samples.extend(scored)
                    out.scores.extend(probs)
                    if on_batch is not None:
                        on_batch(scored, probs)
                if bar is not None:
                    bar.advance(len(idx) + len(batch.get("errors", [])))
    finally:
        torch.set_num_threads(old_threads)
        if bar is not None:
            bar.close()
    return out


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


def distributed_state() -> Any:
    """Accelerate's ``PartialState`` when launched as several processes, else None.

    ``cpu=True`` on machines without CUDA is what lets ``accelerate launch --multi_gpu``
    start gloo processes on CPUs (the training loop does the same).
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())
    return state if state.num_processes > 1 else None


def gather_scores(res: Scores, samples: Sequence[Sample]) -> Scores:
    """Every process's shard gathered (all-gather) and put back in ``samples`` order."""
    from accelerate.utils import gather_object

    rows = sorted(gather_object(list(zip(res.indices, res.scores))))
    where = {str(s.path): i for i, s in enumerate(samples)}
    errors = sorted(gather_object(list(res.errors)), key=lambda e: where.get(e[0], len(samples)))
    return Scores(samples=[samples[i] for i, _ in rows], scores=[p for _, p in rows], errors=errors,
                  indices=[i for i, _ in rows])


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
    device: str | torch.device | None = None,
    dtype: str = "float32",
    channels_last: bool | None = None,
    compile: bool | str = False,
    threads: int | None = None,
    prefetch_factor: int | None = None,
    draft: bool = False,
) -> dict[str, Any]:
    """Score a labelled dataset and compute per-subset and mean metrics.

    With ``output``, writes ``metrics.json`` and ``scores.csv`` (path, subset, label, score).
    A detector loaded from a folder is folded for inference (``for_inference``). ``device``
    defaults to the process's GPU when there is one, else the CPU; the speed options are
    :func:`score_samples`'s, and ``dtype``/``draft``, which change the numbers, are
    recorded under ``"inference"`` when not at their defaults. Under ``accelerate launch``
    with several processes each one scores a shard; the main process writes the files,
    identical to a single process's, and every process returns the same report (every
    process must call it: the scores are gathered with a collective operation).
    """
    detector = model if isinstance(model, Detector) else load_detector(model).for_inference()
    samples = [s for s in load_samples(Path(data), layout, split=split) if s.label is not None]
    if not samples:
        raise ValueError(f"no labelled images in {data}")
    state = distributed_state()
    if device is None:
        device = state.device if state is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    res = score_samples(detector, samples, batch_size=batch_size, num_workers=num_workers,
                        preprocess=preprocess, progress=progress and (state is None or state.is_main_process),
                        device=device, dtype=dtype, channels_last=channels_last, compile=compile,
                        threads=threads, prefetch_factor=prefetch_factor, draft=draft,
                        shard=None if state is None else (state.process_index, state.num_processes))
    if state is not None:
        res = gather_scores(res, samples)
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
    if dtype != "float32" or draft:
        report["inference"] = {"dtype": dtype, "draft_decoding": draft}
    if output is not None and (state is None or state.is_main_process):
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


def read_calibration(directory: str | os.PathLike) -> dict[str, Any]:
    """The ``calibration.json`` of a detector folder, checked to hold a usable ``threshold``."""
    path = Path(directory) / CALIBRATION_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"{Path(directory)} has no {CALIBRATION_NAME}: calibrate the model first (a JSON file "
            "with a 'threshold' field) or leave out --calibrated to use the model's own threshold"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    t = data.get("threshold") if isinstance(data, dict) else None
    if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 <= float(t) <= 1.0:
        raise ValueError(f"{path} must hold a 'threshold' between 0 and 1 (a P(fake)), got {t!r}")
    return data


def resolve_threshold(
    detector: Detector,
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
        return float(read_calibration(model_dir)["threshold"]), CALIBRATION_NAME
    return float(detector.config.threshold), "config"


def detect(
    model: Detector | str | os.PathLike,
    paths: Sequence[str | os.PathLike],
    *,
    output: str | os.PathLike | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
    threshold: float | None = None,
    progress: bool = False,
    resume: bool = False,
    calibrated: bool = False,
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Score files and folders; returns (rows, errors) and writes CSV or JSONL if asked.

    The output file is written incrementally (flushed after every batch), so an interrupted
    run keeps what it scored. ``resume`` continues such a run: files whose path is already
    in ``output`` are skipped, new rows are appended (and only they are returned); a last
    line cut short by the interruption is dropped and scored again. Paths are compared as
    written, so resume with the same path arguments. ``calibrated`` uses the threshold in
    the model folder's ``calibration.json``.
    """
    if resume and output is None:
        raise ValueError("resume needs an output file (--output FILE.csv or FILE.jsonl) to continue")
    detector = model if isinstance(model, Detector) else load_detector(model)
    model_dir = None if isinstance(model, Detector) else Path(model)
    thr, _ = resolve_threshold(detector, model_dir, threshold=threshold, calibrated=calibrated)
    files, errors = collect_images(paths)
    writer: RowWriter | None = None
    if output is not None:
        out_path = Path(output)
        _check_suffix(out_path)
        if resume and out_path.exists():
            done = read_scored_paths(out_path)
            files = [f for f in files if str(f) not in done]
        writer = RowWriter(out_path, append=resume)
    label_names = detector.config.labels
    rows: list[dict[str, Any]] = []

    def on_batch(samples: list[Sample], probs: list[float]) -> None:
        new = [
            {"path": str(s.path), "p_fake": round(p, 6), "verdict": label_names[1] if p >= thr else label_names[0]}
            for s, p in zip(samples, probs)
        ]
        rows.extend(new)
        if writer is not None:
            writer.write(new)

    samples = [Sample(path=f, label=None, subset="") for f in files]
    try:
        res = score_samples(detector, samples, batch_size=batch_size, num_workers=num_workers,
                            progress=progress, on_batch=on_batch)
    finally:
        if writer is not None:
            writer.close()
    return rows, errors + res.errors


def _check_suffix(path: Path) -> None:
    if path.suffix.lower() not in (".csv", ".jsonl"):
        raise ValueError(f"output {path} must end in .csv or .jsonl")


def _drop_partial_last_line(path: Path) -> None:
    """Cut a last line that an interrupted write left without its newline."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        cut = data.rfind(b"\n") + 1
        with path.open("r+b") as fh:
            fh.truncate(cut)


def read_scored_paths(path: str | os.PathLike) -> set[str]:
    """Paths already in a ``detect`` output (CSV or JSONL), for ``resume``."""
    path = Path(path)
    _check_suffix(path)
    _drop_partial_last_line(path)
    done: set[str] = set()
    if path.suffix.lower() == ".jsonl":
        with path.open() as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    done.add(str(json.loads(line)["path"]))
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise ValueError(f"cannot resume: line {n} of {path} is not a detect result row") from None
        return done
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None:
            return done
        if tuple(reader.fieldnames) != DETECT_FIELDS:
            raise ValueError(
                f"cannot resume: {path} has columns {reader.fieldnames}, expected {list(DETECT_FIELDS)}"
            )
        done.update(row["path"] for row in reader)
    return done


class RowWriter:
    """Append ``detect`` rows to a CSV or JSONL file, flushing after every write."""

    def __init__(self, path: str | os.PathLike, *, append: bool = False) -> None:
        self.path = Path(path)
        _check_suffix(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not append or not self.path.exists() or self.path.stat().st_size == 0
        self.jsonl = self.path.suffix.lower() == ".jsonl"
        self.fh = self.path.open("a" if append else "w", newline="")
        self.csv = None if self.jsonl else csv.DictWriter(self.fh, fieldnames=list(DETECT_FIELDS))
        if self.csv is not None and fresh:
            self.csv.writeheader()
            self.fh.flush()

    def write(self, rows: list[dict[str, Any]]) -> None:
        if self.csv is not None:
            self.csv.writerows(rows)
        else:
            for r in rows:
                self.fh.write(json.dumps(r) + "\n")
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    """CSV or JSONL by the output's suffix."""
    _check_suffix(path)
    writer = RowWriter(path)
    try:
        writer.write(rows)
    finally:
        writer.close()


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
