"""Resumable training checkpoints: written by Accelerate, checked before they are trusted.

A checkpoint is the folder ``<run>/checkpoints/step-NNNNNNNN/``::

    model.safetensors      the detector's trainable tensors and buffers (frozen backbone left out)
    optimizer.bin          \\
    scheduler.bin           } written and read by ``Accelerator.save_state`` / ``load_state``
    random_states_<r>.pkl  /  (one RNG file per process; ``scaler.pt`` under fp16)
    trainer_state.json     step, epoch, batch in the epoch, recipe hash, number of processes

Everything is written into ``checkpoints/.tmp-step-N`` and renamed into place, so a kill at
any moment leaves the previous checkpoint whole. Before anything is loaded every file is
read once with ``weights_only=True`` (tensors and plain data, never arbitrary objects) and
safetensors' own parser; a file that is missing, truncated, garbage or a foreign pickle
raises :class:`TrainCheckpointError`, which names the file and the newest intact checkpoint
to resume from instead (``aigi train ... --resume-from DIR``).

Checkpoints of the first layout (``model.pt``, ``optimizer.pt``, ``scheduler.pt``,
``rng.pt``) are still read, so a run interrupted before the change can continue.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import re
import shutil
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from ..detectors.folder import CHECKPOINTS_DIR

CHECKPOINTS = CHECKPOINTS_DIR
STATE_NAME = "trainer_state.json"
MODEL_STATE_NAME = "model.safetensors"
FORMAT = 2
_STEP_DIR = re.compile(r"^step-(\d{8})$")
_LEGACY = ("model.pt", "optimizer.pt", "scheduler.pt", "rng.pt")


class TrainCheckpointError(ValueError):
    """A checkpoint that cannot be resumed from; the message names the file and what to do."""


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}"


def list_checkpoints(run: str | os.PathLike) -> list[Path]:
    """The ``step-N`` folders of a run, oldest first (whatever their state)."""
    root = Path(run) / CHECKPOINTS
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if _STEP_DIR.match(p.name) and p.is_dir())


def latest_checkpoint(run: str | os.PathLike) -> Path | None:
    """The newest ``step-N`` folder of a run, intact or not (``verify_checkpoint`` says which)."""
    found = list_checkpoints(run)
    return found[-1] if found else None


# --------------------------------------------------------------------------- checking


def _reason(err: BaseException) -> str:
    """A one-line reason; never torch's advice to unpickle without ``weights_only``."""
    full = str(err)
    if isinstance(err, pickle.UnpicklingError) or "weights_only" in full:
        detail = re.search(r"WeightsUnpickler error:\s*(.+)", full)
        why = f": {detail.group(1).strip()[:120]}" if detail else ""
        return ("is not a file of tensors and plain data: garbage, cut short, or a pickle of other Python objects "
                f"(it was not unpickled{why})")
    text = full.strip().splitlines()[0][:200] if full.strip() else ""
    return f"cannot be read ({type(err).__name__}{': ' + text if text else ''})"


def _torch_load(path: Path) -> Any:
    from accelerate.utils import load  # torch.load with weights_only=True and Accelerate's numpy allow-list

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's notes about pickle protocols of foreign files
        return load(path, map_location="cpu", weights_only=True)


def _read_state(path: Path) -> dict[str, Any]:
    file = path / STATE_NAME
    if not file.is_file():
        raise _Damaged(file, "is missing" + (" (the folder is empty)" if not any(path.iterdir()) else ""))
    try:
        state = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _Damaged(file, _reason(err)) from None
    if not isinstance(state, dict):
        raise _Damaged(file, f"holds a JSON {type(state).__name__}, not an object")
    for key in ("step", "epoch", "batch_in_epoch"):
        if not isinstance(state.get(key), int) or isinstance(state.get(key), bool) or state[key] < 0:
            raise _Damaged(file, f"has no valid {key!r} (a non-negative integer)")
    if not isinstance(state.get("recipe_sha256"), str):
        raise _Damaged(file, "has no recipe hash")
    return state


class _Damaged(Exception):
    def __init__(self, file: Path, reason: str) -> None:
        super().__init__(f"{file} {reason}")
        self.file, self.reason = file, reason


def _check(path: Path) -> dict[str, Any]:
    """Read every file of one checkpoint; raise ``_Damaged`` for the first bad one."""
    from safetensors.torch import load_file

    state = _read_state(path)
    if (path / MODEL_STATE_NAME).is_file() or not (path / _LEGACY[0]).is_file():
        processes = state.get("processes", 1)
        if not isinstance(processes, int) or processes < 1:
            raise _Damaged(path / STATE_NAME, "has no valid number of processes")
        files = [MODEL_STATE_NAME, "optimizer.bin", "scheduler.bin"] + [f"random_states_{r}.pkl" for r in range(processes)]
        if state.get("scaler"):
            files.append("scaler.pt")
    else:
        files = list(_LEGACY)
    for name in files:
        file = path / name
        if not file.is_file():
            raise _Damaged(file, "is missing")
        try:
            if name.endswith(".safetensors"):
                load_file(file)
            else:
                _torch_load(file)
        except Exception as err:  # noqa: BLE001 - any failure to parse means damaged; the reason is reported
            raise _Damaged(file, _reason(err)) from None
    return state


