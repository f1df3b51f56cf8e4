"""The benchmark's hook: audit a protocol's test set once and keep the summary in its results store.

``aigi bench`` calls :func:`audit_test_set` after it has listed the test images; the report
(:mod:`aigi.benchmark.report`) shows the stored verdicts, so every leaderboard says whether
its data could be cheated. Header attributes only (a small read per file); the audit is
recomputed only when the sample list changes (its hash is stored with it).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from ..data.layouts import Sample

__all__ = ["audit_test_set"]


def _digest(rows: list[tuple[str, str, int | None, str]]) -> str:
    return hashlib.sha256(json.dumps(sorted(rows, key=lambda r: (r[1], r[0])), default=str).encode()).hexdigest()


def audit_test_set(store, protocol_hash: str, rows: list[tuple[str, str, int | None, str]],
                   *, bootstrap: int = 200) -> dict[str, Any]:
    """Audit ``(path, image_hash, label, subset)`` rows unless the store already holds their audit.

    Returns the audit summary (:meth:`aigi.audit.AuditResult.summary`), as stored.
    """
    from .core import audit

    digest = _digest(rows)
    done = store.audit(protocol_hash, digest)
    if done is not None:
        return done
    samples = [Sample(path=Path(p), label=lab, subset=sub) for p, _, lab, sub in rows]
    summary = audit(samples, bootstrap=bootstrap).summary()
    summary["source"] = "the protocol's test set"
    store.put_audit(protocol_hash, digest, summary)
    return summary
