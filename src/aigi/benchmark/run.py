"""Run a benchmark protocol: train what is missing, score what is not stored, write the report.

``run_protocol(protocol, output)`` does, in order:

1. lists the test images (and the held-out calibration reals) and records them, with their
   content hashes, in ``<output>/results.sqlite``;
2. makes every detector available: a ``model`` folder is used as it is; a ``recipe`` is
   trained into its run folder unless that folder already holds a detector finished from
   the same recipe (same recipe sha256), and an interrupted training is resumed; the
   augmentation task adds one retrained copy per variant;
3. scores every (detector, condition) pair the tasks need, skipping the stored rows. The
   images of a pair are cut into fixed batches in a fixed order and each batch is
   committed on its own, so an interrupted run resumes where it stopped and computes
   exactly the batches an uninterrupted run would have;
4. renders ``report.md`` / ``report.html`` from the store (:mod:`aigi.benchmark.report`).

Conditions (the third part of a result's key) are canonical strings:
``clean`` (the detector's own preprocessing, undegraded images), a degradation spec such
as ``jpeg:75``, and ``|pre=<mode>`` appended when the test-time geometry is overridden
(``clean|pre=resize``). Overriding a detector's preprocessing with its own mode gives the
plain condition, so nothing is scored twice.

Calibrated thresholds come from the calibration reals scored under the clean condition of
the same preprocessing; a degraded condition is judged with the clean threshold (as a
deployed detector would be: it does not know how its input was degraded).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..detectors.folder import CONFIG_NAME, TRAINING_NAME, WEIGHTS_NAME, calibration_band, is_finished_folder
from .plan import CLEAN, planned_conditions
from .protocol import Protocol, ProtocolError, augmentation_overrides
from .store import STORE_NAME, ResultStore, ScoreRow, weights_sha256

__all__ = ["BenchResult", "Job", "machine_info", "run_protocol"]


@dataclass
class Member:
    """One image of a job: where it is, its content hash, label and subset."""

    path: str
    image_hash: str
    label: int | None
    subset: str
    box: tuple[float, float, float, float] | None = None  # face box: the crop is the image (data.faces)


@dataclass
class ResolvedDetector:
    name: str
    model_dir: Path
    weights_hash: str
    role: str = "main"  # or "augmentation"
    base: str | None = None
    variant: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Job:
    """Score one detector under one condition on a list of images."""

    detector: str
    condition: str
    degradation: str | None
    mode: str | None
    members: list[Member]
    batches: list[list[int]] = field(default_factory=list)


@dataclass
class BenchResult:
    output: Path
    store: Path
    protocol_hash: str
    scored: int = 0
    reused: int = 0
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    #: (path, message) of test or calibration files and folders that could not be read
    unread: list[tuple[str, str]] = field(default_factory=list)
    report: Path | None = None
    seconds: float = 0.0
    detectors: dict[str, Path] = field(default_factory=dict)
    results: Any = None  # the report's Results, when a report was rendered


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """Where the results were computed: OS, CPU, Python, torch, aigi, accelerator."""
    import torch

    from .. import __version__

    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "aigi": __version__,
        "device": device,
    }
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def _device(name: str) -> str:
    from ..inference.predictor import resolve_device

    return str(resolve_device(name))


def score_identity(weights_hash: str, dtype: str) -> str:
    """The store's model key: the weights hash, plus the compute dtype when it is not float32.

    Scores computed in bfloat16/float16 differ slightly, so they are stored (and reused)
    apart from the float32 ones.
    """
    return weights_hash if dtype == "float32" else f"{weights_hash}+{dtype}"


# --------------------------------------------------------------------------- samples


def _test_samples(protocol: Protocol, unread: list | None = None, allow_outside: bool = False) -> list:
    from ..data.layouts import load_samples

    spec = protocol.data
    if not Path(spec.test).exists():
        raise ProtocolError(f"data.test {spec.test} does not exist; point it at your test images, "
                            "e.g. `aigi bench PROTOCOL.yaml data.test=/path/to/test`")
    samples = [s for s in load_samples(Path(spec.test), spec.layout, split=spec.split, skipped=unread,
                                       allow_outside=allow_outside) if s.label is not None]
    if not samples:
        raise ProtocolError(f"no labelled test images in {spec.test}")
    if spec.subsets is not None:
        present = sorted({s.subset for s in samples})
        missing = [x for x in spec.subsets if x not in present]
        if missing:
            raise ProtocolError(f"data.subsets names {missing}, which are not in {spec.test}; found: {present}")
        keep = set(spec.subsets)
        samples = [s for s in samples if s.subset in keep]
    if spec.max_per_class is not None:
        counts: dict[tuple[str, int], int] = {}
        capped = []
        for s in sorted(samples, key=lambda s: str(s.path)):
            key = (s.subset, int(s.label))
            if counts.get(key, 0) < spec.max_per_class:
                counts[key] = counts.get(key, 0) + 1
                capped.append(s)
        samples = capped
    return samples


def _members(store: ResultStore, samples: list) -> list[Member]:
    hashes = store.hash_files([s.path for s in samples])
    return [Member(str(s.path), _crop_hash(h, getattr(s, "box", None)), s.label, s.subset, getattr(s, "box", None))
            for s, h in zip(samples, hashes)]


def _crop_hash(file_hash: str, box: tuple[float, float, float, float] | None) -> str:
    """The identity of a scored image: the file's hash, or for a face box the file's hash and the box."""
    if box is None:
        return file_hash
    import hashlib

    return hashlib.sha256(f"{file_hash}|box={','.join(repr(float(v)) for v in box)}".encode()).hexdigest()


def _split_calibration(protocol: Protocol, store: ResultStore, test: list[Member], unread: list | None = None,
                       allow_outside: bool = False) -> tuple[list[Member], list[Member]]:
    """(test members, calibration members) per the protocol's calibration section."""
    cal = protocol.calibration
    if cal.data is not None:
        from ..data.layouts import load_samples

        reals = [s for s in load_samples(Path(cal.data), cal.layout, skipped=unread, allow_outside=allow_outside)
                 if s.label == 0]
        if not reals:
            raise ProtocolError(f"calibration.data {cal.data} holds no real (label 0) images")
        members = _members(store, reals)
        for m in members:
            m.subset = "calibration"
        test_hashes = {m.image_hash for m in test}
        overlap = sum(m.image_hash in test_hashes for m in members)
        if overlap:
            raise ProtocolError(
                f"{overlap} calibration image(s) in {cal.data} are also test images; "
                "calibration reals must be held out from the test set"
            )
        return test, members
    held: set[str] = set()
    by_subset: dict[str, list[Member]] = {}
    for m in test:
        if m.label == 0:
            by_subset.setdefault(m.subset, []).append(m)
    for reals in by_subset.values():
        if len(reals) < 2:
            continue
        k = max(1, int(round(cal.holdout * len(reals))))
        held.update(m.path for m in sorted(reals, key=lambda m: (m.image_hash, m.path))[:k])
    calibration = [m for m in test if m.path in held]
    return [m for m in test if m.path not in held], calibration


