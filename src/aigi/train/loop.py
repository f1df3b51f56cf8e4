"""The one training loop, on Hugging Face Accelerate.

What makes it trustworthy:

* **Determinism.** Every sample's augmentation is drawn from an RNG seeded by
  ``(seed, epoch, index)`` and the order of each epoch from ``(seed, epoch)``, so the data a
  step sees does not depend on workers, processes or interruptions.
* **Exact resume.** ``Accelerator.save_state`` writes the trainable weights and buffers, the
  optimiser, the scheduler and every RNG; ``load_state`` restores them and
  ``accelerate.skip_first_batches`` continues inside the epoch without decoding the batches
  already trained on (2 steps + resume + 2 steps == 4 steps, bit for bit on CPU).
* **Checked checkpoints.** Written to a temporary folder, then renamed; every file is read
  back with ``weights_only=True`` before a resume trusts it, and a damaged one is named
  with the newest intact checkpoint to use instead (:mod:`aigi.train.checkpoint`).
* **Ctrl-C** finishes the current step, saves a checkpoint and stops (a second Ctrl-C stops
  at once); ``history.jsonl`` is cut back to the checkpoint's step on resume.
* **Several processes.** ``batch_size`` is global; under ``accelerate launch`` each process
  takes its slice of every global batch and DDP averages the gradients.
* **Validation.** With ``data.val``, the detector is scored at the end of every epoch (and
  of the run): ``val_auroc``, ``val_ap``, ``val_acc`` in ``history.jsonl`` and the log.

The loop knows nothing method-specific: it calls ``detector.training_loss(batch)``.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader, Sampler

from ..data.dataset import ImageDataset, collate
from ..data.layouts import detect_layout, load_samples
from ..data.transforms import build_transform
from ..detectors.base import Detector
from ..detectors.folder import TRAIN_CONFIG_NAME, TRAINING_NAME
from ..detectors.registry import create_detector
from .checkpoint import (CHECKPOINTS, STATE_NAME, TrainCheckpointError, latest_checkpoint, load_checkpoint,
                         save_checkpoint, set_aside_newer, truncate_history, verify_checkpoint)
from .config import TrainConfig
from .validate import validate, validation_dataset

__all__ = ["CHECKPOINTS", "GlobalBatchSampler", "TrainCheckpointError", "TrainResult", "latest_checkpoint", "train"]

HISTORY_NAME = "history.jsonl"


class GlobalBatchSampler(Sampler[list[int]]):
    """Yields this process's slice of each global batch of a seeded per-epoch permutation.

    The permutation of epoch ``e`` comes from ``torch.Generator().manual_seed(seed * 1_000_003 + e)``;
    incomplete last batches are dropped (batch-norm needs more than one sample). Resuming
    inside an epoch wraps the loader in ``accelerate.skip_first_batches``, which skips
    index lists without loading their images.
    """

    def __init__(self, n: int, batch_size: int, *, seed: int, rank: int = 0, world: int = 1) -> None:
        if batch_size % world:
            raise ValueError(f"batch_size {batch_size} is not divisible by {world} processes")
        if n < batch_size:
            raise ValueError(f"only {n} training images for a batch size of {batch_size}")
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.epoch = 0

    def __len__(self) -> int:
        return self.n // self.batch_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        per = self.batch_size // self.world
        for b in range(self.n // self.batch_size):
            chunk = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield chunk[self.rank * per : (self.rank + 1) * per]


class _LossModule(nn.Module):
    """Routes ``training_loss`` through ``forward`` so DDP's gradient hooks run."""

    def __init__(self, detector: Detector) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.detector.training_loss(batch)


def build_optimizer(cfg: TrainConfig, params: list[nn.Parameter]) -> torch.optim.Optimizer:
    o = cfg.optimizer
    if not params:
        raise ValueError("the detector has no trainable parameters")
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
    if o.name == "adamw":
        return torch.optim.AdamW(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
    return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


def lr_factor(cfg: TrainConfig, steps_per_epoch: int, total_steps: int) -> Callable[[int], float]:
    """The multiplicative learning-rate factor at a step (a pure function: resumable)."""
    s = cfg.scheduler
    period = s.every * (steps_per_epoch if s.unit == "epoch" else 1)

    def factor(step: int) -> float:
        warm = min(1.0, (step + 1) / s.warmup_steps) if s.warmup_steps else 1.0
        if s.name == "step":
            return warm * s.gamma ** (step // max(period, 1))
        if s.name == "cosine":
            return warm * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / max(total_steps, 1)))
        return warm

    return factor


