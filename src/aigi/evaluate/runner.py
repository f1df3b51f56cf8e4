"""The runs of ``eval`` and ``detect``: labelled metrics, and one row per file, on the one engine.

Both score through :class:`aigi.inference.Predictor` (decode → the detector's own
preprocessing → forward → float64 sigmoid; a caller may pass an explicit ``preprocess``
override, which is then recorded with the results). Unreadable files, and images whose
score is not finite, are reported with their reason and skipped; they never stop the run.

Speed options (see docs/performance.md): ``dtype`` (bfloat16/float16 autocast),
``channels_last``, ``compile``, ``threads``, DataLoader ``num_workers``/``prefetch_factor``
and ``draft`` (JPEG draft decoding for resize preprocessing). Under ``accelerate launch
--num_processes N`` both :func:`evaluate` and :func:`detect` shard the images across the
processes (:class:`ShardBatchSampler`); the main process writes the same files as a
single process would.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..data.layouts import Sample, collect_images, load_samples
from ..data.names import name_to_text, text_to_name
from ..data.transforms import PreprocessConfig
from ..detectors.base import Detector
from ..inference.predictor import Predictor, Scores
from .metrics import evaluate_scores

#: exit code of ``aigi detect`` when some files could not be scored
EXIT_SOME_SKIPPED = 3
#: columns of ``aigi detect`` output files
DETECT_FIELDS = ("path", "p_fake", "verdict")
#: columns of ``aigi eval``'s scores.csv
SCORE_FIELDS = ("path", "subset", "label", "score")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run; ``scored`` results were flushed to ``path`` before it stopped."""

    def __init__(self, scored: int, path: Path | None) -> None:
        super().__init__(f"interrupted after {scored} score(s)")
        self.scored, self.path = scored, path


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
    """P(fake) for every scorable sample, in order (:meth:`Predictor.score` on ``detector`` as it is, unfolded)."""
    predictor = Predictor(detector, device=device, dtype=dtype, channels_last=channels_last, compile=compile,
                          batch_size=batch_size, num_workers=num_workers, prefetch_factor=prefetch_factor,
                          threads=threads, draft=draft, preprocess=preprocess, fold=False)
    return predictor.score(samples, on_batch=on_batch, shard=shard, progress=progress)


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

    rows = sorted(gather_object(list(zip(res.indices, res.scores, res.logits))))
    errors = sorted(gather_object(list(zip(res.error_indices, res.errors))))
    return Scores(samples=[samples[i] for i, _, _ in rows], scores=[p for _, p, _ in rows],
                  logits=[z for _, _, z in rows], indices=[i for i, _, _ in rows],
                  errors=[e for _, e in errors], error_indices=[i for i, _ in errors])


def make_predictor(
    model: Predictor | Detector | str | os.PathLike,
    *,
    revision: str | None = None,
    state: Any = None,
    **options: Any,
) -> Predictor:
    """A :class:`Predictor` for ``model``: used as given, wrapped (a Detector, unfolded), or opened and folded.

    ``device=None`` means the process's own device under ``accelerate launch``, else ``auto``.
    """
    if isinstance(model, Predictor):
        return model
    if options.get("device") is None:
        options["device"] = state.device if state is not None else "auto"
    if isinstance(model, Detector):
        return Predictor(model, fold=False, **options)
    return Predictor.from_pretrained(model, revision=revision, **options)


