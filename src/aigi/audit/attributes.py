"""What a file says about itself without its content: the per-image attributes the audit compares.

Header attributes come from Pillow's header parse (``Image.open`` without ``load()``), so
they cost one small read per file: container format (by content, never by extension),
JPEG quality estimated from the quantisation tables, chroma subsampling, progressive
scan, size, file size, colour mode, bit depth, alpha, ICC profile, EXIF camera make /
model / software, and whether the sides are multiples of 8 or 64 (generators emit
multiples of 64; a camera or a resize rarely does).

Pixel statistics (optional, ``pixels=True``) need a full decode. They are computed on the
central window of at most 512 x 512 pixels, its origin on the 8-pixel grid of the file so
JPEG blocks stay aligned: global grey mean / spread / colourfulness, a noise estimate,
high-frequency energy and its share of the spectrum (what resampling removes and
upsampling adds), and 8 x 8 blockiness at the file's grid and at the strongest of the 64
grid phases (what JPEG compression leaves, even after a crop).

JPEG quality: libjpeg (and so Pillow, and most software) writes the IJG tables of the
JPEG standard's Annex K scaled by ``q < 50: 5000 / q, else 200 - 2 q`` percent. The
estimate is the ``q`` whose scaled tables are nearest (L1) to the file's;
``jpeg_tables`` says whether they match exactly (``ijg``) or not (``custom``, e.g. a
camera's own tables, where the quality is the nearest equivalent).
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, JpegImagePlugin, UnidentifiedImageError

from ..data.io import DEFAULT_MAX_PIXELS, ImageDecodeError, decode_image

__all__ = ["ATTRIBUTES", "Attribute", "estimate_jpeg_quality", "header_attributes", "pixel_statistics",
           "read_attributes"]


@dataclass(frozen=True)
class Attribute:
    """One column of the audit: ``kind`` is ``category`` (compared by value) or ``number``.

    ``verdict``: whether the attribute counts towards the verdict and enters the
    all-attributes model. File size does not (for a lossless file it measures how much
    detail the image has, which is content, not a trace of how the file was made), nor do
    the pixel statistics (they mix processing traces with a generator's own fingerprint:
    an up-sampling or patch grid whose period divides 8 steps at the same borders as JPEG
    blocks). Both are still measured and shown.
    """

    name: str
    kind: str
    group: str  # "header" or "pixels"
    description: str
    verdict: bool = True


def _attrs(*rows: tuple) -> dict[str, Attribute]:
    return {r[0]: Attribute(*r[:4], verdict=r[2] == "header" and r[0] not in _CONTENT_BOUND) for r in rows}


_CONTENT_BOUND = ("file_bytes", "bytes_per_pixel")


#: every attribute, in report order
ATTRIBUTES: dict[str, Attribute] = _attrs(
    ("format", "category", "header", "container format, from the content (JPEG, PNG, WEBP, ...)"),
    ("extension_matches", "category", "header", "whether the file name's extension names that format"),
    ("jpeg_quality", "number", "header", "JPEG quality (1..100) estimated from the quantisation tables"),
    ("jpeg_tables", "category", "header", "ijg (standard tables, scaled), custom, or none (not a JPEG)"),
    ("subsampling", "category", "header", "JPEG chroma subsampling (4:4:4, 4:2:2, 4:2:0, ...)"),
    ("progressive", "category", "header", "progressive (or interlaced PNG) scan"),
    ("width", "number", "header", "width in pixels"),
    ("height", "number", "header", "height in pixels"),
    ("aspect", "number", "header", "width / height"),
    ("pixels", "number", "header", "width x height"),
    ("file_bytes", "number", "header", "file size in bytes"),
    ("bytes_per_pixel", "number", "header", "file size / pixel count"),
    ("mode", "category", "header", "Pillow colour mode (RGB, L, P, RGBA, CMYK, ...)"),
    ("bit_depth", "number", "header", "bits per sample"),
    ("alpha", "category", "header", "has an alpha channel or a transparency entry"),
    ("icc", "category", "header", "embeds an ICC colour profile"),
    ("exif", "category", "header", "carries EXIF data"),
    ("camera_make", "category", "header", "EXIF Make"),
    ("camera_model", "category", "header", "EXIF Model"),
    ("software", "category", "header", "EXIF Software"),
    ("size_multiple", "category", "header", "largest of 64 / 8 dividing both sides (or none)"),
    ("grey_mean", "number", "pixels", "mean grey level (0..255)"),
    ("grey_std", "number", "pixels", "standard deviation of the grey levels"),
    ("colourfulness", "number", "pixels", "mean of max(R,G,B) - min(R,G,B)"),
    ("noise", "number", "pixels", "noise level (Immerkaer 1996: mean |Laplacian difference| * sqrt(pi/2) / 6)"),
    ("hf_energy", "number", "pixels", "log10 mean spectral power above 0.25 cycles/pixel (grey, mean removed)"),
    ("hf_ratio", "number", "pixels", "share of spectral power above 0.25 cycles/pixel"),
    ("blockiness", "number", "pixels", "mean |step| across the file's 8-pixel block borders / elsewhere"),
    ("blockiness_peak", "number", "pixels", "the same at the strongest of the 64 grid phases"),
)

_EXTENSIONS = {
    "JPEG": {".jpg", ".jpeg", ".jpe", ".jfif"}, "PNG": {".png"}, "WEBP": {".webp"}, "GIF": {".gif"},
    "BMP": {".bmp", ".dib"}, "TIFF": {".tif", ".tiff"}, "MPO": {".jpg", ".jpeg", ".mpo"},
    "HEIF": {".heic", ".heif"}, "AVIF": {".avif"}, "JPEG2000": {".jp2", ".j2k", ".jpx", ".jpf"},
}

# Annex K of the JPEG standard (ITU-T T.81), natural (row-major) order, as libjpeg uses them.
_IJG_LUMA = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)
_IJG_CHROMA = (
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
    *([99] * 32),
)
_SUBSAMPLING = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}
_BIT_DEPTH = {"1": 1, "I;16": 16, "I;16L": 16, "I;16B": 16, "I;16N": 16, "I": 32, "F": 32}
_WINDOW = 512


@lru_cache(maxsize=1)
def _ijg_tables() -> tuple[np.ndarray, np.ndarray]:
    """The scaled IJG tables for every quality 1..100: two (100, 64) arrays."""
    q = np.arange(1, 101)
    scale = np.where(q < 50, 5000 // q, 200 - 2 * q)[:, None]
    luma = np.clip((np.array(_IJG_LUMA)[None, :] * scale + 50) // 100, 1, 255)
    chroma = np.clip((np.array(_IJG_CHROMA)[None, :] * scale + 50) // 100, 1, 255)
    return luma, chroma


def estimate_jpeg_quality(tables: dict[int, Any]) -> tuple[int, bool]:
    """``(quality, exact)`` for a JPEG's quantisation tables (Pillow's ``im.quantization``).

    ``exact`` is True when the tables are the IJG tables at that quality.
    """
    if not tables or 0 not in tables:
        raise ValueError("no luminance quantisation table (table 0) to estimate a quality from")
    luma, chroma = _ijg_tables()
    dist = np.abs(luma - np.asarray(list(tables[0]))[None, :]).sum(axis=1)
    if 1 in tables:
        dist = dist + np.abs(chroma - np.asarray(list(tables[1]))[None, :]).sum(axis=1)
    best = int(np.argmin(dist))  # the lowest quality among ties
    return best + 1, bool(dist[best] == 0)


def _png_bit_depth(path: str) -> int | None:
    """Bit depth from a PNG's IHDR (Pillow reads 16-bit colour PNGs as 8-bit RGB)."""
    with open(path, "rb") as fh:
        head = fh.read(26)
    if len(head) == 26 and head[12:16] == b"IHDR":
        return head[24]
    return None


