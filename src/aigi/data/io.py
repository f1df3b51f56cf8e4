"""Decode image files and bytes into RGB images, safely and by content.

Every image that enters the toolkit goes through :func:`decode_image`:

* the format is found from the file's content (magic bytes), never from its
  extension, so a JPEG named ``.png`` decodes as the JPEG it is;
* the pixel count is checked from the header *before* the pixel data is
  decoded (``max_pixels``), so a decompression bomb is never expanded; the
  check does not depend on, and never changes, Pillow's global
  ``Image.MAX_IMAGE_PIXELS``;
* the pixel data is fully loaded inside the call, so truncated or corrupt
  files fail here with :class:`ImageDecodeError` instead of later, silently;
  Pillow's ``ImageFile.LOAD_TRUNCATED_IMAGES`` is never turned on (and is turned
  back off, with a warning, if another module turned it on);
* JPEG data that ends early is caught although libjpeg would hide it: when
  its coded data hits a marker (an appended end marker, the next file) before
  the last block, libjpeg only warns -- Pillow drops the warning -- and fills
  the rest flat. Sequential JPEGs are therefore decoded with their end marker
  replaced by a few padding bytes: a complete scan never reads them, a short
  one runs out of data and Pillow reports it (a cut within the last one or two
  blocks can still pass). Progressive JPEGs are checked to carry every scan
  their coefficients need (a cut inside the last scan can still pass);
* EXIF orientation is applied; animated images give their first frame;
* ``draft_size`` (off by default) lets a JPEG be decoded at 1/2, 1/4 or 1/8
  scale by libjpeg's DCT scaling (Pillow's ``Image.draft``) as long as both
  sides stay at least ``draft_size``; decoding a 2048-pixel JPEG that will be
  resized to 256 then costs a fraction of a full decode. Only callers that
  resize afterwards may ask for it (see ``aigi.data.dataset.draft_size_for``):
  the pixels differ slightly from a full decode followed by the same resize;
* HEIC/HEIF (and AVIF where the installed pillow-heif still provides it) open
  when ``pillow-heif`` is installed; without it they are reported as
  ``not_an_image`` like any other unknown format.

RGB conversion rule (:func:`to_rgb`, the only one in the toolkit):

* modes with alpha (RGBA, LA, PA, premultiplied RGBa/La, and P/L/RGB/1 with a
  ``transparency`` entry) are composited over a **white** background;
* P, L and 1 are expanded to RGB (1 gives 0/255);
* CMYK, YCbCr, LAB, HSV and RGBX go through Pillow's plain ``convert("RGB")``
  (embedded ICC profiles are *not* applied);
* 16-bit integer modes (I;16, I;16L, I;16B, I;16N) are scaled by their bit
  depth: ``v / 257`` rounded, so 65535 becomes 255 (no clipping);
* 32-bit integer mode I: when every value lies in 0..65535 the data is taken
  as 16-bit (how Pillow stores 16-bit PNG/TIFF data in mode I) and scaled by
  ``1/257``; otherwise it is taken as full-range signed 32-bit, negatives are
  clipped to 0 and values scaled by ``255 / (2**31 - 1)``;
* F (float) is clipped to [0, 255] (NaN becomes 0) and rounded.
"""

from __future__ import annotations

import io as _io
import os
import struct
import warnings
import zlib
from typing import Final

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .names import name_to_text

__all__ = [
    "DECODE_BYTES_PER_PIXEL",
    "DEFAULT_MAX_PIXELS",
    "DECODE_ERROR_REASONS",
    "ImageDecodeError",
    "decode_image",
    "image_size",
    "sniff_is_image",
    "to_rgb",
]

#: The largest image every path accepts (detect, eval, train, bench, serve), width x height,
#: checked from the header before decoding. 40 megapixels holds every camera and generator
#: output in use (a 7,300 x 5,475 photo) while a decoded RGB image stays under 120 MB.
DEFAULT_MAX_PIXELS: Final[int] = 40_000_000

