"""ImageDataset and collate: error items, per-sample seeding, captions, batch format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from aigi.data.dataset import ImageDataset, collate
from aigi.data.layouts import Sample, load_samples
from aigi.data.transforms import AugmentConfig, PreprocessConfig, build_transform


def _tree(root: Path, make_rgb) -> Path:
    """gen/{0_real,1_fake} with two good images each and one broken file."""
    for i, (folder, fmt) in enumerate([("0_real", "JPEG"), ("0_real", "PNG"), ("1_fake", "PNG"), ("1_fake", "WEBP")]):
        path = root / "gen" / folder / f"img{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        make_rgb(40 + i, 50, seed=i).save(path, format=fmt)
    (root / "gen" / "1_fake" / "broken.png").write_bytes(b"not an image at all")
    return root


def _test_tf(size: int = 32):
    return build_transform(PreprocessConfig(size=size), train=False)


def test_broken_file_gives_one_error(tmp_path, make_rgb):
    samples = load_samples(_tree(tmp_path, make_rgb))
    ds = ImageDataset(samples, _test_tf())
    assert len(ds) == 5
    items = [ds[i] for i in range(len(ds))]
    errors = [it for it in items if "error" in it]
    assert len(errors) == 1
    bad = errors[0]
    assert samples[bad["index"]].path.name == "broken.png"
    assert "broken.png" in bad["error"] and "not_an_image" in bad["error"]
    good = [it for it in items if "error" not in it]
    assert all(it["pixels"].shape == (3, 32, 32) for it in good)
    assert sorted(float(it["label"]) for it in good) == [0.0, 0.0, 1.0, 1.0]

    batch = collate(items)
    assert batch["pixels"].shape == (4, 3, 32, 32)
    assert batch["label"].dtype == torch.float32 and batch["label"].shape == (4,)
    assert batch["index"].dtype == torch.long
    assert batch["index"].tolist() == [it["index"] for it in good]
    assert batch["errors"] == [(bad["index"], bad["error"])]
    assert "caption" not in batch


def test_dataloader_with_workers(tmp_path, make_rgb):
    samples = load_samples(_tree(tmp_path, make_rgb))
    ds = ImageDataset(samples, _test_tf())
    loader = DataLoader(ds, batch_size=2, collate_fn=collate, num_workers=2)
    batches = list(loader)
    assert sum(b["index"].numel() for b in batches) == 4
    assert sum(len(b["errors"]) for b in batches) == 1


def test_all_failed_batch(tmp_path):
    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    paths[0].write_bytes(b"")
    ds = ImageDataset([Sample(p, 1, "x") for p in paths], _test_tf())
    batch = collate([ds[0], ds[1]])
    assert "pixels" not in batch
    assert batch["index"].numel() == 0 and batch["index"].dtype == torch.long
    assert batch["label"].shape == (0,)
    assert [i for i, _ in batch["errors"]] == [0, 1]
    assert "empty" in batch["errors"][0][1] and "unreadable" in batch["errors"][1][1]


def test_per_sample_seeding(tmp_path, make_rgb):
    samples = load_samples(_tree(tmp_path, make_rgb))
    tf = build_transform(
        PreprocessConfig(size=24), train=True, augment=AugmentConfig(blur_jpeg_prob=0.5)
    )
    ds = ImageDataset(samples, tf, seed=3)
    a = ds[0]["pixels"]
    _ = ds[2]  # fetching other items does not disturb item 0's stream
    assert torch.equal(a, ds[0]["pixels"])
    assert torch.equal(a, ImageDataset(samples, tf, seed=3)[0]["pixels"])
    other_seeds = [ImageDataset(samples, tf, seed=s)[0]["pixels"] for s in range(4, 12)]
    assert any(not torch.equal(a, o) for o in other_seeds)
    epochs = []
    for e in range(8):
        ds.set_epoch(e)
        epochs.append(ds[0]["pixels"])
    assert torch.equal(epochs[0], a)
    assert any(not torch.equal(a, o) for o in epochs[1:])
    # same values as the documented rng
    img_rng = np.random.default_rng([3, 0, 0])
    from aigi.data.io import decode_image

    assert torch.equal(a, tf(decode_image(samples[0].path), img_rng))


def test_unknown_label_and_captions(tmp_path, make_rgb):
    paths = []
    for i in range(3):
        p = tmp_path / f"{i}.png"
        make_rgb(seed=i).save(p)
        paths.append(p)
    samples = [
        Sample(paths[0], None, "x", caption="a cat"),
        Sample(paths[1], 1, "x"),
        Sample(paths[2], 0, "x", caption="a dog"),
    ]
    ds = ImageDataset(samples, _test_tf())
    batch = collate([ds[i] for i in range(3)])
    assert batch["label"].tolist() == [-1.0, 1.0, 0.0]
    assert batch["caption"] == ["a cat", None, "a dog"]


def test_mixed_sizes_explain_batch_size(tmp_path, make_rgb):
    paths = []
    for i, hw in enumerate([(20, 30), (22, 30)]):
        p = tmp_path / f"{i}.png"
        make_rgb(*hw).save(p)
        paths.append(p)
    tf = build_transform(PreprocessConfig(test="none"), train=False)
    ds = ImageDataset([Sample(p, 0, "x") for p in paths], tf)
    with pytest.raises(ValueError, match="batch_size=1"):
        collate([ds[0], ds[1]])


def test_max_pixels_passed_through(tmp_path, make_rgb):
    p = tmp_path / "a.png"
    make_rgb(100, 100).save(p)
    ds = ImageDataset([Sample(p, 0, "x")], _test_tf(), max_pixels=500)
    assert "too_large" in ds[0]["error"]
    assert ds[-1]["index"] == 0
    with pytest.raises(IndexError):
        ds[1]
