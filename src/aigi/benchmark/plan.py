"""Planning a benchmark: the condition names and the (detector, condition) pairs a protocol needs.

Shared by the runner (which scores the pairs) and the report (which finds them again in the
store), so neither imports the other.

Conditions (the third part of a result's key) are canonical strings: ``clean`` (the
detector's own preprocessing, undegraded images), a degradation spec such as ``jpeg:75``,
and ``|pre=<mode>`` appended when the test-time geometry is overridden
(``clean|pre=resize``). Overriding a detector's preprocessing with its own mode gives the
plain condition, so nothing is scored twice.
"""

from __future__ import annotations

from dataclasses import dataclass

from .protocol import Protocol

__all__ = ["CLEAN", "Planned", "condition_name", "planned_conditions"]

#: the condition of undegraded images under the detector's own preprocessing
CLEAN = "clean"


def condition_name(degradation: str | None, mode: str | None, default_mode: str) -> str:
    """The canonical condition string (see the module docstring)."""
    base = degradation if degradation and degradation != "none" else CLEAN
    if mode is not None and mode != default_mode:
        return f"{base}|pre={mode}"
    return base


@dataclass(frozen=True)
class Planned:
    """One (detector, condition) pair a protocol asks for, and which images it needs."""

    detector: str
    condition: str
    degradation: str | None
    mode: str | None  # the overriding test mode, None for the detector's own
    calibration: bool  # whether the calibration reals are scored too (clean conditions)


def planned_conditions(protocol: Protocol, roles: dict[str, str], default_modes: dict[str, str]) -> list[Planned]:
    """Every (detector, condition) the protocol's tasks need, in a stable order.

    ``roles`` maps each detector name (augmentation variants included, as
    ``<name>@<variant>``) to ``"main"`` or ``"augmentation"``; ``default_modes`` to its
    own test-time mode.
    """
    t = protocol.tasks
    wanted: dict[tuple[str, str], Planned] = {}

    def add(det: str, degradation: str | None, mode: str | None) -> None:
        cond = condition_name(degradation, mode, default_modes[det])
        if (det, cond) not in wanted:
            override = mode if cond.endswith(f"|pre={mode}") else None
            wanted[(det, cond)] = Planned(det, cond, degradation, override, degradation is None)

    gen, rob, pre = (set(protocol.task_detectors(x)) for x in ("generalization", "robustness", "preprocessing"))
    for name, role in roles.items():
        if role == "augmentation":
            add(name, None, None)
            for deg in t.augmentation.degradations:
                add(name, deg, None)
            continue
        if name in gen or name in rob or name in pre:
            add(name, None, None)  # every task's reference point and the calibrated threshold
        if name in rob:
            for deg in t.robustness.degradations:
                add(name, deg, None)
        if name in pre:
            for mode in t.preprocessing.modes:
                add(name, None, mode)
    return list(wanted.values())