#: Peak memory of decoding one image and preprocessing it, in bytes per pixel of the
#: header's size: the server's admission charges this much before decoding. Measured
#: (peak RSS over the baseline, 4000 x 4000 PNGs/JPEG through decode_image and NPR's
#: resize transform): RGB 8.2, L 6.2, I;16 13.3, CMYK JPEG 14.2, LA 16.7, P with
#: transparency 17.3, RGBA 19.3; 24 leaves room for a preprocessing that keeps the full
#: image as a float tensor.
DECODE_BYTES_PER_PIXEL: Final[int] = 24

#: The reasons an :class:`ImageDecodeError` can carry.
DECODE_ERROR_REASONS: Final[tuple[str, ...]] = (
    "empty",
    "not_an_image",
    "truncated",
    "too_large",
    "unreadable",
)

# Magic bytes of formats we know: a file that starts with one of these but
# that Pillow cannot open is reported as truncated, not as "not an image".
_SIGNATURES: Final[tuple[tuple[int, bytes], ...]] = (
    (0, b"\xff\xd8\xff"),  # JPEG
    (0, b"\x89PNG\r\n\x1a\n"),  # PNG
    (0, b"GIF87a"),
    (0, b"GIF89a"),
    (8, b"WEBP"),  # RIFF....WEBP
    (0, b"BM"),  # BMP
    (0, b"II*\x00"),  # TIFF little-endian
    (0, b"MM\x00*"),  # TIFF big-endian
    (0, b"\x00\x00\x00\x0cjP  "),  # JPEG 2000
)

# ISO-BMFF brands of still-image HEIF/AVIF files (an MP4 video also says "ftyp").
_HEIF_BRANDS: Final[frozenset[bytes]] = frozenset(
    {
        b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis",
        b"hevm", b"hevs", b"mif1", b"msf1", b"avif", b"avis",
    }
)  # fmt: skip

_plugins_registered = False

# -- JPEG completeness ------------------------------------------------------------------
_JPEG_SOI: Final[bytes] = b"\xff\xd8\xff"

