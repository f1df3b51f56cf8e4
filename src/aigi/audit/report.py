"""The audit's report: ``audit.md`` + a self-contained ``audit.html`` (the benchmark's renderer), plots.

Also the summary table the benchmark report embeds (:func:`summary_rows`), computed from
the JSON summary (:meth:`AuditResult.summary`) so a stored audit renders without the files.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ..benchmark.plots import figure, save
from ..benchmark.render import Document
from .attributes import ATTRIBUTES
from .core import ALL, MODEL, AuditResult

__all__ = ["summary_rows", "thresholds_text", "write_report"]

_REAL, _FAKE = "#1f77b4", "#d62728"


def _auc(row: dict[str, Any]) -> str:
    if row["auroc"] is None or math.isnan(row["auroc"]):
        return "–"
    return f"{row['auroc']:.2f} [{row['low']:.2f}, {row['high']:.2f}]"


def _counted(row: dict[str, Any]) -> bool:
    return bool(row.get("counts", True))


def summary_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """One row per subset: verdict, counts, the strongest attribute, the model, the strongest pixel statistic."""
    head = ["subset", "verdict", "#real", "#fake", "strongest attribute (its best rule)", "AUROC [95% CI]",
            "metadata model", "strongest not counted"]
    rows = []
    for subset, s in summary["subsets"].items():
        counted = [r for r in s["rows"] if _counted(r) and r["attribute"] != MODEL]
        model = next((r for r in s["rows"] if r["attribute"] == MODEL), None)
        other = [r for r in s["rows"] if not _counted(r)]
        top = counted[0] if counted else None
        rows.append([
            f"**{subset}**" if subset == ALL else subset, f"**{s['verdict']}**", str(s["n_real"]), str(s["n_fake"]),
            top["rule"] if top else "–", _auc(top) if top else "–",
            _auc(model) if model else "–",
            f"{other[0]['attribute']} {_auc(other[0])}" if other else "–",
        ])
    return head, rows


def thresholds_text(summary: dict[str, Any]) -> str:
    """The verdict rule with the thresholds the summary was judged by."""
    t = summary["thresholds"]
    return (f"Verdict from the attributes that count and the metadata model: **shortcut** at AUROC ≥ "
            f"{t['shortcut']:g} with the interval's lower end ≥ {t['shortcut_low']:g}; **suspicious** at AUROC ≥ "
            f"{t['suspicious']:g} with lower end ≥ {t['suspicious_low']:g}; else **clean**. File size and the pixel "
            "statistics are shown (last column) but do not count: they also measure image content.")


def _plot_attribute(res: AuditResult, subset: str, name: str, path: Path) -> Path:
    """Real vs fake distribution of one attribute in one subset (histogram or category bars)."""
    idx = res.members(subset)
    fig = figure(4.2, 2.8)
    ax = fig.add_subplot(1, 1, 1)
    vals = [res.columns[name][i] for i in idx]
    labs = np.asarray([res.labels[i] for i in idx])
    if ATTRIBUTES[name].kind == "number" and not all(isinstance(v, float) and math.isnan(v) for v in vals):
        x = np.asarray(vals, dtype=float)
        ok = ~np.isnan(x)
        bins = np.histogram_bin_edges(x[ok], bins=min(30, max(5, ok.sum() // 4)))
        for lab, colour, text in ((0, _REAL, "real"), (1, _FAKE, "fake")):
            sel = x[(labs == lab) & ok]
            missing = int(((labs == lab) & ~ok).sum())
            ax.hist(sel, bins=bins, alpha=0.55, color=colour,
                    label=f"{text} ({sel.size}" + (f"; {missing} without a value)" if missing else ")"))
        ax.set_xlabel(name, fontsize=8)
    else:
        levels = sorted({str(v) for v in vals}, key=lambda v: -sum(str(x) == v for x in vals))[:12]
        pos = np.arange(len(levels))
        for k, (lab, colour, text) in enumerate(((0, _REAL, "real"), (1, _FAKE, "fake"))):
            share = [np.mean([str(v) == lv for v, la in zip(vals, labs) if la == lab]) for lv in levels]
            ax.bar(pos + (k - 0.5) * 0.4, 100 * np.asarray(share), 0.4, color=colour, label=text)
        ax.set_xticks(pos)
        ax.set_xticklabels([lv[:18] for lv in levels], rotation=30, ha="right", fontsize=7)
        ax.set_ylabel("% of the class", fontsize=8)
    ax.set_title(f"{subset}: {name}", fontsize=9)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7)
    return save(fig, path)


def write_report(res: AuditResult, folder: str | Path, *, plots: int = 6) -> Path:
    """Write ``audit.md``, ``audit.html``, ``audit.json``, ``attributes.csv`` and ``plots/`` into ``folder``.

    ``plots``: how many of the strongest attributes (pooled set, else the only subset) get a
    real-vs-fake plot. Returns the Markdown path.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    summary = res.summary()
    doc = Document()
    title = f"Dataset audit: {res.source}"
    doc.h(1, title)
    doc.items([
        f"**Data**: `{res.source}`: {len(res.paths)} readable files, {len(res.errors)} could not be read",
        "**Attributes**: " + ("header and pixel statistics" if res.pixels else
                              "header only (pixel statistics not computed; `--pixels` adds them)"),
        f"**Time**: {res.seconds:.1f} s",
        "AUROC: 0.5 = the attribute says nothing about the label, 1.0 = it alone tells real from fake. "
        "Intervals: 95% stratified percentile bootstrap.",
    ])
    doc.h(2, "Verdict per subset")
    head, rows = summary_rows(summary)
    doc.table(head, rows)
    doc.p(thresholds_text(summary))
    for subset, s in summary["subsets"].items():
        doc.h(3, f"{subset}: {s['verdict']} ({s['n_real']} real, {s['n_fake']} fake)")
        doc.table(["attribute", "AUROC [95% CI]", "level", "counts", "best rule"],
                  [[r["attribute"], _auc(r), r["level"], "yes" if _counted(r) else "no", r["rule"]]
                   for r in s["rows"]])
    focus = next(reversed(res.separations), None)  # the pooled set when there is one (it comes last)
    if focus is not None and plots > 0:
        doc.h(2, f"The strongest attributes ({focus})")
        worst = [r.attribute for r in res.separations[focus] if r.attribute != MODEL][:plots]
        for name in worst:
            doc.image(_plot_attribute(res, focus, name, folder / "plots" / f"audit-{name}.png"),
                      f"{name}: real vs fake ({ATTRIBUTES[name].description})")
    if res.errors:
        doc.h(2, "Files that could not be read")
        doc.table(["file", "reason"], [[f"`{p}`", r] for p, r in res.errors])
    doc.h(2, "Attributes")
    doc.table(["attribute", "kind", "from", "counts", "meaning"],
              [[a, ATTRIBUTES[a].kind, ATTRIBUTES[a].group, "yes" if ATTRIBUTES[a].verdict else "no",
                ATTRIBUTES[a].description] for a in res.attributes])
    md = doc.write(folder, title, stem="audit")
    (folder / "audit.json").write_text(json.dumps(summary, indent=2) + "\n")
    with open(folder / "attributes.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "label", "subset", *res.attributes])
        for i, p in enumerate(res.paths):
            w.writerow([p, "" if res.labels[i] is None else res.labels[i], res.subsets[i],
                        *(res.columns[a][i] for a in res.attributes)])
    return md
