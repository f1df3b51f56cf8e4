"""Degradations: parsing, canonical specs, determinism per image, and that each one changes the image."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from aigi.data.degrade import DegradationError, parse_degradation


def _photo(seed: int = 0, size: tuple[int, int] = (48, 40)) -> Image.Image:
    """A smooth image with edges and texture (noise-free images survive JPEG nearly untouched)."""
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[:h, :w]
    base = np.stack([xx * 4, yy * 5, (xx + yy) * 2], axis=-1).astype(np.float64)
    base += rng.normal(0, 20, base.shape)
    base[h // 3 : h // 2, w // 4 : w // 2] = 240
    return Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))


SPECS = ["jpeg:75", "jpeg:30", "webp:50", "blur:1.5", "noise:0.05", "resize:0.5:bilinear", "resize:2:nearest",
         "downup:0.5:bicubic", "maxside:20", "social", "jpeg:90+blur:1+noise:0.02"]


@pytest.mark.parametrize("spec", SPECS)
def test_deterministic_per_image_and_changes_it(spec):
    deg = parse_degradation(spec)
    img = _photo()
    a, b = deg(img), deg(img.copy())
    assert a.mode == "RGB"
    assert np.array_equal(np.asarray(a), np.asarray(b)), "same image, same spec -> same pixels"
    if a.size == img.size:
        diff = np.abs(np.asarray(a, dtype=int) - np.asarray(img, dtype=int))
        assert diff.max() > 0, f"{spec} left the image unchanged"
    else:
        assert a.size != img.size


def test_social_shrinks_large_images_only():
    deg = parse_degradation("social")
    assert deg.spec == "social"
    assert [s.spec for s in deg.steps] == ["maxside:1080:bicubic", "jpeg:85", "jpeg:75"]
    big = Image.new("RGB", (2160, 1200), (10, 200, 30))
    assert deg(big).size == (1080, 600)
    assert deg(_photo()).size == (40, 48)


def test_resize_sizes():
    img = _photo(size=(48, 40))  # PIL size (w, h) = (40, 48)
    assert parse_degradation("resize:0.5").steps[0].args == (0.5, "bilinear")
    assert parse_degradation("resize:0.5")(img).size == (20, 24)
    assert parse_degradation("resize:0.75:lanczos")(img).size == (30, 36)
    assert parse_degradation("downup:0.5")(img).size == (40, 48)
    assert parse_degradation("maxside:24")(img).size == (20, 24)


def test_noise_is_seeded_by_content():
    deg = parse_degradation("noise:0.1")
    img = _photo(0)
    noisy = np.asarray(deg(img), dtype=np.float64)
    # the same picture saved to another format and decoded again gets the same noise
    again = Image.fromarray(np.asarray(img).copy())
    assert np.array_equal(noisy, np.asarray(deg(again), dtype=np.float64))
    # a different picture gets different noise
    other = _photo(1)
    resid_a = noisy - np.asarray(img, dtype=np.float64)
    resid_b = np.asarray(deg(other), dtype=np.float64) - np.asarray(other, dtype=np.float64)
    assert not np.array_equal(resid_a, resid_b)
    # its strength is sigma * 255 (clipping at 0/255 only shrinks it a little on this image)
    assert 0.8 * 25.5 < resid_a.std() < 1.05 * 25.5


def test_blur_is_a_gaussian():
    # a step edge blurs into the Gaussian's cumulative profile: its derivative has std sigma
    arr = np.zeros((9, 61, 3), np.uint8)
    arr[:, 30:] = 255
    out = np.asarray(parse_degradation("blur:2")(Image.fromarray(arr)), dtype=np.float64)[4, :, 0]
    d = np.diff(out)
    xs = np.arange(60) - 29.0  # d[i] sits between pixels i and i + 1; the edge is at 29.5
    mean = (d * xs).sum() / d.sum()
    std = np.sqrt((d * (xs - mean) ** 2).sum() / d.sum())
    assert abs(mean) < 1e-9
    assert abs(std - 2.0) < 0.05


def test_jpeg_quality_orders_the_error():
    img = _photo()
    ref = np.asarray(img, dtype=np.float64)

    def err(q: int) -> float:
        return float(np.abs(np.asarray(parse_degradation(f"jpeg:{q}")(img), dtype=np.float64) - ref).mean())

    assert err(95) < err(75) < err(30)


def test_canonical_specs():
    assert parse_degradation("blur:2.0").spec == "blur:2"
    assert parse_degradation(" JPEG:075 ").spec == "jpeg:75"
    assert parse_degradation("resize:0.5").spec == "resize:0.5:bilinear"
    assert parse_degradation("jpeg:90+noise:0.05").spec == "jpeg:90+noise:0.05"
    d = parse_degradation("jpeg:75")
    assert (d.family, d.strength) == ("jpeg", 75.0)
    assert parse_degradation("social").strength is None
    assert parse_degradation("jpeg:90+blur:1").family == "chain"
    assert parse_degradation("none").is_identity


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("jpg:75", r"unknown degradation 'jpg' in 'jpg:75'; known: jpeg:QUALITY"),
        ("jpeg:150", r"jpeg quality must be in 1\.\.100, got 150"),
        ("jpeg:high", r"jpeg quality must be an integer, got 'high'"),
        ("jpeg", r"jpeg takes one argument \(quality\), got 0"),
        ("blur:0", r"blur sigma must satisfy sigma > 0"),
        ("noise:2", r"noise sigma must satisfy 0 < sigma <= 1, got 2"),
        ("resize:-1", r"resize factor must be > 0"),
        ("resize:0.5:cubic", r"unknown interpolation 'cubic'.*bilinear"),
        ("jpeg:90+", r"empty step"),
        ("", r"empty degradation spec"),
        ("none:1", r"'none' takes no argument"),
    ],
)
def test_bad_specs_say_what_is_wrong(spec, message):
    with pytest.raises(DegradationError, match=message):
        parse_degradation(spec)
