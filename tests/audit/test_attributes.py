"""Per-file attributes from headers: JPEG quality, subsampling, EXIF, ICC, depth, alpha; pixel statistics."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageCms

from aigi.audit.attributes import ATTRIBUTES, estimate_jpeg_quality, header_attributes, read_attributes
from aigi.data.io import ImageDecodeError

from audit_data import picture, write


def test_jpeg_quality_is_recovered_exactly_for_every_libjpeg_quality():
    img = picture(np.random.default_rng(0), 32, 32)
    for q in range(1, 101):
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=q)
        assert estimate_jpeg_quality(Image.open(buf).quantization) == (q, True), q


def test_custom_tables_give_the_nearest_quality_and_say_so():
    img = picture(np.random.default_rng(0), 32, 32)
    buf = io.BytesIO()
    tables = [[min(255, 3 + (i % 8) + (i // 8)) for i in range(64)]] * 2  # not a scaled IJG table
    img.save(buf, format="JPEG", qtables=tables)
    q, exact = estimate_jpeg_quality(Image.open(buf).quantization)
    assert not exact and 80 <= q <= 100
    with pytest.raises(ValueError, match="luminance"):
        estimate_jpeg_quality({})


def test_header_attributes_of_a_jpeg_named_png(tmp_path):
    img = picture(np.random.default_rng(1), 128, 64)
    exif = Image.Exif()
    exif[0x010F], exif[0x0110], exif[0x0131] = "Nikon", "D750", "Lightroom"
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    p = write(tmp_path / "a.png", img, "JPEG", quality=77, subsampling=0, progressive=True, exif=exif,
              icc_profile=icc)
    a = header_attributes(p)
    assert a["format"] == "JPEG" and a["extension_matches"] == "no"
    assert (a["jpeg_quality"], a["jpeg_tables"], a["subsampling"], a["progressive"]) == (77.0, "ijg", "4:4:4", "yes")
    assert (a["width"], a["height"], a["aspect"], a["pixels"]) == (128.0, 64.0, 2.0, 8192.0)
    assert a["file_bytes"] == p.stat().st_size and a["bytes_per_pixel"] == pytest.approx(p.stat().st_size / 8192)
    assert (a["exif"], a["camera_make"], a["camera_model"], a["software"]) == ("yes", "Nikon", "D750", "Lightroom")
    assert a["icc"] == "yes" and a["alpha"] == "no" and a["size_multiple"] == "64" and a["bit_depth"] == 8.0
    assert set(a) == {k for k, v in ATTRIBUTES.items() if v.group == "header"}


def test_header_attributes_of_pngs(tmp_path):
    rgba = Image.new("RGBA", (40, 24), (1, 2, 3, 100))
    a = header_attributes(write(tmp_path / "x.png", rgba, "PNG"))
    assert (a["format"], a["mode"], a["alpha"], a["size_multiple"], a["exif"]) == ("PNG", "RGBA", "yes", "8", "no")
    assert np.isnan(a["jpeg_quality"]) and a["jpeg_tables"] == "none" and a["subsampling"] == "none"
    deep = Image.fromarray(np.full((10, 13), 40000, np.uint16))
    b = header_attributes(write(tmp_path / "deep.png", deep, "PNG"))
    assert b["bit_depth"] == 16.0 and b["size_multiple"] == "none"


@pytest.mark.parametrize("content, reason", [(b"", "empty"), (b"hello, not an image", "not_an_image")])
def test_unreadable_files_raise_with_a_reason(tmp_path, content, reason):
    p = tmp_path / "bad.png"
    p.write_bytes(content)
    with pytest.raises(ImageDecodeError) as info:
        header_attributes(p)
    assert info.value.reason == reason


def test_a_truncated_file_fails_when_pixels_are_read(tmp_path):
    p = write(tmp_path / "t.jpg", picture(np.random.default_rng(2), 64, 64), "JPEG", quality=90)
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    assert header_attributes(p)["format"] == "JPEG"  # the header is intact
    with pytest.raises(ImageDecodeError) as info:
        read_attributes(p, pixels=True)
    assert info.value.reason == "truncated"


def test_blockiness_sees_jpeg_blocks_and_not_a_lossless_file(tmp_path):
    img = picture(np.random.default_rng(3), 128, 128)
    jpg = read_attributes(write(tmp_path / "a.jpg", img, "JPEG", quality=20), pixels=True)
    png = read_attributes(write(tmp_path / "a.png", img, "PNG"), pixels=True)
    assert jpg["blockiness"] > 1.3 and abs(png["blockiness"] - 1.0) < 0.15, (jpg["blockiness"], png["blockiness"])
    # shifted by 3 pixels after compression: the aligned measure drops, the peak over phases still sees it
    shifted = Image.open(tmp_path / "a.jpg").crop((3, 3, 128, 128))
    s = read_attributes(write(tmp_path / "s.png", shifted, "PNG"), pixels=True)
    assert s["blockiness"] < 1.15 < s["blockiness_peak"]
    assert set(png) == set(ATTRIBUTES)
    assert png["hf_ratio"] < 0.2 and png["grey_std"] > 10
