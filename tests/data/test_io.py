"""Decoding: content sniffing, RGB conversion rule, EXIF, animation, every failure kind."""

from __future__ import annotations

import io
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFile

from aigi.data.io import (
    DEFAULT_MAX_PIXELS,
    ImageDecodeError,
    decode_image,
    sniff_is_image,
    to_rgb,
)


def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _px(img: Image.Image, x: int = 0, y: int = 0) -> tuple[int, int, int]:
    return tuple(int(v) for v in np.asarray(img)[y, x])


def _png_with_size(width: int, height: int) -> bytes:
    """A valid 1x1 PNG whose IHDR claims ``width x height`` (CRC fixed up)."""
    data = bytearray(_encode(Image.new("RGB", (1, 1)), "PNG"))
    ihdr = 8 + 8  # signature, then length + "IHDR"
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12 : ihdr + 13])) & 0xFFFFFFFF
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


# --------------------------------------------------------------------------- to_rgb


def test_default_max_pixels_is_the_one_limit():
    assert DEFAULT_MAX_PIXELS == 40_000_000


def test_rgb_is_returned_unchanged(make_rgb):
    img = make_rgb()
    assert to_rgb(img) is img


def test_l_and_1_expand():
    gray = Image.fromarray(np.array([[0, 77, 255]], dtype=np.uint8))
    assert np.asarray(to_rgb(gray)).tolist() == [[[0] * 3, [77] * 3, [255] * 3]]
    bw = Image.new("1", (2, 1))
    bw.putpixel((1, 0), 1)
    out = to_rgb(bw)
    assert out.mode == "RGB" and _px(out, 0) == (0, 0, 0) and _px(out, 1) == (255, 255, 255)


def test_rgba_composited_over_white():
    arr = np.array([[[10, 20, 30, 0], [10, 20, 30, 255], [100, 100, 100, 128]]], dtype=np.uint8)
    out = to_rgb(Image.fromarray(arr))
    assert out.mode == "RGB"
    assert _px(out, 0) == (255, 255, 255)  # fully transparent -> white
    assert _px(out, 1) == (10, 20, 30)  # opaque -> unchanged
    # 100 * 128/255 + 255 * 127/255 = 177.2
    assert _px(out, 2) == (177, 177, 177)


def test_premultiplied_rgba_and_la():
    rgba = Image.frombytes("RGBa", (2, 1), bytes([50, 50, 50, 128, 0, 0, 0, 0]))
    out = to_rgb(rgba)
    assert _px(out, 0) == (177, 177, 177) and _px(out, 1) == (255, 255, 255)
    la = Image.frombytes("La", (1, 1), bytes([50, 128]))
    assert _px(to_rgb(la)) == (177, 177, 177)


def test_la_composited_over_white():
    arr = np.array([[[100, 0], [100, 255]]], dtype=np.uint8)
    out = to_rgb(Image.frombytes("LA", (2, 1), arr.tobytes()))
    assert _px(out, 0) == (255, 255, 255)
    assert _px(out, 1) == (100, 100, 100)


def _palette_image(transparency: int | None = None) -> Image.Image:
    img = Image.frombytes("P", (3, 1), bytes([0, 1, 2]))
    img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (253 * 3))
    if transparency is not None:
        img.info["transparency"] = transparency
    return img


def test_palette_expanded():
    out = to_rgb(_palette_image())
    assert [_px(out, x) for x in range(3)] == [(255, 0, 0), (0, 255, 0), (0, 0, 255)]


def test_palette_with_transparency_index(tmp_path):
    out = to_rgb(_palette_image(transparency=1))
    assert [_px(out, x) for x in range(3)] == [(255, 0, 0), (255, 255, 255), (0, 0, 255)]
    # and through a real PNG file with a tRNS chunk
    path = tmp_path / "pal.png"
    _palette_image().save(path, transparency=1)
    decoded = decode_image(path)
    assert [_px(decoded, x) for x in range(3)] == [(255, 0, 0), (255, 255, 255), (0, 0, 255)]


def test_pa_composited():
    img = Image.frombytes("PA", (2, 1), bytes([0, 255, 2, 0]))
    img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (253 * 3))
    out = to_rgb(img)
    assert _px(out, 0) == (255, 0, 0) and _px(out, 1) == (255, 255, 255)


