"""JPEG draft decoding: only for resize preprocessing, at least 2x the target, same output geometry."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from aigi.data.dataset import ImageDataset, draft_size_for
from aigi.data.io import decode_image
from aigi.data.layouts import Sample
from aigi.data.transforms import AugmentConfig, PreprocessConfig, build_transform


def smooth_image(w: int, h: int, seed: int = 0) -> Image.Image:
    """A smooth colour field with mild noise: photo-like enough for JPEG and resampling."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (h // 32 + 1, w // 32 + 1, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((w, h), Image.Resampling.BICUBIC)
    arr = np.asarray(img).astype(np.int16) + rng.integers(-4, 5, (h, w, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))


def jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=92, **kw)
    return buf.getvalue()


def test_draft_shrinks_by_powers_of_two_and_keeps_the_minimum():
    data = jpeg_bytes(smooth_image(1024, 768))
    assert decode_image(data).size == (1024, 768)
    assert decode_image(data, draft_size=256).size == (512, 384)  # 1/2: 1/4 would give 192 < 256
    assert decode_image(data, draft_size=96).size == (128, 96)  # 1/8
    assert decode_image(data, draft_size=400).size == (1024, 768)  # 1/2 would give 384 < 400


def test_draft_leaves_small_jpegs_and_other_formats_pixel_identical(tmp_path):
    small = jpeg_bytes(smooth_image(300, 300))
    assert np.array_equal(np.asarray(decode_image(small, draft_size=200)), np.asarray(decode_image(small)))
    png = tmp_path / "big.png"
    smooth_image(1024, 1024).save(png)
    full = decode_image(png)
    drafted = decode_image(png, draft_size=128)
    assert drafted.size == (1024, 1024) and np.array_equal(np.asarray(drafted), np.asarray(full))


def test_draft_keeps_exif_orientation():
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    data = jpeg_bytes(smooth_image(1024, 512), exif=exif.tobytes())
    assert decode_image(data).size == (512, 1024)
    assert decode_image(data, draft_size=200).size == (256, 512)


def test_bad_draft_size_is_clear():
    with pytest.raises(ValueError, match="draft_size must be a positive int"):
        decode_image(jpeg_bytes(smooth_image(64, 64)), draft_size=0)
    with pytest.raises(ValueError, match="draft_size must be a positive int"):
        ImageDataset([], build_transform(PreprocessConfig(), train=False), draft_size=-2)


def test_safe_rule_only_for_resize_modes_without_pixel_augmentation():
    def size(is_train: bool, augment: AugmentConfig | None = None, **pre) -> int | None:
        return draft_size_for(build_transform(PreprocessConfig(**pre), train=is_train, augment=augment))

    assert size(False, test="resize_center_crop", resize_to=256) == 512
    assert size(False, test="resize", size=224) == 448
    assert size(True, train="resize_random_crop", resize_to=300) == 600
    assert size(True, AugmentConfig(mask_prob=0.5), train="resize_random_crop") == 512  # masks the tensor
    for mode in ("center_crop", "translate_duplicate", "patch_selection", "none"):
        assert size(False, test=mode) is None
    assert size(True, train="random_crop") is None
    assert size(True, AugmentConfig(blur_jpeg_prob=0.1), train="resize_random_crop") is None
    assert size(True, AugmentConfig(rotation_prob=0.2), train="resize") is None


@pytest.mark.parametrize("mode", ["resize_center_crop", "resize"])
def test_dataset_with_draft_gives_the_same_geometry_and_nearly_the_same_pixels(tmp_path, mode):
    path = tmp_path / "photo.jpg"
    path.write_bytes(jpeg_bytes(smooth_image(1280, 1024, seed=4)))
    transform = build_transform(PreprocessConfig(test=mode, size=224, resize_to=256, normalize="none"), train=False)
    full = ImageDataset([Sample(path=path, label=1, subset="s")], transform)[0]["pixels"]
    drafted_ds = ImageDataset([Sample(path=path, label=1, subset="s")], transform, draft_size=draft_size_for(transform))
    assert drafted_ds.draft_size == (512 if mode == "resize_center_crop" else 448)
    drafted = drafted_ds[0]["pixels"]
    assert drafted.shape == full.shape == (3, 224, 224)
    diff = (drafted - full).abs()
    # the resize still down-samples >= 2x; only DCT-domain pre-shrinking differs
    assert diff.mean() < 0.5 / 255 and diff.max() < 4.0 / 255  # measured: 0.25 and 2 grey levels
    assert not torch.equal(drafted, full)  # the draft path really ran
