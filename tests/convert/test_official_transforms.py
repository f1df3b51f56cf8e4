"""On real images, each preset gives the tensor the official codebase's test transform gives.

The official transforms are rewritten here from the released code with Pillow and numpy
(torchvision's PIL path: ``Resize`` = ``PIL.Image.resize`` with the bilinear filter,
``CenterCrop`` = zero padding split ``(d // 2, (d + 1) // 2)`` then a crop at
``round((size - crop) / 2)``, ``ToTensor`` = /255, ``Normalize``), and the official files are
opened the official way, ``Image.open(path).convert("RGB")``. Ours go through aigi's decoder
and the detector's own test transform. Uses ``../shared/data`` when present, else skips.

``deepfakebench-resize224`` (the official demo resizes with cv2 INTER_LINEAR): compared with
OpenCV itself when ``cv2`` is importable (it is not a dependency), and always against values
that opencv-python-headless 5.1.0.95 returned for two small arrays.
"""

from __future__ import annotations

import functools
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aigi.data.io import decode_image
from aigi.data.transforms import (CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, build_transform,
                                  cv2_linear_resize, preset)

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


#: a real and a fake of five generators: GAN PNGs at 256, diffusion PNGs at 512 and odd sizes
#: (DALL-E mini), real JPEGs of many sizes carrying a .png name
GENERATORS = ("progan", "cyclegan", "sd14", "dalle_mini", "mj")


def _files() -> list[Path]:
    if not DATA.is_dir():
        return []
    files = []
    for folder in sorted(p for p in DATA.glob("*/*/*") if p.is_dir()):  # <set>/<generator>/<label>
        if folder.parent.name in GENERATORS:
            files += sorted(f for f in folder.iterdir() if f.is_file())[:1]
    return files


FILES = _files()
needs_data = pytest.mark.skipif(not FILES, reason="../shared/data is not available")


@functools.lru_cache(maxsize=None)
def official_open(path: Path) -> Image.Image:
    return Image.open(path).convert("RGB")


@functools.lru_cache(maxsize=None)
def ours_open(path: Path) -> Image.Image:
    return decode_image(path)


# -- the official transforms, rewritten from the released code -----------------------------
def to_tensor(img: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.array(img, dtype=np.float32) / 255.0).permute(2, 0, 1)


def normalize(t: torch.Tensor, mean, std) -> torch.Tensor:
    return (t - torch.tensor(mean).view(3, 1, 1)) / torch.tensor(std).view(3, 1, 1)