def _exif_text(exif, tag: int) -> str:
    value = exif.get(tag)
    if value is None:
        return "none"
    if isinstance(value, bytes):
        value = value.decode("latin-1", "replace")
    text = str(value).strip("\x00 ").strip()
    return text or "none"


def header_attributes(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The header attributes of one file (see the module docstring); no pixel data is decoded.

    Raises :class:`aigi.data.io.ImageDecodeError` when the file is empty, unreadable or
    not an image Pillow can parse.
    """
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
    except OSError as exc:
        raise ImageDecodeError(path, "unreadable", f"{type(exc).__name__}: {exc}") from exc
    if size == 0:
        raise ImageDecodeError(path, "empty", "0 bytes")
    try:
        with Image.open(path) as im:
            return _from_open_image(im, path, size)
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(path, "not_an_image", str(exc)) from exc
    except ImageDecodeError:
        raise
    except OSError as exc:
        reason = "unreadable" if exc.errno is not None else "truncated"
        raise ImageDecodeError(path, reason, f"{type(exc).__name__}: {exc}") from exc
    except (ValueError, SyntaxError, struct.error, EOFError, KeyError, IndexError, TypeError) as exc:
        raise ImageDecodeError(path, "truncated", f"{type(exc).__name__}: {exc}") from exc


def _from_open_image(im: Image.Image, path: str, size: int) -> dict[str, Any]:
    fmt = im.format or "unknown"
    w, h = im.size
    if w <= 0 or h <= 0:
        raise ImageDecodeError(path, "truncated", f"header gives a {w}x{h} image")
    out: dict[str, Any] = {"format": fmt}
    out["extension_matches"] = "yes" if Path(path).suffix.lower() in _EXTENSIONS.get(fmt, set()) else "no"
    if fmt in ("JPEG", "MPO") and getattr(im, "quantization", None):
        q, exact = estimate_jpeg_quality(im.quantization)
        out["jpeg_quality"], out["jpeg_tables"] = float(q), "ijg" if exact else "custom"
        sampling = JpegImagePlugin.get_sampling(im)
        out["subsampling"] = _SUBSAMPLING.get(sampling, "other") if im.mode not in ("L", "1") else "grey"
    else:
        out["jpeg_quality"], out["jpeg_tables"], out["subsampling"] = math.nan, "none", "none"
    out["progressive"] = "yes" if (im.info.get("progressive") or im.info.get("progression")
                                   or im.info.get("interlace")) else "no"
    out.update(width=float(w), height=float(h), aspect=w / h, pixels=float(w * h), file_bytes=float(size),
               bytes_per_pixel=size / float(w * h), mode=im.mode)
    depth = _BIT_DEPTH.get(im.mode, 8)
    if fmt == "PNG":
        depth = _png_bit_depth(path) or depth
    elif fmt in ("JPEG", "MPO"):
        depth = int(getattr(im, "bits", 8) or 8)
    out["bit_depth"] = float(depth)
    out["alpha"] = "yes" if ("A" in im.mode or "a" in im.mode or "transparency" in im.info) else "no"
    out["icc"] = "yes" if im.info.get("icc_profile") else "no"
    try:
        if fmt == "PNG":  # Pillow's PNG getexif() decodes the pixels to look past IDAT; the header's eXIf is enough
            exif = Image.Exif()
            if im.info.get("exif"):
                exif.load(im.info["exif"])
        else:
            exif = im.getexif()
    except Exception:  # a broken EXIF block: the image is still an image
        exif = {}
    out["exif"] = "yes" if len(exif) else "no"
    out["camera_make"] = _exif_text(exif, 0x010F)
    out["camera_model"] = _exif_text(exif, 0x0110)
    out["software"] = _exif_text(exif, 0x0131)
    out["size_multiple"] = "64" if w % 64 == 0 and h % 64 == 0 else "8" if w % 8 == 0 and h % 8 == 0 else "none"
    return out


_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float64)


def _block_steps(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean |horizontal step| per column phase (8,) and mean |vertical step| per row phase (8,)."""
    dx = np.abs(np.diff(grey, axis=1))  # step between column j and j + 1
    dy = np.abs(np.diff(grey, axis=0))
    cols = np.array([dx[:, p::8].mean() for p in range(8)])
    rows = np.array([dy[p::8, :].mean() for p in range(8)])
    return cols, rows


def pixel_statistics(rgb: Image.Image) -> dict[str, float]:
    """The pixel statistics of a decoded RGB image (see the module docstring)."""
    from scipy import ndimage

    w, h = rgb.size
    cw, ch = min(w, _WINDOW), min(h, _WINDOW)
    x0, y0 = ((w - cw) // 2) // 8 * 8, ((h - ch) // 2) // 8 * 8
    arr = np.asarray(rgb.crop((x0, y0, x0 + cw, y0 + ch)), np.float64)
    grey = arr @ np.array([0.299, 0.587, 0.114])
    out = {"grey_mean": float(grey.mean()), "grey_std": float(grey.std()),
           "colourfulness": float((arr.max(axis=2) - arr.min(axis=2)).mean())}
    if min(ch, cw) >= 3:
        lap = ndimage.correlate(grey, _IMMERKAER, mode="reflect")[1:-1, 1:-1]
        out["noise"] = float(np.sqrt(np.pi / 2) * np.abs(lap).mean() / 6.0)
    else:
        out["noise"] = math.nan
    spec = np.abs(np.fft.rfft2(grey - grey.mean())) ** 2
    f = np.sqrt(np.fft.fftfreq(ch)[:, None] ** 2 + np.fft.rfftfreq(cw)[None, :] ** 2)
    high = spec[f > 0.25]
    out["hf_energy"] = float(np.log10(high.mean() + 1e-12)) if high.size else math.nan
    out["hf_ratio"] = float(high.sum() / (spec.sum() + 1e-12)) if high.size else math.nan
    if min(ch, cw) >= 16:
        cols, rows = _block_steps(grey)
        # border phase 7: the step from the last pixel of a block to the first of the next
        ratio_c = cols / ((cols.sum() - cols) / 7 + 1e-9)  # each phase against the mean of the other seven
        ratio_r = rows / ((rows.sum() - rows) / 7 + 1e-9)
        out["blockiness"] = float((ratio_c[7] + ratio_r[7]) / 2)
        out["blockiness_peak"] = float(np.nanmax(ratio_c) + np.nanmax(ratio_r)) / 2
    else:
        out["blockiness"] = out["blockiness_peak"] = math.nan
    return out


def read_attributes(path: str | os.PathLike[str], *, pixels: bool = False,
                    max_pixels: int | None = DEFAULT_MAX_PIXELS) -> dict[str, Any]:
    """Every attribute of one file: the header's, plus the pixel statistics when ``pixels``.

    Raises :class:`aigi.data.io.ImageDecodeError` for a file that cannot be read (with
    ``pixels``, also one whose pixel data is truncated or corrupt).
    """
    out = header_attributes(path)
    if pixels:
        out.update(pixel_statistics(decode_image(path, max_pixels=max_pixels)))
    return out