def evaluate(
    model: Predictor | Detector | str | os.PathLike,
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
    revision: str | None = None,
    allow_outside: bool = False,
) -> dict[str, Any]:
    """Score a labelled dataset and compute per-subset and mean metrics.

    Files and folders that cannot be read (and images that cannot be scored) are listed
    under ``"skipped"``; ``allow_outside`` lets a manifest name files outside its folder.

    With ``output``, writes ``scores.csv`` (path, subset, label, score; one process writes
    it row by row as batches finish, so Ctrl-C keeps what was scored and raises
    :class:`Interrupted`) and then ``metrics.json``. A model opened here (folder,
    ``zoo:NAME``, ``.onnx``, Hub id) is folded for inference; ``device`` defaults to the
    process's GPU, else ``auto``. ``dtype``/``draft``, which change the numbers, are
    recorded under ``"inference"`` when not at their defaults. Under ``accelerate
    launch`` with several processes each one scores a shard; the main process writes the
    files, identical to a single process's, and every process returns the same report
    (every process must call it: the scores are gathered with a collective operation).
    """
    state = distributed_state()
    predictor = make_predictor(model, revision=revision, state=state, device=device, dtype=dtype,
                               channels_last=channels_last, compile=compile, batch_size=batch_size,
                               num_workers=num_workers, prefetch_factor=prefetch_factor, threads=threads,
                               draft=draft, preprocess=preprocess)
    unread: list[tuple[str, str]] = []
    samples = [s for s in load_samples(Path(data), layout, split=split, skipped=unread, allow_outside=allow_outside)
               if s.label is not None]
    if not samples:
        raise ValueError(f"no labelled images in {data}")
    main = state is None or state.is_main_process
    out = None if output is None else Path(output)
    writer = None
    if out is not None and state is None:  # one process: write rows as they come
        out.mkdir(parents=True, exist_ok=True)
        writer = _ScoreWriter(out / "scores.csv")
    try:
        res = predictor.score(samples, progress=progress and main,
                              on_batch=None if writer is None else writer.write,
                              shard=None if state is None else (state.process_index, state.num_processes))
    except KeyboardInterrupt:
        raise Interrupted(writer.count if writer else 0, writer.path if writer else None) from None
    finally:
        if writer is not None:
            writer.close()
    if state is not None:
        res = gather_scores(res, samples)
    if not res.scores:
        raise ValueError(f"none of the {len(samples)} images in {data} could be scored")
    threshold = predictor.threshold
    metrics = evaluate_scores([s.label for s in res.samples], res.scores, [s.subset for s in res.samples], threshold)
    report = {
        "method": predictor.method,
        "model": str(model) if isinstance(model, (str, os.PathLike)) else None,
        "data": str(data),
        "layout": layout,
        "threshold": threshold,
        "preprocess": predictor.preprocess.model_dump(mode="json"),
        "preprocess_overridden": predictor.preprocess_overridden,
        **metrics,
        "skipped": [{"path": name_to_text(p), "reason": r} for p, r in unread + res.errors],
    }
    if predictor.dtype != "float32" or predictor.draft:
        report["inference"] = {"dtype": predictor.dtype, "draft_decoding": predictor.draft}
    if out is not None and main:
        out.mkdir(parents=True, exist_ok=True)
        if writer is None:  # several processes: the main one writes the gathered scores
            writer = _ScoreWriter(out / "scores.csv")
            writer.write(res.samples, res.scores)
            writer.close()
        (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


class _ScoreWriter:
    """``scores.csv`` of ``eval``, flushed after every batch."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh = path.open("w", newline="", encoding="utf-8")
        self.csv = csv.writer(self.fh)
        self.csv.writerow(SCORE_FIELDS)
        self.count = 0

    def write(self, samples: list[Sample], probs: list[float]) -> None:
        for s, p in zip(samples, probs):
            self.csv.writerow([name_to_text(s.path), s.subset, s.label, repr(p)])
        self.count += len(samples)
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def detect(
    model: Predictor | Detector | str | os.PathLike,
    paths: Sequence[str | os.PathLike],
    *,
    output: str | os.PathLike | None = None,
    batch_size: int = 32,
    num_workers: int = 0,
    threshold: float | None = None,
    progress: bool = False,
    resume: bool = False,
    calibrated: bool = False,
    band_width: float | None = None,
    device: str | torch.device | None = None,
    dtype: str = "float32",
    channels_last: bool | None = None,
    compile: bool | str = False,
    threads: int | None = None,
    revision: str | None = None,
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """Score files and folders; returns (rows, errors) and writes CSV or JSONL if asked.

    Rows are ``{"path", "p_fake", "verdict"}``; the verdict is ``real``/``fake``, or
    ``uncertain`` inside an abstain band (from ``calibration.json`` with ``calibrated``, or
    ``band_width`` around the threshold). A model opened here is folded for inference.
    The output file is written incrementally (flushed after every batch), so an interrupted
    run keeps what it scored. ``resume`` continues such a run: files whose path is already
    in ``output`` are skipped, new rows are appended (and only they are returned); a last
    line cut short by the interruption is dropped and scored again. Paths are compared as
    written, so resume with the same path arguments.

    Under ``accelerate launch`` with several processes, each one scores a shard and
    appends its rows to its own part file beside the output (``OUTPUT.part<rank>``); the
    main process then merges every part into ``output`` in the single-process order and
    removes them. Every process returns the same (gathered) rows and errors.
    """
    if resume and output is None:
        raise ValueError("resume needs an output file (--output FILE.csv or FILE.jsonl) to continue")
    out_path = None if output is None else Path(output)
    if out_path is not None:
        _check_suffix(out_path)
    state = distributed_state()
    predictor = make_predictor(model, revision=revision, state=state, device=device, dtype=dtype,
                               channels_last=channels_last, compile=compile, batch_size=batch_size,
                               num_workers=num_workers, threads=threads, threshold=threshold, calibrated=calibrated,
                               band_width=band_width)
    all_files, errors = collect_images(paths)
    files = all_files
    if resume and out_path is not None:
        done = read_scored_paths(out_path) if out_path.exists() else set()
        for part in _part_files(out_path):
            done |= read_scored_paths(part)
        files = [f for f in files if str(f) not in done]
    writer: RowWriter | None = None
    if state is not None:
        state.wait_for_everyone()  # every process has read the parts before any writes one
        if out_path is not None and not resume and state.is_main_process:
            for part in _part_files(out_path):
                part.unlink()
            RowWriter(out_path).close()  # a fresh run starts a fresh output
        state.wait_for_everyone()
        if out_path is not None:
            writer = RowWriter(_part_path(out_path, state.process_index), append=resume)
    elif out_path is not None:
        writer = RowWriter(out_path, append=resume)
    rows: list[dict[str, Any]] = []

    def on_batch(samples: list[Sample], probs: list[float]) -> None:
        new = [{"path": str(s.path), "p_fake": p, "verdict": predictor.verdict(p)} for s, p in zip(samples, probs)]
        rows.extend(new)
        if writer is not None:
            writer.write(new)

    samples = [Sample(path=f, label=None, subset="") for f in files]
    try:
        res = predictor.score(samples, progress=progress and (state is None or state.is_main_process),
                              on_batch=on_batch,
                              shard=None if state is None else (state.process_index, state.num_processes))
    finally:
        if writer is not None:
            writer.close()
    if state is None:
        return rows, errors + res.errors
    from accelerate.utils import gather_object

    order = {str(f): i for i, f in enumerate(all_files)}
    rows = sorted(gather_object(rows), key=lambda r: order.get(r["path"], len(order)))
    failed = sorted(gather_object(list(res.errors)), key=lambda e: order.get(e[0], len(order)))
    state.wait_for_everyone()  # every part is complete
    if out_path is not None and state.is_main_process:
        merge_parts(out_path, order)
    state.wait_for_everyone()
    return rows, errors + failed


def _part_path(output: Path, rank: int) -> Path:
    return output.with_name(f"{output.stem}.part{rank}{output.suffix}")


def _part_files(output: Path) -> list[Path]:
    """The per-process part files of a sharded ``detect`` into ``output`` (``NAME.part<rank>.csv``), by rank."""
    prefix, suffix = output.stem + ".part", output.suffix
    if not output.parent.is_dir():
        return []
    found = [p for p in output.parent.iterdir()
             if p.name.startswith(prefix) and p.name.endswith(suffix) and p.name[len(prefix):-len(suffix)].isdigit()]
    return sorted(found, key=lambda p: int(p.name[len(prefix):-len(suffix)]))


def read_rows(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a ``detect`` output (CSV values stay text, as written)."""
    path = Path(path)
    _check_suffix(path)
    _drop_partial_last_line(path)
    if path.suffix.lower() == ".jsonl":
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    for row in rows:  # back from the text form the writer used (aigi.data.names)
        row["path"] = text_to_name(str(row["path"]))
    return rows


def merge_parts(output: Path, order: dict[str, int]) -> int:
    """Append the rows of every part file to ``output`` (sorted by ``order``, each path once); remove the parts."""
    parts = _part_files(output)
    done = read_scored_paths(output) if output.exists() else set()
    new: dict[str, dict[str, Any]] = {}
    for part in parts:
        for row in read_rows(part):
            if str(row["path"]) not in done:
                new.setdefault(str(row["path"]), row)
    writer = RowWriter(output, append=True)
    try:
        writer.write(sorted(new.values(), key=lambda r: order.get(str(r["path"]), len(order))))
    finally:
        writer.close()
    for part in parts:
        part.unlink()
    return len(new)


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
        with path.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    done.add(text_to_name(str(json.loads(line)["path"])))
                except (json.JSONDecodeError, KeyError, TypeError):
                    raise ValueError(f"cannot resume: line {n} of {path} is not a detect result row") from None
        return done
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames is None:
            return done
        if tuple(reader.fieldnames) != DETECT_FIELDS:
            raise ValueError(
                f"cannot resume: {path} has columns {reader.fieldnames}, expected {list(DETECT_FIELDS)}"
            )
        done.update(text_to_name(row["path"]) for row in reader)
    return done


class RowWriter:
    """Append ``detect`` rows to a CSV or JSONL file, flushing after every write."""

    def __init__(self, path: str | os.PathLike, *, append: bool = False) -> None:
        self.path = Path(path)
        _check_suffix(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not append or not self.path.exists() or self.path.stat().st_size == 0
        self.jsonl = self.path.suffix.lower() == ".jsonl"
        self.fh = self.path.open("a" if append else "w", newline="", encoding="utf-8")
        self.csv = None if self.jsonl else csv.DictWriter(self.fh, fieldnames=list(DETECT_FIELDS))
        if self.csv is not None and fresh:
            self.csv.writeheader()
            self.fh.flush()

    def write(self, rows: list[dict[str, Any]]) -> None:
        # names in their lossless UTF-8 text form (aigi.data.names); read back by read_rows
        rows = [{**r, "path": name_to_text(r["path"])} for r in rows]
        if self.csv is not None:
            self.csv.writerows(rows)
        else:
            for r in rows:
                self.fh.write(json.dumps(r) + "\n")
        self.fh.flush()

    def close(self) -> None:
        self.fh.close()
