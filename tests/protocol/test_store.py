"""The SQLite results store: keys, idempotent inserts, hashes, and two processes writing at once."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from aigi.benchmark.store import ResultStore, ScoreRow, file_sha256, weights_sha256


def _rows(prefix: str, n: int, weights: str = "w1", condition: str = "clean") -> list[ScoreRow]:
    return [ScoreRow(f"{prefix}{i:05d}", weights, condition, i / n, float(i), None, i % 2, "s", f"/x/{i}.png", "p")
            for i in range(n)]


def test_put_is_idempotent_and_keyed(tmp_path):
    with ResultStore(tmp_path) as store:
        assert store.path == tmp_path / "results.sqlite"
        assert store.put_scores(_rows("a", 10)) == 10
        # the same keys again are ignored: the first score stays
        changed = [ScoreRow(r.image_hash, r.weights_hash, r.condition, 0.5) for r in _rows("a", 10)]
        assert store.put_scores(changed) == 0
        assert store.put_scores(_rows("a", 10, condition="jpeg:75")) == 10  # another condition
        assert store.put_scores(_rows("a", 10, weights="w2")) == 10  # another detector
        assert len(store.all_scores()) == 30
        assert store.done("w1", "clean") == {f"a{i:05d}" for i in range(10)}
        assert store.done("w1", "blur:2") == set()
        first = [r for r in store.all_scores() if r[1] == "w1" and r[2] == "clean"]
        assert [r[3] for r in first] == [i / 10 for i in range(10)]
    # WAL mode is persistent and the file reopens with its data
    with ResultStore(tmp_path / "results.sqlite") as store:
        assert len(store.all_scores()) == 30
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_failed_transaction_is_rolled_back(tmp_path):
    with ResultStore(tmp_path) as store:
        with pytest.raises(RuntimeError):
            with store.write() as c:
                c.execute("INSERT INTO scores (image_hash, weights_hash, condition, created) VALUES ('x','w','c',0)")
                raise RuntimeError("boom")
        assert len(store.all_scores()) == 0


def test_samples_join_keeps_duplicates_across_subsets(tmp_path):
    with ResultStore(tmp_path) as store:
        # the same picture in two subsets is scored once and counted in both
        store.put_samples("P", "test", [("/a/1.png", "h1", 1, "gan"), ("/b/1.png", "h1", 1, "ldm"),
                                        ("/b/2.png", "h2", 0, "ldm")])
        store.put_scores([ScoreRow("h1", "w", "clean", 0.9), ScoreRow("h2", "w", "clean", None, error="truncated")])
        assert sorted(store.scores_for("P", "w", "clean")) == [("gan", 1, 0.9, None), ("ldm", 1, 0.9, None)]
        assert store.errors_for("P", "w", "clean") == [("/b/2.png", "truncated")]
        # re-recording the sample list replaces it
        store.put_samples("P", "test", [("/a/1.png", "h1", 1, "gan")])
        assert len(store.samples("P")) == 1


def test_hashes(tmp_path):
    f = tmp_path / "img.bin"
    f.write_bytes(b"abc")
    assert file_sha256(f) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    model = tmp_path / "m"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")
    (model / "config.json").write_text("{}")
    h1 = weights_sha256(model)
    (model / "config.json").write_text('{"threshold": 0.3}')
    assert weights_sha256(model) != h1, "the config is part of the detector's identity"
    with pytest.raises(FileNotFoundError, match="model.safetensors not found"):
        weights_sha256(tmp_path)
    with ResultStore(tmp_path / "s") as store:
        assert store.hash_files([f]) == [file_sha256(f)]
        # cached by (path, size, mtime): an edited file is hashed again
        f.write_bytes(b"abcd")
        assert store.hash_files([f]) == [file_sha256(f)]


_WRITER = textwrap.dedent(
    """
    import importlib.util, sys, time
    from pathlib import Path
    # load store.py alone (it needs only the standard library), not the whole package with torch
    spec = importlib.util.spec_from_file_location("aigi_store", sys.argv[3])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["aigi_store"] = mod
    spec.loader.exec_module(mod)
    ResultStore, ScoreRow = mod.ResultStore, mod.ScoreRow
    folder, tag = Path(sys.argv[1]), sys.argv[2]
    store = ResultStore(folder / "results.sqlite", timeout=30)
    (folder / f"ready-{tag}").touch()
    while not (folder / "go").exists():
        time.sleep(0.01)
    for b in range(40):
        # each writer has its own images plus a block shared with the other writer
        rows = [ScoreRow(f"{tag}-{b}-{i}", "w", "clean", 0.5) for i in range(20)]
        rows += [ScoreRow(f"shared-{b}-{i}", "w", "clean", 0.25) for i in range(5)]
        store.put_scores(rows)
        time.sleep(0.002)  # let the other writer in between batches
    store.close()
    print("ok")
    """
)


def test_two_processes_write_at_once(tmp_path):
    import aigi.benchmark.store as store_module

    ResultStore(tmp_path).close()  # create the schema first, as `aigi bench` does
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path), tag, store_module.__file__],
                              stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for tag in ("A", "B")]
    deadline = time.time() + 120
    while not all((tmp_path / f"ready-{t}").exists() for t in "AB"):
        assert time.time() < deadline, "writers did not start"
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.05)
    (tmp_path / "go").touch()
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert out.strip() == "ok"
    conn = sqlite3.connect(tmp_path / "results.sqlite")
    n, distinct = conn.execute("SELECT COUNT(*), COUNT(DISTINCT image_hash) FROM scores").fetchone()
    assert n == distinct == 2 * 40 * 20 + 40 * 5
    assert conn.execute("SELECT COUNT(*) FROM scores WHERE image_hash LIKE 'shared-%'").fetchone()[0] == 200