#: bytes that replace the end marker of a sequential JPEG: more than libjpeg ever reads ahead
_JPEG_PAD: Final[bytes] = b"\x00" * 16
_SOF_SEQUENTIAL: Final[frozenset[int]] = frozenset({0xC0, 0xC1})
_SOF_PROGRESSIVE: Final[int] = 0xC2
_SOF_OTHER: Final[frozenset[int]] = frozenset({0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def _marker_positions(data: bytes | bytearray, start: int) -> np.ndarray:
    """Positions (from ``start`` on) of the 0xFF bytes that begin a marker in entropy-coded data:
    followed by neither a stuffed zero, a fill 0xFF nor a restart marker (numpy: ~1 ms a MB)."""
    a = np.frombuffer(data, dtype=np.uint8)[start:]
    ff = np.flatnonzero(a[:-1] == 0xFF)
    nxt = a[ff + 1]
    is_marker = (nxt != 0x00) & (nxt != 0xFF) & ((nxt < 0xD0) | (nxt > 0xD7))
    return ff[is_marker] + start


def _jpeg_checked(data: bytes, label: str) -> bytes:
    """``data`` ready for Pillow, or :class:`ImageDecodeError` when the JPEG is visibly short.

    Walks the marker segments (headers only; entropy-coded data is skipped with a regex).
    Sequential single-scan JPEGs come back with everything from the marker that ends their
    coded data replaced by :data:`_JPEG_PAD`, so that data ending early makes libjpeg ask
    for more and Pillow raise "truncated" instead of filling the image flat. Progressive
    JPEGs must have every coefficient of every component refined to its last bit
    (successive approximation ``Al = 0``). Anything the walk does not understand (lossless,
    arithmetic, hierarchical, odd structure) is returned unchanged for Pillow to judge.
    """
    n = len(data)
    pos = 2
    sof: int | None = None
    components: list[int] = []
    scans: list[tuple[list[int], int, int, int, int]] = []  # (components, Ss, Se, Ah, Al)
    scan_end: int | None = None
    markers: np.ndarray | None = None  # found once, at the first scan
    while pos + 1 < n:
        if data[pos] != 0xFF:
            return data  # not where a marker should be: leave it to Pillow
        while pos + 1 < n and data[pos + 1] == 0xFF:  # fill bytes
            pos += 1
        if pos + 1 >= n:
            break
        marker = data[pos + 1]
        if marker == 0xD9:  # EOI
            break
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        if pos + 4 > n:
            break
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        seg = data[pos + 4 : pos + 2 + length]
        if length < 2 or len(seg) < length - 2:
            return data
        if marker in _SOF_SEQUENTIAL or marker == _SOF_PROGRESSIVE:
            if sof is not None or len(seg) < 6:
                return data
            sof = marker
            components = [seg[6 + 3 * i] for i in range(seg[5]) if 6 + 3 * i < len(seg)]
        elif marker in _SOF_OTHER:
            return data
        elif marker == 0xDA:  # SOS
            ns = seg[0] if seg else 0
            if len(seg) < 1 + 2 * ns + 3:
                return data
            ss, se, ahal = seg[1 + 2 * ns], seg[2 + 2 * ns], seg[3 + 2 * ns]
            scans.append(([seg[1 + 2 * i] for i in range(ns)], ss, se, ahal >> 4, ahal & 15))
            begin = pos + 2 + length
            if markers is None:
                markers = _marker_positions(data, begin)
            k = int(np.searchsorted(markers, begin))
            scan_end = int(markers[k]) if k < len(markers) else n
            pos = scan_end
            continue
        pos += 2 + length
    if sof is None or not scans or not components:
        return data
    if sof in _SOF_SEQUENTIAL:
        if len(scans) == 1 and sorted(scans[0][0]) == sorted(components) and scan_end is not None:
            return data[:scan_end] + _JPEG_PAD
        missing = set(components) - {c for sc in scans for c in sc[0]}
        if missing:
            raise ImageDecodeError(label, "truncated", f"JPEG has no scan for component(s) {sorted(missing)}")
        return data
    # progressive: the lowest bit reached for each (component, coefficient)
    low: dict[int, list[int | None]] = {c: [None] * 64 for c in components}
    for comps, ss, se, _ah, al in scans:
        for c in comps:
            if c in low:
                for k in range(ss, min(se, 63) + 1):
                    low[c][k] = al
    for c, bits in low.items():
        short = [k for k, al in enumerate(bits) if al != 0]
        if short:
            raise ImageDecodeError(
                label,
                "truncated",
                f"progressive JPEG ends after {len(scans)} scan(s): coefficient(s) {short[0]}..{short[-1]} "
                f"of component {c} never reach full precision",
            )
    return data


#: deflate never compresses better than about 1032:1 (a 258-byte match in two bits)
_DEFLATE_MAX_RATIO: Final[int] = 1100
_PNG_CHANNELS: Final[dict[int, int]] = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def _png_too_short(fp) -> str | None:
    """Why a PNG's compressed data cannot hold its pixels, or None (reads chunk headers only).

    Pillow stops quietly when a complete zlib stream ends before the last row and leaves
    the rest black. Its pixel data must at least inflate to ``width x height x bits / 8``;
    deflate cannot beat ~1032:1, so IDAT chunks totalling less than that over 1100 are
    short for certain. (A stream short by a few rows is not caught.)
    """
    start = fp.tell()
    try:
        fp.seek(8)
        idat = 0
        expected = None
        while True:
            header = fp.read(8)
            if len(header) < 8:
                break
            length, kind = struct.unpack(">I4s", header)
            if kind == b"IHDR":
                ihdr = fp.read(13)
                if len(ihdr) < 13:
                    return None
                width, height, depth, color = struct.unpack(">IIBB", ihdr[:10])
                expected = width * height * depth * _PNG_CHANNELS.get(color, 1) // 8
                fp.seek(length - 13 + 4, 1)
                continue
            if kind == b"IDAT":
                idat += length
            elif kind == b"IEND":
                break
            fp.seek(length + 4, 1)
        if expected is not None and idat * _DEFLATE_MAX_RATIO < expected:
            return (f"its pixel data is {idat} compressed bytes, which cannot inflate to the {expected} bytes "
                    "its header declares")
        return None
    finally:
        fp.seek(start)


def _guard_truncated_loading() -> None:
    """Turn Pillow's ``LOAD_TRUNCATED_IMAGES`` back off if some other code turned it on."""
    if ImageFile.LOAD_TRUNCATED_IMAGES:
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        warnings.warn(
            "PIL.ImageFile.LOAD_TRUNCATED_IMAGES was turned on by another module; aigi turned it "
            "off again, because it makes truncated images decode silently",
            RuntimeWarning,
            stacklevel=3,
        )


class ImageDecodeError(ValueError):
    """An image could not be decoded; ``reason`` says why in one word.

    ``reason`` is one of :data:`DECODE_ERROR_REASONS`:
    ``empty`` (zero bytes), ``not_an_image`` (no known image format),
    ``truncated`` (format recognised but the data ends early or is corrupt),
    ``too_large`` (pixel count above the limit, checked from the header),
    ``unreadable`` (I/O error, missing file, or a codec that is unavailable).
    """

    def __init__(self, path: str, reason: str, detail: str = "") -> None:
        if reason not in DECODE_ERROR_REASONS:
            raise ValueError(f"unknown decode error reason {reason!r}")
        self.path = path
        self.reason = reason
        self.detail = detail
        super().__init__(f"cannot decode {path}: {reason} ({detail})")

    def __reduce__(self):  # keep the attributes across pickling (DataLoader workers)
        return (type(self), (self.path, self.reason, self.detail))


def _register_plugins() -> None:
    """Register pillow-heif's openers once, if the package is installed."""
    global _plugins_registered
    if _plugins_registered:
        return
    _plugins_registered = True
    try:
        import pillow_heif  # type: ignore[import-not-found]
    except Exception:  # not installed or broken: HEIC simply stays unsupported
        return
    names = ["register_heif_opener"]
    try:
        from PIL import features

        if not features.check("avif"):  # prefer Pillow's own AVIF decoder when it has one
            names.append("register_avif_opener")
    except Exception:
        names.append("register_avif_opener")
    for fn_name in names:
        fn = getattr(pillow_heif, fn_name, None)
        if fn is not None:
            try:
                fn()
            except Exception:  # an opener failing to register must not break decoding
                pass


def _looks_like_image(head: bytes) -> bool:
    """True when ``head`` starts with the magic bytes of a known image format."""
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        return True
    return any(head[off : off + len(sig)] == sig for off, sig in _SIGNATURES)


def _too_large(label: str, width: int, height: int, limit: int) -> ImageDecodeError:
    return ImageDecodeError(
        label,
        "too_large",
        f"{width}x{height} = {width * height} pixels exceeds max_pixels={limit}",
    )


def _classify_load_error(exc: BaseException) -> tuple[str, str]:
    """Map an exception raised while decoding pixel data to (reason, detail)."""
    msg = f"{type(exc).__name__}: {exc}"
    low = str(exc).lower()
    if isinstance(exc, Image.DecompressionBombError) or "too large" in low:
        return "too_large", msg
    if isinstance(exc, OSError) and exc.errno is not None:
        return "unreadable", msg  # a real I/O error from the OS
    if isinstance(exc, OSError) and "decoder" in low and "not available" in low:
        return "unreadable", msg  # the codec is missing, the file may be fine
    if isinstance(exc, (OSError, EOFError, SyntaxError, struct.error, zlib.error)):
        return "truncated", msg
    return "unreadable", msg


def decode_image(
    source: str | os.PathLike[str] | bytes,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    name: str | None = None,
    draft_size: int | None = None,
) -> Image.Image:
    """Decode a file path or raw bytes into a fully loaded RGB image.

    The format is detected from the content, the pixel count is checked from
    the header before decoding (``max_pixels=None`` disables our limit; Pillow's
    own hard limit, twice ``Image.MAX_IMAGE_PIXELS``, still applies and is
    reported as ``too_large``), EXIF orientation is applied, animated images
    give their first frame, and the result goes through :func:`to_rgb`.
    ``name`` labels the source in error messages (default: the path, or
    ``"<bytes>"`` for bytes). ``draft_size`` (JPEG only; others ignore it) lets
    the decoder shrink the image by a power of two while both sides stay
    ``>= draft_size``; the size check uses the full header size first.
    Raises :class:`ImageDecodeError` on any failure.
    """
    if draft_size is not None and (isinstance(draft_size, bool) or not isinstance(draft_size, int)
                                   or draft_size <= 0):
        raise ValueError(f"draft_size must be a positive int or None, got {draft_size!r}")
    _register_plugins()
    _guard_truncated_loading()
    if isinstance(source, (bytes, bytearray, memoryview)):
        label = name if name is not None else "<bytes>"
        data = source if isinstance(source, (bytes, bytearray)) else bytes(source)  # no copy of an upload
        if not data:
            raise ImageDecodeError(label, "empty", "0 bytes")
        if data.startswith(_JPEG_SOI):
            return _decode_stream(_io.BytesIO(_jpeg_checked(data, label)), data[:16], label, max_pixels,
                                  draft_size, jpeg=True)
        return _decode_stream(_io.BytesIO(data), data[:16], label, max_pixels, draft_size)

    path = os.fspath(source)
    label = name if name is not None else name_to_text(path)  # printable, whatever the bytes
    try:
        if os.path.isdir(path):
            raise ImageDecodeError(label, "unreadable", "is a directory")
        size = os.path.getsize(path)
        if size == 0:
            raise ImageDecodeError(label, "empty", "0 bytes")
        with open(path, "rb") as fh:
            head = fh.read(16)
            if head.startswith(_JPEG_SOI):
                data = _jpeg_checked(head + fh.read(), label)
                return _decode_stream(_io.BytesIO(data), head, label, max_pixels, draft_size, jpeg=True)
            fh.seek(0)
            return _decode_stream(fh, head, label, max_pixels, draft_size)
    except OSError as exc:
        raise ImageDecodeError(label, "unreadable", f"{type(exc).__name__}: {exc}") from exc


def _decode_stream(
    fp, head: bytes, label: str, max_pixels: int | None, draft_size: int | None = None,
    jpeg: bool = False,
) -> Image.Image:
    """Open, size-check, (draft,) load, orient and RGB-convert one image stream.

    ``jpeg``: the stream went through :func:`_jpeg_checked` (its tail may be padding), so it
    is opened as plain JPEG (an MPO's later frames are gone) and a failure is "truncated".
    """
    with warnings.catch_warnings():
        # Our own max_pixels decides; Pillow's soft warning would be noise.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(fp, formats=["JPEG"] if jpeg else None)
        except Image.DecompressionBombError as exc:
            raise ImageDecodeError(label, "too_large", f"Pillow's hard limit: {exc}") from exc
        except UnidentifiedImageError as exc:
            if _looks_like_image(head):
                raise ImageDecodeError(
                    label, "truncated", "known image signature but the header cannot be parsed"
                ) from exc
            raise ImageDecodeError(
                label, "not_an_image", f"unknown format, starts with {head[:8]!r}"
            ) from exc
        except Exception as exc:  # plugin errors while parsing the header
            if isinstance(exc, OSError) and exc.errno is not None:
                raise ImageDecodeError(label, "unreadable", f"{type(exc).__name__}: {exc}") from exc
            reason = "truncated" if _looks_like_image(head) else "unreadable"
            raise ImageDecodeError(label, reason, f"{type(exc).__name__}: {exc}") from exc

        try:
            width, height = img.size
            if max_pixels is not None and width * height > max_pixels:
                raise _too_large(label, width, height, max_pixels)
            if img.format == "PNG" and (short := _png_too_short(fp)) is not None:
                raise ImageDecodeError(label, "truncated", short)
            if draft_size is not None and min(width, height) >= 2 * draft_size:
                # JPEG/MPO only (a no-op elsewhere); the mode is kept, only the scale changes
                img.draft(img.mode, (draft_size, draft_size))
            try:
                img.load()
            except Exception as exc:
                reason, detail = _classify_load_error(exc)
                if jpeg and reason == "truncated":
                    detail += "; the JPEG's coded data ends before its last block"
                raise ImageDecodeError(label, reason, detail) from exc
            try:
                oriented = ImageOps.exif_transpose(img)
            except (OSError, ValueError, KeyError, TypeError, SyntaxError, struct.error):
                # A broken EXIF block must not lose a decodable image: keep it unrotated.
                oriented = img.copy()
            if oriented is None:  # defensive: older Pillow returned None in-place
                oriented = img.copy()
            return to_rgb(oriented)
        finally:
            img.close()


def _composite_white(rgb: np.ndarray, alpha: np.ndarray, premultiplied: bool) -> np.ndarray:
    """Blend uint8 colour (H,W,C) with uint8 alpha (H,W) over white.

    Works through blocks of about a million values, so the 32-bit temporaries stay a few
    MB whatever the image size (done whole, they cost ~50 bytes a pixel: 2 GB at 40 MP).
    """
    out = np.empty(rgb.shape, dtype=np.uint8)
    step = max(1, (1 << 20) // max(1, rgb.shape[1] * rgb.shape[2]))
    for r in range(0, rgb.shape[0], step):
        c = rgb[r : r + step].astype(np.uint32)
        a = alpha[r : r + step].astype(np.uint32)[..., None]
        if premultiplied:
            blended = c + (255 * (255 - a) + 127) // 255
        else:
            blended = (c * a + 255 * (255 - a) + 127) // 255
        out[r : r + step] = np.clip(blended, 0, 255)
    return out


def _gray_to_rgb(gray: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(gray.astype(np.uint8))).convert("RGB")


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB with the toolkit's single rule.

    Alpha (RGBA, LA, PA, RGBa, La, or a ``transparency`` entry on P/L/RGB/1) is
    composited over white; P/L/1 are expanded; CMYK/YCbCr/LAB/HSV/RGBX use a
    plain ``convert("RGB")`` (no ICC profile); I;16* is divided by 257; I is
    treated as 16-bit when all values fit 0..65535, else as signed 32-bit
    (negatives clipped, scaled by 255/(2**31-1)); F is clipped to [0, 255].
    An RGB image without transparency is returned unchanged (same object).
    """
    mode = img.mode
    if mode in ("P", "L", "RGB", "1") and img.info.get("transparency") is not None:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode == "RGB":
        return img
    if mode in ("RGBA", "RGBa"):
        arr = np.asarray(img)
        return Image.fromarray(_composite_white(arr[..., :3], arr[..., 3], mode == "RGBa"))
    if mode in ("LA", "La"):
        arr = np.asarray(img)
        gray = _composite_white(arr[..., :1], arr[..., 1], mode == "La")[..., 0]
        return _gray_to_rgb(gray)
    if mode == "PA":
        return to_rgb(img.convert("RGBA"))
    if mode.startswith("I;16"):
        # rint(v / 257) in integers (v / 257 is never exactly k + 0.5): 4-byte temporaries, not 8
        arr = np.asarray(img).astype(np.uint32)
        arr += 128
        arr //= 257
        return _gray_to_rgb(arr)
    if mode == "I":
        arr = np.asarray(img).astype(np.float64)
        if arr.size == 0 or (arr.min() >= 0 and arr.max() <= 65535):
            scaled = arr / 257.0
        else:
            scaled = np.clip(arr, 0, None) * (255.0 / (2**31 - 1))
        return _gray_to_rgb(np.clip(np.rint(scaled), 0, 255))
    if mode == "F":
        arr = np.nan_to_num(np.asarray(img).astype(np.float64), nan=0.0)
        return _gray_to_rgb(np.rint(np.clip(arr, 0.0, 255.0)))
    return img.convert("RGB")


def sniff_is_image(path: str | os.PathLike[str]) -> bool:
    """Cheaply tell whether ``path`` holds an image Pillow can identify.

    Reads only the header (``Image.open`` without decoding pixels); used by
    folder scans that were asked to skip non-images silently. Oversized images
    still count as images (decoding them later reports ``too_large``).
    """
    _register_plugins()
    try:
        if os.path.getsize(path) == 0:
            return False
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path):
                return True
    except Image.DecompressionBombError:
        return True
    except Exception:  # unidentified, unreadable, or a broken header: not usable
        return False


def image_size(data: bytes | bytearray) -> tuple[int, int] | None:
    """``(width, height)`` from an image's header, without decoding pixels; None if unknown.

    Lets a caller charge the memory a decode will take before it starts (the server's
    admission); anything Pillow cannot identify is left to :func:`decode_image` to report.
    """
    _register_plugins()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(_io.BytesIO(data)) as img:
                return img.size
    except Image.DecompressionBombError:
        return None  # over Pillow's hard limit: decode_image refuses it before decoding
    except Exception:
        return None
