"""Benchmark reports from a results store: ``report.md``, a self-contained ``report.html``, PNG plots.

Everything is recomputed from ``results.sqlite`` (the protocol JSON, the sample lists and
the scores are all in it), so ``aigi report DIR`` re-renders a report without running a
model. Plots are drawn with matplotlib's Agg canvas (no display, no global backend switch)
into ``<DIR>/plots/*.png``; the HTML embeds them as base64 PNG and has no external asset.

Metrics per (detector, condition, subset): the engine's ACC / R.Acc / F.Acc / AP / AUROC /
EER at the fixed threshold, ECE, and ACC at the calibrated threshold
(:mod:`aigi.evaluate.calibration`); bootstrap intervals for the clean condition. The
headline is the unweighted mean over subsets (the field's convention).

Every table says which protocol its scores were computed under: a score is reused
whenever the image, the weights and the condition are the same, and when some of a
table's scores were first computed under another protocol (hash), the table says so.
"""

from __future__ import annotations

import base64
import html
import json
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .run import CLEAN, condition_name, planned_conditions
from ..evaluate.calibration import accuracy_at, bootstrap_intervals, expected_calibration_error, threshold_at_fpr
from ..evaluate.metrics import binary_metrics, mean_metrics
from .store import STORE_NAME, ResultStore

__all__ = ["Results", "build_report", "collect", "leaderboard", "leaderboard_table", "render_report"]

_PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#7f7f7f",
            "#bcbd22"]


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
        return self.results.get((name, condition))

    def condition(self, name: str, degradation: str | None = None, mode: str | None = None) -> str:
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

    from .protocol import Protocol

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
        per: dict[str, dict[str, Any]] = {}
        for subset in sorted(by_subset):
            y, s = by_subset[subset]
            m = binary_metrics(y, s, thr)
            m["ece"] = expected_calibration_error(y, s, metrics.get("ece_bins", 15))
            if cal is not None:
                ca = accuracy_at(y, s, cal)
                m.update(acc_cal=ca["acc"], r_acc_cal=ca["r_acc"], f_acc_cal=ca["f_acc"])
            else:
                m.update(acc_cal=None, r_acc_cal=None, f_acc_cal=None)
            if p.condition == CLEAN and metrics.get("bootstrap", 1000) > 0:
                m["ci"] = bootstrap_intervals(y, s, threshold=thr, n_resamples=metrics.get("bootstrap", 1000),
                                              confidence=metrics.get("confidence", 0.95),
                                              seed=metrics.get("seed", 0))
            per[subset] = m
        mean = mean_metrics(per)
        for extra in ("ece", "acc_cal", "r_acc_cal", "f_acc_cal"):
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


# --------------------------------------------------------------------------- formatting


def _pct(v: Any) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def _ci(m: dict[str, Any], key: str) -> str:
    ci = (m.get("ci") or {}).get(key)
    if not ci or ci.get("low") is None:
        return _pct(m.get(key))
    return f"{_pct(m.get(key))} [{_pct(ci['low'])}, {_pct(ci['high'])}]"


def _when(ts: float | None) -> str:
    return "–" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(ts))


def leaderboard(res: Results) -> tuple[list[str], list[list[str]]]:
    """The headline table (clean condition, means over subsets), best mean AP first."""
    fpr = res.protocol.get("calibration", {}).get("fpr", 0.05)
    head = ["detector", "R.Acc", "F.Acc", "ACC", "AP", "AUROC", f"ACC@FPR{100 * fpr:g}%", "ECE"]
    rows = []
    for n in res.ranked():
        r = res.get(n, CLEAN)
        if r is None:
            continue
        m = r.mean
        rows.append([n, _pct(m["r_acc"]), _pct(m["f_acc"]), _pct(m["acc"]), _pct(m["ap"]), _pct(m["auroc"]),
                     _pct(m["acc_cal"]), _pct(m["ece"])])
    return head, rows


def leaderboard_table(res: Results):
    """The leaderboard as a rich Table, for the terminal."""
    from rich.table import Table

    head, rows = leaderboard(res)
    table = Table(*head, title=f"{res.protocol['name']}: clean test set, mean over {len(res.subsets)} subsets")
    for r in rows:
        table.add_row(*r)
    return table


