"""Metrics beyond the fixed 0.5 threshold: calibrated thresholds, ECE, bootstrap intervals.

Labels are 0 = real, 1 = fake; scores are P(fake); the verdict is "fake" when
``score >= threshold`` (the engine's rule, :func:`aigi.evaluate.metrics.binary_metrics`).

* :func:`threshold_at_fpr` -- the threshold a deployment would pick on held-out real
  images for a target false-positive rate. It is the empirical ``(1 - fpr)`` quantile of
  the real scores, taken *strictly above* the boundary score: with the scores sorted in
  decreasing order ``s(1) >= s(2) >= ... >= s(n)`` and ``k = floor(fpr * n)`` false
  positives allowed, the threshold is ``nextafter(s(k+1), +inf)``, the smallest float
  above the (k+1)-th largest real score. Tie rule: every real image whose score equals
  the boundary score is counted as real, so the false-positive rate on the calibration
  set is always ``<= fpr`` (it is below ``fpr`` when ties straddle the boundary).
* :func:`threshold_at_fnr` -- the mirror image on fake images: the largest threshold with
  at most ``floor(fnr * n)`` fakes strictly below it, i.e. the ``(k+1)``-th smallest fake
  score (fakes equal to it count as detected), so the false-negative rate is ``<= fnr``.
  It is the low edge of an abstain band.
* :func:`abstain_summary` -- how many images an abstain band ``[low, high)`` leaves to a
  human, and the accuracy on the rest.
* :func:`expected_calibration_error` -- ECE of P(fake) with equal-width bins on [0, 1]
  (default 15; bin ``b`` holds ``b/B <= p < (b+1)/B``, the last bin includes 1):
  ``sum_b (n_b / n) * |mean(label in b) - mean(p in b)|``. This is the calibration of the
  probability of the fake class, the quantity a user reads; empty bins count zero.
* :func:`bootstrap_intervals` -- percentile intervals (default 95%, 1000 resamples,
  seeded) for ACC, AP and AUROC, resampling reals and fakes separately with replacement
  (stratified by class, so every resample keeps the subset's class counts and AP/AUROC
  stay defined). Point estimates come from scikit-learn; the resampled statistics use the
  vectorised :func:`average_precision_rows` / :func:`auroc_rows`, which reproduce
  scikit-learn's definitions exactly (tested) at a fraction of the cost.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

__all__ = [
    "abstain_summary",
    "accuracy_at",
    "auroc_rows",
    "average_precision_rows",
    "bootstrap_intervals",
    "expected_calibration_error",
    "reliability_bins",
    "threshold_at_fnr",
    "threshold_at_fpr",
]


def _arrays(labels: Sequence[int], scores: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"labels ({y.size}) and scores ({s.size}) differ in length")
    if y.size and not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (real) or 1 (fake)")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite numbers")
    return y, s


def threshold_at_fpr(real_scores: Sequence[float], fpr: float) -> float:
    """Threshold with false-positive rate ``<= fpr`` on ``real_scores`` (see module docstring)."""
    s = np.asarray(real_scores, dtype=np.float64).reshape(-1)
    if s.size == 0:
        raise ValueError("threshold_at_fpr needs at least one real (label 0) calibration score")
    if not 0.0 <= fpr < 1.0:
        raise ValueError(f"target false-positive rate must be in [0, 1), got {fpr}")
    if not np.isfinite(s).all():
        raise ValueError("calibration scores must be finite numbers")
    ordered = np.sort(s)[::-1]
    k = int(np.floor(fpr * s.size + 1e-9))  # the epsilon absorbs 0.05 * 100 = 5.000000000000001
    return float(np.nextafter(ordered[k], np.inf))


def threshold_at_fnr(fake_scores: Sequence[float], fnr: float) -> float:
    """Threshold with false-negative rate ``<= fnr`` on ``fake_scores`` (see the module docstring)."""
    s = np.asarray(fake_scores, dtype=np.float64).reshape(-1)
    if s.size == 0:
        raise ValueError("threshold_at_fnr needs at least one fake (label 1) calibration score")
    if not 0.0 <= fnr < 1.0:
        raise ValueError(f"target false-negative rate must be in [0, 1), got {fnr}")
    if not np.isfinite(s).all():
        raise ValueError("calibration scores must be finite numbers")
    k = int(np.floor(fnr * s.size + 1e-9))
    return float(np.sort(s)[k])


def abstain_summary(labels: Sequence[int], scores: Sequence[float], low: float, high: float) -> dict[str, float | int | None]:
    """What an abstain band does: ``p < low`` is real, ``p >= high`` fake, the rest goes to a human.

    Returns ``n``, ``n_uncertain``, ``uncertain_rate`` (the share left to a human),
    ``acc_decided`` (accuracy on the images that got a verdict; None when none did) and
    the uncertain rate among reals and among fakes.
    """
    y, s = _arrays(labels, scores)
    if y.size == 0:
        raise ValueError("no scores to summarise")
    if not 0.0 <= low <= high <= 1.0:
        raise ValueError(f"abstain band needs 0 <= low <= high <= 1, got low={low}, high={high}")
    unsure = (s >= low) & (s < high)
    decided = ~unsure
    pred_fake = s >= high
    real, fake = y == 0, y == 1
    return {
        "n": int(y.size),
        "n_uncertain": int(unsure.sum()),
        "uncertain_rate": float(unsure.mean()),
        "acc_decided": float(np.mean(pred_fake[decided] == (y[decided] == 1))) if decided.any() else None,
        "uncertain_real": float(unsure[real].mean()) if real.any() else None,
        "uncertain_fake": float(unsure[fake].mean()) if fake.any() else None,
    }


def accuracy_at(labels: Sequence[int], scores: Sequence[float], threshold: float) -> dict[str, float | None]:
    """ACC, R.Acc, F.Acc and FPR at ``threshold`` (``score >= threshold`` is fake)."""
    y, s = _arrays(labels, scores)
    if y.size == 0:
        raise ValueError("no scores to evaluate")
    pred = s >= threshold
    real, fake = y == 0, y == 1
    return {
        "acc": float(np.mean(pred == (y == 1))),
        "r_acc": float(np.mean(~pred[real])) if real.any() else None,
        "f_acc": float(np.mean(pred[fake])) if fake.any() else None,
        "fpr": float(np.mean(pred[real])) if real.any() else None,
    }


def _bin_index(p: np.ndarray, n_bins: int) -> np.ndarray:
    return np.minimum((p * n_bins).astype(np.int64), n_bins - 1)


def reliability_bins(labels: Sequence[int], scores: Sequence[float], n_bins: int = 15) -> list[dict[str, float]]:
    """Per equal-width bin of P(fake): its range, count, mean score and fraction of fakes."""
    y, s = _arrays(labels, scores)
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if ((s < 0) | (s > 1)).any():
        raise ValueError("scores must be probabilities in [0, 1]")
    idx = _bin_index(s, n_bins)
    out = []
    for b in range(n_bins):
        m = idx == b
        n = int(m.sum())
        out.append({
            "low": b / n_bins,
            "high": (b + 1) / n_bins,
            "count": n,
            "mean_score": float(s[m].mean()) if n else float("nan"),
            "fake_rate": float(y[m].mean()) if n else float("nan"),
        })
    return out


def expected_calibration_error(labels: Sequence[int], scores: Sequence[float], n_bins: int = 15) -> float:
    """ECE of P(fake) with ``n_bins`` equal-width bins (see the module docstring)."""
    y, s = _arrays(labels, scores)
    if y.size == 0:
        raise ValueError("no scores to evaluate")
    total = 0.0
    for b in reliability_bins(y, s, n_bins):
        if b["count"]:
            total += b["count"] / y.size * abs(b["fake_rate"] - b["mean_score"])
    return float(total)


# --------------------------------------------------------------------------- vectorised metrics


def auroc_rows(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """AUROC of every row of ``scores`` (R, n) against shared ``labels`` (n,); ties count 1/2.

    Mann-Whitney form with average ranks, identical to ``sklearn.metrics.roc_auc_score``.
    """
    from scipy.stats import rankdata

    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    y = np.asarray(labels).astype(bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        raise ValueError("AUROC needs both classes")
    ranks = rankdata(scores, axis=1, method="average")
    return (ranks[:, y].sum(axis=1) - n1 * (n1 + 1) / 2.0) / (n1 * n0)


def average_precision_rows(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Average precision of every row of ``scores`` (R, n) against ``labels`` (R, n) or (n,).

    ``AP = sum_k (R_k - R_{k-1}) P_k`` over the distinct score values in decreasing order,
    exactly scikit-learn's ``average_precision_score`` (no interpolation).
    """
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    y = np.broadcast_to(np.asarray(labels, dtype=np.float64), scores.shape)
    order = np.argsort(-scores, axis=1, kind="stable")
    s = np.take_along_axis(scores, order, axis=1)
    ys = np.take_along_axis(y, order, axis=1)
    tp = np.cumsum(ys, axis=1)
    ranks = np.arange(1, s.shape[1] + 1, dtype=np.float64)
    # a threshold ends where the next score differs (and at the last position)
    last = np.ones_like(s, dtype=bool)
    last[:, :-1] = s[:, 1:] != s[:, :-1]
    positives = tp[:, -1]
    if (positives == 0).any():
        raise ValueError("average precision needs at least one fake in every row")
    tp_at = np.where(last, tp, 0.0)
    prev = np.zeros_like(tp_at)
    prev[:, 1:] = np.maximum.accumulate(tp_at, axis=1)[:, :-1]
    gain = np.where(last, tp - prev, 0.0)
    precision = tp / ranks
    return (gain * precision).sum(axis=1) / positives


