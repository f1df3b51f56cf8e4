"""Folder layouts, manifests and auto-detection on tiny trees."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aigi.data.io import decode_image
from aigi.data.layouts import (
    LAYOUTS,
    LayoutError,
    Sample,
    detect_layout,
    load_samples,
    subsets_of,
)


def _touch(root: Path, *rels: str) -> None:
    for rel in rels:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")


def _rel(samples: list[Sample], root: Path) -> list[tuple[str, int | None, str]]:
    return [(s.path.relative_to(root).as_posix(), s.label, s.subset) for s in samples]


def test_layout_names():
    assert LAYOUTS == ("subsets", "progan", "genimage", "manifest")


def test_sample_is_frozen():
    s = Sample(Path("a.png"), 1, "x")
    assert (s.generator, s.family, s.caption) == (None, None, None)
    with pytest.raises(AttributeError):
        s.label = 0  # type: ignore[misc]


def test_subsets_layout(tmp_path):
    _touch(
        tmp_path,
        "sd14/1_fake/b.png",
        "sd14/1_fake/a.jpg",
        "sd14/0_real/r.png",
        "sd14/0_real/.hidden.png",
        "sd14/0_real/.cache/x.png",
        "sd14/0_real/nested/deep.webp",
        "progan/car/0_real/c.png",
        "progan/car/1_fake/d.png",
        "README.md",
    )
    assert detect_layout(tmp_path) == "subsets"
    samples = load_samples(tmp_path)
    assert _rel(samples, tmp_path) == [
        ("progan/car/0_real/c.png", 0, "progan"),
        ("progan/car/1_fake/d.png", 1, "progan"),
        ("sd14/0_real/nested/deep.webp", 0, "sd14"),
        ("sd14/0_real/r.png", 0, "sd14"),
        ("sd14/1_fake/a.jpg", 1, "sd14"),
        ("sd14/1_fake/b.png", 1, "sd14"),
    ]
    assert subsets_of(samples) == ["progan", "sd14"]
    assert load_samples(tmp_path, "subsets") == samples  # deterministic


def test_subsets_directly_under_root(tmp_path):
    root = tmp_path / "mygen"
    _touch(root, "0_real/a.png", "1_fake/b.png")
    samples = load_samples(root)
    assert {s.subset for s in samples} == {"mygen"}
    assert [s.label for s in samples] == [0, 1]


def test_progan_layout(tmp_path):
    _touch(tmp_path, "train/car/0_real/a.png", "train/car/1_fake/b.png", "train/cat/1_fake/c.png")
    assert detect_layout(tmp_path) == "subsets"  # structurally the same; progan is explicit
    assert {s.subset for s in load_samples(tmp_path)} == {"train"}
    samples = load_samples(tmp_path, "progan")
    assert _rel(samples, tmp_path) == [
        ("train/car/0_real/a.png", 0, "car"),
        ("train/car/1_fake/b.png", 1, "car"),
        ("train/cat/1_fake/c.png", 1, "cat"),
    ]
    assert subsets_of(load_samples(tmp_path / "train", "progan")) == ["car", "cat"]


def test_split_selects_subfolder_for_subsets(tmp_path):
    _touch(tmp_path, "train/car/0_real/a.png", "val/car/0_real/b.png", "val/dog/1_fake/c.png")
    samples = load_samples(tmp_path, "progan", split="val")
    assert _rel(samples, tmp_path) == [
        ("val/car/0_real/b.png", 0, "car"),
        ("val/dog/1_fake/c.png", 1, "dog"),
    ]
    with pytest.raises(LayoutError, match="test"):
        load_samples(tmp_path, "subsets", split="test")


def test_genimage_layout_with_intermediate_dir(tmp_path):
    _touch(
        tmp_path,
        "sdv4/imagenet_ai_0419_sdv4/train/ai/t1.png",
        "sdv4/imagenet_ai_0419_sdv4/val/ai/v1.png",
        "sdv4/imagenet_ai_0419_sdv4/val/nature/n1.JPEG",
        "midjourney/val/ai/m.png",
        "midjourney/val/nature/n.JPEG",
        "midjourney/train/nature/tn.JPEG",
    )
    assert detect_layout(tmp_path) == "genimage"
    val = load_samples(tmp_path)  # default split: val
    assert _rel(val, tmp_path) == [
        ("midjourney/val/ai/m.png", 1, "midjourney"),
        ("midjourney/val/nature/n.JPEG", 0, "midjourney"),
        ("sdv4/imagenet_ai_0419_sdv4/val/ai/v1.png", 1, "sdv4"),
        ("sdv4/imagenet_ai_0419_sdv4/val/nature/n1.JPEG", 0, "sdv4"),
    ]
    assert {s.generator for s in val} == {"midjourney", "sdv4"}
    assert all(s.generator == s.subset for s in val)
    train = load_samples(tmp_path, "genimage", split="train")
    assert _rel(train, tmp_path) == [
        ("midjourney/train/nature/tn.JPEG", 0, "midjourney"),
        ("sdv4/imagenet_ai_0419_sdv4/train/ai/t1.png", 1, "sdv4"),
    ]
    with pytest.raises(LayoutError, match="train' or 'val"):
        load_samples(tmp_path, "genimage", split="test")


def test_genimage_single_generator_root(tmp_path):
    root = tmp_path / "wukong"
    _touch(root, "val/ai/a.png", "val/nature/b.png")
    samples = load_samples(root, "genimage")
    assert [(s.subset, s.label) for s in samples] == [("wukong", 1), ("wukong", 0)]


def test_manifest_csv(tmp_path):
    _touch(tmp_path, "imgs/a.png", "imgs/b.png")
    manifest = tmp_path / "list.csv"
    abs_path = (tmp_path / "imgs" / "b.png").resolve()
    manifest.write_text(
        "path,label,generator,caption,source\n"
        "imgs/a.png,real,,\"a cat, sitting\",coco\n"
        f"{abs_path},1,sd14,a dog,gen\n"
        "imgs/c.png,FAKE,mj,,gen\n"
        "imgs/d.png,,,,\n",
        encoding="utf-8",
    )
    assert detect_layout(manifest) == "manifest"
    samples = load_samples(manifest)
    assert [s.path for s in samples] == [
        tmp_path / "imgs/a.png",
        abs_path,
        tmp_path / "imgs/c.png",
        tmp_path / "imgs/d.png",
    ]
    assert [s.label for s in samples] == [0, 1, 1, None]
    assert [s.subset for s in samples] == ["all", "sd14", "mj", "all"]
    assert [s.caption for s in samples] == ["a cat, sitting", "a dog", None, None]
    assert samples[1].generator == "sd14"


def test_manifest_jsonl(tmp_path):
    manifest = tmp_path / "sub" / "m.jsonl"
    manifest.parent.mkdir()
    rows = [
        {"path": "x/a.png", "label": 0, "caption": "a photo", "subset": "coco"},
        {"path": "x/b.png", "label": "fake", "generator": "dalle", "family": "diffusion"},
    ]
    manifest.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    samples = load_samples(manifest)
    assert [s.path for s in samples] == [manifest.parent / "x/a.png", manifest.parent / "x/b.png"]
    assert [(s.label, s.subset, s.family, s.caption) for s in samples] == [
        (0, "coco", None, "a photo"),
        (1, "dalle", "diffusion", None),
    ]


def test_manifest_bad_label_names_line(tmp_path):
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("path,label\na.png,0\nb.png,maybe\n", encoding="utf-8")
    with pytest.raises(LayoutError, match=r"line 3.*maybe"):
        load_samples(csv_path)
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text('{"path": "a.png", "label": 1}\n{"path": "b.png", "label": 2}\n')
    with pytest.raises(LayoutError, match=r"line 2.*label"):
        load_samples(jsonl)
    jsonl.write_text('{"path": "a.png", "label": 1}\n{not json}\n')
    with pytest.raises(LayoutError, match=r"line 2.*invalid JSON"):
        load_samples(jsonl)


def test_manifest_missing_column_lists_found(tmp_path):
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("file,label,generator\na.png,0,x\n", encoding="utf-8")
    with pytest.raises(LayoutError, match=r"path.*found columns: file, label, generator"):
        load_samples(csv_path)
    jsonl = tmp_path / "m.jsonl"
    jsonl.write_text('{"path": "a.png"}\n')
    with pytest.raises(LayoutError, match=r"line 1.*label.*found columns: path"):
        load_samples(jsonl)


def test_manifest_bad_rows(tmp_path):
    csv_path = tmp_path / "m.csv"
    csv_path.write_text("path,label\na.png,0,extra\n", encoding="utf-8")
    with pytest.raises(LayoutError, match=r"line 2.*fields"):
        load_samples(csv_path)
    csv_path.write_text("path,label\n,1\n", encoding="utf-8")
    with pytest.raises(LayoutError, match=r"line 2.*empty path"):
        load_samples(csv_path)
    csv_path.write_text("path,label\n", encoding="utf-8")
    with pytest.raises(LayoutError, match="no images"):
        load_samples(csv_path)
    with pytest.raises(LayoutError, match="split"):
        load_samples(csv_path, split="val")


def test_undetectable_folder_is_explained(tmp_path):
    _touch(tmp_path, "cats/a.png", "dogs/b.png", "notes.txt")
    with pytest.raises(LayoutError) as info:
        detect_layout(tmp_path)
    msg = str(info.value)
    assert "0_real" in msg and "ai,nature" in msg and ".csv" in msg
    assert "cats/" in msg and "notes.txt" in msg
    with pytest.raises(LayoutError):
        load_samples(tmp_path)
    with pytest.raises(LayoutError, match="does not exist"):
        detect_layout(tmp_path / "nope")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(LayoutError, match=".csv or .jsonl"):
        detect_layout(tmp_path / "x.txt")


def test_empty_layout_raises(tmp_path):
    (tmp_path / "gen" / "0_real").mkdir(parents=True)
    (tmp_path / "gen" / "1_fake").mkdir(parents=True)
    with pytest.raises(LayoutError, match="no images"):
        load_samples(tmp_path)
    with pytest.raises(LayoutError, match="unknown layout"):
        load_samples(tmp_path, "folders")


def test_shared_dif_6gen(shared_data):
    root = shared_data / "dif-6gen"
    if not root.is_dir():
        pytest.skip("shared/data/dif-6gen is not available")
    samples = load_samples(root)
    subsets = subsets_of(samples)
    assert len(subsets) == 6
    assert len(samples) == 120
    for name in subsets:
        group = [s for s in samples if s.subset == name]
        assert len(group) == 20
        assert sum(s.label == 1 for s in group) == 10
    jpeg_named_png = 0
    for s in samples:
        img = decode_image(s.path)
        assert img.mode == "RGB" and min(img.size) > 0
        if s.path.suffix.lower() == ".png" and s.path.read_bytes()[:3] == b"\xff\xd8\xff":
            jpeg_named_png += 1
    assert jpeg_named_png > 0  # the reals are JPEGs with a .png name
