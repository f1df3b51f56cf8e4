"""The benchmark report's plots, drawn with matplotlib's Agg canvas (no display, no global backend).

:func:`figure` and :func:`save` are also used by the dataset audit's report.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from .plan import CLEAN
from .results import Results

__all__ = ["color_map", "figure", "plot_grouped", "plot_robustness", "plot_roc", "plot_subsets", "save"]

_PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
            "#bcbd22"]


def figure(w: float, h: float):
    """A matplotlib Figure of ``w`` x ``h`` inches on its own Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def save(fig, path: Path) -> Path:
    """Write ``fig`` as PNG to ``path`` (no Software tag, so the bytes do not depend on the version)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None}, bbox_inches="tight")
    return path


def color_map(names: list[str]) -> dict[str, str]:
    """One palette colour per name, in order."""
    return {n: _PALETTE[i % len(_PALETTE)] for i, n in enumerate(names)}


def plot_roc(res: Results, names: list[str], path: Path) -> Path | None:
    """ROC curves of ``names`` on the clean condition, one panel per subset; None when nothing to draw."""
    subsets = [s for s in res.subsets if any((n, s) in res.roc for n in names)]
    if not subsets:
        return None
    cols = min(4, len(subsets))
    rows = math.ceil(len(subsets) / cols)
    fig = figure(3.2 * cols, 3.0 * rows + 0.4)
    colors = color_map(names)
    for i, subset in enumerate(subsets):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.plot([0, 1], [0, 1], color="#bbb", lw=0.8, ls="--")
        for n in names:
            if (n, subset) in res.roc:
                f, t = res.roc[(n, subset)]
                auc = res.get(n, CLEAN).subsets[subset]["auroc"]
                ax.plot(f, t, color=colors[n], lw=1.4, label=f"{n} ({100 * auc:.1f})")
        ax.set_title(subset, fontsize=10)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
        ax.set_xlabel("false-positive rate", fontsize=8)
        ax.set_ylabel("true-positive rate", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=6.5, loc="lower right", title="AUROC", title_fontsize=6.5)
    return save(fig, path)


def _bars(ax, groups: list[str], names: list[str], values: dict, errors: dict | None, colors: dict[str, str],
          ylabel: str) -> None:
    width = 0.8 / max(1, len(names))
    x = np.arange(len(groups))
    for j, n in enumerate(names):
        vals = [values.get((n, g)) for g in groups]
        heights = [100 * v if v is not None else 0.0 for v in vals]
        pos = x - 0.4 + width * (j + 0.5)
        ax.bar(pos, heights, width, color=colors[n], label=n)
        if errors:
            have = [(p, v, errors[(n, g)]) for p, g, v in zip(pos, groups, vals) if (n, g) in errors and v is not None]
            if have:
                lo = [max(0.0, 100 * (v - e[0])) for _, v, e in have]
                hi = [max(0.0, 100 * (e[1] - v)) for _, v, e in have]
                ax.errorbar([h[0] for h in have], [100 * h[1] for h in have], yerr=[lo, hi], fmt="none",
                            ecolor="#333", elinewidth=0.8, capsize=2)
        for p, v in zip(pos, vals):
            if v is None:
                ax.text(p, 1, "n/a", ha="center", va="bottom", fontsize=6, rotation=90)
    ax.set_xticks(x)
    ax.set_xticklabels(groups, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 105)
    ax.set_ylabel(ylabel)
    ax.axhline(50, color="#bbb", lw=0.6, ls=":")
    ax.tick_params(axis="y", labelsize=8)


def plot_subsets(res: Results, names: list[str], path: Path) -> Path | None:
    """ACC and AP per subset (and the mean) with bootstrap intervals, one bar per detector."""
    groups = res.subsets + ["mean"]
    values: dict = {}
    errors: dict = {}
    for metric in ("acc", "ap"):
        for n in names:
            r = res.get(n, CLEAN)
            if r is None:
                continue
            for s in res.subsets:
                m = r.subsets.get(s)
                if m is None:
                    continue
                values[(metric, n, s)] = m.get(metric)
                ci = (m.get("ci") or {}).get(metric)
                if ci and ci.get("low") is not None:
                    errors[(metric, n, s)] = (ci["low"], ci["high"])
            values[(metric, n, "mean")] = r.mean.get(metric)
    if not values:
        return None
    fig = figure(max(7.0, 0.9 * len(groups) * max(1, len(names)) * 0.5 + 3), 6.2)
    colors = color_map(names)
    for i, (metric, label) in enumerate((("acc", "ACC (%)"), ("ap", "AP (%)"))):
        ax = fig.add_subplot(2, 1, i + 1)
        _bars(ax, groups, names, {(n, g): values.get((metric, n, g)) for n in names for g in groups},
              {(n, g): errors[(metric, n, g)] for n in names for g in groups if (metric, n, g) in errors},
              colors, label)
        if i == 0:
            ax.legend(fontsize=7, ncol=min(len(names), 5), loc="upper left", bbox_to_anchor=(0, 1.25))
    return save(fig, path)


def plot_robustness(res: Results, names: list[str], degradations: list[str], path: Path) -> Path | None:
    """Mean AP and ACC against degradation strength, one panel per family (chains in their own panel)."""
    from ..data.degrade import parse_degradation

    parsed = [parse_degradation(d) for d in degradations]
    families: dict[str, list] = defaultdict(list)
    named: list = []
    for d in parsed:
        if d.strength is None:
            named.append(d)
        else:
            families[d.family].append(d)
    panels = list(families) + (["chains"] if named else [])
    if not panels:
        return None
    fig = figure(3.4 * len(panels), 6.0)
    colors = color_map(names)
    for row, (metric, label) in enumerate((("ap", "mean AP (%)"), ("acc", "mean ACC (%)"))):
        for col, panel in enumerate(panels):
            ax = fig.add_subplot(2, len(panels), row * len(panels) + col + 1)
            for n in names:
                clean = res.get(n, res.condition(n))
                clean_v = clean.mean.get(metric) if clean else None
                if panel == "chains":
                    xs = ["clean"] + [d.spec for d in named]
                    ys = [clean_v] + [(res.get(n, d.spec).mean.get(metric) if res.get(n, d.spec) else None)
                                      for d in named]
                    pts = [(i, 100 * y) for i, y in enumerate(ys) if y is not None]
                    if pts:
                        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=colors[n], label=n, lw=1.3)
                    ax.set_xticks(range(len(xs)))
                    ax.set_xticklabels(xs, rotation=30, ha="right", fontsize=7)
                    continue
                ds = sorted(families[panel], key=lambda d: d.strength)
                pts = [(d.strength, 100 * res.get(n, d.spec).mean[metric]) for d in ds
                       if res.get(n, d.spec) is not None and res.get(n, d.spec).mean.get(metric) is not None]
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=colors[n], label=n, lw=1.3)
                if clean_v is not None:
                    ax.axhline(100 * clean_v, color=colors[n], lw=0.8, ls="--")
            if panel in ("jpeg", "webp", "resize", "downup", "maxside"):
                ax.invert_xaxis()  # smaller quality or scale = stronger degradation, to the right
            ax.set_title(panel if panel == "chains" else f"{panel} (dashed: clean)", fontsize=9)
            ax.set_ylim(0, 102)
            ax.set_ylabel(label, fontsize=8)
            ax.tick_params(labelsize=7)
            if panel != "chains":
                ax.set_xlabel({"jpeg": "quality", "webp": "quality", "blur": "sigma (px)",
                               "noise": "sigma (x255)", "resize": "scale factor", "downup": "scale factor",
                               "maxside": "max side (px)"}.get(panel, "strength"), fontsize=8)
            if row == 0 and col == 0:
                ax.legend(fontsize=7)
    return save(fig, path)


def plot_grouped(res: Results, groups: list[str], names: list[str], lookup, path: Path, title: str) -> Path | None:
    """Mean AP and ACC bars per group; ``lookup(name, group, metric)`` gives each value or None."""
    values_ap = {(n, g): lookup(n, g, "ap") for n in names for g in groups}
    if all(v is None for v in values_ap.values()):
        return None
    fig = figure(max(6.5, 1.1 * len(groups) * max(1, len(names)) * 0.45 + 3), 5.6)
    colors = color_map(names)
    for i, (metric, label) in enumerate((("ap", "mean AP (%)"), ("acc", "mean ACC (%)"))):
        ax = fig.add_subplot(2, 1, i + 1)
        _bars(ax, groups, names, {(n, g): lookup(n, g, metric) for n in names for g in groups}, None, colors, label)
        if i == 0:
            ax.set_title(title, fontsize=10)
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0), borderaxespad=0.0)
    return save(fig, path)

