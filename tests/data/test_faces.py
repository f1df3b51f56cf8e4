"""Face crops: the FaceForensics++ box rule, manifest boxes, and the crop before preprocessing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aigi.data.dataset import ImageDataset, collate
from aigi.data.faces import crop_face, face_square
from aigi.data.layouts import LayoutError, load_samples
from aigi.data.transforms import PreprocessConfig, build_transform

FACE = (20, 10, 36, 26)  # x0, y0, x1, y1 of the bright square "face" (16 x 16)


def face_image(w: int = 64, h: int = 48, box: tuple[int, int, int, int] = FACE) -> Image.Image:
    arr = np.full((h, w, 3), 10, dtype=np.uint8)
    x0, y0, x1, y1 = box
    arr[y0:y1, x0:x1] = 250
    return Image.fromarray(arr)


def test_square_rule_of_faceforensics():
    # w 20, h 40 -> side int(40 * 1.3) = 52, centre (20, 40); the corner is clamped at 0 on the left
    assert face_square((10, 20, 30, 60), 100, 100) == (0, 14, 52)
    # near the bottom-right border the side shrinks so the square fits (never padded)
    assert face_square((80, 80, 98, 98), 100, 100) == (78, 78, 22)  # side 23 asked, 22 fit
    assert face_square((10, 10, 20, 20), 100, 100, scale=2.0) == (5, 5, 20)
    with pytest.raises(ValueError, match="x0 < x1"):
        face_square((30, 10, 20, 20), 100, 100)
    with pytest.raises(ValueError, match="outside the 100 x 100 image"):
        face_square((120, 10, 130, 20), 100, 100)
    with pytest.raises(ValueError, match="4 numbers"):
        face_square(("a", 1, 2, 3), 100, 100)


def test_crop_of_a_bright_square_face():
    img = face_image()
    tight = np.asarray(crop_face(img, FACE, scale=1.0))
    assert tight.shape == (16, 16, 3) and (tight == 250).all()
    wide = np.asarray(crop_face(img, FACE))  # 1.3: side 20, corner (18, 8): a 2-pixel dark border
    assert wide.shape == (20, 20, 3)
    assert (wide[2:18, 2:18] == 250).all()
    assert (wide[:2] == 10).all() and (wide[:, :2] == 10).all() and (wide[18:] == 10).all()


def write_manifest(root: Path, rows: list[str], header: str = "path,label,x0,y0,x1,y1") -> Path:
    (root / "m.csv").write_text("\n".join([header, *rows]) + "\n")
    return root / "m.csv"


def test_manifest_boxes_are_read_and_checked(tmp_path):
    face_image().save(tmp_path / "a.png")
    face_image().save(tmp_path / "b.png")
    m = write_manifest(tmp_path, ["a.png,1,20,10,36,26", "b.png,0,,,,"])
    a, b = load_samples(m, "manifest")
    assert a.box == (20.0, 10.0, 36.0, 26.0) and b.box is None
    with pytest.raises(LayoutError, match=r"line 2: a face box needs all of x0, y0, x1, y1"):
        load_samples(write_manifest(tmp_path, ["a.png,1,20,10,,26"]), "manifest")
    with pytest.raises(LayoutError, match=r"line 2: .*x0 < x1"):
        load_samples(write_manifest(tmp_path, ["a.png,1,36,10,20,26"]), "manifest")
    plain = load_samples(write_manifest(tmp_path, ["a.png,1"], header="path,label"), "manifest")
    assert plain[0].box is None


def test_dataset_crops_the_face_before_the_detectors_preprocessing(tmp_path):
    face_image().save(tmp_path / "face.png")
    face_image().save(tmp_path / "whole.png")
    face_image().save(tmp_path / "bad.png")
    m = write_manifest(tmp_path, ["face.png,1,20,10,36,26", "whole.png,0,,,,", "bad.png,1,200,10,210,26"])
    samples = load_samples(m, "manifest")
    pre = PreprocessConfig(size=8, test="resize", normalize="none", face_scale=1.0)
    ds = ImageDataset(samples, build_transform(pre, train=False))
    batch = collate([ds[i] for i in range(3)])
    face, whole = batch["pixels"]
    assert torch.allclose(face, torch.full_like(face, 250 / 255))  # only the face, resized to 8 x 8
    assert whole.mean() < 0.5  # mostly the dark background
    assert [i for i, _ in batch["errors"]] == [2] and "outside" in batch["errors"][0][1]
    # the margin comes from the detector's preprocessing config
    wide = ImageDataset(samples[:1], build_transform(pre.model_copy(update={"face_scale": 2.0}), train=False))[0]
    assert wide["pixels"].min() < 0.1 and wide["pixels"].max() > 0.9  # face plus background


def test_benchmark_degradations_keep_the_detectors_face_scale(tmp_path):
    from aigi.benchmark.run import _DegradeThen

    face_image().save(tmp_path / "face.png")
    samples = load_samples(write_manifest(tmp_path, ["face.png,1,20,10,36,26"]), "manifest")
    pre = PreprocessConfig(size=8, test="resize", normalize="none", face_scale=1.0)
    wrapped = _DegradeThen(None, build_transform(pre, train=False))
    assert wrapped.pre is pre
    face = ImageDataset(samples, wrapped)[0]["pixels"]
    assert torch.allclose(face, torch.full_like(face, 250 / 255))  # scale 1.0, not the default 1.3