# --------------------------------------------------------------------------- detectors


def _finished(folder: Path) -> dict[str, Any] | None:
    summary = folder / TRAINING_NAME
    if is_finished_folder(folder) and summary.is_file():
        try:
            return json.loads(summary.read_text())
        except json.JSONDecodeError:
            return None
    return None


def _recipe_config(spec, output: Path, extra: list[str], recipe_overrides: list[str] = ()):
    """The validated TrainConfig of a recipe detector (inline recipes are written out first)."""
    import yaml

    from ..train import load_recipe

    recipe = spec.recipe
    if isinstance(recipe, dict):
        path = output / "recipes" / f"{spec.name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    else:
        path = Path(recipe)
    try:
        return load_recipe(path, list(recipe_overrides) + spec.override_list() + extra)
    except FileNotFoundError as err:
        raise ProtocolError(f"detector {spec.name!r}: {err}") from None
    except ValueError as err:
        raise ProtocolError(f"detector {spec.name!r}: {err}") from None


def _ensure_trained(name: str, cfg, folder: Path, managed: bool, console, progress: bool) -> dict[str, Any]:
    """Train ``cfg`` into ``folder`` unless a detector from the same recipe is already there."""
    from ..train import train
    from ..train.loop import latest_checkpoint

    digest = cfg.digest()
    done = _finished(folder)
    if done is not None and done.get("recipe_sha256") == digest:
        return {"trained": False, **done}
    stale = done is not None or (
        latest_checkpoint(folder) is not None and _checkpoint_recipe(folder) not in (None, digest)
    )
    if stale:
        if not managed:
            raise ProtocolError(
                f"detector {name!r}: {folder} holds a detector or checkpoints from a different recipe; "
                "delete it or point `output` at another folder"
            )
        _say(console, f"[yellow]{name}[/]: recipe changed, retraining in {folder}")
        shutil.rmtree(folder)
    resume = latest_checkpoint(folder) is not None
    _say(console, f"training [bold]{name}[/] ({cfg.detector}) → {folder}" + (" (resuming)" if resume else ""))
    result = train(cfg, folder, resume=resume, progress=progress)
    if result.interrupted:
        raise KeyboardInterrupt
    return {"trained": True, **(_finished(folder) or {})}


