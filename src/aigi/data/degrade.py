"""Test-time degradations for the robustness task, named by short spec strings.

A degradation is applied to the decoded RGB image, *before* the detector's own
preprocessing (the path is decode -> degrade -> preprocess -> detector). Each one is a
small function; :func:`parse_degradation` turns a spec string into a callable
:class:`Degradation` and rejects bad specs with a message that says what was wrong.

Spec grammar: ``step[+step...]``, each step ``name[:arg[:arg]]``. Steps run left to right.

============================  ===============================================================
spec                          what it does
============================  ===============================================================
``jpeg:Q``                    JPEG re-encoding with Pillow, quality ``Q`` in 1..100 (Pillow's
                              default 4:2:0 chroma subsampling, no ``optimize``)
``webp:Q``                    lossy WebP re-encoding with Pillow, quality ``Q`` in 0..100
``blur:SIGMA``                Gaussian blur, ``SIGMA > 0`` pixels, a true Gaussian
                              (``scipy.ndimage.gaussian_filter``, truncated at 4 sigma,
                              reflected borders), per channel, rounded back to uint8
``noise:SIGMA``               additive Gaussian noise, ``0 < SIGMA <= 1`` in units of the
                              full 0..255 range (``noise:0.05`` has a std of 12.75 grey
                              levels), rounded and clipped to 0..255
``resize:F[:INTERP]``         resample both sides by ``F > 0`` (``round(side * F)``, at least
                              1 pixel) and keep the new size; ``INTERP`` one of nearest,
                              bilinear (default), bicubic, lanczos, box, hamming (Pillow's
                              ``resize``, which anti-aliases when shrinking)
``downup:F[:INTERP]``         resample by ``F`` and back to the original size with the same
                              interpolation (size kept, up-sampling cue destroyed)
``maxside:N[:INTERP]``        shrink so the longer side is at most ``N`` pixels (aspect kept;
                              smaller images unchanged); default interpolation bicubic
``social``                    a social-media upload: ``maxside:1080:bicubic+jpeg:85+jpeg:75``
``none``                      the identity (the clean condition)
============================  ===============================================================

**Determinism.** Every step is a pure function of the image except ``noise``, whose
random numbers come from ``numpy.random.default_rng`` seeded by the image's content:
``sha256(b"aigi-degrade" | canonical chain spec | step index | width | height | RGB
pixel bytes)`` of the image *as decoded* (the chain's input). The same picture therefore
always receives the same noise, whatever its file name or format, in any process, and two
different pictures receive different noise.

Specs have a canonical form (``blur:2.0`` -> ``blur:2``, ``resize:0.5`` ->
``resize:0.5:bilinear``); results are stored under the canonical form, so equivalent
spellings share them.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from .io import to_rgb

__all__ = [
    "DEGRADATIONS",
    "Degradation",
    "DegradationError",
    "down_up",
    "gaussian_blur",
    "gaussian_noise",
    "jpeg",
    "max_side",
    "parse_degradation",
    "resize",
    "webp",
]

INTERPOLATIONS: dict[str, Image.Resampling] = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}

#: aliases that expand to a chain of steps
ALIASES: dict[str, str] = {"social": "maxside:1080:bicubic+jpeg:85+jpeg:75"}


class DegradationError(ValueError):
    """A degradation spec that cannot be parsed; the message says what and why."""


# --------------------------------------------------------------------------- the functions


def jpeg(img: Image.Image, quality: int) -> Image.Image:
    """Re-encode as JPEG at ``quality`` (1..100) in memory and decode again."""
    return _reencode(img, "JPEG", quality=int(quality))


def webp(img: Image.Image, quality: int) -> Image.Image:
    """Re-encode as lossy WebP at ``quality`` (0..100) in memory and decode again."""
    return _reencode(img, "WEBP", quality=int(quality), lossless=False)


def _reencode(img: Image.Image, fmt: str, **kw: Any) -> Image.Image:
    buf = io.BytesIO()
    to_rgb(img).save(buf, format=fmt, **kw)
    buf.seek(0)
    with Image.open(buf) as out:
        out.load()
        return out.convert("RGB")


def gaussian_blur(img: Image.Image, sigma: float) -> Image.Image:
    """Gaussian blur with standard deviation ``sigma`` pixels (scipy, reflect borders)."""
    from scipy.ndimage import gaussian_filter

    arr = np.asarray(to_rgb(img), dtype=np.float64)
    out = gaussian_filter(arr, sigma=(sigma, sigma, 0), mode="reflect", truncate=4.0)
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))


def gaussian_noise(img: Image.Image, sigma: float, rng: np.random.Generator) -> Image.Image:
    """Add N(0, (255 * sigma)^2) noise per pixel and channel; round and clip to uint8."""
    arr = np.asarray(to_rgb(img), dtype=np.float64)
    noisy = arr + rng.normal(0.0, 255.0 * sigma, size=arr.shape)
    return Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))


def resize(img: Image.Image, factor: float, interpolation: str = "bilinear") -> Image.Image:
    """Resample both sides by ``factor`` (``max(1, round(side * factor))``) and keep that size."""
    w, h = img.size
    size = (max(1, int(round(w * factor))), max(1, int(round(h * factor))))
    return to_rgb(img).resize(size, INTERPOLATIONS[interpolation])


def down_up(img: Image.Image, factor: float, interpolation: str = "bilinear") -> Image.Image:
    """Resample by ``factor`` and back to the original size (same interpolation)."""
    return resize(img, factor, interpolation).resize(img.size, INTERPOLATIONS[interpolation])


def max_side(img: Image.Image, side: int, interpolation: str = "bicubic") -> Image.Image:
    """Shrink (aspect kept) so that the longer side is at most ``side``; never enlarge."""
    w, h = img.size
    if max(w, h) <= side:
        return to_rgb(img)
    scale = side / max(w, h)
    size = (max(1, int(round(w * scale))), max(1, int(round(h * scale))))
    return to_rgb(img).resize(size, INTERPOLATIONS[interpolation])


def _identity(img: Image.Image) -> Image.Image:
    return to_rgb(img)


# --------------------------------------------------------------------------- parsing


def _number(text: str, kind: type, what: str, spec: str) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise DegradationError(
            f"{what} must be {'an integer' if kind is int else 'a number'}, got {text!r} in {spec!r}"
        ) from None
    if kind is float and not math.isfinite(value):
        raise DegradationError(f"{what} must be finite, got {text!r} in {spec!r}")
    return value


def _fmt(x: float | int) -> str:
    return str(x) if isinstance(x, int) else format(float(x), "g")


def _interp(text: str | None, default: str, spec: str) -> str:
    name = (text or default).lower()
    if name not in INTERPOLATIONS:
        raise DegradationError(
            f"unknown interpolation {name!r} in {spec!r}; choose one of {', '.join(INTERPOLATIONS)}"
        )
    return name


@dataclass(frozen=True)
class _Kind:
    """One step type: how to parse its arguments and which function applies it."""

    name: str
    usage: str
    parse: Callable[[list[str], str], tuple]
    fn: Callable[..., Image.Image]
    random: bool = False


def _p_quality(lo: int, what: str) -> Callable[[list[str], str], tuple]:
    def parse(args: list[str], spec: str) -> tuple:
        if len(args) != 1:
            raise DegradationError(f"{what} takes one argument (quality), got {len(args)} in {spec!r}")
        q = _number(args[0], int, f"{what} quality", spec)
        if not lo <= q <= 100:
            raise DegradationError(f"{what} quality must be in {lo}..100, got {q} in {spec!r}")
        return (q,)

    return parse


def _p_sigma(what: str, upper: float | None) -> Callable[[list[str], str], tuple]:
    def parse(args: list[str], spec: str) -> tuple:
        if len(args) != 1:
            raise DegradationError(f"{what} takes one argument (sigma), got {len(args)} in {spec!r}")
        s = _number(args[0], float, f"{what} sigma", spec)
        if s <= 0 or (upper is not None and s > upper):
            rng = f"0 < sigma <= {upper:g}" if upper is not None else "sigma > 0"
            raise DegradationError(f"{what} sigma must satisfy {rng}, got {args[0]} in {spec!r}")
        return (s,)

    return parse


def _p_factor(default_interp: str) -> Callable[[list[str], str], tuple]:
    def parse(args: list[str], spec: str) -> tuple:
        if not 1 <= len(args) <= 2:
            raise DegradationError(f"expected FACTOR[:INTERPOLATION], got {len(args)} arguments in {spec!r}")
        f = _number(args[0], float, "resize factor", spec)
        if f <= 0:
            raise DegradationError(f"resize factor must be > 0, got {args[0]} in {spec!r}")
        return (f, _interp(args[1] if len(args) > 1 else None, default_interp, spec))

    return parse


def _p_side(args: list[str], spec: str) -> tuple:
    if not 1 <= len(args) <= 2:
        raise DegradationError(f"maxside takes SIDE[:INTERPOLATION], got {len(args)} arguments in {spec!r}")
    side = _number(args[0], int, "maxside side", spec)
    if side < 1:
        raise DegradationError(f"maxside side must be >= 1, got {side} in {spec!r}")
    return (side, _interp(args[1] if len(args) > 1 else None, "bicubic", spec))


def _p_none(args: list[str], spec: str) -> tuple:
    if args:
        raise DegradationError(f"'none' takes no argument, got {':'.join(args)!r} in {spec!r}")
    return ()


#: every step type, by name
DEGRADATIONS: dict[str, _Kind] = {
    k.name: k
    for k in (
        _Kind("jpeg", "jpeg:QUALITY", _p_quality(1, "jpeg"), jpeg),
        _Kind("webp", "webp:QUALITY", _p_quality(0, "webp"), webp),
        _Kind("blur", "blur:SIGMA", _p_sigma("blur", None), gaussian_blur),
        _Kind("noise", "noise:SIGMA", _p_sigma("noise", 1.0), gaussian_noise, random=True),
        _Kind("resize", "resize:FACTOR[:INTERP]", _p_factor("bilinear"), resize),
        _Kind("downup", "downup:FACTOR[:INTERP]", _p_factor("bilinear"), down_up),
        _Kind("maxside", "maxside:SIDE[:INTERP]", _p_side, max_side),
        _Kind("none", "none", _p_none, _identity),
    )
}


@dataclass(frozen=True)
class Step:
    """One parsed step: its type name and typed arguments."""

    name: str
    args: tuple

    @property
    def spec(self) -> str:
        return ":".join([self.name, *(_fmt(a) if not isinstance(a, str) else a for a in self.args)])


@dataclass(frozen=True)
class Degradation:
    """A parsed, validated chain of steps; call it on a PIL image.

    ``spec`` is the canonical spec string (aliases keep their name, e.g. ``social``);
    ``family`` and ``strength`` place a single-step degradation on a robustness curve
    (``jpeg:75`` -> ``("jpeg", 75)``); chains have family ``"chain"`` and no strength.
    """

    spec: str
    steps: tuple[Step, ...]

    @property
    def is_identity(self) -> bool:
        return all(s.name == "none" for s in self.steps)

    @property
    def family(self) -> str:
        if self.spec in ALIASES:
            return self.spec
        return self.steps[0].name if len(self.steps) == 1 else "chain"

    @property
    def strength(self) -> float | None:
        if len(self.steps) != 1 or self.spec in ALIASES or not self.steps[0].args:
            return None
        return float(self.steps[0].args[0])

    def seed(self, img: Image.Image, step_index: int) -> list[int]:
        """The noise seed of step ``step_index`` for this image (see the module docstring)."""
        rgb = to_rgb(img)
        h = hashlib.sha256(b"aigi-degrade\0")
        h.update(f"{self.spec}\0{step_index}\0{rgb.width}x{rgb.height}\0".encode())
        h.update(np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)).tobytes())
        digest = h.digest()
        return [int.from_bytes(digest[i : i + 8], "little") for i in range(0, 32, 8)]

    def __call__(self, img: Image.Image) -> Image.Image:
        original = img
        out = to_rgb(img)
        for i, step in enumerate(self.steps):
            kind = DEGRADATIONS[step.name]
            if kind.random:
                out = kind.fn(out, *step.args, np.random.default_rng(self.seed(original, i)))
            else:
                out = kind.fn(out, *step.args)
        return out

    def __str__(self) -> str:
        return self.spec


def parse_degradation(spec: str) -> Degradation:
    """Parse and validate a spec string such as ``"jpeg:75"`` or ``"resize:0.5:bicubic+jpeg:90"``."""
    if not isinstance(spec, str):
        raise DegradationError(f"a degradation spec must be a string, got {type(spec).__name__} {spec!r}")
    text = spec.strip().lower()
    if not text:
        raise DegradationError("empty degradation spec; examples: jpeg:75, blur:2, noise:0.05, social")
    alias = text if text in ALIASES else None
    raw_steps = ALIASES.get(text, text).split("+")
    steps: list[Step] = []
    for raw in raw_steps:
        parts = [p.strip() for p in raw.split(":")]
        name = parts[0]
        if not name:
            raise DegradationError(f"empty step in degradation spec {spec!r}")
        kind = DEGRADATIONS.get(name)
        if kind is None:
            known = ", ".join([k.usage for k in DEGRADATIONS.values()] + list(ALIASES))
            raise DegradationError(f"unknown degradation {name!r} in {spec!r}; known: {known}")
        steps.append(Step(name, kind.parse(parts[1:], spec)))
    canonical = alias or "+".join(s.spec for s in steps)
    return Degradation(spec=canonical, steps=tuple(steps))