def tv_center_crop(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    if w < size or h < size:
        pl, pt = max(size - w, 0) // 2, max(size - h, 0) // 2
        canvas = Image.new("RGB", (w + max(size - w, 0), h + max(size - h, 0)))
        canvas.paste(img, (pl, pt))
        img = canvas
        w, h = img.size
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return img.crop((left, top, left + size, top + size))


def effort_translate_duplicate(img: Image.Image, crop: int) -> Image.Image:  # Effort datasets.py
    if min(img.size) < crop:
        width, height = img.size
        new = Image.new("RGB", (width * math.ceil(crop / width), height * math.ceil(crop / height)))
        for i in range(0, new.size[0], width):
            for j in range(0, new.size[1], height):
                new.paste(img, (i, j))
        return new
    return img


def spectral_entropy(patch: np.ndarray) -> float:  # DGS-Net PatchSelectionTransform.py
    gray = np.dot(patch[..., :3], [0.299, 0.587, 0.114])
    if gray.max() > 1:
        gray = gray / 255.0
    power = np.abs(np.fft.fftshift(np.fft.fft2(gray))) ** 2
    flat = power.flatten()
    p = flat / (np.sum(flat) + 1e-12)
    return -np.sum(p * np.log2(p + 1e-12))


def dgsnet_patches(img: Image.Image, shuffle: bool) -> Image.Image:
    arr = np.array(img)
    h, w = arr.shape[0] - arr.shape[0] % 32, arr.shape[1] - arr.shape[1] % 32
    arr = arr[:h, :w]
    patches = [arr[i:i + 32, j:j + 32] for i in range(0, h, 32) for j in range(0, w, 32)]
    order = np.argsort(np.array([spectral_entropy(p) for p in patches]))
    chosen = [patches[i] for i in np.concatenate([order[:24], order[-25:]])]
    if shuffle:
        random.Random(0).shuffle(chosen)
    out = np.zeros((224, 224, 3), dtype=np.uint8)
    for k, p in enumerate(chosen):
        out[k // 7 * 32:(k // 7 + 1) * 32, k % 7 * 32:(k % 7 + 1) * 32] = p
    return Image.fromarray(out)


OFFICIAL = {
    "forensynths-resize256": lambda im: normalize(to_tensor(im.resize((256, 256), Image.BILINEAR)), IMAGENET_MEAN, IMAGENET_STD),
    "native": lambda im: normalize(to_tensor(im), IMAGENET_MEAN, IMAGENET_STD),
    "cnnspot-no-crop": lambda im: normalize(to_tensor(im), IMAGENET_MEAN, IMAGENET_STD),
    "cnnspot-center-crop224": lambda im: normalize(to_tensor(tv_center_crop(im, 224)), IMAGENET_MEAN, IMAGENET_STD),
    "univfd-center-crop224": lambda im: normalize(to_tensor(tv_center_crop(im, 224)), CLIP_MEAN, CLIP_STD),
    "effort-translate-duplicate": lambda im: normalize(
        to_tensor(tv_center_crop(effort_translate_duplicate(im, 256), 224)), CLIP_MEAN, CLIP_STD),
    "genimage-translate-duplicate224": lambda im: normalize(
        to_tensor(tv_center_crop(effort_translate_duplicate(im, 256), 224)), IMAGENET_MEAN, IMAGENET_STD),
    "dffreq-center-crop256": lambda im: normalize(to_tensor(tv_center_crop(im, 256)), IMAGENET_MEAN, IMAGENET_STD),
}


@needs_data
@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_preset_equals_the_official_transform(name):
    ours = build_transform(preset(name), train=False)
    for path in FILES:
        official = OFFICIAL[name](official_open(path))
        got = ours(ours_open(path))
        assert got.shape == official.shape, path
        assert float((got - official).abs().max()) <= 1e-6, path


@needs_data
def test_dgsnet_patch_selection_equals_the_official_one():
    pre = preset("dgsnet-patch-selection")
    unshuffled = build_transform(pre.model_copy(update={"patch_test_shuffle": False}), train=False)
    shuffled = build_transform(pre, train=False)
    for path in FILES[::2]:  # the official ranking runs patch by patch: five images keep this fast
        official = normalize(to_tensor(dgsnet_patches(official_open(path), shuffle=False)), IMAGENET_MEAN, IMAGENET_STD)
        assert float((unshuffled(ours_open(path)) - official).abs().max()) <= 1e-6, path
        # the test-time shuffle: the same 49 patches, in an order fixed by the image (reproducible)
        a, b = shuffled(ours_open(path)), shuffled(ours_open(path))
        assert torch.equal(a, b)

        def cells(t: torch.Tensor) -> list[bytes]:
            return sorted(t[:, r:r + 32, c:c + 32].numpy().tobytes() for r in range(0, 224, 32) for c in range(0, 224, 32))

        assert cells(a) == cells(official)


def test_cv2_linear_matches_values_opencv_returned():
    rng = np.random.default_rng(12)
    a = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    # cv2.resize(a, (4, 5), interpolation=cv2.INTER_LINEAR)[..., 0] and (b, (5, 7))[..., 1], OpenCV 5.1.0
    down = [[127, 128, 212, 120], [110, 63, 137, 144], [134, 11, 200, 150], [81, 131, 65, 120], [140, 133, 25, 194]]
    up = [[141, 116, 60, 34, 77], [132, 114, 66, 40, 73], [107, 110, 83, 57, 63], [81, 106, 101, 74, 52],
          [144, 142, 142, 114, 43], [208, 178, 184, 153, 35], [229, 190, 198, 166, 32]]
    assert cv2_linear_resize(a, 4, 5)[..., 0].tolist() == down
    assert cv2_linear_resize(b, 5, 7)[..., 1].tolist() == up
    with pytest.raises(ValueError, match="uint8"):
        cv2_linear_resize(a.astype(np.float32), 4, 5)


@needs_data
def test_deepfakebench_preset_equals_the_official_demo_transform():
    cv2 = pytest.importorskip("cv2")
    ours = build_transform(preset("deepfakebench-resize224"), train=False)
    for path in FILES:
        rgb = np.array(official_open(path))  # demo.py: cv2.imread + BGR2RGB = the same RGB pixels
        official = normalize(to_tensor(Image.fromarray(cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_LINEAR))),
                             CLIP_MEAN, CLIP_STD)
        assert float((ours(ours_open(path)) - official).abs().max()) <= 1e-6, path