@dataclass
class TrainResult:
    output: Path
    steps: int
    history: list[dict[str, float]] = field(default_factory=list)
    validation: list[dict[str, Any]] = field(default_factory=list)
    skipped_files: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False
    resumed_from: Path | None = None


def _checkpoint_state(detector: Detector) -> dict[str, torch.Tensor]:
    """Trainable tensors and buffers; frozen pretrained backbone weights are left out."""
    if detector.backbone_prefixes:
        return detector.adapter_state_dict()
    return detector.state_dict()


class _StopRequest:
    """Turns the first Ctrl-C (SIGINT) into a flag the loop reads after each step.

    A second Ctrl-C raises ``KeyboardInterrupt`` at once. With several processes the flag is
    summed across them every step, so all stop after the same step.
    """

    def __init__(self) -> None:
        self.hit = False
        self._old: Any = None

    def __enter__(self) -> "_StopRequest":
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        self.hit = True
        signal.signal(signal.SIGINT, self._old if callable(self._old) else signal.default_int_handler)

    def __exit__(self, *exc: Any) -> None:
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)

    def requested(self, acc: Any) -> bool:
        if acc.num_processes == 1:
            return self.hit
        flag = torch.tensor([1.0 if self.hit else 0.0], device=acc.device)
        return bool(acc.reduce(flag, reduction="sum").item() > 0)


def _resume_point(run: Path, resume: bool, resume_from: str | Path | None) -> Path | None:
    """The checkpoint to continue from, verified (None: start from scratch)."""
    if resume_from is not None:
        path = Path(resume_from)
        if not (path / STATE_NAME).exists() and latest_checkpoint(path) is not None:
            path = latest_checkpoint(path)  # a run folder: its newest checkpoint
        verify_checkpoint(path, run)
        return path
    if not resume:
        if latest_checkpoint(run) is not None:
            raise FileExistsError(
                f"{run} already holds checkpoints; pass --resume to continue it or choose another --output")
        return None
    path = latest_checkpoint(run)
    if path is not None:
        verify_checkpoint(path, run)
    return path