def newest_intact(run: str | os.PathLike, before: Path | None = None) -> Path | None:
    """The newest checkpoint of ``run`` older than ``before`` whose files all read back."""
    for path in reversed(list_checkpoints(run)):
        if before is not None and path.name >= before.name:
            continue
        try:
            _check(path)
        except _Damaged:
            continue
        return path
    return None


def verify_checkpoint(path: str | os.PathLike, run: str | os.PathLike | None = None) -> dict[str, Any]:
    """Read every file of the checkpoint ``path`` and return its trainer state.

    Raises :class:`TrainCheckpointError` naming the damaged file and, when ``run`` holds
    one, the newest older checkpoint that is intact, with the flag that resumes from it.
    """
    path = Path(path)
    if not path.is_dir():
        raise TrainCheckpointError(f"checkpoint {path} is not a folder")
    try:
        return _check(path)
    except _Damaged as bad:
        prev = newest_intact(run if run is not None else path.parent.parent, before=path)
        if prev is not None:
            step = json.loads((prev / STATE_NAME).read_text())["step"]
            offer = (f"The newest intact checkpoint is {prev} (step {step}): continue from it with "
                     f"`--resume-from {prev}` (the checkpoints after it are set aside).")
        else:
            offer = "No intact checkpoint is left in this run: start again without --resume, in another --output folder."
        raise TrainCheckpointError(f"checkpoint {path} is damaged: {bad.file} {bad.reason}. {offer}") from None


# --------------------------------------------------------------------------- writing


def save_checkpoint(acc: Any, run: Path, state: dict[str, Any], keep: int) -> Path:
    """Write ``checkpoints/step-N`` with ``acc.save_state`` (all processes call it), atomically.

    The model file's contents come from the save hook registered by the loop; ``state``
    (step, epoch, batch in the epoch, recipe hash) goes to ``trainer_state.json``.
    """
    root = run / CHECKPOINTS
    final = root / checkpoint_name(state["step"])
    tmp = root / f".tmp-{final.name}"
    if acc.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        for stale in root.glob(".tmp-*"):  # left by a kill during an earlier save
            shutil.rmtree(stale, ignore_errors=True)
        tmp.mkdir()
    acc.wait_for_everyone()
    acc.save_state(str(tmp), safe_serialization=True)
    if acc.is_main_process:
        full = {**state, "format": FORMAT, "processes": acc.num_processes, "scaler": acc.scaler is not None}
        (tmp / STATE_NAME).write_text(json.dumps(full))
    acc.wait_for_everyone()
    if acc.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in list_checkpoints(run)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    acc.wait_for_everyone()
    return final


# --------------------------------------------------------------------------- reading


def load_checkpoint(acc: Any, path: Path, load_model: Callable[[dict[str, torch.Tensor]], None],
                    optimizer: Any, scheduler: Any) -> None:
    """Restore a verified checkpoint: weights through ``load_model``, the rest through Accelerate."""
    from safetensors.torch import load_file

    if (path / MODEL_STATE_NAME).is_file() or not (path / _LEGACY[0]).is_file():
        load_model(load_file(path / MODEL_STATE_NAME))
        acc.load_state(str(path))  # optimizer, scheduler, RNG (and scaler); the model hook skips weights
        return
    # the first layout: torch files of plain tensors, the Python RNG in trainer_state.json
    load_model(_torch_load(path / "model.pt"))
    optimizer.load_state_dict(_torch_load(path / "optimizer.pt"))
    scheduler.load_state_dict(_torch_load(path / "scheduler.pt"))
    torch.set_rng_state(_torch_load(path / "rng.pt")["torch"])
    py = json.loads((path / STATE_NAME).read_text()).get("python_random")
    if py is not None:
        random.setstate((py[0], tuple(py[1]), py[2]))


def set_aside_newer(run: Path, path: Path) -> list[Path]:
    """Rename the checkpoints of ``run`` newer than ``path`` to ``<name>.set-aside`` (kept, not used)."""
    moved = []
    for newer in list_checkpoints(run):
        if newer.name > path.name:
            target = newer.with_name(newer.name + ".set-aside")
            if target.exists():
                shutil.rmtree(target)
            os.replace(newer, target)
            moved.append(target)
    return moved


def truncate_history(history: Path, step: int) -> int:
    """Drop the records of ``history.jsonl`` after ``step`` (and any half-written line); return how many."""
    if not history.is_file():
        return 0
    kept, dropped = [], 0
    for line in history.read_text().splitlines():
        try:
            rec = json.loads(line)
            keep = isinstance(rec, dict) and int(rec.get("step", step + 1)) <= step
        except (json.JSONDecodeError, TypeError, ValueError):
            keep = False
        if keep:
            kept.append(line)
        else:
            dropped += 1
    if dropped:
        tmp = history.with_name(history.name + ".tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, history)
    return dropped