# --------------------------------------------------------------------------- blocks


@dataclass
class _Doc:
    """A report as a list of blocks, rendered to Markdown and to HTML alike."""

    blocks: list[tuple] = field(default_factory=list)

    def h(self, level: int, text: str) -> None:
        self.blocks.append(("h", level, text))

    def p(self, text: str) -> None:
        self.blocks.append(("p", text))

    def items(self, lines: list[str]) -> None:
        if lines:
            self.blocks.append(("ul", lines))

    def table(self, head: list[str], rows: list[list[str]], note: str | None = None) -> None:
        self.blocks.append(("table", head, rows))
        if note:
            self.p(note)

    def image(self, path: Path, alt: str) -> None:
        self.blocks.append(("img", path, alt))

    def markdown(self, root: Path) -> str:
        out: list[str] = []
        for b in self.blocks:
            if b[0] == "h":
                out.append("#" * b[1] + " " + b[2])
            elif b[0] == "p":
                out.append(b[1])
            elif b[0] == "ul":
                out.append("\n".join(f"- {x}" for x in b[1]))
            elif b[0] == "table":
                esc = [[str(c).replace("|", "\\|") for c in row] for row in [b[1], *b[2]]]
                lines = ["| " + " | ".join(esc[0]) + " |", "|" + "|".join("---" for _ in esc[0]) + "|"]
                lines += ["| " + " | ".join(r) + " |" for r in esc[1:]]
                out.append("\n".join(lines))
            elif b[0] == "img":
                out.append(f"![{b[2]}]({b[1].relative_to(root).as_posix()})")
        return "\n\n".join(out) + "\n"

    def html(self, title: str) -> str:
        def inline(text: str) -> str:
            t = html.escape(text)
            # the Markdown bits used in this report: **bold** and `code`
            parts = t.split("`")
            t = "".join(f"<code>{x}</code>" if i % 2 else x for i, x in enumerate(parts))
            parts = t.split("**")
            return "".join(f"<b>{x}</b>" if i % 2 else x for i, x in enumerate(parts))

        body: list[str] = []
        for b in self.blocks:
            if b[0] == "h":
                body.append(f"<h{b[1]}>{inline(b[2])}</h{b[1]}>")
            elif b[0] == "p":
                body.append(f"<p>{inline(b[1])}</p>")
            elif b[0] == "ul":
                body.append("<ul>" + "".join(f"<li>{inline(x)}</li>" for x in b[1]) + "</ul>")
            elif b[0] == "table":
                head = "".join(f"<th>{inline(c)}</th>" for c in b[1])
                rows = "".join("<tr>" + "".join(f"<td>{inline(str(c))}</td>" for c in r) + "</tr>" for r in b[2])
                body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
            elif b[0] == "img":
                data = base64.b64encode(b[1].read_bytes()).decode()
                body.append(f'<figure><img alt="{html.escape(b[2])}" src="data:image/png;base64,{data}">'
                            f"<figcaption>{inline(b[2])}</figcaption></figure>")
        style = (
            "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;max-width:1200px;margin:2em auto;"
            "padding:0 1em;color:#222}table{border-collapse:collapse;margin:1em 0;font-size:14px}"
            "th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}th{background:#f3f3f3}"
            "td:first-child,th:first-child{text-align:left}img{max-width:100%}figure{margin:1em 0}"
            "figcaption{color:#555;font-size:13px}code{background:#f3f3f3;padding:0 3px}"
        )
        return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
                f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def _provenance_note(res: Results, keys: list[tuple[str, str]]) -> str | None:
    """Say so when a table's scores were not all computed under this protocol."""
    other: set[str] = set()
    for k in keys:
        r = res.results.get(k)
        if r is not None:
            other |= r.protocols - {res.protocol_hash}
    if not other:
        return None
    names = ", ".join(sorted(h[:12] + "…" for h in other if h))
    return (f"Note: some scores in this table were computed under other protocol(s) ({names}) and reused, "
            "because the image, the detector weights and the condition are identical; the protocols differ "
            "in other respects.")


