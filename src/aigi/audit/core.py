"""``audit(samples)``: read every file's attributes, then measure what each one gives away.

Files are read one at a time and only their attributes are kept (a few dozen numbers and
short strings per file, stored by column), so memory does not grow with image sizes. A
file that cannot be read is listed in ``errors`` with the reason and left out, as
everywhere else in the toolkit.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.io import ImageDecodeError
from ..data.layouts import Sample, load_samples
from .attributes import ATTRIBUTES, read_attributes
from .separability import (Separation, Thresholds, auroc_bootstrap, best_rule, metadata_model, stratified_folds,
                           verdict)

__all__ = ["ALL", "MODEL", "AuditResult", "audit"]

#: the pooled row of a multi-subset audit
ALL = "all"
#: the name of the all-attributes model's row
MODEL = "all metadata (model)"


@dataclass
class AuditResult:
    """The audit of a set of images: per-file attributes, per-subset separability and verdicts."""

    source: str
    pixels: bool
    attributes: list[str]
    paths: list[str] = field(default_factory=list)
    labels: list[int | None] = field(default_factory=list)
    subsets: list[str] = field(default_factory=list)
    columns: dict[str, list[Any]] = field(default_factory=dict)
    errors: list[tuple[str, str]] = field(default_factory=list)
    separations: dict[str, list[Separation]] = field(default_factory=dict)
    verdicts: dict[str, str] = field(default_factory=dict)
    thresholds: Thresholds = field(default_factory=Thresholds)
    seconds: float = 0.0

    def rows(self) -> list[dict[str, Any]]:
        """One dict per readable file: path, label, subset and every attribute."""
        return [{"path": p, "label": lab, "subset": s, **{a: self.columns[a][i] for a in self.attributes}}
                for i, (p, lab, s) in enumerate(zip(self.paths, self.labels, self.subsets))]

    def separation_rows(self) -> list[dict[str, Any]]:
        """One dict per (subset, attribute): AUROC, its interval, the rule, and the row's level."""
        return [{**vars(r), "level": r.level(self.thresholds)} for rows in self.separations.values() for r in rows]

    def to_frame(self, what: str = "files"):
        """A pandas DataFrame of :meth:`rows` (``what="files"``) or :meth:`separation_rows` (``"separability"``).

        pandas is not a dependency of aigi; this needs it installed.
        """
        try:
            import pandas as pd
        except ImportError as err:
            raise ImportError("AuditResult.to_frame needs pandas (pip install pandas); "
                              "rows() and separation_rows() give the same data as dicts") from err
        if what == "files":
            return pd.DataFrame(self.rows())
        if what == "separability":
            return pd.DataFrame(self.separation_rows())
        raise ValueError(f"what must be 'files' or 'separability', got {what!r}")

    def members(self, subset: str) -> list[int]:
        """Indices of the labelled files of ``subset`` (every labelled file for the pooled set)."""
        pooled = subset not in set(self.subsets)
        return [i for i, (lab, s) in enumerate(zip(self.labels, self.subsets))
                if lab is not None and (pooled or s == subset)]

    def worst(self, subset: str) -> Separation | None:
        """The subset's strongest row (highest AUROC), or None."""
        rows = self.separations.get(subset) or []
        return rows[0] if rows else None

    def summary(self) -> dict[str, Any]:
        """A JSON-able summary: verdict, counts and every separability row per subset."""
        out: dict[str, Any] = {"source": self.source, "pixels": self.pixels, "n_files": len(self.paths),
                               "n_errors": len(self.errors), "thresholds": vars(self.thresholds),
                               "seconds": round(self.seconds, 3), "subsets": {}}
        for subset, rows in self.separations.items():
            out["subsets"][subset] = {
                "verdict": self.verdicts[subset], "n_real": rows[0].n_real, "n_fake": rows[0].n_fake,
                "rows": [{"attribute": r.attribute, "auroc": r.auroc, "low": r.low, "high": r.high, "rule": r.rule,
                          "level": r.level(self.thresholds), "counts": r.verdict} for r in rows],
            }
        return out


def _as_samples(samples: str | os.PathLike[str] | Iterable[Sample | str | os.PathLike[str]], layout: str,
                split: str | None, unread: list | None = None,
                allow_outside: bool = False) -> tuple[str, list[Sample]]:
    if isinstance(samples, (str, os.PathLike)):
        return str(samples), load_samples(samples, layout, split=split, skipped=unread, allow_outside=allow_outside)
    out = []
    for s in samples:
        if isinstance(s, Sample):
            out.append(s)
        elif isinstance(s, (str, os.PathLike)):
            out.append(Sample(path=Path(s), label=None, subset=ALL))
        else:
            raise TypeError(f"audit takes a folder, a manifest, or Samples / paths; got a {type(s).__name__}")
    return "<samples>", out


