"""Cells and tables of the benchmark report: number formatting, the leaderboard, provenance notes."""

from __future__ import annotations

import math
import time
from typing import Any

from .plan import CLEAN
from .results import Results

__all__ = ["ci_cell", "failed_cell", "leaderboard", "leaderboard_table", "pct", "provenance_note", "when"]


def pct(v: Any) -> str:
    """A fraction as a percentage with one decimal; ``–`` for missing or NaN."""
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.1f}"


def ci_cell(m: dict[str, Any], key: str) -> str:
    """``value [low, high]`` when ``m`` holds a bootstrap interval for ``key``, else the value."""
    ci = (m.get("ci") or {}).get(key)
    if not ci or ci.get("low") is None:
        return pct(m.get(key))
    return f"{pct(m.get(key))} [{pct(ci['low'])}, {pct(ci['high'])}]"


def when(ts: float | None) -> str:
    """A Unix time as local date and time."""
    return "–" if ts is None else time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(ts))


def leaderboard(res: Results) -> tuple[list[str], list[list[str]]]:
    """The headline table (clean condition, means over subsets), best mean AP first."""
    fpr = res.protocol.get("calibration", {}).get("fpr", 0.05)
    head = ["detector", "R.Acc", "F.Acc", "ACC", "AP", "AUROC", f"ACC@FPR{100 * fpr:g}%", "ECE"]
    # with an abstain band in a detector's calibration.json: the share of images left to a human
    banded = any((r := res.get(n, CLEAN)) is not None and r.mean.get("uncertain") is not None for n in res.ranked())
    if banded:
        head.append("uncertain")
    rows = []
    for n in res.ranked():
        r = res.get(n, CLEAN)
        if r is None:
            continue
        m = r.mean
        rows.append([n, pct(m["r_acc"]), pct(m["f_acc"]), pct(m["acc"]), pct(m["ap"]), pct(m["auroc"]),
                     pct(m["acc_cal"]), pct(m["ece"])] + ([pct(m.get("uncertain"))] if banded else []))
    return head, rows


def leaderboard_table(res: Results):
    """The leaderboard as a rich Table, for the terminal."""
    from rich.table import Table

    head, rows = leaderboard(res)
    table = Table(*head, title=f"{res.protocol['name']}: clean test set, mean over {len(res.subsets)} subsets")
    for r in rows:
        table.add_row(*r)
    return table



def provenance_note(res: Results, keys: list[tuple[str, str]]) -> str | None:
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



def failed_cell(res: Results, name: str, cond: str) -> str:
    """The cell of a pair with no result: ``failed`` when scoring it failed, else ``–``."""
    return "failed" if any(n == name and c == cond for n, c, _ in res.failures) else "–"
