"""``aigi audit DATA --neutralize OUT``: a copy of a dataset with the file-level shortcuts removed.

What the field does to take the file out of the comparison (the same for every image,
real or fake, whatever the audit found): decode (by content, EXIF orientation applied,
alpha composited over white), scale the shorter side to ``size`` and centre-crop to
``size`` x ``size`` (bicubic, antialiased), and re-encode in one format at one quality
(JPEG: 4:2:0 subsampling, baseline) with no EXIF, no ICC profile and no other metadata.
The copy keeps the ``<subset>/{0_real,1_fake}/`` layout, so ``aigi audit OUT`` shows what
is left; ``neutralize.json`` beside it records the settings, the steps and every file's
origin. Files that cannot be read are listed there and left out.

What it cannot remove: anything in the pixels themselves (content, a generator's
fingerprint, or an earlier compression that survives the resize), which is why the
audit of the copy is worth reading.
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ..data.io import ImageDecodeError, decode_image
from ..data.layouts import Sample, load_samples

__all__ = ["MANIFEST", "NeutralizeResult", "neutralize"]

MANIFEST = "neutralize.json"
_FORMATS = {"jpeg": ("JPEG", ".jpg"), "png": ("PNG", ".png"), "webp": ("WEBP", ".webp")}
_LABEL_DIRS = {0: "0_real", 1: "1_fake", None: "unlabelled"}


@dataclass
class NeutralizeResult:
    """Where the copy is, how many files were written, and which could not be read."""

    output: Path
    manifest: Path
    written: int = 0
    errors: list[tuple[str, str]] = field(default_factory=list)


def _square(img: Image.Image, size: int) -> Image.Image:
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((nw, nh), Image.Resampling.BICUBIC, reducing_gap=None)
    x0, y0 = (nw - size) // 2, (nh - size) // 2
    return img.crop((x0, y0, x0 + size, y0 + size))


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name) or "subset"


def neutralize(
    samples: str | os.PathLike[str] | Iterable[Sample],
    output: str | os.PathLike[str],
    *,
    layout: str = "auto",
    split: str | None = None,
    fmt: str = "jpeg",
    quality: int = 95,
    size: int = 256,
    progress: Callable[[int, int], None] | None = None,
) -> NeutralizeResult:
    """Write the neutralised copy of ``samples`` (a folder, a manifest, or Samples) into ``output``.

    ``fmt`` ``jpeg``, ``png`` or ``webp``; ``quality`` 1..100 (JPEG and WebP); ``size`` the
    side of the square output. ``output`` must be empty or not exist yet.
    """
    if fmt not in _FORMATS:
        raise ValueError(f"format must be one of {', '.join(_FORMATS)}, got {fmt!r}")
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be 1..100, got {quality}")
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    out = Path(output)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty folder; choose a new --neutralize folder")
    source = str(samples) if isinstance(samples, (str, os.PathLike)) else "<samples>"
    items = load_samples(samples, layout, split=split) if isinstance(samples, (str, os.PathLike)) else list(samples)
    pil_format, suffix = _FORMATS[fmt]
    save_args: dict[str, Any] = {"quality": quality}
    if fmt == "jpeg":
        save_args.update(subsampling=2, optimize=False, progressive=False)
    elif fmt == "png":
        save_args = {"compress_level": 6}
    res = NeutralizeResult(output=out, manifest=out / MANIFEST)
    files: list[dict[str, Any]] = []
    taken: set[str] = set()
    for i, s in enumerate(items, 1):
        try:
            img = decode_image(s.path)
        except ImageDecodeError as err:
            res.errors.append((str(s.path), f"{err.reason}: {err.detail}"))
        else:
            rel = f"{_safe(s.subset)}/{_LABEL_DIRS[s.label]}/{_safe(Path(s.path).stem)}"
            name, k = rel, 1
            while name in taken:  # two sources with one stem: number the later ones
                name, k = f"{rel}-{k}", k + 1
            taken.add(name)
            dest = out / (name + suffix)
            dest.parent.mkdir(parents=True, exist_ok=True)
            buf = io.BytesIO()
            _square(img, size).save(buf, format=pil_format, **save_args)
            dest.write_bytes(buf.getvalue())
            files.append({"source": str(s.path), "output": dest.relative_to(out).as_posix(), "label": s.label,
                          "subset": s.subset, "source_size": list(img.size)})
            res.written += 1
        if progress is not None:
            progress(i, len(items))
    steps = ["decode by content; EXIF orientation applied; alpha composited over white; ICC profiles not applied",
             f"scale the shorter side to {size} px (bicubic, antialiased), centre-crop to {size} x {size}",
             f"encode as {pil_format}" + (f" quality {quality}" if fmt != "png" else "")
             + (" 4:2:0 baseline" if fmt == "jpeg" else ""),
             "no EXIF, no ICC profile, no other metadata written"]
    manifest = {"source": source, "settings": {"format": fmt, "quality": quality, "size": size}, "steps": steps,
                "files": files, "skipped": [{"path": p, "reason": r} for p, r in res.errors]}
    out.mkdir(parents=True, exist_ok=True)
    res.manifest.write_text(json.dumps(manifest, indent=2) + "\n")
    return res
