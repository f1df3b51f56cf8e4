"""How well one attribute, or all of them together, tells real from fake.

**One attribute.** The AUROC of the best rule of two kinds (the larger is kept):

* a *threshold* on a number (``fake if width >= 512``): the AUROC of the value itself, in
  whichever direction is larger (``max(A, 1 - A)``); a missing value (a PNG's JPEG quality)
  sorts below every present one;
* a *category* rule (``format = PNG``), also applied to numbers, which finds exact values
  (every fake is 512 wide, the reals have many sizes): each value is scored by its share
  of fakes among the files that have it. Values held by fewer than 5 files are pooled
  into one (so a camera serial or a file size unique to one file tells nothing). The
  shares are computed on the subset itself, so with many values a clean subset reads a
  little above 0.5; the verdict thresholds leave room for that.

**All attributes together.** A histogram gradient-boosted classifier (scikit-learn; 40
rounds of depth-3 trees) on every attribute that counts (categories as integer codes by
frequency, missing numbers left missing), its
out-of-fold P(fake) under stratified k-fold (k = 5, fewer when a class has fewer files):
the upper bound of what the file's metadata alone explains.

**Intervals.** Each AUROC comes with a stratified percentile bootstrap interval: the
classes are resampled separately (so each resample has the original class counts) and
the rule's scores are kept fixed. The AUROC is the Mann-Whitney statistic with ties
counted half, which equals scikit-learn's ``roc_auc_score``.

**Verdict** per subset, from the strongest row that counts (an attribute marked
``verdict`` in :data:`aigi.audit.attributes.ATTRIBUTES`, or the model), with the
thresholds of :class:`Thresholds`: ``shortcut`` when its AUROC reaches ``shortcut`` and its
interval's lower end reaches ``shortcut_low``; ``suspicious`` when it reaches
``suspicious`` with lower end ``suspicious_low``; else ``clean``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np

__all__ = ["Separation", "Thresholds", "auroc_bootstrap", "best_rule", "metadata_model", "stratified_folds",
           "verdict"]


@dataclass(frozen=True)
class Thresholds:
    """The verdict's thresholds on AUROC (0.5 = the attribute tells nothing, 1.0 = it tells all)."""

    shortcut: float = 0.9
    shortcut_low: float = 0.75
    suspicious: float = 0.75
    suspicious_low: float = 0.6

    def __post_init__(self) -> None:
        for k, v in asdict(self).items():
            if not 0.5 <= v <= 1.0:
                raise ValueError(f"threshold {k} must lie in [0.5, 1], got {v}")
        if self.suspicious > self.shortcut:
            raise ValueError(f"suspicious ({self.suspicious}) must not exceed shortcut ({self.shortcut})")

    def text(self) -> str:
        """The rule in words, for reports."""
        return (f"Verdict: **shortcut** when an attribute (or the model on all of them) reaches AUROC "
                f"≥ {self.shortcut:g} with the interval's lower end ≥ {self.shortcut_low:g}; **suspicious** at "
                f"AUROC ≥ {self.suspicious:g} with lower end ≥ {self.suspicious_low:g}; else **clean**.")


@dataclass
class Separation:
    """How well one attribute (or ``all attributes``, the model) separates one subset's classes."""

    subset: str
    attribute: str
    auroc: float
    low: float
    high: float
    rule: str
    n_real: int
    n_fake: int
    verdict: bool = True  # whether this row counts towards the subset's verdict

    def level(self, t: Thresholds) -> str:
        """``shortcut``, ``suspicious`` or ``clean`` for this row alone."""
        if self.auroc >= t.shortcut and self.low >= t.shortcut_low:
            return "shortcut"
        if self.auroc >= t.suspicious and self.low >= t.suspicious_low:
            return "suspicious"
        return "clean"