# --------------------------------------------------------------------------- plots


def _figure(w: float, h: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None}, bbox_inches="tight")
    return path


def _colors(names: list[str]) -> dict[str, str]:
    return {n: _PALETTE[i % len(_PALETTE)] for i, n in enumerate(names)}


def _plot_roc(res: Results, names: list[str], path: Path) -> Path | None:
    subsets = [s for s in res.subsets if any((n, s) in res.roc for n in names)]
    if not subsets:
        return None
    cols = min(4, len(subsets))
    rows = math.ceil(len(subsets) / cols)
    fig = _figure(3.2 * cols, 3.0 * rows + 0.4)
    colors = _colors(names)
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
    return _save(fig, path)


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


def _plot_subsets(res: Results, names: list[str], path: Path) -> Path | None:
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
    fig = _figure(max(7.0, 0.9 * len(groups) * max(1, len(names)) * 0.5 + 3), 6.2)
    colors = _colors(names)
    for i, (metric, label) in enumerate((("acc", "ACC (%)"), ("ap", "AP (%)"))):
        ax = fig.add_subplot(2, 1, i + 1)
        _bars(ax, groups, names, {(n, g): values.get((metric, n, g)) for n in names for g in groups},
              {(n, g): errors[(metric, n, g)] for n in names for g in groups if (metric, n, g) in errors},
              colors, label)
        if i == 0:
            ax.legend(fontsize=7, ncol=min(len(names), 5), loc="upper left", bbox_to_anchor=(0, 1.25))
    return _save(fig, path)


def _plot_robustness(res: Results, names: list[str], degradations: list[str], path: Path) -> Path | None:
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
    fig = _figure(3.4 * len(panels), 6.0)
    colors = _colors(names)
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
    return _save(fig, path)


def _plot_grouped(res: Results, groups: list[str], names: list[str], lookup, path: Path, title: str) -> Path | None:
    values_ap = {(n, g): lookup(n, g, "ap") for n in names for g in groups}
    if all(v is None for v in values_ap.values()):
        return None
    fig = _figure(max(6.5, 1.1 * len(groups) * max(1, len(names)) * 0.45 + 3), 5.6)
    colors = _colors(names)
    for i, (metric, label) in enumerate((("ap", "mean AP (%)"), ("acc", "mean ACC (%)"))):
        ax = fig.add_subplot(2, 1, i + 1)
        _bars(ax, groups, names, {(n, g): lookup(n, g, metric) for n in names for g in groups}, None, colors, label)
        if i == 0:
            ax.set_title(title, fontsize=10)
            ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.005, 1.0), borderaxespad=0.0)
    return _save(fig, path)


# --------------------------------------------------------------------------- the report


def render_report(output: str | Path, protocol_hash: str | None = None) -> Path:
    """Write ``report.md``, ``report.html`` and ``plots/*.png`` into ``output``; returns report.md."""
    return build_report(output, protocol_hash)[0]


