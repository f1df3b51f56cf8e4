"""Patch Selection: spectral entropies, exactly which patches are kept, fallback."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from aigi.data.patches import patch_entropies, select_patches

P = 32


def _patch_values(img: Image.Image) -> np.ndarray:
    """The (R, G, B) of the top-left pixel of every 32x32 output cell, row-major."""
    arr = np.asarray(img)
    return arr[::P, ::P].reshape(-1, 3)


def _mosaic(kinds: list[str], cols: int, seed: int = 0) -> tuple[Image.Image, list[int]]:
    """An image of 32x32 patches; 'c' = constant patch, 'n' = white noise.

    Constant patch k has colour (k, 0, 255 - k) mod 256 so it can be identified
    in the output. Returns the image and, for noise patches, their index.
    """
    rng = np.random.default_rng(seed)
    rows = len(kinds) // cols
    arr = np.zeros((rows * P, cols * P, 3), dtype=np.uint8)
    for k, kind in enumerate(kinds):
        r, c = divmod(k, cols)
        block = arr[r * P : (r + 1) * P, c * P : (c + 1) * P]
        if kind == "c":
            block[:] = (k % 256, 0, (255 - k) % 256)
        else:
            block[:] = rng.integers(0, 256, size=(P, P, 3), dtype=np.uint8)
    return Image.fromarray(arr), [k for k, kind in enumerate(kinds) if kind == "n"]


def test_constant_patch_has_zero_entropy_and_noise_is_high():
    rng = np.random.default_rng(0)
    gray = np.zeros((32, 128))
    gray[:, :32] = 0.4
    gray[:, 64:96] = rng.random((32, 32))
    gray[:, 96:] = rng.random((32, 32)) - 0.5
    ent = patch_entropies(gray)
    assert ent.shape == (1, 4)
    assert ent[0, 0] == 0.0  # all power in DC
    assert ent[0, 1] == 0.0  # all-zero patch: no power, defined as 0
    # noise in [0, 1): the DC term still holds most of the power
    assert 1.0 < ent[0, 2] < ent[0, 3]
    # zero-mean white noise: close to the maximum, log(1024) = 6.93
    assert 6.0 < ent[0, 3] < np.log(32 * 32)


def test_entropy_matches_reference_formula():
    rng = np.random.default_rng(1)
    gray = rng.random((70, 40))  # cropped top-left to 64 x 32
    ent = patch_entropies(gray)
    assert ent.shape == (2, 1)
    for r in range(2):
        p = gray[r * 32 : (r + 1) * 32, :32]
        power = np.abs(np.fft.fftshift(np.fft.fft2(p))) ** 2
        prob = power / power.sum()
        prob = prob[prob > 0]
        assert ent[r, 0] == pytest.approx(-(prob * np.log(prob)).sum(), rel=1e-12)


def test_selects_exact_patches_in_order():
    # 8 x 8 = 64 patches: 30 constant ones, 34 noise ones, interleaved.
    kinds = ["n" if (k * 7) % 64 < 34 else "c" for k in range(64)]
    img, noise_idx = _mosaic(kinds, cols=8)
    out = select_patches(img)
    assert out.size == (224, 224) and out.mode == "RGB"
    cells = _patch_values(out)
    const_idx = [k for k, kind in enumerate(kinds) if kind == "c"]
    # low group: the first 24 constant patches by position (all entropies tie at 0)
    expected_low = [(k % 256, 0, (255 - k) % 256) for k in const_idx[:24]]
    assert [tuple(int(v) for v in c) for c in cells[:24]] == expected_low
    # high group: the 25 highest-entropy noise patches, ascending entropy
    arr = np.asarray(img).astype(np.float64)
    ent = patch_entropies((arr @ np.array([0.299, 0.587, 0.114])) / 255.0).ravel()
    order = np.argsort(ent, kind="stable")
    high = order[-25:]
    assert set(high.tolist()) <= set(noise_idx)
    src = np.asarray(img)
    for slot, k in enumerate(high):
        r, c = divmod(int(k), 8)
        got = np.asarray(out)[(24 + slot) // 7 * P :, (24 + slot) % 7 * P :][:P, :P]
        assert np.array_equal(got, src[r * P : (r + 1) * P, c * P : (c + 1) * P])


def test_shuffle_uses_rng_and_keeps_the_same_patches():
    kinds = ["c" if k % 2 else "n" for k in range(64)]
    img, _ = _mosaic(kinds, cols=8)
    plain = np.asarray(select_patches(img))
    a = np.asarray(select_patches(img, np.random.default_rng(5)))
    b = np.asarray(select_patches(img, np.random.default_rng(5)))
    c = np.asarray(select_patches(img, np.random.default_rng(6)))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, plain) and not np.array_equal(a, c)

    def cells(x: np.ndarray) -> list[bytes]:
        return sorted(x[r : r + P, q : q + P].tobytes() for r in range(0, 224, P) for q in range(0, 224, P))

    assert cells(a) == cells(plain) == cells(c)


def test_remainder_is_cropped_top_left():
    kinds = ["n"] * 49
    img, _ = _mosaic(kinds, cols=7)
    arr = np.asarray(img)
    padded = np.zeros((224 + 31, 224 + 20, 3), dtype=np.uint8)
    padded[:224, :224] = arr
    padded[224:, :] = 255
    padded[:, 224:] = 255
    out = np.asarray(select_patches(Image.fromarray(padded)))
    assert np.array_equal(np.asarray(select_patches(img)), out)


def test_small_image_fallback_tiles_without_resampling():
    rng = np.random.default_rng(3)
    small = rng.integers(0, 256, size=(50, 70, 3), dtype=np.uint8)
    out = select_patches(Image.fromarray(small))
    assert out.size == (224, 224)
    # same result as selecting on the image tiled (np.tile) up to 224 on both sides
    tiled = np.tile(small, (5, 4, 1))  # 250 x 280
    assert np.array_equal(np.asarray(out), np.asarray(select_patches(Image.fromarray(tiled))))
    # deterministic, and only original pixel values appear
    assert np.array_equal(np.asarray(out), np.asarray(select_patches(Image.fromarray(small))))
    src_pixels = {tuple(p) for p in small.reshape(-1, 3)}
    assert {tuple(p) for p in np.asarray(out).reshape(-1, 3)} <= src_pixels


def test_tiny_and_odd_images():
    out = select_patches(Image.new("RGB", (5, 3), (9, 8, 7)))
    assert out.size == (224, 224)
    assert (np.asarray(out) == (9, 8, 7)).all()
    assert select_patches(Image.new("L", (300, 20), 50)).mode == "RGB"


def test_parameters_validated():
    with pytest.raises(ValueError, match="grid"):
        select_patches(Image.new("RGB", (64, 64)), n_low=10, n_high=10)
    out = select_patches(Image.new("RGB", (200, 200)), patch=16, n_low=8, n_high=8, grid=4)
    assert out.size == (64, 64)