def _rank_auroc(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """AUROC of the scores ``s`` (..., n) for labels ``y`` (n,), ties counted half."""
    from scipy.stats import rankdata

    n1 = int(y.sum())
    n0 = y.size - n1
    ranks = rankdata(s, axis=-1)
    return (ranks[..., y == 1].sum(axis=-1) - n1 * (n1 + 1) / 2) / (n1 * n0)


def auroc_bootstrap(y: Sequence[int], s: Sequence[float], *, n_resamples: int = 200, confidence: float = 0.95,
                    seed: int = 0) -> tuple[float, float, float]:
    """``(auroc, low, high)``: the AUROC of scores ``s`` and its stratified percentile bootstrap interval.

    Each resample draws the reals and the fakes with replacement, separately; its AUROC is
    counted from a histogram of the reals over the sorted distinct scores (reals below each
    fake, ties half), so a resample costs O(n) and memory stays O(n) however many files.
    """
    y = np.asarray(y, dtype=int)
    s = np.asarray(s, dtype=float)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"labels {y.shape} and scores {s.shape} must be two vectors of one length")
    if set(np.unique(y).tolist()) != {0, 1}:
        raise ValueError("AUROC needs both real (0) and fake (1) labels")
    _, v = np.unique(s, return_inverse=True)  # each file's position among the distinct scores
    real, fake = v[y == 0], v[y == 1]
    m = int(v.max()) + 1

    def auc(r: np.ndarray, f: np.ndarray) -> float:
        hist = np.bincount(r, minlength=m)
        below = np.cumsum(hist) - hist
        return float((below[f].sum() + 0.5 * hist[f].sum()) / (r.size * f.size))

    point = auc(real, fake)
    if n_resamples <= 0:
        return point, point, point
    rng = np.random.default_rng(seed)
    boot = np.array([auc(real[rng.integers(0, real.size, real.size)], fake[rng.integers(0, fake.size, fake.size)])
                     for _ in range(n_resamples)])
    alpha = (1 - confidence) / 2
    return point, float(np.quantile(boot, alpha)), float(np.quantile(boot, 1 - alpha))


