"""The results store: one SQLite file holding every score a benchmark has computed.

One row per ``(image content hash, detector weights hash, condition)`` with the score,
so a score is computed once, whoever asks for it again:

* a re-run skips every stored row; an interrupted run (even ``kill -9``) resumes and loses
  nothing it had committed: the runner commits once per batch, in WAL mode;
* several processes may write at once: WAL lets readers run beside one writer, writers
  take the lock with ``BEGIN IMMEDIATE`` and wait for each other (busy timeout, default
  60 s) instead of failing;
* ``synchronous=NORMAL``: a committed batch survives a crash of the process; only a power
  failure can lose the last few commits (SQLite's documented WAL trade-off).

Hashes: the image hash is ``sha256`` of the file's bytes (:func:`file_sha256`); the
detector weights hash is ``sha256`` over ``model.safetensors`` then ``config.json`` of the
model folder (:func:`weights_sha256`), so a changed threshold or preprocessing in the
config is a different detector. A *condition* is a canonical string such as ``clean``,
``jpeg:75`` or ``clean|pre=resize`` (see :mod:`aigi.benchmark.plan`); the full
preprocessing it used is recorded in the ``conditions`` table.

Tables: ``scores`` (the results), ``samples`` (which images, labels and subsets a
protocol evaluates, so duplicates across subsets are kept), ``detectors`` (protocol
name -> weights hash and metadata), ``conditions``, ``runs`` (protocol JSON, machine,
start and end times), ``failures`` (conditions a detector could not be run under, and
why), ``audits`` (the dataset audit of a protocol's test set, :mod:`aigi.audit`, with a
hash of the sample list it was computed on), ``file_hashes`` (a cache keyed by path, size and mtime so re-runs need not re-read
unchanged files).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ResultStore", "ScoreRow", "STORE_NAME", "file_sha256", "weights_sha256"]

STORE_NAME = "results.sqlite"
SCHEMA_VERSION = 1
_CHUNK = 1 << 20

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS scores (
    image_hash TEXT NOT NULL,
    weights_hash TEXT NOT NULL,
    condition TEXT NOT NULL,
    score REAL,
    logit REAL,
    error TEXT,
    label INTEGER,
    subset TEXT,
    path TEXT,
    protocol_hash TEXT,
    created REAL NOT NULL,
    PRIMARY KEY (image_hash, weights_hash, condition)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS samples (
    protocol_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    path TEXT NOT NULL,
    image_hash TEXT NOT NULL,
    label INTEGER,
    subset TEXT NOT NULL,
    PRIMARY KEY (protocol_hash, role, path)
);
CREATE TABLE IF NOT EXISTS detectors (
    protocol_hash TEXT NOT NULL,
    name TEXT NOT NULL,
    weights_hash TEXT NOT NULL,
    method TEXT,
    role TEXT,
    model_dir TEXT,
    info TEXT,
    PRIMARY KEY (protocol_hash, name)
);
CREATE TABLE IF NOT EXISTS conditions (
    weights_hash TEXT NOT NULL,
    condition TEXT NOT NULL,
    degradation TEXT,
    preprocess TEXT NOT NULL,
    PRIMARY KEY (weights_hash, condition)
);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    protocol_hash TEXT NOT NULL,
    protocol TEXT NOT NULL,
    machine TEXT,
    started REAL NOT NULL,
    finished REAL,
    status TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS failures (
    protocol_hash TEXT NOT NULL,
    name TEXT NOT NULL,
    condition TEXT NOT NULL,
    reason TEXT NOT NULL,
    created REAL NOT NULL,
    PRIMARY KEY (protocol_hash, name, condition)
);
CREATE TABLE IF NOT EXISTS file_hashes (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS audits (
    protocol_hash TEXT PRIMARY KEY,
    samples_sha256 TEXT NOT NULL,
    audit TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS scores_by_detector ON scores (weights_hash, condition);
"""


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (the image content hash)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def weights_sha256(model_dir: str | os.PathLike) -> str:
    """sha256 over ``model.safetensors`` then ``config.json`` of a detector folder."""
    model_dir = Path(model_dir)
    h = hashlib.sha256()
    from ..detectors.folder import CONFIG_NAME, WEIGHTS_NAME

    for name in (WEIGHTS_NAME, CONFIG_NAME):
        path = model_dir / name
        if not path.is_file():
            raise FileNotFoundError(f"{model_dir} is not a detector folder: {name} not found")
        with open(path, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class ScoreRow:
    """One result: the score (P(fake)) and logit, or the error that prevented it."""

    image_hash: str
    weights_hash: str
    condition: str
    score: float | None
    logit: float | None = None
    error: str | None = None
    label: int | None = None
    subset: str | None = None
    path: str | None = None
    protocol_hash: str | None = None


class ResultStore:
    """A connection to ``results.sqlite``; safe to open from several processes at once."""

    def __init__(self, path: str | os.PathLike, *, timeout: float = 60.0) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            self.path = self.path / STORE_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves, so a writer takes the
        # write lock up front (and waits for it) rather than failing on a lock upgrade.
        self.conn = sqlite3.connect(str(self.path), timeout=timeout, isolation_level=None)
        self.conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        self._retry(lambda: self.conn.execute("PRAGMA journal_mode = WAL"))
        self.conn.execute("PRAGMA synchronous = NORMAL")
        with self.write() as c:
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    c.execute(stmt)
            row = c.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if row is None:
                c.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            elif int(row[0]) != SCHEMA_VERSION:
                raise ValueError(
                    f"{self.path} has results schema version {row[0]}, this aigi reads version "
                    f"{SCHEMA_VERSION}; use another --output folder"
                )

    # -- plumbing ------------------------------------------------------------------
    def _retry(self, fn, attempts: int = 50):
        """Run ``fn`` again while the database is locked beyond the busy timeout (rare)."""
        for i in range(attempts):
            try:
                return fn()
            except sqlite3.OperationalError as err:
                if "locked" not in str(err) and "busy" not in str(err) or i == attempts - 1:
                    raise
                time.sleep(0.05 * (i + 1))
        return None  # pragma: no cover

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: ``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on error)."""
        self._retry(lambda: self.conn.execute("BEGIN IMMEDIATE"))
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        else:
            self._retry(lambda: self.conn.execute("COMMIT"))

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- runs ------------------------------------------------------------------------
    def start_run(self, protocol_hash: str, protocol: dict[str, Any], machine: dict[str, Any]) -> str:
        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        with self.write() as c:
            c.execute(
                "INSERT INTO runs VALUES (?, ?, ?, ?, ?, NULL, 'running')",
                (run_id, protocol_hash, json.dumps(protocol, sort_keys=True), json.dumps(machine), time.time()),
            )
        return run_id

    def finish_run(self, run_id: str, status: str = "finished") -> None:
        with self.write() as c:
            c.execute("UPDATE runs SET finished = ?, status = ? WHERE run_id = ?", (time.time(), status, run_id))

    def runs(self, protocol_hash: str | None = None) -> list[dict[str, Any]]:
        """Runs, oldest first (optionally of one protocol)."""
        sql = "SELECT run_id, protocol_hash, protocol, machine, started, finished, status FROM runs"
        args: tuple = ()
        if protocol_hash:
            sql += " WHERE protocol_hash = ?"
            args = (protocol_hash,)
        rows = self.conn.execute(sql + " ORDER BY started", args).fetchall()
        keys = ("run_id", "protocol_hash", "protocol", "machine", "started", "finished", "status")
        out = []
        for r in rows:
            d = dict(zip(keys, r))
            d["protocol"] = json.loads(d["protocol"])
            d["machine"] = json.loads(d["machine"]) if d["machine"] else {}
            out.append(d)
        return out

    # -- samples, detectors, conditions ------------------------------------------------
    def put_samples(self, protocol_hash: str, role: str, rows: Iterable[tuple[str, str, int | None, str]]) -> None:
        """Record ``(path, image_hash, label, subset)`` rows as the protocol's ``role`` set."""
        rows = list(rows)
        with self.write() as c:
            c.execute("DELETE FROM samples WHERE protocol_hash = ? AND role = ?", (protocol_hash, role))
            c.executemany(
                "INSERT OR REPLACE INTO samples VALUES (?, ?, ?, ?, ?, ?)",
                [(protocol_hash, role, p, h, lab, sub) for p, h, lab, sub in rows],
            )

    def samples(self, protocol_hash: str, role: str = "test") -> list[tuple[str, str, int | None, str]]:
        return self.conn.execute(
            "SELECT path, image_hash, label, subset FROM samples WHERE protocol_hash = ? AND role = ? ORDER BY path",
            (protocol_hash, role),
        ).fetchall()

    def put_detector(self, protocol_hash: str, name: str, weights_hash: str, *, method: str, role: str,
                     model_dir: str, info: dict[str, Any]) -> None:
        with self.write() as c:
            c.execute(
                "INSERT OR REPLACE INTO detectors VALUES (?, ?, ?, ?, ?, ?, ?)",
                (protocol_hash, name, weights_hash, method, role, model_dir, json.dumps(info, sort_keys=True)),
            )

    def detectors(self, protocol_hash: str) -> dict[str, dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT name, weights_hash, method, role, model_dir, info FROM detectors WHERE protocol_hash = ?",
            (protocol_hash,),
        ).fetchall()
        return {
            n: {"weights_hash": w, "method": m, "role": r, "model_dir": d, "info": json.loads(i or "{}")}
            for n, w, m, r, d, i in rows
        }

    def put_condition(self, weights_hash: str, condition: str, degradation: str | None,
                      preprocess: dict[str, Any]) -> None:
        with self.write() as c:
            c.execute(
                "INSERT OR REPLACE INTO conditions VALUES (?, ?, ?, ?)",
                (weights_hash, condition, degradation, json.dumps(preprocess, sort_keys=True)),
            )

    def condition_preprocess(self, weights_hash: str, condition: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT preprocess FROM conditions WHERE weights_hash = ? AND condition = ?", (weights_hash, condition)
        ).fetchone()
        return json.loads(row[0]) if row else None

    def put_failure(self, protocol_hash: str, name: str, condition: str, reason: str) -> None:
        with self.write() as c:
            c.execute(
                "INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?, ?)",
                (protocol_hash, name, condition, reason, time.time()),
            )

    def clear_failure(self, protocol_hash: str, name: str, condition: str) -> None:
        with self.write() as c:
            c.execute(
                "DELETE FROM failures WHERE protocol_hash = ? AND name = ? AND condition = ?",
                (protocol_hash, name, condition),
            )

    def failures(self, protocol_hash: str) -> list[tuple[str, str, str]]:
        return self.conn.execute(
            "SELECT name, condition, reason FROM failures WHERE protocol_hash = ? ORDER BY name, condition",
            (protocol_hash,),
        ).fetchall()

    # -- the test set's audit --------------------------------------------------------
    def put_audit(self, protocol_hash: str, samples_sha256: str, audit: dict[str, Any]) -> None:
        """Store the audit summary (JSON-able) of a protocol's test set, replacing an older one."""
        with self.write() as c:
            c.execute("INSERT OR REPLACE INTO audits VALUES (?, ?, ?, ?)",
                      (protocol_hash, samples_sha256, json.dumps(audit, sort_keys=True), time.time()))

    def audit(self, protocol_hash: str, samples_sha256: str | None = None) -> dict[str, Any] | None:
        """The stored audit of a protocol's test set (only if it was computed on ``samples_sha256``, when given)."""
        row = self.conn.execute("SELECT samples_sha256, audit FROM audits WHERE protocol_hash = ?",
                                (protocol_hash,)).fetchone()
        if row is None or (samples_sha256 is not None and row[0] != samples_sha256):
            return None
        return json.loads(row[1])

    # -- scores ------------------------------------------------------------------------
    def put_scores(self, rows: Sequence[ScoreRow]) -> int:
        """Insert one batch in one transaction; rows already stored are left as they are."""
        now = time.time()
        with self.write() as c:
            before = c.total_changes
            c.executemany(
                "INSERT OR IGNORE INTO scores VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (r.image_hash, r.weights_hash, r.condition, r.score, r.logit, r.error, r.label, r.subset,
                     r.path, r.protocol_hash, now)
                    for r in rows
                ],
            )
            return c.total_changes - before

    def done(self, weights_hash: str, condition: str) -> set[str]:
        """Image hashes already stored (scored or failed to decode) for a detector and condition."""
        rows = self.conn.execute(
            "SELECT image_hash FROM scores WHERE weights_hash = ? AND condition = ?", (weights_hash, condition)
        )
        return {r[0] for r in rows}

    def scores_for(self, protocol_hash: str, weights_hash: str, condition: str,
                   role: str = "test") -> list[tuple[str, int, float, str]]:
        """``(subset, label, score, row protocol hash)`` of a protocol's samples that have a score."""
        return self.conn.execute(
            """SELECT s.subset, s.label, sc.score, sc.protocol_hash
               FROM samples s JOIN scores sc ON sc.image_hash = s.image_hash
               WHERE s.protocol_hash = ? AND s.role = ? AND sc.weights_hash = ? AND sc.condition = ?
                     AND sc.score IS NOT NULL AND s.label IS NOT NULL
               ORDER BY s.path""",
            (protocol_hash, role, weights_hash, condition),
        ).fetchall()

    def errors_for(self, protocol_hash: str, weights_hash: str, condition: str) -> list[tuple[str, str]]:
        """``(path, error)`` of the protocol's images that could not be scored."""
        return self.conn.execute(
            """SELECT s.path, sc.error FROM samples s JOIN scores sc ON sc.image_hash = s.image_hash
               WHERE s.protocol_hash = ? AND sc.weights_hash = ? AND sc.condition = ? AND sc.score IS NULL
               ORDER BY s.path""",
            (protocol_hash, weights_hash, condition),
        ).fetchall()

    def all_scores(self) -> list[tuple]:
        """Every score row as ``(image_hash, weights_hash, condition, score, logit, error)``, sorted."""
        return self.conn.execute(
            "SELECT image_hash, weights_hash, condition, score, logit, error FROM scores "
            "ORDER BY image_hash, weights_hash, condition"
        ).fetchall()

    # -- file hash cache -----------------------------------------------------------------
    def hash_files(self, paths: Sequence[Path]) -> list[str]:
        """Content hashes of ``paths``, reusing cached ones whose size and mtime are unchanged."""
        cached = {
            p: (s, m, h) for p, s, m, h in self.conn.execute("SELECT path, size, mtime_ns, sha256 FROM file_hashes")
        }
        out, fresh = [], []
        for path in paths:
            key = str(Path(path).resolve())
            st = os.stat(path)
            hit = cached.get(key)
            if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
                out.append(hit[2])
                continue
            digest = file_sha256(path)
            out.append(digest)
            fresh.append((key, st.st_size, st.st_mtime_ns, digest))
        if fresh:
            with self.write() as c:
                c.executemany("INSERT OR REPLACE INTO file_hashes VALUES (?, ?, ?, ?)", fresh)
        return out