def _checkpoint_recipe(folder: Path) -> str | None:
    from ..train.loop import latest_checkpoint

    ckpt = latest_checkpoint(folder)
    if ckpt is None:
        return None
    try:
        return json.loads((ckpt / "trainer_state.json").read_text()).get("recipe_sha256")
    except (OSError, json.JSONDecodeError):
        return None


def _inside(folder: Path, root: Path) -> bool:
    """Whether ``folder`` lies inside ``root`` (the bench manages the run folders in its output)."""
    try:
        folder.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


def _resolve_detectors(protocol: Protocol, output: Path, console, progress: bool) -> list[ResolvedDetector]:
    from ..detectors.base import read_config

    main: list[ResolvedDetector] = []
    resolved: list[ResolvedDetector] = []  # augmentation variants, after the main detectors
    aug = protocol.tasks.augmentation
    for spec in protocol.detectors:
        info: dict[str, Any] = {}
        if spec.model is not None:
            folder = Path(spec.model)
            read_config(folder)  # a clear error when it is not a detector folder
            if not is_finished_folder(folder):
                raise ProtocolError(f"detector {spec.name!r}: {folder} has {CONFIG_NAME} but no {WEIGHTS_NAME}")
            info["source"] = "model"
        else:
            cfg = _recipe_config(spec, output, [], protocol.shared_recipe_overrides())
            folder = Path(spec.output) if spec.output else output / "models" / spec.name
            managed = _inside(folder, output)
            info = {"source": "recipe", **_ensure_trained(spec.name, cfg, folder, managed, console, progress)}
            if aug is not None and spec.name in aug.detectors:
                base_digest = cfg.digest()
                for variant in aug.variants:
                    vcfg = _recipe_config(spec, output, augmentation_overrides(variant, aug.probability, cfg.augment),
                                          protocol.shared_recipe_overrides())
                    vname = f"{spec.name}@{variant}"
                    if vcfg.digest() == base_digest:
                        vfolder, vinfo = folder, dict(info)
                    else:
                        vfolder = folder.parent / f"{folder.name}-aug-{variant}"
                        vinfo = {"source": "recipe", **_ensure_trained(vname, vcfg, vfolder, managed, console,
                                                                       progress)}
                    resolved.append(ResolvedDetector(vname, vfolder, weights_sha256(vfolder), role="augmentation",
                                                     base=spec.name, variant=variant, info=vinfo))
        main.append(ResolvedDetector(spec.name, folder, weights_sha256(folder), info=info))
    return main + resolved


# --------------------------------------------------------------------------- jobs


def _jobs(protocol: Protocol, detectors: list[ResolvedDetector], default_modes: dict[str, str],
          test: list[Member], calibration: list[Member]) -> list[Job]:
    with_cal = _dedupe(test + calibration)
    roles = {d.name: d.role for d in detectors}
    return [
        Job(p.detector, p.condition, p.degradation, p.mode, with_cal if p.calibration else test)
        for p in planned_conditions(protocol, roles, default_modes)
    ]


def _dedupe(members: list[Member]) -> list[Member]:
    seen: set[str] = set()
    out = []
    for m in members:
        if m.image_hash not in seen:
            seen.add(m.image_hash)
            out.append(m)
    return out