def stratified_folds(y: Sequence[int], folds: int = 5, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(train, test)`` index pairs of a shuffled stratified k-fold (k capped by the smaller class; [] below 2)."""
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y, dtype=int)

    k = min(folds, int(np.bincount(y, minlength=2).min()))
    if k < 2:
        return []
    return list(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(np.zeros(y.size), y))


def _category_scores(values: Sequence[str], y: np.ndarray, min_count: int) -> np.ndarray:
    """Each file's value scored by its share of fakes; values held by fewer than ``min_count`` files share one score."""
    levels, codes, counts = np.unique(np.asarray(values), return_inverse=True, return_counts=True)
    codes = np.where(counts[codes] >= min_count, codes, levels.size)  # rare values pooled into one level
    n = np.bincount(codes, minlength=levels.size + 1).astype(float)
    f = np.bincount(codes, weights=y, minlength=levels.size + 1)
    return f[codes] / n[codes]


def _share(values: np.ndarray, y: np.ndarray, level: str) -> str:
    hit = values == level
    return f"{100 * hit[y == 0].mean():.0f}% of reals, {100 * hit[y == 1].mean():.0f}% of fakes"


def _describe_category(values: Sequence[Any], y: np.ndarray, name: str) -> str:
    v = np.asarray([str(x) for x in values])
    levels = np.unique(v)
    gaps = [abs((v[y == 1] == lv).mean() - (v[y == 0] == lv).mean()) for lv in levels]
    top = levels[int(np.argmax(gaps))]
    return f"{name} = {top}: {_share(v, y, top)}"


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def _label(v: Any) -> str:
    """A value as a category label: numbers compactly, NaN as ``missing``."""
    if isinstance(v, float):
        return "missing" if math.isnan(v) else _fmt(v)
    return str(v)


def _describe_threshold(x: np.ndarray, y: np.ndarray, name: str, sign: float) -> str:
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(y, sign * x)
    i = int(np.argmax(tpr - fpr))
    t = sign * thr[i]
    acc = 0.5 * (tpr[i] + 1 - fpr[i])
    op = "≥" if sign > 0 else "≤"
    return f"fake if {name} {op} {_fmt(t)} (balanced accuracy {100 * acc:.0f}%)"


def best_rule(y: Sequence[int], values: Sequence[Any], kind: str, name: str, *, min_count: int = 5
              ) -> tuple[np.ndarray, str]:
    """The scores of the best single-attribute rule and its description (see the module docstring).

    ``kind`` is ``number`` (floats, NaN for missing) or ``category``; values held by fewer
    than ``min_count`` files are pooled for the category rule.
    """
    y = np.asarray(y, dtype=int)
    labels = [_label(v) for v in values]
    cat = _category_scores(labels, y, min_count)
    best, text = cat, _describe_category(labels, y, name)
    best_auc = float(_rank_auroc(y, cat))
    if kind == "number":
        x = np.asarray(values, dtype=float)
        present = ~np.isnan(x)
        if present.any():
            filled = np.where(present, x, np.nanmin(x) - 1.0)
            auc = float(_rank_auroc(y, filled))
            sign = 1.0 if auc >= 0.5 else -1.0
            if max(auc, 1 - auc) >= best_auc and len(np.unique(filled)) > 1:
                best = sign * filled
                text = _describe_threshold(filled, y, name, sign)
                if not present.all():
                    text += " (missing counted as lowest)"
    elif kind != "category":
        raise ValueError(f"attribute kind must be 'number' or 'category', got {kind!r}")
    if len(np.unique(best)) == 1:
        text = f"{name}: the same for every file"
    return best, text


def metadata_model(y: Sequence[int], columns: dict[str, Sequence[Any]], kinds: dict[str, str], *, folds: int = 5,
                   seed: int = 0, splits: list[tuple[np.ndarray, np.ndarray]] | None = None) -> np.ndarray | None:
    """Out-of-fold P(fake) of a gradient-boosted classifier on all ``columns``; None with too few files.

    One OpenMP thread: on these small tables more threads only wait for each other.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    y = np.asarray(y, dtype=int)
    if splits is None:
        splits = stratified_folds(y, folds, seed)
    if not splits:
        return None
    feats = []
    for name, values in columns.items():
        if kinds[name] == "number":
            feats.append(np.asarray(values, dtype=float))
        else:  # category codes by frequency, most common first (plain numbers: the trees split them fast)
            levels, codes, counts = np.unique(np.asarray([str(v) for v in values]), return_inverse=True,
                                              return_counts=True)
            rank = np.empty(levels.size)
            rank[np.argsort(-counts, kind="stable")] = np.arange(levels.size)
            feats.append(rank[codes])
    # a column with one value (or none) tells nothing, and the binning rejects an all-missing one
    feats = [f for f in feats if np.unique(f[~np.isnan(f)]).size + bool(np.isnan(f).any()) > 1]
    if not feats:
        return np.full(y.size, 0.5)
    X = np.stack(feats, axis=1)
    out = np.empty(y.size)
    with threadpool_limits(limits=1, user_api="openmp"):
        for train, test in splits:
            model = HistGradientBoostingClassifier(
                max_iter=40, learning_rate=0.25, max_depth=3, min_samples_leaf=max(2, min(20, train.size // 20)),
                early_stopping=False, random_state=seed)
            model.fit(X[train], y[train])
            out[test] = model.predict_proba(X[test])[:, 1]
    return out


def verdict(rows: Sequence[Separation], thresholds: Thresholds) -> str:
    """The subset's verdict: the most severe level among its rows that count (``n/a`` without any)."""
    if not rows:
        return "n/a"
    levels = {r.level(thresholds) for r in rows if r.verdict and not math.isnan(r.auroc)}
    for level in ("shortcut", "suspicious", "clean"):
        if level in levels:
            return level
    return "n/a"