def train(cfg: TrainConfig, output: str | Path | None = None, *, resume: bool = False,
          resume_from: str | Path | None = None, progress: bool = True,
          stop_after: int | None = None) -> TrainResult:
    """Train ``cfg.detector`` and save the final detector folder to ``output``.

    ``resume`` continues from the run folder's newest checkpoint (an error naming the file
    and the newest intact checkpoint if it is damaged); ``resume_from`` continues from the
    given checkpoint folder and sets the run's newer checkpoints aside. ``stop_after`` ends
    the run after that many optimiser steps of this call (with a checkpoint), which is how
    tests exercise resume.
    """
    from accelerate import Accelerator, skip_first_batches
    from accelerate.utils import DistributedDataParallelKwargs, set_seed

    run = Path(output or cfg.output or f"runs/{cfg.detector}")
    ckpt = _resume_point(run, resume, resume_from)
    ddp = DistributedDataParallelKwargs(find_unused_parameters=cfg.find_unused_parameters)
    # cpu=True on machines without CUDA is what lets `accelerate launch` start gloo processes;
    # the scheduler steps once per global step (batch_size is global), not once per process
    acc = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=cfg.mixed_precision,
                      kwargs_handlers=[ddp], step_scheduler_with_optimizer=False)
    set_seed(cfg.seed)

    detector = create_detector(cfg.detector, **cfg.overrides)
    pre = detector.preprocess_config()
    layout = detect_layout(Path(cfg.data.train)) if cfg.data.layout == "auto" else cfg.data.layout
    split = cfg.data.split or ("train" if layout == "genimage" else None)
    samples = load_samples(Path(cfg.data.train), layout, split=split)
    if cfg.data.subsets:
        keep = set(cfg.data.subsets)
        samples = [s for s in samples if s.subset in keep]
    labelled = [s for s in samples if s.label is not None]
    if not labelled:
        raise ValueError(f"no labelled training images in {cfg.data.train}")
    dataset = ImageDataset(labelled, build_transform(pre, train=True, augment=cfg.augment), seed=cfg.seed)
    val_set = validation_dataset(cfg.data, detector, cfg.seed)
    sampler = GlobalBatchSampler(len(dataset), cfg.batch_size, seed=cfg.seed,
                                 rank=acc.process_index, world=acc.num_processes)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=cfg.num_workers,
                        persistent_workers=False)
    steps_per_epoch = len(dataset) // cfg.batch_size
    total = cfg.max_steps or int(math.ceil((cfg.epochs or 1) * steps_per_epoch))

    optimizer = build_optimizer(cfg, detector.trainable_parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, steps_per_epoch, total))
    module, optimizer, scheduler = acc.prepare(_LossModule(detector), optimizer, scheduler)

    def save_weights(models: list, weights: list, output_dir: str) -> None:
        # the detector's own keys (no DDP prefix), without the frozen backbone
        if weights:
            weights[0] = {k: v.detach().cpu().contiguous().clone() for k, v in _checkpoint_state(detector).items()}

    def skip_accelerate_weights(models: list, input_dir: str) -> None:
        models.clear()  # the weights are loaded by load_weights below

    def load_weights(state: dict[str, torch.Tensor]) -> None:
        detector.load_state_dict(state, strict=not detector.backbone_prefixes)

    acc.register_save_state_pre_hook(save_weights)
    acc.register_load_state_pre_hook(skip_accelerate_weights)

    step, epoch, batch_in_epoch = 0, 0, 0
    result = TrainResult(output=run, steps=0)
    history_path = run / HISTORY_NAME
    if ckpt is not None:
        st = json.loads((ckpt / STATE_NAME).read_text())
        if st.get("recipe_sha256") != cfg.digest():
            raise ValueError(
                f"checkpoint {ckpt} was written by a different recipe; resume with the same recipe "
                "and overrides, or start a new run in another --output folder")
        try:
            load_checkpoint(acc, ckpt, load_weights, optimizer, scheduler)
        except (RuntimeError, ValueError, KeyError, OSError) as err:
            raise TrainCheckpointError(f"checkpoint {ckpt} does not fit this detector: {err}") from None
        step, epoch, batch_in_epoch = st["step"], st["epoch"], st["batch_in_epoch"]
        result.resumed_from = ckpt
        if st.get("processes", acc.num_processes) != acc.num_processes:
            acc.print(f"warning: {ckpt} was written by {st['processes']} processes, resumed with "
                      f"{acc.num_processes}: the data order is the same, the per-process RNG is not")
        if acc.is_main_process:
            if resume_from is not None and ckpt.parent == run / CHECKPOINTS:
                for moved in set_aside_newer(run, ckpt):
                    acc.print(f"set aside {moved} (newer than the checkpoint resumed from)")
            dropped = truncate_history(history_path, step)
            if dropped:
                acc.print(f"history.jsonl: dropped {dropped} records after step {step}")
        acc.print(f"resumed from {ckpt} at step {step}")
    elif resume:
        acc.print(f"no checkpoint in {run / CHECKPOINTS}; starting from scratch")

    if acc.is_main_process:
        run.mkdir(parents=True, exist_ok=True)
        (run / TRAIN_CONFIG_NAME).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    acc.wait_for_everyone()

    def record(rec: dict[str, Any]) -> None:
        if acc.is_main_process:
            with history_path.open("a") as fh:
                fh.write(json.dumps(rec) + "\n")

    def run_validation() -> None:
        metrics, skipped = validate(acc, detector, val_set, max(1, cfg.batch_size // acc.num_processes),
                                    cfg.num_workers)
        for path, msg in skipped.items():
            if path not in result.skipped_files:
                result.skipped_files[path] = msg
                acc.print(f"skipped unreadable validation image: {msg}")
        rec = {"step": step, "epoch": (step - 1) // steps_per_epoch, **metrics}  # the epoch of the last step
        result.validation.append(rec)
        record(rec)
        fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
        acc.print(f"validation at step {step}: AUROC {fmt(metrics['val_auroc'])}  AP {fmt(metrics['val_ap'])}  "
                  f"ACC {fmt(metrics['val_acc'])}  ({metrics['val_images']} images)")

    def state() -> dict[str, Any]:
        return {"step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch, "recipe_sha256": cfg.digest()}

    start_step, t0 = step, time.time()
    validated_at = step if ckpt is not None else -1
    bar = _progress(progress and acc.is_local_main_process, total, step)
    module.train()
    try:
        with _StopRequest() as stop:
            while step < total and not result.interrupted:
                sampler.set_epoch(epoch)
                dataset.set_epoch(epoch)
                batches = skip_first_batches(loader, batch_in_epoch) if batch_in_epoch else loader
                for batch in batches:
                    batch_in_epoch += 1
                    for idx, msg in batch.get("errors", []):
                        path = str(dataset.samples[idx].path)
                        if path not in result.skipped_files:
                            result.skipped_files[path] = msg
                            acc.print(f"skipped unreadable training image: {msg}")
                    stepped = batch["index"].numel() > 0
                    if stepped:
                        batch = {k: v.to(acc.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
                        with acc.autocast():
                            out = module(batch)
                        acc.backward(out["loss"])
                        optimizer.step()
                        scheduler.step()
                        optimizer.zero_grad(set_to_none=True)
                        step += 1
                        if step % cfg.log_every == 0 or step == total:
                            rec = {"step": step, "epoch": epoch, "lr": scheduler.get_last_lr()[0],
                                   **{k: float(v.detach().float().mean()) for k, v in out.items()}}
                            result.history.append(rec)
                            record(rec)
                        if bar is not None:
                            bar.update(step, loss=float(out["loss"].detach()))
                    if batch_in_epoch >= steps_per_epoch:
                        epoch, batch_in_epoch = epoch + 1, 0
                        if val_set is not None:
                            run_validation()
                            validated_at = step
                    if step >= total:
                        break
                    if not stepped:
                        continue
                    halt = stop.requested(acc) or (stop_after is not None and step - start_step >= stop_after)
                    if halt or step % cfg.checkpoint_every == 0:
                        save_checkpoint(acc, run, state(), cfg.keep_checkpoints)
                    if halt:
                        result.interrupted = True
                        if stop.hit:
                            acc.print(f"interrupted: checkpoint saved at step {step}; continue with --resume")
                        break
            if val_set is not None and step >= total and validated_at != step:
                run_validation()
    except KeyboardInterrupt:  # a second Ctrl-C: stop without saving
        result.interrupted = True
        acc.print("stopped without saving; --resume continues from the last checkpoint")
    finally:
        if bar is not None:
            bar.close()
    result.steps = step
    acc.wait_for_everyone()
    if acc.is_main_process and not result.interrupted:
        detector.save_pretrained(run, adapter_only=cfg.adapter_only)
        summary = {
            "detector": cfg.detector,
            "steps": step,
            "epochs": round(step / max(steps_per_epoch, 1), 3),
            "train_images": len(labelled),
            "train_data": cfg.data.train,
            "val_data": cfg.data.val,
            "processes": acc.num_processes,
            "seconds": round(time.time() - t0, 2),
            "final": result.history[-1] if result.history else None,
            "validation": result.validation[-1] if result.validation else None,
            "skipped_files": result.skipped_files,
            "recipe_sha256": cfg.digest(),
        }
        (run / TRAINING_NAME).write_text(json.dumps(summary, indent=2) + "\n")
    acc.end_training()
    return result


class _Bar:
    def __init__(self, total: int, start: int) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.p = Progress(TextColumn("train"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                          TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn(), transient=False)
        self.task = self.p.add_task("train", total=total, completed=start, loss=float("nan"))
        self.p.start()

    def update(self, step: int, loss: float) -> None:
        self.p.update(self.task, completed=step, loss=loss)

    def close(self) -> None:
        self.p.stop()


def _progress(enabled: bool, total: int, start: int) -> _Bar | None:
    return _Bar(total, start) if enabled else None
