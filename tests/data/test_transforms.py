"""Preprocessing configs, geometric modes, augmentation reproducibility, normalisation."""

from __future__ import annotations

import pickle
from typing import get_args

import numpy as np
import pydantic
import pytest
import torch
from PIL import Image

from aigi.data.transforms import (
    CLIP_MEAN,
    CLIP_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    AugmentConfig,
    PreprocessConfig,
    build_transform,
    normalize,
    to_tensor,
    translate_duplicate,
)

TEST_MODES = get_args(PreprocessConfig.model_fields["test"].annotation)
TRAIN_MODES = get_args(PreprocessConfig.model_fields["train"].annotation)


def _raw(pre: PreprocessConfig) -> PreprocessConfig:
    """The same config without normalisation, to compare pixel values."""
    return pre.model_copy(update={"normalize": "none"})


def test_constants():
    assert CLIP_MEAN == (0.48145466, 0.4578275, 0.40821073)
    assert CLIP_STD == (0.26862954, 0.26130258, 0.27577711)
    assert IMAGENET_MEAN == (0.485, 0.456, 0.406)
    assert IMAGENET_STD == (0.229, 0.224, 0.225)


def test_config_defaults_and_strictness():
    pre = PreprocessConfig()
    assert pre.model_dump() == {
        "size": 224,
        "test": "center_crop",
        "train": "random_crop",
        "resize_to": 256,
        "interpolation": "bilinear",
        "normalize": "imagenet",
        "flip": True,
        "even_crop": False,
        "face_scale": 1.3,
        "patch_entropy": "aigi",
        "patch_test_shuffle": False,
        "patch_seed": 0,
    }
    aug = AugmentConfig()
    assert aug.blur_jpeg_prob == 0.0 and aug.blur_sigma == (0.0, 3.0)
    assert aug.jpeg_quality == (30, 100) and aug.mask_patch == 16
    with pytest.raises(pydantic.ValidationError):
        PreprocessConfig(sise=224)
    with pytest.raises(pydantic.ValidationError):
        PreprocessConfig(test="crop")
    with pytest.raises(pydantic.ValidationError):
        AugmentConfig(jpeg_quality=(90, 30))
    with pytest.raises(pydantic.ValidationError):
        AugmentConfig(blur_jpeg_prob=1.5)
    # JSON round trip (the config lives in config.json)
    aug2 = AugmentConfig(blur_jpeg_prob=0.5, jpeg_prob=0.1)
    assert AugmentConfig.model_validate_json(aug2.model_dump_json()) == aug2
    assert aug2.effective_blur_prob == 0.5 and aug2.effective_jpeg_prob == 0.1


def test_to_tensor_and_normalize():
    arr = np.array([[[0, 128, 255]]], dtype=np.uint8)
    t = to_tensor(Image.fromarray(arr))
    assert t.dtype == torch.float32 and t.shape == (3, 1, 1)
    assert t.flatten().tolist() == pytest.approx([0.0, 128 / 255, 1.0])
    n = normalize(t, "clip")
    expected = [(v - m) / s for v, m, s in zip(t.flatten().tolist(), CLIP_MEAN, CLIP_STD)]
    assert n.flatten().tolist() == pytest.approx(expected, rel=1e-6)
    n = normalize(t.unsqueeze(0), "imagenet")
    expected = [(v - m) / s for v, m, s in zip(t.flatten().tolist(), IMAGENET_MEAN, IMAGENET_STD)]
    assert n.shape == (1, 3, 1, 1)
    assert n.flatten().tolist() == pytest.approx(expected, rel=1e-6)
    assert torch.equal(normalize(t, "none"), t)


@pytest.mark.parametrize("mode", TEST_MODES)
@pytest.mark.parametrize("hw", [(300, 260), (100, 90)])
def test_test_mode_shapes(make_rgb, mode, hw):
    pre = PreprocessConfig(test=mode)
    t = build_transform(pre, train=False)(make_rgb(*hw))
    assert t.dtype == torch.float32
    expected = hw if mode == "none" else (224, 224)
    assert tuple(t.shape) == (3, *expected)