def bootstrap_intervals(
    labels: Sequence[int],
    scores: Sequence[float],
    *,
    threshold: float = 0.5,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, float | None]]:
    """Point estimate and stratified percentile bootstrap interval of ACC, AP and AUROC.

    Returns ``{"acc": {"value", "low", "high"}, "ap": ..., "auroc": ...}``; AP and AUROC
    are ``None`` throughout when the subset holds a single class. Reals and fakes are
    resampled separately (``numpy.random.default_rng(seed)``), ``n_resamples`` times.
    """
    y, s = _arrays(labels, scores)
    if y.size == 0:
        raise ValueError("no scores to bootstrap")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    rng = np.random.default_rng(seed)
    real, fake = s[y == 0], s[y == 1]
    parts, lab = [], []
    for group, value in ((real, 0), (fake, 1)):
        if group.size:
            parts.append(group[rng.integers(0, group.size, size=(n_resamples, group.size))])
            lab.append(np.full(group.size, value))
    boot = np.concatenate(parts, axis=1)
    boot_y = np.concatenate(lab)
    alpha = (1.0 - confidence) / 2.0
    q = [100 * alpha, 100 * (1 - alpha)]

    def summary(value: float, stats: np.ndarray) -> dict[str, float | None]:
        lo, hi = np.percentile(stats, q)
        return {"value": float(value), "low": float(lo), "high": float(hi)}

    acc_stats = ((boot >= threshold) == (boot_y == 1)).mean(axis=1)
    out: dict[str, dict[str, float | None]] = {"acc": summary(float(np.mean((s >= threshold) == (y == 1))), acc_stats)}
    if real.size and fake.size:
        out["ap"] = summary(average_precision_score(y, s), average_precision_rows(boot, boot_y))
        out["auroc"] = summary(roc_auc_score(y, s), auroc_rows(boot, boot_y))
    else:
        out["ap"] = out["auroc"] = {"value": None, "low": None, "high": None}
    return out
