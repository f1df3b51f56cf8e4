"""The field's metrics, from scikit-learn wherever it has them.

Labels are 0 = real, 1 = fake; scores are P(fake). Every table shows ACC at the threshold,
R.Acc (accuracy on reals), F.Acc (accuracy on fakes), AP; we add AUROC, EER and the true
positive rate at 1% and 5% false-positive rate. Threshold-free metrics are ``None`` (not
NaN, which JSON cannot hold) when a subset holds a single class.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, average_precision_score, roc_auc_score, roc_curve

METRIC_NAMES = ("acc", "r_acc", "f_acc", "ap", "auroc", "eer", "tpr_at_fpr_1", "tpr_at_fpr_5", "n_real", "n_fake")
#: how each metric is printed in tables
DISPLAY = {"acc": "ACC", "r_acc": "R.Acc", "f_acc": "F.Acc", "ap": "AP", "auroc": "AUROC", "eer": "EER",
           "tpr_at_fpr_1": "TPR@1%", "tpr_at_fpr_5": "TPR@5%", "n_real": "#real", "n_fake": "#fake"}


def _tpr_at(fpr: np.ndarray, tpr: np.ndarray, target: float) -> float:
    """Highest TPR with FPR at or below ``target`` (a conservative operating point)."""
    ok = fpr <= target + 1e-12
    return float(tpr[ok].max()) if ok.any() else 0.0


def eer(labels: Sequence[int], scores: Sequence[float]) -> float | None:
    """Equal error rate: where the false-positive and false-negative rates cross (interpolated)."""
    y, s = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    if len(np.unique(y)) < 2:
        return None
    fpr, tpr, _ = roc_curve(y, s)
    fnr = 1 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    # linear interpolation between the two ROC points around the crossing
    if i + 1 < len(fpr) and (fnr[i] - fpr[i]) * (fnr[i + 1] - fpr[i + 1]) < 0:
        d0, d1 = fnr[i] - fpr[i], fnr[i + 1] - fpr[i + 1]
        t = d0 / (d0 - d1)
        return float(fpr[i] + t * (fpr[i + 1] - fpr[i]))
    return float((fpr[i] + fnr[i]) / 2)


def binary_metrics(labels: Sequence[int], scores: Sequence[float], threshold: float = 0.5) -> dict[str, float | int | None]:
    """All metrics for one set of (label, score) pairs."""
    y = np.asarray(labels, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape:
        raise ValueError(f"labels {y.shape} and scores {s.shape} differ in shape")
    if y.size == 0:
        raise ValueError("no labelled scores to evaluate")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    pred = (s >= threshold).astype(np.int64)
    real, fake = y == 0, y == 1
    out: dict[str, float | int | None] = {
        "acc": float(accuracy_score(y, pred)),
        "r_acc": float(accuracy_score(y[real], pred[real])) if real.any() else None,
        "f_acc": float(accuracy_score(y[fake], pred[fake])) if fake.any() else None,
        "ap": None, "auroc": None, "eer": None, "tpr_at_fpr_1": None, "tpr_at_fpr_5": None,
        "n_real": int(real.sum()), "n_fake": int(fake.sum()),
    }
    if real.any() and fake.any():
        fpr, tpr, _ = roc_curve(y, s)
        out.update(
            ap=float(average_precision_score(y, s)),
            auroc=float(roc_auc_score(y, s)),
            eer=eer(y, s),
            tpr_at_fpr_1=_tpr_at(fpr, tpr, 0.01),
            tpr_at_fpr_5=_tpr_at(fpr, tpr, 0.05),
        )
    return out


def mean_metrics(per_subset: dict[str, dict[str, float | int | None]]) -> dict[str, float | int | None]:
    """Unweighted mean over subsets of each metric (counts are summed); the field's headline."""
    out: dict[str, float | int | None] = {}
    for name in METRIC_NAMES:
        vals = [m[name] for m in per_subset.values() if m.get(name) is not None]
        if name.startswith("n_"):
            out[name] = int(sum(vals))
        else:
            out[name] = float(np.mean(vals)) if vals else None
    return out


def evaluate_scores(labels: Sequence[int], scores: Sequence[float], subsets: Sequence[str],
                    threshold: float = 0.5) -> dict[str, dict[str, float | int | None]]:
    """Per-subset metrics plus ``"mean"`` over subsets."""
    y, s, g = np.asarray(labels), np.asarray(scores, dtype=np.float64), np.asarray(subsets)
    per = {str(name): binary_metrics(y[g == name], s[g == name], threshold) for name in sorted(set(g.tolist()))}
    return {"subsets": per, "mean": mean_metrics(per)}