@pytest.mark.parametrize("mode", TRAIN_MODES)
def test_train_mode_shapes_and_reproducibility(make_rgb, mode):
    pre = PreprocessConfig(train=mode, size=64, resize_to=80)
    aug = AugmentConfig(
        blur_jpeg_prob=0.5, rotation_prob=0.5, color_jitter_prob=0.5, mask_prob=0.5
    )
    tf = build_transform(pre, train=True, augment=aug)
    img = make_rgb(90, 120)
    a = tf(img, np.random.default_rng(7))
    b = tf(img, np.random.default_rng(7))
    assert a.shape == (3, 64, 64) and torch.equal(a, b)
    outs = [tf(img, np.random.default_rng(s)) for s in range(8)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:])


def test_train_transform_needs_rng(make_rgb):
    with pytest.raises(ValueError, match="rng"):
        build_transform(PreprocessConfig(), train=True)(make_rgb())


def test_test_transform_ignores_rng(make_rgb):
    tf = build_transform(PreprocessConfig(test="patch_selection"), train=False)
    img = make_rgb(300, 300)
    a = tf(img, np.random.default_rng(1))
    assert torch.equal(a, tf(img, np.random.default_rng(2)))
    assert torch.equal(a, tf(img))


def test_center_crop_no_resize_and_padding():
    arr = np.arange(10 * 12 * 3, dtype=np.uint8).reshape(10, 12, 3)
    pre = _raw(PreprocessConfig(size=4))
    t = build_transform(pre, train=False)(Image.fromarray(arr))
    got = (t * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(got, arr[3:7, 4:8])
    # smaller than size: symmetric zero padding (extra pixel right/bottom)
    small = np.full((2, 3, 3), 200, dtype=np.uint8)
    t = build_transform(_raw(PreprocessConfig(size=6)), train=False)(Image.fromarray(small))
    got = (t * 255).round().to(torch.uint8)[0].numpy()
    expected = np.zeros((6, 6), dtype=np.uint8)
    expected[2:4, 1:4] = 200
    assert np.array_equal(got, expected)


def test_random_crop_is_a_crop(make_rgb):
    img = make_rgb(50, 60)
    arr = np.asarray(img)
    pre = _raw(PreprocessConfig(size=16, flip=False))
    t = build_transform(pre, train=True)(img, np.random.default_rng(3))
    crop = (t * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    hits = [
        (y, x)
        for y in range(50 - 15)
        for x in range(60 - 15)
        if np.array_equal(arr[y : y + 16, x : x + 16], crop)
    ]
    assert len(hits) == 1


def test_flip_happens_with_rng(make_rgb):
    img = make_rgb(16, 16)
    tf = build_transform(_raw(PreprocessConfig(size=16, train="center_crop")), train=True)
    outs = [tf(img, np.random.default_rng(s)) for s in range(16)]
    base = to_tensor(img)
    assert any(torch.equal(o, base) for o in outs)
    assert any(torch.equal(o, base.flip(-1)) for o in outs)


def test_resize_modes(make_rgb):
    img = make_rgb(100, 200)
    pre = PreprocessConfig(test="resize", size=50)
    assert build_transform(pre, train=False)(img).shape == (3, 50, 50)
    # resize_center_crop: shorter side 100 -> 64 (long 128), then centre 32
    pre = _raw(PreprocessConfig(test="resize_center_crop", size=32, resize_to=64))
    got = build_transform(pre, train=False)(img)
    ref = to_tensor(img.resize((128, 64), Image.Resampling.BILINEAR))[:, 16:48, 48:80]
    assert torch.allclose(got, ref)


def test_translate_duplicate_is_np_tile():
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(100, 100, 3), dtype=np.uint8)
    tiled = np.asarray(translate_duplicate(Image.fromarray(arr), 256))
    assert np.array_equal(tiled, np.tile(arr, (3, 3, 1)))
    # the test mode: tile to 256, centre crop 224 -- no resampling at all
    t = build_transform(_raw(PreprocessConfig(test="translate_duplicate")), train=False)
    got = (t(Image.fromarray(arr)) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(got, np.tile(arr, (3, 3, 1))[38:262, 38:262])
    # large images are left alone
    big = Image.fromarray(rng.integers(0, 256, size=(300, 260, 3), dtype=np.uint8))
    assert translate_duplicate(big, 256).size == (260, 300)


def test_translate_duplicate_random_crop_uses_only_input_values():
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    pre = _raw(PreprocessConfig(train="translate_duplicate_random_crop", flip=False))
    t = build_transform(pre, train=True)(Image.fromarray(arr), np.random.default_rng(4))
    out = (t * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert out.shape == (224, 224, 3)
    src = {tuple(p) for p in arr.reshape(-1, 3)}
    assert {tuple(p) for p in out.reshape(-1, 3)} <= src
    # and it is a window of the periodic tiling
    tile = np.tile(arr, (8, 6, 1))
    found = any(
        np.array_equal(tile[y : y + 224, x : x + 224], out) for y in range(37) for x in range(53)
    )
    assert found


def test_none_mode_and_even_crop(make_rgb):
    img = make_rgb(31, 45)
    t = build_transform(PreprocessConfig(test="none"), train=False)(img)
    assert t.shape == (3, 31, 45)
    t = build_transform(PreprocessConfig(test="none", even_crop=True), train=False)(img)
    assert t.shape == (3, 30, 44)
    assert torch.equal(t, normalize(to_tensor(img)[:, :30, :44], "imagenet"))


def test_patch_selection_mode_needs_multiple_of_32():
    with pytest.raises(ValueError, match="multiple of 32"):
        build_transform(PreprocessConfig(test="patch_selection", size=100), train=False)
    tf = build_transform(PreprocessConfig(test="patch_selection", size=128), train=False)
    assert tf(Image.new("RGB", (200, 200))).shape == (3, 128, 128)


def test_mask_zeroes_cells(make_rgb):
    img = Image.new("RGB", (64, 64), (255, 255, 255))
    aug = AugmentConfig(mask_prob=1.0, mask_ratio=0.25, mask_patch=16)
    pre = _raw(PreprocessConfig(size=64, train="center_crop", flip=False))
    t = build_transform(pre, train=True, augment=aug)(img, np.random.default_rng(0))
    zero_cells = (t[0].reshape(4, 16, 4, 16).amax(dim=(1, 3)) == 0).sum().item()
    assert zero_cells == 4  # 25 % of 16 cells
    assert ((t == 0) | (t == 1)).all()


def test_blur_and_jpeg_change_the_image(make_rgb):
    img = make_rgb(64, 64)
    pre = _raw(PreprocessConfig(size=64, train="center_crop", flip=False))
    base = to_tensor(img)
    blur = AugmentConfig(blur_prob=1.0, jpeg_prob=0.0, blur_sigma=(2.0, 2.0))
    jpeg = AugmentConfig(blur_prob=0.0, jpeg_prob=1.0, jpeg_quality=(30, 30))
    tb = build_transform(pre, train=True, augment=blur)(img, np.random.default_rng(0))
    tj = build_transform(pre, train=True, augment=jpeg)(img, np.random.default_rng(0))
    assert tb.std() < base.std() * 0.5  # noise is smoothed away
    assert not torch.equal(tj, base) and (tj - base).abs().mean() > 0.02
    off = build_transform(pre, train=True, augment=AugmentConfig())(img, np.random.default_rng(0))
    assert torch.equal(off, base)


def test_transform_pickles(make_rgb):
    tf = build_transform(PreprocessConfig(), train=True, augment=AugmentConfig(blur_jpeg_prob=0.1))
    tf2 = pickle.loads(pickle.dumps(tf))
    img = make_rgb(256, 256)
    assert torch.equal(tf(img, np.random.default_rng(0)), tf2(img, np.random.default_rng(0)))
    assert build_transform(PreprocessConfig(), train=True).output_size == (224, 224)
    assert build_transform(PreprocessConfig(test="none"), train=False).output_size is None