def _plan(job: Job, done: set[str], batch_size: int) -> None:
    """Cut the job into fixed batches and keep those with an image not yet stored."""
    from ..data.transforms import PRESETS

    native = job.mode == "none" or (job.mode in PRESETS and PRESETS[job.mode].config.test == "none")
    size = 1 if native else batch_size  # native sizes differ: one image per batch
    n = len(job.members)
    job.batches = [
        list(range(i, min(i + size, n)))
        for i in range(0, n, size)
        if any(job.members[j].image_hash not in done for j in range(i, min(i + size, n)))
    ]


class _DegradeThen:
    """Picklable ``(img, rng) -> tensor``: apply a degradation, then the detector's transform."""

    def __init__(self, degradation, transform) -> None:
        self.degradation = degradation
        self.transform = transform
        self.pre = getattr(transform, "pre", None)  # the detector's preprocessing (the face crop reads face_scale)

    def __call__(self, img, rng=None):
        if self.degradation is not None:
            img = self.degradation(img)
        return self.transform(img, rng)


# --------------------------------------------------------------------------- scoring


def _score_job(job: Job, predictor, weights_hash: str, pre, protocol_hash: str, store: ResultStore,
               advance: Callable[[int], None], on_batch: Callable[[], None] | None) -> int:
    """Score one job's planned batches through the shared :class:`~aigi.inference.Predictor`; commit each batch."""
    from ..data.degrade import parse_degradation
    from ..data.layouts import Sample
    from ..data.transforms import build_transform

    degradation = parse_degradation(job.degradation) if job.degradation else None
    transform = _DegradeThen(degradation, build_transform(pre, train=False))
    samples = [Sample(path=Path(m.path), label=m.label, subset=m.subset, box=m.box) for m in job.members]
    written = 0

    def commit(res) -> None:
        nonlocal written
        rows: list[ScoreRow] = []
        for i, msg in res.errors:
            m = job.members[i]
            rows.append(ScoreRow(m.image_hash, weights_hash, job.condition, None, None, msg, m.label,
                                 m.subset, m.path, protocol_hash))
        for i, p, logit in zip(res.indices, res.scores, res.logits):
            m = job.members[i]
            rows.append(ScoreRow(m.image_hash, weights_hash, job.condition, p, logit, None, m.label,
                                 m.subset, m.path, protocol_hash))
        written += store.put_scores(rows)
        advance(len(res.indices) + len(res.errors))
        if on_batch is not None:
            on_batch()

    predictor.score(samples, batches=job.batches, transform=transform, on_result=commit)
    return written


def write_bench_calibration(store: ResultStore, protocol: Protocol, protocol_hash: str, d: "ResolvedDetector",
                            dtype: str) -> Path | None:
    """Write ``calibration.json`` into a detector folder from its clean scores on the calibration reals."""
    import hashlib
    from datetime import datetime, timezone

    import numpy as np

    from ..detectors.folder import Calibration, write_calibration
    from ..evaluate.calibration import threshold_at_fpr

    rows = [r for r in store.scores_for(protocol_hash, d.weights_hash, CLEAN, role="calibration") if r[1] == 0]
    reals = np.array([r[2] for r in rows], dtype=np.float64)
    if reals.size == 0:
        return None
    members = {h for _, h, label, _ in store.samples(protocol_hash, "calibration") if label == 0}
    fpr = protocol.calibration.fpr
    t = threshold_at_fpr(reals, fpr)
    lines = sorted(f"0:{h}" for h in members)
    cal = Calibration(threshold=t, target_fpr=fpr, fpr=float(np.mean(reals >= t)), n_real=int(reals.size), n_fake=0,
                      data=f"aigi bench {protocol.name}: calibration reals",
                      data_sha256=hashlib.sha256("\n".join(lines).encode()).hexdigest() if lines else None,
                      date=datetime.now(timezone.utc).isoformat(timespec="seconds"), dtype=dtype,
                      protocol_sha256=protocol_hash)
    return write_calibration(d.model_dir, cal)


def _say(console, text: str) -> None:
    if console is not None:
        console.print(text)


