"""The one training loop, on Hugging Face Accelerate.

What makes it trustworthy:

* **Determinism.** Every sample's augmentation is drawn from an RNG seeded by
  ``(seed, epoch, index)`` and the order of each epoch from ``(seed, epoch)``, so the data a
  step sees does not depend on workers, processes or interruptions.
* **Exact resume.** A checkpoint holds the trainable weights and buffers, the optimiser,
  the scheduler, the torch RNG and the position in the data; ``resume=True`` continues as
  if nothing happened (2 steps + resume + 2 steps == 4 steps, bit for bit on CPU).
* **Atomic checkpoints.** Written to a temporary folder, then renamed; a kill at any moment
  leaves the previous checkpoint intact. Ctrl-C saves one before stopping.
* **Several processes.** ``batch_size`` is global; under ``accelerate launch`` each process
  takes its slice of every global batch and DDP averages the gradients.

The loop knows nothing method-specific: it calls ``detector.training_loss(batch)``.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import tempfile
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
from ..detectors.folder import CHECKPOINTS_DIR, TRAIN_CONFIG_NAME, TRAINING_NAME
from ..detectors.registry import create_detector
from .config import TrainConfig

CHECKPOINTS = CHECKPOINTS_DIR


class GlobalBatchSampler(Sampler[list[int]]):
    """Yields this process's slice of each global batch of a seeded per-epoch permutation.

    The permutation of epoch ``e`` comes from ``torch.Generator().manual_seed(seed + e)``;
    incomplete last batches are dropped (batch-norm needs more than one sample).
    ``start_batch`` skips batches already trained on without loading them.
    """

    def __init__(self, n: int, batch_size: int, *, seed: int, rank: int = 0, world: int = 1) -> None:
        if batch_size % world:
            raise ValueError(f"batch_size {batch_size} is not divisible by {world} processes")
        if n < batch_size:
            raise ValueError(f"only {n} training images for a batch size of {batch_size}")
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.epoch, self.start_batch = 0, 0

    def __len__(self) -> int:
        return self.n // self.batch_size - self.start_batch

    def set_position(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def __iter__(self) -> Iterator[list[int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        per = self.batch_size // self.world
        for b in range(self.start_batch, self.n // self.batch_size):
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
    skipped_files: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False


def _checkpoint_state(detector: Detector) -> dict[str, torch.Tensor]:
    """Trainable tensors and buffers; frozen pretrained backbone weights are left out."""
    if detector.backbone_prefixes:
        return detector.adapter_state_dict()
    return detector.state_dict()


def save_checkpoint(run: Path, step: int, epoch: int, batch_in_epoch: int, detector: Detector,
                    optimizer: torch.optim.Optimizer, scheduler: Any, cfg: TrainConfig) -> Path:
    """Write ``checkpoints/step-N`` atomically and prune old ones."""
    root = run / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:08d}"
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=root))
    try:
        torch.save({k: v.detach().cpu().clone() for k, v in _checkpoint_state(detector).items()}, tmp / "model.pt")
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
        torch.save({"torch": torch.get_rng_state()}, tmp / "rng.pt")
        state = {"step": step, "epoch": epoch, "batch_in_epoch": batch_in_epoch,
                 "recipe_sha256": cfg.digest(), "python_random": list(map(_jsonable, random.getstate()))}
        (tmp / "trainer_state.json").write_text(json.dumps(state))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    kept = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in kept[: -cfg.keep_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _jsonable(x: Any) -> Any:
    return list(x) if isinstance(x, tuple) else x


def latest_checkpoint(run: Path) -> Path | None:
    found = sorted(p for p in (run / CHECKPOINTS).glob("step-*") if (p / "trainer_state.json").is_file())
    return found[-1] if found else None


def load_checkpoint(path: Path, detector: Detector, optimizer: torch.optim.Optimizer, scheduler: Any,
                    cfg: TrainConfig) -> dict[str, Any]:
    state = json.loads((path / "trainer_state.json").read_text())
    if state.get("recipe_sha256") != cfg.digest():
        raise ValueError(
            f"checkpoint {path} was written by a different recipe; resume with the same recipe "
            "and overrides, or start a new run in another --output folder"
        )
    weights = torch.load(path / "model.pt", map_location="cpu", weights_only=True)
    detector.load_state_dict(weights, strict=not detector.backbone_prefixes)
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", map_location="cpu", weights_only=True))
    torch.set_rng_state(torch.load(path / "rng.pt", weights_only=True)["torch"])
    py = state["python_random"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    return state


def train(cfg: TrainConfig, output: str | Path | None = None, *, resume: bool = False,
          progress: bool = True, stop_after: int | None = None) -> TrainResult:
    """Train ``cfg.detector`` and save the final detector folder to ``output``.

    ``stop_after`` ends the run after that many optimiser steps of this call (with a
    checkpoint), which is how tests and Ctrl-C exercise resume.
    """
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, set_seed

    run = Path(output or cfg.output or f"runs/{cfg.detector}")
    ddp = DistributedDataParallelKwargs(find_unused_parameters=cfg.find_unused_parameters)
    # cpu=True on machines without CUDA is what lets `accelerate launch` start gloo processes
    acc = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=cfg.mixed_precision, kwargs_handlers=[ddp])
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
    sampler = GlobalBatchSampler(len(dataset), cfg.batch_size, seed=cfg.seed,
                                 rank=acc.process_index, world=acc.num_processes)
    loader = DataLoader(dataset, batch_sampler=sampler, collate_fn=collate, num_workers=cfg.num_workers,
                        persistent_workers=False)
    steps_per_epoch = len(dataset) // cfg.batch_size
    total = cfg.max_steps or int(math.ceil((cfg.epochs or 1) * steps_per_epoch))

    prepare = getattr(detector, "prepare_training", None)
    if callable(prepare):  # a detector that fits something on the training set first (NS-Net: caption null space)
        prepare(labelled)
    optimizer = build_optimizer(cfg, detector.trainable_parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, steps_per_epoch, total))
    step, epoch, batch_in_epoch = 0, 0, 0
    if resume:
        ckpt = latest_checkpoint(run)
        if ckpt is None:
            acc.print(f"no checkpoint in {run / CHECKPOINTS}; starting from scratch")
        else:
            st = load_checkpoint(ckpt, detector, optimizer, scheduler, cfg)
            step, epoch, batch_in_epoch = st["step"], st["epoch"], st["batch_in_epoch"]
            acc.print(f"resumed from {ckpt} at step {step}")
    elif latest_checkpoint(run) is not None:
        raise FileExistsError(f"{run} already holds checkpoints; pass --resume to continue it or choose another --output")

    module = _LossModule(detector)
    module, optimizer = acc.prepare(module, optimizer)
    if acc.is_main_process:
        run.mkdir(parents=True, exist_ok=True)
        (run / TRAIN_CONFIG_NAME).write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))

    result = TrainResult(output=run, steps=step)
    history_path = run / "history.jsonl"
    start_step, t0 = step, time.time()
    bar = _progress(progress and acc.is_local_main_process, total, step)
    module.train()
    try:
        done = False
        while step < total and not done:
            sampler.set_position(epoch, batch_in_epoch)
            dataset.set_epoch(epoch)
            for batch in loader:
                batch_in_epoch += 1
                for idx, msg in batch.get("errors", []):
                    path = str(dataset.samples[idx].path)
                    if path not in result.skipped_files:
                        result.skipped_files[path] = msg
                        acc.print(f"skipped unreadable training image: {msg}")
                if batch["index"].numel() == 0:
                    continue
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
                    if acc.is_main_process:
                        with history_path.open("a") as fh:
                            fh.write(json.dumps(rec) + "\n")
                if bar is not None:
                    bar.update(step, loss=float(out["loss"].detach()))
                done = step >= total or (stop_after is not None and step - start_step >= stop_after)
                if done or step % cfg.checkpoint_every == 0:
                    break
            if batch_in_epoch >= steps_per_epoch:
                epoch, batch_in_epoch = epoch + 1, 0
            if step % cfg.checkpoint_every == 0 and step < total:
                _save(acc, run, step, epoch, batch_in_epoch, detector, optimizer, scheduler, cfg)
        if step < total:
            if step % cfg.checkpoint_every:
                _save(acc, run, step, epoch, batch_in_epoch, detector, optimizer, scheduler, cfg)
            result.interrupted = True
    except KeyboardInterrupt:
        _save(acc, run, step, epoch, batch_in_epoch, detector, optimizer, scheduler, cfg)
        result.interrupted = True
        acc.print(f"interrupted: checkpoint saved at step {step}; continue with --resume")
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
            "processes": acc.num_processes,
            "seconds": round(time.time() - t0, 2),
            "final": result.history[-1] if result.history else None,
            "skipped_files": result.skipped_files,
            "recipe_sha256": cfg.digest(),
        }
        (run / TRAINING_NAME).write_text(json.dumps(summary, indent=2) + "\n")
    acc.end_training() if hasattr(acc, "end_training") else None
    return result


def _save(acc, run, step, epoch, batch_in_epoch, detector, optimizer, scheduler, cfg) -> None:
    acc.wait_for_everyone()
    if acc.is_main_process:
        save_checkpoint(run, step, epoch, batch_in_epoch, detector, optimizer, scheduler, cfg)
    acc.wait_for_everyone()


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