def test_cmyk_plain_conversion():
    img = Image.frombytes("CMYK", (3, 1), bytes([0, 0, 0, 0, 255, 0, 0, 0, 0, 0, 0, 255]))
    out = to_rgb(img)
    assert [_px(out, x) for x in range(3)] == [(255, 255, 255), (0, 255, 255), (0, 0, 0)]


@pytest.mark.parametrize("mode", ["I;16", "I;16B"])
def test_16bit_scaled_by_257(mode):
    vals = np.array([[0, 257, 32896, 65535]], dtype=np.uint16)
    dtype = ">u2" if mode == "I;16B" else "<u2"
    img = Image.frombytes(mode, (4, 1), vals.astype(dtype).tobytes())
    assert img.mode == mode
    out = np.asarray(to_rgb(img))
    assert out[0, :, 0].tolist() == [0, 1, 128, 255]
    assert (out[..., 0] == out[..., 2]).all()


def test_16bit_png_file(tmp_path):
    vals = np.array([[0, 65535], [257, 1000]], dtype=np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(vals).save(path)
    out = np.asarray(decode_image(path))[..., 0]
    assert out.tolist() == [[0, 255], [1, 4]]  # 1000 / 257 = 3.89


def test_mode_i_16bit_range_and_full_range():
    small = Image.fromarray(np.array([[0, 65535, 514]], dtype=np.int32))
    assert small.mode == "I"
    assert np.asarray(to_rgb(small))[0, :, 0].tolist() == [0, 255, 2]
    full = Image.fromarray(np.array([[-5, 2**31 - 1, 2**30]], dtype=np.int32))
    assert np.asarray(to_rgb(full))[0, :, 0].tolist() == [0, 255, 128]


def test_mode_f_clipped():
    img = Image.fromarray(np.array([[-10.0, 127.6, 300.0, np.nan]], dtype=np.float32))
    assert img.mode == "F"
    assert np.asarray(to_rgb(img))[0, :, 0].tolist() == [0, 128, 255, 0]


@pytest.mark.parametrize("mode", ["YCbCr", "HSV", "LAB", "RGBX"])
def test_other_modes_give_rgb(mode):
    out = to_rgb(Image.new(mode, (5, 4)))
    assert out.mode == "RGB" and out.size == (5, 4)


# --------------------------------------------------------------------------- decode


def test_decode_by_content_not_extension(tmp_path, make_rgb):
    path = _write(tmp_path / "actually_jpeg.png", _encode(make_rgb(), "JPEG", quality=90))
    img = decode_image(path)
    assert img.mode == "RGB" and img.size == (48, 32)
    img2 = decode_image(str(path))
    assert np.array_equal(np.asarray(img), np.asarray(img2))


def test_decode_bytes_and_pathlike(tmp_path, make_rgb):
    src = make_rgb()
    data = _encode(src, "PNG")
    assert np.array_equal(np.asarray(decode_image(data)), np.asarray(src))
    assert np.array_equal(np.asarray(decode_image(bytearray(data))), np.asarray(src))


def test_avif_decodes_by_content(tmp_path):
    try:
        data = _encode(Image.new("RGB", (16, 16), (200, 10, 10)), "AVIF")
    except (KeyError, OSError):
        pytest.skip("no AVIF encoder in this Pillow build")
    img = decode_image(_write(tmp_path / "x.jpg", data))
    assert img.size == (16, 16)


def test_heic_decodes_when_pillow_heif_is_installed(tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()
    try:
        data = _encode(Image.new("RGB", (16, 16), (200, 10, 10)), "HEIF")
    except (KeyError, OSError, ValueError):
        pytest.skip("no HEIF encoder available")
    img = decode_image(_write(tmp_path / "photo.jpg", data))
    assert img.size == (16, 16) and img.mode == "RGB"


def test_other_riff_and_mp4_are_not_images():
    assert _reason(b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 40).reason == "not_an_image"
    assert _reason(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 40).reason == "not_an_image"


def test_exif_orientation_applied(tmp_path):
    img = Image.new("RGB", (40, 20), (0, 128, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    path = tmp_path / "rot.jpg"
    img.save(path, "JPEG", exif=exif.tobytes())
    with Image.open(path) as raw:
        assert raw.size == (40, 20)
    assert decode_image(path).size == (20, 40)


def test_animated_gif_first_frame(tmp_path):
    frames = [Image.new("RGB", (8, 8), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    with Image.open(path) as raw:
        assert raw.n_frames == 3
    assert _px(decode_image(path), 3, 3) == (255, 0, 0)


def test_decoded_image_is_detached_from_file(tmp_path, make_rgb):
    path = _write(tmp_path / "a.png", _encode(make_rgb(), "PNG"))
    img = decode_image(path)
    path.unlink()
    assert img.getpixel((0, 0)) is not None


# --------------------------------------------------------------------------- failures


def _reason(source, **kw) -> ImageDecodeError:
    with pytest.raises(ImageDecodeError) as info:
        decode_image(source, **kw)
    return info.value


def test_empty_file_and_bytes(tmp_path):
    err = _reason(_write(tmp_path / "empty.jpg", b""))
    assert err.reason == "empty" and "empty.jpg" in str(err)
    err = _reason(b"")
    assert err.reason == "empty" and err.path == "<bytes>"
    err = _reason(b"", name="upload.png")
    assert "upload.png" in str(err)


def test_text_file_is_not_an_image(tmp_path):
    path = _write(tmp_path / "notes.png", b"hello, I am text\n" * 10)
    err = _reason(path)
    assert err.reason == "not_an_image"
    assert str(err).startswith(f"cannot decode {path}: not_an_image (")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "WEBP", "TIFF"])
def test_truncated_files(tmp_path, make_rgb, fmt):
    data = _encode(make_rgb(64, 64), fmt)
    path = _write(tmp_path / f"cut.{fmt.lower()}", data[: len(data) // 2])
    err = _reason(path)
    assert err.reason == "truncated", str(err)
    assert "cut." in str(err) and "truncated" in str(err)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_truncated_inside_header(make_rgb):
    data = _encode(make_rgb(), "PNG")
    assert _reason(data[:20], name="tiny.png").reason == "truncated"
    jpeg = _encode(make_rgb(), "JPEG")
    assert _reason(jpeg[:8]).reason == "truncated"


def test_too_large_checked_before_decoding(tmp_path, make_rgb, monkeypatch):
    path = _write(tmp_path / "big.png", _encode(make_rgb(100, 100), "PNG"))
    calls = []
    original = ImageFile.ImageFile.load

    def spy(self, *a, **kw):
        calls.append(self)
        return original(self, *a, **kw)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy)
    err = _reason(path, max_pixels=1000)
    assert err.reason == "too_large" and "big.png" in str(err) and "100x100" in str(err)
    assert calls == []  # the pixel data was never decoded
    assert decode_image(path, max_pixels=None).size == (100, 100)
    assert decode_image(path, max_pixels=10_000).size == (100, 100)
    assert calls  # and decoded when allowed


def test_bomb_header_is_rejected(make_rgb):
    before = Image.MAX_IMAGE_PIXELS
    # 50000 x 50000 = 2.5 gigapixels: above Pillow's own hard limit too.
    err = _reason(_png_with_size(50_000, 50_000), name="bomb.png")
    assert err.reason == "too_large" and "bomb.png" in str(err)
    # 20000 x 5000 = 1e8: above our small limit, only a warning for Pillow.
    err = _reason(_png_with_size(20_000, 5_000), max_pixels=1_000_000)
    assert err.reason == "too_large" and "20000x5000" in str(err)
    assert Image.MAX_IMAGE_PIXELS == before


def test_unreadable(tmp_path):
    assert _reason(tmp_path / "missing.png").reason == "unreadable"
    assert _reason(tmp_path).reason == "unreadable"


def test_error_attributes_and_pickle():
    err = ImageDecodeError("a/b.png", "truncated", "detail here")
    assert (err.path, err.reason) == ("a/b.png", "truncated")
    assert str(err) == "cannot decode a/b.png: truncated (detail here)"
    assert isinstance(err, ValueError)
    back = pickle.loads(pickle.dumps(err))
    assert (back.path, back.reason, str(back)) == (err.path, err.reason, str(err))
    with pytest.raises(ValueError):
        ImageDecodeError("x", "bogus")


def test_sniff_is_image(tmp_path, make_rgb):
    assert sniff_is_image(_write(tmp_path / "a.txt", _encode(make_rgb(), "JPEG")))
    assert sniff_is_image(_write(tmp_path / "big.png", _png_with_size(50_000, 50_000)))
    assert not sniff_is_image(_write(tmp_path / "b.png", b"plain text"))
    assert not sniff_is_image(_write(tmp_path / "c.png", b""))
    assert not sniff_is_image(tmp_path / "missing.png")