def build_report(output: str | Path, protocol_hash: str | None = None) -> tuple[Path, Results]:
    """:func:`render_report`, also returning the computed :class:`Results`."""
    output = Path(output)
    store_path = output / STORE_NAME
    if not store_path.is_file():
        raise FileNotFoundError(f"{output} holds no {STORE_NAME}; run `aigi bench` into it first")
    with ResultStore(store_path) as store:
        res = collect(store, protocol_hash)
    plots = output / "plots"
    doc = _Doc()
    proto = res.protocol
    tasks = proto.get("tasks", {})
    title = f"Benchmark report: {proto['name']}"
    doc.h(1, title)
    if proto.get("description"):
        doc.p(proto["description"])
    last = res.runs[-1]
    m = last.get("machine", {})
    took = (last["finished"] - last["started"]) if last.get("finished") else None
    total = sum((r["finished"] - r["started"]) for r in res.runs if r.get("finished"))
    machines = {json.dumps({k: v for k, v in r.get("machine", {}).items() if k != "torch_threads"}, sort_keys=True)
                for r in res.runs}
    doc.items([
        f"**Protocol sha256**: `{res.protocol_hash}`",
        f"**Runs**: {len(res.runs)} run(s) of this protocol in the store, {total:.0f} s in all; the first started "
        f"{_when(res.runs[0]['started'])}; the latest started {_when(last['started'])}"
        + (f" and took {took:.0f} s" if took is not None else "") + f" (status {last['status']})",
        ("**Machine** (latest run; earlier runs used others, see the store's `runs` table)" if len(machines) > 1
         else "**Machine**") + f": {m.get('platform', '?')}; {m.get('cpu_count', '?')} CPU cores "
        f"({m.get('torch_threads', '?')} torch threads); device {m.get('device', '?')}"
        + (f" ({m['gpu']})" if m.get("gpu") else "")
        + f"; Python {m.get('python', '?')}, torch {m.get('torch', '?')}, aigi {m.get('aigi', '?')}",
        f"**Test data**: `{proto['data']['test']}` ({res.n_test} images in {len(res.subsets)} subsets: "
        + ", ".join(res.subsets) + ")",
        f"**Calibration**: {res.n_calibration} held-out real images "
        + (f"from `{proto['calibration']['data']}`" if proto["calibration"].get("data")
           else f"({100 * proto['calibration']['holdout']:g}% of each subset's test reals, chosen by content hash, "
                "left out of every metric)")
        + f"; target false-positive rate {100 * proto['calibration']['fpr']:g}%",
        "**Threshold**: " + (f"{proto['metrics']['threshold']:g} for every detector"
                             if proto.get("metrics", {}).get("threshold") else "each detector's own (0.5 unless its "
                             "config says otherwise)")
        + "; ACC@FPR uses the calibrated threshold; ECE with "
        f"{proto.get('metrics', {}).get('ece_bins', 15)} equal-width bins; intervals are "
        f"{100 * proto.get('metrics', {}).get('confidence', 0.95):g}% stratified percentile bootstrap "
        f"({proto.get('metrics', {}).get('bootstrap', 1000)} resamples).",
    ])

    # detectors ----------------------------------------------------------------------
    doc.h(2, "Detectors")
    rows = []
    for n in res.ordered():
        d = res.detectors[n]
        info = d["info"]
        trained = ""
        if info.get("source") == "recipe":
            trained = f"{info.get('steps', '?')} steps, {info.get('seconds', '?')} s" + (
                "" if info.get("trained") else " (reused)")
        rows.append([n, d["method"] or "?", f"{info.get('parameters', 0):,}", f"`{d['weights_hash'][:16]}`",
                     info.get("source", "?"), trained])
    doc.table(["detector", "method", "parameters", "weights sha256", "source", "training"], rows)
    skipped = proto.get("skipped") or []
    if skipped:
        doc.p("**Skipped detectors**:")
        doc.items([f"**{s['name']}**: {s['reason']}" for s in skipped])

    main = res.ranked()
    fpr = proto["calibration"]["fpr"]
    # task 1 -------------------------------------------------------------------------
    if tasks.get("generalization") is not None or res.main:
        doc.h(2, "Leaderboard: multi-source generalization")
        head, rows = leaderboard(res)
        doc.table(head, rows, _provenance_note(res, [(n, CLEAN) for n in main]))
        doc.p("Means over subsets (unweighted), clean test images, each detector's own preprocessing. "
              f"ACC@FPR{100 * fpr:g}%: accuracy at the threshold calibrated on held-out reals.")
        doc.h(3, "Per subset: ACC / AP")
        head = ["detector"] + res.subsets + ["mean"]
        rows = []
        for n in main:
            r = res.get(n, CLEAN)
            if r is None:
                continue
            rows.append([n] + [f"{_pct(r.subsets[s]['acc'])} / {_pct(r.subsets[s]['ap'])}" if s in r.subsets else "–"
                               for s in res.subsets] + [f"{_pct(r.mean['acc'])} / {_pct(r.mean['ap'])}"])
        doc.table(head, rows)
        p = _plot_roc(res, main, plots / "roc.png")
        if p:
            doc.image(p, "ROC curves per subset (clean); legend: AUROC %")
        p = _plot_subsets(res, main, plots / "subsets.png")
        if p:
            doc.image(p, "ACC and AP per subset with bootstrap intervals")
        for n in main:
            r = res.get(n, CLEAN)
            if r is None:
                continue
            doc.h(3, f"{n}: per subset")
            rows = []
            for s, m_ in r.subsets.items():
                rows.append([s, _pct(m_["r_acc"]), _pct(m_["f_acc"]), _ci(m_, "acc"), _ci(m_, "ap"),
                             _ci(m_, "auroc"), _pct(m_["eer"]), _pct(m_["acc_cal"]), _pct(m_["ece"]),
                             str(m_["n_real"]), str(m_["n_fake"])])
            mm = r.mean
            rows.append(["**mean**", _pct(mm["r_acc"]), _pct(mm["f_acc"]), _pct(mm["acc"]), _pct(mm["ap"]),
                         _pct(mm["auroc"]), _pct(mm["eer"]), _pct(mm["acc_cal"]), _pct(mm["ece"]),
                         str(mm["n_real"]), str(mm["n_fake"])])
            doc.table(["subset", "R.Acc", "F.Acc", "ACC [CI]", "AP [CI]", "AUROC [CI]", "EER",
                       f"ACC@FPR{100 * fpr:g}%", "ECE", "#real", "#fake"], rows)
            doc.p(f"Threshold {r.threshold:g}; calibrated threshold "
                  + (f"{r.cal_threshold:.4g}" if r.cal_threshold is not None else "– (no calibration reals)")
                  + (f"; {r.errors} image(s) could not be read" if r.errors else ""))

    # task 2 -------------------------------------------------------------------------
    rob = tasks.get("robustness")
    if rob:
        names = [n for n in main if n in _task_dets(proto, "robustness", res.main)]
        doc.h(2, "Robustness to degradations")
        conds = ["clean"] + rob["degradations"]
        rows, keys = [], []
        for n in names:
            cells = []
            for c in conds:
                cond = res.condition(n, None if c == "clean" else c)
                keys.append((n, cond))
                r = res.get(n, cond)
                cells.append(f"{_pct(r.mean['acc'])} / {_pct(r.mean['ap'])}" if r else _failed(res, n, cond))
            rows.append([n] + cells)
        doc.table(["detector"] + conds, rows, _provenance_note(res, keys))
        doc.p("Cells: mean ACC / mean AP over subsets. Degradations are applied to the decoded image before the "
              "detector's preprocessing (see `aigi.data.degrade`); ACC uses the fixed threshold.")
        rows = []
        for n in names:
            cells = []
            for c in conds:
                r = res.get(n, res.condition(n, None if c == "clean" else c))
                cells.append(_pct(r.mean["acc_cal"]) if r else "–")
            rows.append([n] + cells)
        doc.p(f"Mean ACC at the clean calibrated threshold (FPR {100 * fpr:g}% on clean held-out reals):")
        doc.table(["detector"] + conds, rows)
        p = _plot_robustness(res, names, rob["degradations"], plots / "robustness.png")
        if p:
            doc.image(p, "Robustness curves: mean AP and ACC against degradation strength, one line per detector")

    # task 4 -------------------------------------------------------------------------
    pre = tasks.get("preprocessing")
    if pre:
        names = [n for n in main if n in _task_dets(proto, "preprocessing", res.main)]
        doc.h(2, "Test-time preprocessing")
        modes = pre["modes"]
        rows, keys = [], []
        for n in names:
            cells = []
            for mode in modes:
                cond = res.condition(n, None, mode)
                keys.append((n, cond))
                r = res.get(n, cond)
                own = " (own)" if cond == CLEAN else ""
                cells.append((f"{_pct(r.mean['acc'])} / {_pct(r.mean['ap'])}" + own) if r else _failed(res, n, cond))
            rows.append([n, res.detectors[n]["info"].get("test_mode", "?")] + cells)
        doc.table(["detector", "own mode"] + modes, rows, _provenance_note(res, keys))
        doc.p("Cells: mean ACC / mean AP with the detector's test-time geometry overridden on purpose "
              "(`PreprocessConfig.test`); the exact preprocessing of each condition is recorded in the store's "
              "`conditions` table. `none` is native resolution (one image per batch).")

        def look(n: str, g: str, metric: str):
            r = res.get(n, res.condition(n, None, g))
            return r.mean.get(metric) if r else None

        p = _plot_grouped(res, modes, names, look, plots / "preprocessing.png", "test-time preprocessing")
        if p:
            doc.image(p, "Preprocessing comparison: mean AP and ACC per test-time mode")

    # task 3 -------------------------------------------------------------------------
    aug = tasks.get("augmentation")
    if aug:
        doc.h(2, "Sensitivity to training augmentation")
        conds = ["clean"] + aug.get("degradations", [])
        rows, keys = [], []
        for base in aug["detectors"]:
            ref = res.get(f"{base}@none", CLEAN) if "none" in aug["variants"] else None
            for v in aug["variants"]:
                n = f"{base}@{v}"
                if n not in res.detectors:
                    continue
                cells = []
                for c in conds:
                    cond = res.condition(n, None if c == "clean" else c)
                    keys.append((n, cond))
                    r = res.get(n, cond)
                    cells.append(f"{_pct(r.mean['acc'])} / {_pct(r.mean['ap'])}" if r else _failed(res, n, cond))
                r0 = res.get(n, CLEAN)
                delta = "–"
                if ref is not None and r0 is not None and v != "none" and r0.mean["ap"] is not None:
                    delta = f"{100 * (r0.mean['ap'] - ref.mean['ap']):+.1f}"
                rows.append([base, v] + cells + [delta])
        doc.table(["detector", "augmentation"] + conds + ["ΔAP vs none"], rows, _provenance_note(res, keys))
        doc.p(f"Each variant retrains the recipe with all augmentations off except the named one "
              f"(probability {aug.get('probability', 0.5):g}; `all`: every one on). Cells: mean ACC / mean AP.")
        names = [f"{b}@{v}" for b in aug["detectors"] for v in aug["variants"] if f"{b}@{v}" in res.detectors]

        def look_aug(n: str, g: str, metric: str):
            r = res.get(n, res.condition(n, None if g == "clean" else g))
            return r.mean.get(metric) if r else None

        p = _plot_grouped(res, conds, names, look_aug, plots / "augmentation.png",
                          "training augmentation variants (test condition on the x axis)")
        if p:
            doc.image(p, "Augmentation sensitivity: mean AP and ACC of each retrained variant")

    # notes ---------------------------------------------------------------------------
    if res.failures:
        doc.h(2, "Conditions that could not be scored")
        doc.table(["detector", "condition", "reason"], [[a, b, c] for a, b, c in res.failures])
    doc.p(f"Generated by `aigi report` on {_when(time.time())} from `{STORE_NAME}`.")

    md = output / "report.md"
    md.write_text(doc.markdown(output))
    (output / "report.html").write_text(doc.html(title))
    (output / "results.json").write_text(json.dumps(_summary_json(res), indent=2, default=_json_default) + "\n")
    return md, res


def _task_dets(proto: dict[str, Any], task: str, main: list[str]) -> list[str]:
    spec = proto.get("tasks", {}).get(task) or {}
    return spec.get("detectors") or main


def _failed(res: Results, name: str, cond: str) -> str:
    for n, c, reason in res.failures:
        if n == name and c == cond:
            return "failed"
    return "–"


def _json_default(o: Any) -> Any:
    if isinstance(o, set):
        return sorted(o)
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _summary_json(res: Results) -> dict[str, Any]:
    return {
        "protocol_hash": res.protocol_hash,
        "protocol": res.protocol,
        "detectors": res.detectors,
        "results": {
            f"{n} :: {c}": {
                "detector": n, "condition": c, "threshold": r.threshold, "calibrated_threshold": r.cal_threshold,
                "mean": r.mean, "subsets": r.subsets, "protocols": r.protocols,
            }
            for (n, c), r in res.results.items()
        },
        "failures": [{"detector": a, "condition": b, "reason": c} for a, b, c in res.failures],
    }