def audit(
    samples: str | os.PathLike[str] | Iterable[Sample | str | os.PathLike[str]],
    *,
    layout: str = "auto",
    split: str | None = None,
    pixels: bool = False,
    bootstrap: int = 200,
    folds: int = 5,
    seed: int = 0,
    thresholds: Thresholds | None = None,
    progress: Callable[[int, int], None] | None = None,
    allow_outside: bool = False,
) -> AuditResult:
    """Audit a dataset for shortcuts: which file attributes tell real from fake, per subset.

    Folders that cannot be listed, broken links and link loops are in ``errors`` too;
    ``allow_outside`` lets a manifest name files outside its folder.

    ``samples``: a folder or manifest in any layout ``aigi eval`` reads (``layout``,
    ``split``), or :class:`~aigi.data.layouts.Sample` objects (paths alone are audited
    without labels: attributes only). ``pixels`` adds the pixel statistics (a full decode
    per file). ``bootstrap`` resamples for the intervals, ``folds`` for the metadata
    model's cross-validation, ``seed`` for both. ``progress(done, total)`` is called after
    every file. Subsets with both classes get separability rows and a verdict; with more
    than one subset, the pooled set is the subset ``"all"`` (``"all (pooled)"`` when a
    subset is already called ``all``).
    """
    if bootstrap < 0 or folds < 2:
        raise ValueError(f"bootstrap must be >= 0 and folds >= 2, got {bootstrap} and {folds}")
    t0 = time.perf_counter()
    unread: list[tuple[str, str]] = []
    source, items = _as_samples(samples, layout, split, unread, allow_outside)
    names = [a for a, spec in ATTRIBUTES.items() if pixels or spec.group == "header"]
    res = AuditResult(source=source, pixels=pixels, attributes=names, thresholds=thresholds or Thresholds(),
                      columns={a: [] for a in names})
    res.errors.extend(unread)
    for i, s in enumerate(items, 1):
        try:
            attrs = read_attributes(s.path, pixels=pixels)
        except ImageDecodeError as err:
            res.errors.append((str(s.path), f"{err.reason}: {err.detail}"))
        else:
            res.paths.append(str(s.path))
            res.labels.append(s.label)
            res.subsets.append(s.subset)
            for a in names:
                res.columns[a].append(attrs[a])
        if progress is not None:
            progress(i, len(items))
    groups = sorted(set(res.subsets))
    pooled = ALL if ALL not in groups else f"{ALL} (pooled)"
    for subset in groups + ([pooled] if len(groups) > 1 else []):
        rows = _separate(res, subset, bootstrap, folds, seed)
        if rows:
            res.separations[subset] = rows
            res.verdicts[subset] = verdict(rows, res.thresholds)
    res.seconds = time.perf_counter() - t0
    return res


def _separate(res: AuditResult, subset: str, bootstrap: int, folds: int, seed: int) -> list[Separation]:
    """Every attribute's (and the model's) separability in one subset (or all, pooled), strongest first."""
    idx = res.members(subset)
    y = np.asarray([res.labels[i] for i in idx], dtype=int)
    if y.size == 0 or y.min() == y.max():
        return []
    n_real, n_fake = int((y == 0).sum()), int((y == 1).sum())
    rows = []
    cols = {a: [res.columns[a][i] for i in idx] for a in res.attributes}
    kinds = {a: ATTRIBUTES[a].kind for a in res.attributes}
    splits = stratified_folds(y, folds, seed)
    for a in res.attributes:
        scores, rule = best_rule(y, cols[a], kinds[a], a)
        auc, lo, hi = auroc_bootstrap(y, scores, n_resamples=bootstrap, seed=seed)
        rows.append(Separation(subset, a, auc, lo, hi, rule, n_real, n_fake, ATTRIBUTES[a].verdict))
    used = [a for a in res.attributes if ATTRIBUTES[a].verdict]
    model = metadata_model(y, {a: cols[a] for a in used}, kinds, seed=seed, splits=splits)
    if model is not None:
        auc, lo, hi = auroc_bootstrap(y, model, n_resamples=bootstrap, seed=seed)
        rows.append(Separation(subset, MODEL, auc, lo, hi,
                               f"gradient-boosted trees on the {len(used)} attributes that count, "
                               f"{len(splits)}-fold out-of-fold", n_real, n_fake))
    rows.sort(key=lambda r: (-r.auroc, r.attribute))
    return rows
