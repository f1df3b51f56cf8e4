"""The numbers of a benchmark report, computed from a results store.

Metrics per (detector, condition, subset): the engine's ACC / R.Acc / F.Acc / AP / AUROC /
EER at the fixed threshold, ECE, and ACC at the calibrated threshold
(:mod:`aigi.evaluate.calibration`); bootstrap intervals for the clean condition. The
headline is the unweighted mean over subsets (the field's convention).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..evaluate.calibration import (abstain_summary, accuracy_at, bootstrap_intervals, expected_calibration_error,
                                     threshold_at_fpr)
from ..evaluate.metrics import binary_metrics, mean_metrics
from .plan import CLEAN, condition_name, planned_conditions
from .protocol import Protocol
from .store import ResultStore

__all__ = ["CondResult", "Results", "collect"]


@dataclass
class CondResult:
    """Metrics of one detector under one condition."""

    subsets: dict[str, dict[str, Any]]
    mean: dict[str, Any]
    protocols: set[str]
    threshold: float
    cal_threshold: float | None
    n: int
    errors: int = 0


@dataclass
class Results:
    """Everything a report shows, computed from the store."""

    protocol_hash: str
    protocol: dict[str, Any]
    runs: list[dict[str, Any]]
    detectors: dict[str, dict[str, Any]]
    results: dict[tuple[str, str], CondResult] = field(default_factory=dict)
    roc: dict[tuple[str, str], tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    n_test: int = 0
    n_calibration: int = 0
    subsets: list[str] = field(default_factory=list)

    @property
    def main(self) -> list[str]:
        """The protocol's own detectors, in its order."""
        return [d["name"] for d in self.protocol["detectors"] if d["name"] in self.detectors]

    def ordered(self) -> list[str]:
        """Every detector: the protocol's, then the augmentation variants, in protocol order."""
        extra = [n for n in self.detectors if n not in self.main]
        aug = self.protocol.get("tasks", {}).get("augmentation") or {}
        wanted = [f"{b}@{v}" for b in aug.get("detectors", []) for v in aug.get("variants", [])]
        return self.main + [n for n in wanted if n in extra] + sorted(n for n in extra if n not in wanted)

    def get(self, name: str, condition: str) -> CondResult | None:
        """The result of ``name`` under ``condition``, or None when nothing was scored."""
        return self.results.get((name, condition))

    def condition(self, name: str, degradation: str | None = None, mode: str | None = None) -> str:
        """The canonical condition name of ``name`` under a degradation and/or test mode."""
        return condition_name(degradation, mode, self.detectors[name]["info"].get("test_mode", "center_crop"))

    def ranked(self) -> list[str]:
        """Main detectors by mean AP on the clean condition, best first."""

        def key(n: str) -> float:
            r = self.get(n, CLEAN)
            ap = r.mean.get("ap") if r else None
            return -(ap if ap is not None else -1.0)

        return sorted(self.main, key=key)


# --------------------------------------------------------------------------- computing


def collect(store: ResultStore, protocol_hash: str | None = None) -> Results:
    """Compute every metric of a protocol's results (default: the latest run's protocol)."""
    runs = store.runs()
    if not runs:
        raise ValueError(f"{store.path} holds no benchmark run")
    if protocol_hash is None:  # the latest run that got past its setup (a failed start has nothing to show)
        usable = [r for r in runs if r["status"] != "failed"] or runs
        protocol_hash = usable[-1]["protocol_hash"]
    mine = [r for r in runs if r["protocol_hash"] == protocol_hash]
    if not mine:
        raise ValueError(f"{store.path} holds no run of protocol {protocol_hash[:12]}…")
    protocol = mine[-1]["protocol"]
    detectors = store.detectors(protocol_hash)
    res = Results(protocol_hash, protocol, mine, detectors, failures=store.failures(protocol_hash))
    test = store.samples(protocol_hash, "test")
    res.n_test = len(test)
    res.n_calibration = len(store.samples(protocol_hash, "calibration"))
    res.subsets = sorted({s[3] for s in test})
    metrics = protocol.get("metrics", {})
    fpr = protocol.get("calibration", {}).get("fpr", 0.05)
    roles = {n: d["role"] for n, d in detectors.items()}
    modes = {n: d["info"].get("test_mode", "center_crop") for n, d in detectors.items()}

    plan = planned_conditions(Protocol.model_validate(protocol), roles, modes)
    cal_thresholds: dict[tuple[str, str], float | None] = {}
    for p in plan:
        if p.degradation is None:  # clean conditions hold the calibration reals
            wh = detectors[p.detector]["weights_hash"]
            reals = [r[2] for r in store.scores_for(protocol_hash, wh, p.condition, role="calibration") if r[1] == 0]
            cal_thresholds[(p.detector, p.condition)] = threshold_at_fpr(reals, fpr) if reals else None
    for p in plan:
        d = detectors[p.detector]
        rows = store.scores_for(protocol_hash, d["weights_hash"], p.condition)
        if not rows:
            continue
        thr = float(metrics.get("threshold") or d["info"].get("threshold", 0.5))
        clean_cond = condition_name(None, p.mode, modes[p.detector])
        cal = cal_thresholds.get((p.detector, clean_cond))
        by_subset: dict[str, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
        for subset, label, score, _ in rows:
            by_subset[subset][0].append(int(label))
            by_subset[subset][1].append(float(score))
        per = {subset: _subset_metrics(*by_subset[subset], thr, cal, metrics, p.condition == CLEAN)
               for subset in sorted(by_subset)}
        band = d["info"].get("band")  # the folder's calibration.json abstain band, when it has one
        if band:
            for subset, m in per.items():
                m["uncertain"] = abstain_summary(*by_subset[subset], band["low"], band["high"])["uncertain_rate"]
        mean = mean_metrics(per)
        for extra in ("ece", "acc_cal", "r_acc_cal", "f_acc_cal", "uncertain"):
            vals = [m[extra] for m in per.values() if m.get(extra) is not None]
            mean[extra] = float(np.mean(vals)) if vals else None
        res.results[(p.detector, p.condition)] = CondResult(
            per, mean, {r[3] for r in rows}, thr, cal, len(rows),
            errors=len(store.errors_for(protocol_hash, d["weights_hash"], p.condition)),
        )
        if p.condition == CLEAN:
            from sklearn.metrics import roc_curve

            for subset, (y, s) in by_subset.items():
                if len(set(y)) == 2:
                    fpr_c, tpr_c, _ = roc_curve(y, s)
                    res.roc[(p.detector, subset)] = (fpr_c, tpr_c)
    return res



def _subset_metrics(y: list[int], s: list[float], thr: float, cal: float | None, metrics: dict[str, Any],
                    intervals: bool) -> dict[str, Any]:
    """One subset's metrics at the fixed and the calibrated threshold (and bootstrap intervals)."""
    m = binary_metrics(y, s, thr)
    m["ece"] = expected_calibration_error(y, s, metrics.get("ece_bins", 15))
    if cal is not None:
        ca = accuracy_at(y, s, cal)
        m.update(acc_cal=ca["acc"], r_acc_cal=ca["r_acc"], f_acc_cal=ca["f_acc"])
    else:
        m.update(acc_cal=None, r_acc_cal=None, f_acc_cal=None)
    if intervals and metrics.get("bootstrap", 1000) > 0:
        m["ci"] = bootstrap_intervals(y, s, threshold=thr, n_resamples=metrics.get("bootstrap", 1000),
                                      confidence=metrics.get("confidence", 0.95), seed=metrics.get("seed", 0))
    return m
