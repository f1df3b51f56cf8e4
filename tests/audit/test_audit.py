"""The audit end to end: each built shortcut is found, a clean split is clean, broken files are skipped."""

from __future__ import annotations

import builtins
import json

import numpy as np
import pytest
from audit_data import build, picture, write

from aigi.audit import ALL, MODEL, audit
from aigi.audit.neutralize import neutralize
from aigi.data.layouts import load_samples


def _row(res, subset, attribute):
    return next(r for r in res.separations[subset] if r.attribute == attribute)


@pytest.mark.parametrize("kind, attributes", [
    ("format", ["format", "jpeg_quality", "jpeg_tables", "subsampling"]),
    ("size", ["width", "height", "pixels", "size_multiple"]),
    ("exif", ["exif", "camera_make"]),
])
def test_each_built_shortcut_is_found(tmp_path, kind, attributes):
    res = audit(build(tmp_path, kind), bootstrap=100)
    (subset,) = res.separations
    assert res.verdicts[subset] == "shortcut"
    for a in attributes:
        assert _row(res, subset, a).auroc > 0.9, (a, _row(res, subset, a))
    assert _row(res, subset, MODEL).auroc > 0.9


def test_a_clean_split_is_called_clean(tmp_path):
    res = audit(build(tmp_path, "clean"), bootstrap=100)
    (subset,) = res.separations
    assert res.verdicts[subset] == "clean", [(r.attribute, r.auroc, r.low) for r in res.separations[subset][:3]]
    assert _row(res, subset, "format").auroc < 0.75


def test_subsets_are_judged_apart_and_pooled(tmp_path):
    build(tmp_path, "format")
    build(tmp_path, "clean", seed=1)
    res = audit(tmp_path, bootstrap=50)
    # pooled, half the files carry the shortcut: the format still gives away about half the pairs
    assert res.verdicts == {"clean": "clean", "format": "shortcut", ALL: "suspicious"}
    assert 0.7 < _row(res, ALL, "format").auroc < 0.85
    s = res.summary()
    assert s["subsets"]["format"]["n_real"] == 24 and s["n_files"] == 96
    json.dumps(s)  # JSON-able as stored by the benchmark


def test_broken_files_are_reported_and_skipped(tmp_path):
    root = build(tmp_path, "format", n=10)
    (root / "0_real" / "empty.png").write_bytes(b"")
    (root / "1_fake" / "text.png").write_text("not an image")
    res = audit(root, bootstrap=20)
    assert len(res.paths) == 20 and sorted(p.split("/")[-1] for p, _ in res.errors) == ["empty.png", "text.png"]
    assert {r.split(":")[0] for _, r in res.errors} == {"empty", "not_an_image"}


def test_samples_paths_and_tabular_access(tmp_path, monkeypatch):
    root = build(tmp_path, "size", n=8)
    samples = load_samples(root)
    seen: list[tuple[int, int]] = []
    res = audit(samples, bootstrap=20, progress=lambda d, n: seen.append((d, n)), pixels=True)
    assert seen[-1] == (16, 16) and len(seen) == 16
    rows = res.rows()
    assert len(rows) == 16 and rows[0]["label"] == 0 and "blockiness" in rows[0] and "format" in rows[0]
    assert {r["attribute"] for r in res.separation_rows()} >= {"width", MODEL}
    unlabelled = audit([s.path for s in samples], bootstrap=0)
    assert len(unlabelled.paths) == 16 and unlabelled.separations == {}
    real_import = builtins.__import__

    def no_pandas(name, *args, **kwargs):
        if name == "pandas":
            raise ImportError("no pandas here")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pandas)
    with pytest.raises(ImportError, match="needs pandas"):
        res.to_frame()
    with pytest.raises(TypeError, match="Samples / paths"):
        audit([1, 2])


def test_neutralize_removes_the_file_shortcuts(tmp_path):
    root = build(tmp_path / "in", "format", n=12)
    write(root / "1_fake" / "wide.png", picture(np.random.default_rng(0), 90, 40), "PNG")
    (root / "0_real" / "broken.jpg").write_bytes(b"\xff\xd8\xff broken")
    out = neutralize(root, tmp_path / "out", size=32, quality=90)
    assert out.written == 25 and [p.split("/")[-1] for p, _ in out.errors] == ["broken.jpg"]
    manifest = json.loads(out.manifest.read_text())
    assert manifest["settings"] == {"format": "jpeg", "quality": 90, "size": 32} and len(manifest["files"]) == 25
    res = audit(tmp_path / "out", bootstrap=50)
    (subset,) = res.separations
    assert res.verdicts[subset] == "clean"
    for a in ("format", "jpeg_quality", "width", "exif"):
        assert _row(res, subset, a).auroc == 0.5
    assert {r["format"] for r in res.rows()} == {"JPEG"} and {r["width"] for r in res.rows()} == {32.0}
    with pytest.raises(FileExistsError, match="not an empty folder"):
        neutralize(root, tmp_path / "out")
    lossless = neutralize(root, tmp_path / "png", fmt="png", size=24)
    kinds = audit(tmp_path / "png", bootstrap=0).rows()
    assert lossless.written == 25 and {(r["format"], r["width"], r["exif"]) for r in kinds} == {("PNG", 24.0, "no")}
    with pytest.raises(ValueError, match="format must be"):
        neutralize(root, tmp_path / "x", fmt="gif")


def test_dif6gen_format_is_a_shortcut_in_every_subset_and_neutralize_removes_it(dif6gen, tmp_path):
    res = audit(dif6gen, bootstrap=20)
    assert len(res.separations) == 7  # six generators and the pooled set
    rows = res.rows()
    for subset in res.separations:
        mine = [r for r in rows if subset == ALL or r["subset"] == subset]
        assert {r["format"] for r in mine if r["label"] == 1} == {"PNG"}
        jpeg_reals = np.mean([r["format"] == "JPEG" for r in mine if r["label"] == 0])
        fmt = _row(res, subset, "format")
        # every fake is a PNG; the reals are JPEGs (named .png) except one true PNG in mj and one in sd14
        assert fmt.auroc == pytest.approx(0.5 + 0.5 * jpeg_reals) and fmt.auroc >= 0.95, subset
        assert fmt.level(res.thresholds) == "shortcut" and res.verdicts[subset] == "shortcut", subset
    assert sum(_row(res, s, "format").auroc == 1.0 for s in res.separations) == 4
    neutralize(dif6gen, tmp_path / "n", size=32)
    after = audit(tmp_path / "n", bootstrap=0)
    for subset in after.separations:
        assert _row(after, subset, "format").auroc == 0.5, subset


def test_aigi_audit_is_the_function_even_after_the_cli_module_loads(tmp_path):
    import importlib
    import sys

    import aigi

    importlib.import_module("aigi.audit.cli")
    importlib.import_module("aigi.audit.report")
    assert aigi.audit is sys.modules["aigi.audit.core"].audit
    res = aigi.audit(build(tmp_path, "exif", n=8), bootstrap=0)
    assert res.verdicts == {"exif": "shortcut"}


def test_a_subset_called_all_keeps_its_own_rows(tmp_path):
    build(tmp_path, "clean", n=8)
    (tmp_path / "clean").rename(tmp_path / "all")
    build(tmp_path, "format", n=8, seed=2)
    res = audit(tmp_path, bootstrap=0)
    assert set(res.verdicts) == {"all", "format", "all (pooled)"}
    counts = {k: (v["n_real"], v["n_fake"]) for k, v in res.summary()["subsets"].items()}
    assert counts == {"all": (8, 8), "format": (8, 8), "all (pooled)": (16, 16)}