def run_protocol(
    protocol: Protocol,
    output: str | os.PathLike | None = None,
    *,
    console=None,
    progress: bool | None = None,
    report: bool = True,
    on_batch: Callable[[], None] | None = None,
    device: str | None = None,
    dtype: str = "float32",
    write_calibration: bool = False,
    allow_outside: bool = False,
) -> BenchResult:
    """Run ``protocol``, storing results under ``output`` (default ``runs/bench/<name>``).

    ``progress`` (default: the protocol's ``run.progress`` when the console is a
    terminal) shows rich progress bars with the time left; ``on_batch`` is called after
    every committed batch (tests use it to slow a run down before killing it).
    ``device`` (default the protocol's ``run.device``) and ``dtype`` are the
    :class:`~aigi.inference.Predictor`'s; scores in another dtype than float32 are stored
    under their own model key (:func:`score_identity`). ``write_calibration`` writes
    ``calibration.json`` (threshold at the protocol's FPR on the calibration reals) into
    the folder of every detector this run trained. Test and calibration files or folders
    that cannot be read are listed in ``BenchResult.unread``; ``allow_outside`` lets a
    manifest name files outside its folder.
    """
    import yaml

    from ..data.transforms import PRESETS, PreprocessConfig, preset
    from ..inference.predictor import Predictor

    t0 = time.time()
    output = Path(output or Path("runs") / "bench" / protocol.name)
    output.mkdir(parents=True, exist_ok=True)
    if progress is None:
        progress = bool(protocol.run.progress and console is not None and getattr(console, "is_terminal", False))
    from ..inference.fast import INFERENCE_DTYPES

    if dtype not in INFERENCE_DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(INFERENCE_DTYPES)}, got {dtype!r}")
    device = _device(device or protocol.run.device)
    phash = protocol.digest()
    (output / "protocol.yaml").write_text(
        f"# protocol sha256 {phash}\n" + yaml.safe_dump(protocol.model_dump(mode="json"), sort_keys=False)
    )
    store = ResultStore(output / STORE_NAME)
    result = BenchResult(output=output, store=store.path, protocol_hash=phash)
    run_id = store.start_run(phash, protocol.hashed_content(), machine_info(device))
    status = "failed"
    try:
        _say(console, f"protocol [bold]{protocol.name}[/] sha256 {phash[:12]}… → {output}")
        test = _members(store, _test_samples(protocol, result.unread, allow_outside))
        test, calibration = _split_calibration(protocol, store, test, result.unread, allow_outside)
        store.put_samples(phash, "test", [(m.path, m.image_hash, m.label, m.subset) for m in test])
        store.put_samples(phash, "calibration", [(m.path, m.image_hash, m.label, m.subset) for m in calibration])
        _say(console, f"{len(test)} test images in {len({m.subset for m in test})} subsets, "
                      f"{len(calibration)} calibration reals")
        from ..audit.bench import audit_test_set

        audited = audit_test_set(store, phash, [(m.path, m.image_hash, m.label, m.subset) for m in test])
        _say(console, "test-set audit (shortcuts in the files): "
                      + ", ".join(f"{k} {v['verdict']}" for k, v in audited["subsets"].items()))

        detectors = _resolve_detectors(protocol, output, console, progress)
        for d in detectors:
            d.weights_hash = score_identity(d.weights_hash, dtype)
        result.detectors = {d.name: d.model_dir for d in detectors}
        configs = {d.name: json.loads((d.model_dir / CONFIG_NAME).read_text()) for d in detectors}
        default_modes = {n: PreprocessConfig.model_validate(c.get("preprocess", {})).test for n, c in configs.items()}
        jobs = _jobs(protocol, detectors, default_modes, test, calibration)
        by_name = {d.name: d for d in detectors}
        planned: set[tuple[str, str]] = set()
        for job in jobs:
            d = by_name[job.detector]
            key = (d.weights_hash, job.condition)
            # the same weights under the same condition (an augmentation variant that is the
            # recipe itself) is scored once; the report finds the rows by weights hash
            done = {m.image_hash for m in job.members} if key in planned else store.done(*key)
            planned.add(key)
            _plan(job, done, protocol.run.batch_size)
        todo = sum(len(b) for j in jobs for b in j.batches)
        total = sum(len(j.members) for j in jobs)
        result.reused = total - todo
        _say(console, f"{len(jobs)} (detector, condition) pairs: {total} scores, {result.reused} already stored, "
                      f"{todo} to compute")

        bar = _Progress(progress, todo, console)
        known = store.detectors(phash)
        try:
            for d in detectors:
                mine = [j for j in jobs if j.detector == d.name]
                base_pre = PreprocessConfig.model_validate(configs[d.name].get("preprocess", {}))
                model = None
                prior = known.get(d.name)
                if prior is not None and prior["weights_hash"] == d.weights_hash and "parameters" in prior["info"]:
                    params, method = prior["info"]["parameters"], prior["method"]
                else:
                    model = Predictor.from_pretrained(d.model_dir, device=device, dtype=dtype,
                                                      num_workers=protocol.run.num_workers)
                    params, method = sum(p.numel() for p in model.detector.parameters()), model.method
                store.put_detector(phash, d.name, d.weights_hash, method=method, role=d.role,
                                   model_dir=str(d.model_dir),
                                   info={**d.info, "parameters": params, "base": d.base, "variant": d.variant,
                                         "threshold": configs[d.name].get("threshold", 0.5),
                                         "band": calibration_band(d.model_dir),
                                         "test_mode": default_modes[d.name]})
                for job in mine:
                    if job.mode in PRESETS:  # a preset replaces the whole test transform
                        pre = preset(job.mode)
                    else:
                        pre = PreprocessConfig.model_validate({**base_pre.model_dump(), "test": job.mode or base_pre.test})
                    store.put_condition(d.weights_hash, job.condition, job.degradation, pre.model_dump(mode="json"))
                    if not job.batches:
                        continue
                    if model is None:
                        model = Predictor.from_pretrained(d.model_dir, device=device, dtype=dtype,
                                                          num_workers=protocol.run.num_workers)
                    bar.job(f"{d.name} · {job.condition}", sum(len(b) for b in job.batches))
                    try:
                        result.scored += _score_job(job, model, d.weights_hash, pre, phash, store,
                                                    bar.advance, on_batch)
                        store.clear_failure(phash, d.name, job.condition)
                    except (KeyboardInterrupt, SystemExit):
                        raise
                    except Exception as err:  # one condition failing must not lose the others
                        reason = f"{type(err).__name__}: {err}"
                        store.put_failure(phash, d.name, job.condition, reason)
                        bar.abandon()
                        _say(console, f"[yellow]could not score {d.name} under {job.condition}[/]: {reason}")
                del model
        finally:
            bar.close()
        result.failures = store.failures(phash)
        if write_calibration:
            for d in detectors:
                if d.info.get("source") == "recipe":
                    written = write_bench_calibration(store, protocol, phash, d, dtype)
                    if written is not None:
                        _say(console, f"calibrated {d.name}: {written}")
        status = "finished"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        store.finish_run(run_id, status)
        store.close()
    if report:
        from .report import build_report

        _say(console, "writing the report")

        result.report, result.results = build_report(output, protocol_hash=phash)
    result.seconds = time.time() - t0
    return result


class _Progress:
    """Two rich bars (all scores, current pair) with the time left; silent when disabled."""

    def __init__(self, enabled: bool, total: int, console) -> None:
        self.p = None
        self.cur = None
        self.cur_left = 0
        if not enabled or total == 0:
            return
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self.p = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          TextColumn("left"), TimeRemainingColumn(), console=console)
        self.all = self.p.add_task("all scores", total=total)
        self.p.start()

    def job(self, name: str, n: int) -> None:
        self.cur_left = n
        if self.p is None:
            return
        if self.cur is not None:
            self.p.remove_task(self.cur)
        self.cur = self.p.add_task(name, total=n)

    def advance(self, n: int) -> None:
        self.cur_left -= n
        if self.p is None:
            return
        self.p.advance(self.all, n)
        if self.cur is not None:
            self.p.advance(self.cur, n)

    def abandon(self) -> None:
        """The current pair failed: drop its remaining images from the total."""
        if self.p is not None:
            task = next(t for t in self.p.tasks if t.id == self.all)
            self.p.update(self.all, total=max(0, (task.total or 0) - self.cur_left))
        self.cur_left = 0

    def close(self) -> None:
        if self.p is not None:
            self.p.stop()
