"""The built-in benchmark: simulated cameras against simulated generators, no downloads.

``generate_benchmark(out)`` writes a small benchmark in the AIGIBench layout,
``<out>/<generator>/{0_real,1_fake}/<index>.{png,jpg}``, so the whole toolkit (train,
evaluate, detect, serve) can be shown on a fresh machine with no data and no weights.

**Scenes.** Every image, real or fake, starts from the same scene distribution: a
dead-leaves occlusion model (:func:`dead_leaves`) -- opaque discs, ellipses and rotated
rectangles with sizes drawn from ``p(r) ~ r^-3`` (which gives the roughly ``1/f``
amplitude spectrum of natural images), each filled with a colour, a shading gradient and
a texture (``1/f^beta`` noise or stripes) -- in linear light.

**Reals** (:func:`camera_image`) go through a simulated camera: lens blur, exposure,
white-balance gains, Bayer colour-filter-array sampling (random phase), Poisson-Gaussian
sensor noise (shot + read), bilinear demosaicing, gamma; half of them are captured at a
higher resolution and down-scaled (as most photos on the web are), which removes the
demosaicing trace from those.

**Fakes** come from simulated generators (:data:`GENERATORS`), each a small function
with a different synthesis fingerprint, drawn from the same scenes and the same exposure
and gamma distribution.

**Files.** Reals and fakes share one file-format mix (:func:`encode`): a fixed share is
JPEG at a camera-like quality drawn uniformly from 85..97, the rest PNG, so neither the
format nor the quantisation table tells the classes apart.

**Determinism.** Image ``i`` of class ``c`` of subset ``g`` is drawn from
``SeedSequence([seed, crc32(g), c, i])``: the bytes of every file depend on nothing else
(not on the order, the worker count, or which other subsets are written). Each subset's
reals are therefore distinct real images.

How hard it is, measured (no file attribute or global pixel statistic separates the
classes: ``aigi audit`` calls every subset clean, which ``tests/synthetic`` checks; a
detector trained on one generator does not transfer to all others; one trained on all
does well): see ``docs/synthetic.md`` and ``scripts/measure_synthetic.py``.
"""

from __future__ import annotations

import io
import json
import os
import re
import zlib
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import fft as sfft
from scipy import ndimage

__all__ = [
    "GENERATORS",
    "GRAIN",
    "JPEG_QUALITIES",
    "JPEG_SHARE",
    "LABELS",
    "MANIFEST",
    "camera_image",
    "dead_leaves",
    "describe_generators",
    "encode",
    "generate_benchmark",
    "generator_fingerprint",
    "image_rng",
    "make_image",
]

#: share of images (real and fake alike) stored as JPEG; the rest are PNG
JPEG_SHARE = 0.5
#: JPEG qualities (inclusive range) drawn uniformly, as cameras and phones write them
JPEG_QUALITIES = (85, 97)
#: share of reals captured at a higher resolution and down-scaled
DOWNSCALED_SHARE = 0.5
#: strength of the GAN's transposed-convolution checkerboard (kernel perturbation)
GAN_CHECKERBOARD = 0.0004
#: sigma (output pixels) of the Gaussian that stands for the softening of bilinear demosaicing
DEMOSAIC_SOFTNESS = 0.35
#: saturation gain range of the generators' content (matches the colourfulness of camera images)
CONTENT_SATURATION = (1.0, 1.4)
#: corner frequency (cycles/pixel) of the diffusion generator's detail prior
DIFFUSION_F0 = 0.05
LABELS = ("0_real", "1_fake")
_OUR_FILE = re.compile(r"\.?\d{5,}\.(png|jpg)(\.tmp)?")  # our images and interrupted writes
MANIFEST = "synthetic.json"

F32 = np.float32


# --------------------------------------------------------------------------- seeding


def image_rng(seed: int, generator: str, label: int, index: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Two independent generators (content, file format) for one image.

    Seeded from ``(seed, crc32(generator), label, index)`` only, so an image never depends
    on the order in which images are made.
    """
    if seed < 0 or index < 0 or label not in (0, 1):
        raise ValueError(f"seed and index must be >= 0 and label 0 or 1, got {seed}, {index}, {label}")
    ss = np.random.SeedSequence([seed, zlib.crc32(generator.encode()), label, index])
    content, fmt = ss.spawn(2)
    return np.random.default_rng(content), np.random.default_rng(fmt)


# --------------------------------------------------------------------------- scenes


@lru_cache(maxsize=8)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:size, 0:size].astype(F32)
    yy.setflags(write=False)
    xx.setflags(write=False)
    return yy, xx


@lru_cache(maxsize=8)
def _radial_freq(size: int) -> np.ndarray:
    fy = np.fft.fftfreq(size)[:, None]
    fx = np.fft.rfftfreq(size)[None, :]
    f = np.sqrt(fy * fy + fx * fx).astype(F32)
    f[0, 0] = 1.0 / size
    f.setflags(write=False)
    return f


def _power_noise(rng: np.random.Generator, size: int, betas: Sequence[float]) -> np.ndarray:
    """Zero-mean, unit-std noise fields (len(betas), size, size), field ``i`` with power spectrum ``1/f^betas[i]``.

    Drawn directly in the Fourier domain (complex Gaussian half-spectrum, then ``irfft2``).
    """
    f = _radial_freq(size)
    amp = np.stack([f ** F32(-b / 2.0) for b in betas])
    spec = rng.standard_normal((2, *amp.shape), dtype=F32)
    field = sfft.irfft2((spec[0] + 1j * spec[1]) * amp, s=(size, size), workers=1).astype(F32)
    field -= field.mean(axis=(1, 2), keepdims=True)
    field /= field.std(axis=(1, 2), keepdims=True) + F32(1e-8)
    return field


#: spectral slopes of the texture bank: three textures and one smooth illumination field
_BANK_BETAS = (0.7, 1.4, 2.2, 3.5)
_BANK_COPIES = 3


@lru_cache(maxsize=4)
def _texture_bank(side: int) -> np.ndarray:
    """A fixed bank of periodic noise fields (``_BANK_COPIES`` per slope), the same in every process.

    Each scene takes a window of one field per slope at a random circular shift, which is
    much cheaper than drawing new fields and keeps every image a pure function of its seed.
    """
    rng = np.random.default_rng(zlib.crc32(f"texture-bank/{side}".encode()))
    bank = _power_noise(rng, side, [b for b in _BANK_BETAS for _ in range(_BANK_COPIES)])
    bank = bank.reshape(len(_BANK_BETAS), _BANK_COPIES, side, side)
    bank.setflags(write=False)
    return bank


def _textures(rng: np.random.Generator, size: int) -> np.ndarray:
    """(4, size, size): per slope, a random field of the bank, circularly shifted, maybe transposed, cropped."""
    side = max(64, 1 << (size - 1).bit_length())
    bank = _texture_bank(side)
    pick = rng.integers(0, _BANK_COPIES, len(_BANK_BETAS))
    shift = rng.integers(0, side, (len(_BANK_BETAS), 2))
    flip = rng.random(len(_BANK_BETAS)) < 0.5
    out = np.empty((len(_BANK_BETAS), size, size), F32)
    for j in range(len(_BANK_BETAS)):
        f = np.roll(bank[j, pick[j]], (int(shift[j, 0]), int(shift[j, 1])), axis=(0, 1))[:size, :size]
        out[j] = f.T if flip[j] else f
    return out


def _colours(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` linear-light surface colours: log-uniform lightness, mostly muted chroma."""
    lightness = np.exp(rng.uniform(np.log(0.03), np.log(0.85), n))[:, None]
    sat = rng.beta(1.2, 3.0, n)[:, None]
    hue = rng.dirichlet((1.0, 1.0, 1.0), n) * 3.0
    return np.clip(lightness * ((1.0 - sat) + sat * hue), 0.005, 1.0).astype(F32)


def dead_leaves(rng: np.random.Generator, size: int, *, coverage: float = 0.985,
                max_shapes: int = 200) -> np.ndarray:
    """A dead-leaves scene in linear light, (size, size, 3) float32 in (0, 1].

    Shapes (discs, ellipses, rotated rectangles) are drawn front to back -- each fills only
    what is still empty -- until ``coverage`` of the image is filled; radii follow
    ``p(r) ~ r^-3`` on ``[size/18, size/2.5]``, which makes the spectrum fall roughly as
    ``1/f``. Detail below the smallest shape comes from each shape's texture: one of three
    ``1/f^beta`` noise fields (beta 0.7, 1.4, 2.2; see :func:`_textures`) or stripes of
    period 5..20 px, times a linear shading gradient. A smooth illumination field lights
    the whole scene; what is left uncovered shows a textured background. All random
    numbers are drawn up front (a fixed count per image); the loop over shapes only
    builds the map of which shape is in front, and the appearance is computed for all
    pixels at once from that map.
    """
    if size < 8:
        raise ValueError(f"scenes need a size of at least 8 pixels, got {size}")
    yy, xx = _grid(size)
    fields = _textures(rng, size)
    tex, light = fields[:3], fields[3]
    n = max_shapes
    rmin, rmax = max(1.5, size / 18.0), size / 2.5
    a, b = rmin**-2, rmax**-2
    radius = (a - rng.random(n) * (a - b)) ** -0.5
    centre = rng.uniform(-0.3, 1.0 + 0.3, (n, 2)) * size
    theta = rng.uniform(0, np.pi, n)
    kind = rng.random(n)
    ecc = rng.uniform(0.25, 1.0, n)
    alpha = rng.uniform(0.2, 1.37, n)
    cols = _colours(rng, n + 1)
    shade = rng.uniform(0.0, 0.35, n)
    stripes = rng.random(n) < 0.2
    period = rng.uniform(5.0, 20.0, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    amp = np.where(stripes, rng.uniform(0.1, 0.45, n), rng.uniform(0.05, 0.4, n))
    which = rng.integers(0, 3, n)
    light_amp = rng.uniform(0.0, 0.35)

    cos_t, sin_t = np.cos(theta).astype(F32), np.sin(theta).astype(F32)
    # 1. geometry: which shape is in front at each pixel (n = background)
    label = np.full((size, size), n, np.int32)
    free = np.ones((size, size), bool)
    left = size * size - coverage * size * size
    for i in range(n):
        r = float(radius[i])
        cy, cx = float(centre[i, 0]), float(centre[i, 1])
        y0, y1 = max(0, int(cy - r)), min(size, int(cy + r) + 2)
        x0, x1 = max(0, int(cx - r)), min(size, int(cx + r) + 2)
        if y0 >= y1 or x0 >= x1:
            continue
        Y = yy[y0:y1, x0:x1] - F32(cy)
        X = xx[y0:y1, x0:x1] - F32(cx)
        if kind[i] < 0.35:  # disc
            inside = X * X + Y * Y < F32(r * r)
        else:
            u = X * cos_t[i] + Y * sin_t[i]
            v = Y * cos_t[i] - X * sin_t[i]
            if kind[i] < 0.7:  # ellipse
                inside = u * u + (v * F32(1.0 / ecc[i])) ** 2 < F32(r * r)
            else:  # rotated rectangle with half-diagonal r
                inside = (np.abs(u) < F32(r * np.cos(alpha[i]))) & (np.abs(v) < F32(r * np.sin(alpha[i])))
        box = free[y0:y1, x0:x1]
        inside &= box
        label[y0:y1, x0:x1][inside] = i
        box &= ~inside
        if i % 16 == 15 and np.count_nonzero(free) <= left:
            break
    # 2. appearance, for all pixels at once: colour x shading x (1 + amp * texture)
    k = np.minimum(label, n - 1)
    X = xx - centre[:, 1].astype(F32)[k]
    Y = yy - centre[:, 0].astype(F32)[k]
    u = X * cos_t[k] + Y * sin_t[k]
    v = Y * cos_t[k] - X * sin_t[k]
    t = np.choose(which[k], tex)
    on = stripes[k]
    ks = k[on]
    t[on] = np.cos(F32(2 * np.pi) / period.astype(F32)[ks] * v[on] + phase.astype(F32)[ks])
    lum = (1.0 + (shade / radius).astype(F32)[k] * u) * (1.0 + amp.astype(F32)[k] * t)
    back = label == n
    lum[back] = 1.0 + F32(0.2) * tex[1][back]
    img = lum[:, :, None] * cols[label]
    img *= np.clip(1.0 + F32(light_amp) * light, 0.3, None)[:, :, None]
    return np.clip(img, 0.002, 1.0, out=img)


# --------------------------------------------------------------------------- shared pieces


def _blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur over the two spatial axes (reflect borders)."""
    if sigma <= 0:
        return img
    return ndimage.gaussian_filter(img, sigma=(sigma, sigma, 0), mode="reflect", truncate=3.0)


def _correlate(img: np.ndarray, kernel: np.ndarray, mode: str = "reflect") -> np.ndarray:
    """Correlate every channel of (H, W, C) with a 2-D kernel."""
    return ndimage.correlate(img, kernel[:, :, None].astype(F32), mode=mode)


def _exposure_and_gamma(rng: np.random.Generator) -> tuple[float, float]:
    """Exposure gain (log-uniform 0.6..1.8) and display gamma (2.0..2.4), shared by all classes."""
    return float(np.exp(rng.uniform(np.log(0.6), np.log(1.8)))), float(rng.uniform(2.0, 2.4))


def _gamma(lin: np.ndarray, gamma: float) -> np.ndarray:
    """Display encoding ``clip(lin, 0, 1) ** (1 / gamma)``, float32."""
    out = np.clip(lin, 0.0, 1.0).astype(F32, copy=False)
    return np.power(out, F32(1.0 / gamma), out=out)


def _content(rng: np.random.Generator, size: int, scale: float = 1.0) -> np.ndarray:
    """What a generator learned to draw: a scene with lens-like blur, exposure and gamma, display space.

    The blur is the reals' lens blur (0.3..1.0 output pixels) combined with the softening
    demosaicing gives camera images (``DEMOSAIC_SOFTNESS``, a Gaussian of 0.35 px): the
    generators learned from camera pictures, not from the raw scenes. ``scale`` is the
    resolution relative to the output (0.5 for a half-resolution render).
    Colours are made a little more vivid (``CONTENT_SATURATION``): camera images get
    colourfulness from chroma noise that the generators do not have.
    """
    scene = dead_leaves(rng, size)
    gain, gamma = _exposure_and_gamma(rng)
    sigma = float(np.hypot(rng.uniform(0.3, 1.0), DEMOSAIC_SOFTNESS)) * scale
    out = _gamma(_blur(scene, sigma) * F32(gain), gamma)
    grey = out.mean(axis=2, keepdims=True)
    return grey + F32(rng.uniform(*CONTENT_SATURATION)) * (out - grey)


def _area_down(img: np.ndarray, factor: int) -> np.ndarray:
    h, w, c = img.shape
    return img.reshape(h // factor, factor, w // factor, factor, c).mean(axis=(1, 3), dtype=F32)


def _transposed_up(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Stride-2 transposed convolution: zero insertion (gain 4) then a correlation.

    ``mirror`` borders keep the zero-insertion parity at the edges (no bright seams).
    """
    h, w, c = img.shape
    up = np.zeros((2 * h, 2 * w, c), F32)
    up[::2, ::2] = img * F32(4.0)
    return _correlate(up, kernel, mode="mirror")


def _mix(img: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Mix colour channels with a fixed 3 x 3 matrix (a 1 x 1 convolution)."""
    return np.ascontiguousarray(img @ matrix.T.astype(F32))


# --------------------------------------------------------------------------- real images


def _bayer_masks(size: int, phase: int) -> np.ndarray:
    """(size, size, 3) 0/1 masks of an RGGB-family Bayer pattern; ``phase`` picks RGGB/GRBG/GBRG/BGGR."""
    py, px = divmod(phase, 2)
    ry = (np.arange(size) + py) % 2 == 0
    rx = (np.arange(size) + px) % 2 == 0
    red = ry[:, None] & rx[None, :]
    blue = ~ry[:, None] & ~rx[None, :]
    green = ~red & ~blue
    return np.stack([red, green, blue], axis=-1).astype(F32)


_K_RB = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], F32) / 4
_K_G = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]], F32) / 4


def _demosaic_bilinear(mosaic: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Bilinear demosaicing: each channel's samples interpolated by normalised convolution."""
    out = np.empty(masks.shape, F32)
    for ch, k in ((0, _K_RB), (1, _K_G), (2, _K_RB)):
        out[:, :, ch] = ndimage.correlate(mosaic * masks[:, :, ch], k, mode="mirror")
    return out


def camera_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """A real photo, display space float32 (size, size, 3) in [0, 1], before quantisation.

    Scene -> lens blur (sigma 0.3..1.0 px) -> exposure -> raw = scene / white-balance gains
    -> Bayer sampling (random phase) -> Poisson-Gaussian noise ``var = a x + b`` (shot gain
    ``a`` log-uniform 5e-5..8e-3, read variance ``b`` log-uniform 5e-7..3e-4, i.e. ISO
    from low to high) -> clip (saturation) -> bilinear demosaicing -> white balance ->
    gamma. With probability 1/2 the capture is made at 1.25..1.5x the size and down-scaled
    with Pillow's antialiased bicubic filter.
    """
    downscale = rng.random() < DOWNSCALED_SHARE
    cap = int(round(size * rng.uniform(1.25, 1.5))) if downscale else size
    cap += cap % 2
    scene = dead_leaves(rng, cap)
    gain, gamma = _exposure_and_gamma(rng)
    lin = _blur(scene, rng.uniform(0.3, 1.0)) * F32(gain)
    wb = np.array([rng.uniform(1.6, 2.4), 1.0, rng.uniform(1.3, 2.0)], F32)
    masks = _bayer_masks(cap, int(rng.integers(0, 4)))
    mosaic = (lin / wb * masks).sum(axis=2)
    a = float(np.exp(rng.uniform(np.log(5e-5), np.log(8e-3))))
    b = float(np.exp(rng.uniform(np.log(5e-7), np.log(3e-4))))
    noise = rng.standard_normal(mosaic.shape, dtype=F32)
    mosaic = np.clip(mosaic + np.sqrt(F32(a) * np.maximum(mosaic, 0) + F32(b)) * noise, 0.0, 1.0)
    rgb = _demosaic_bilinear(mosaic, masks) * wb
    out = _gamma(rgb, gamma)
    if cap != size:
        out = _resize(out, size)
    return out


def _resize(img: np.ndarray, size: int, resample: Image.Resampling = Image.Resampling.BICUBIC) -> np.ndarray:
    """Resize each channel as a float image with Pillow (antialiased when shrinking)."""
    chans = [np.asarray(Image.fromarray(np.ascontiguousarray(img[:, :, c]), mode="F").resize((size, size), resample))
             for c in range(img.shape[2])]
    return np.stack(chans, axis=-1).astype(F32)


# --------------------------------------------------------------------------- generators


def _normalised(k: np.ndarray) -> np.ndarray:
    return (k / k.sum()).astype(F32)


_BINOMIAL = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], F32) / 16
_HALF_BINOMIAL = 0.3 * _BINOMIAL + 0.7 * np.pad(np.ones((1, 1), F32), 1)
#: [1, 3, 3, 1] x [1, 3, 3, 1] / 64: after zero insertion (gain 4) exactly bilinear 2x up-sampling
_FIR = np.outer([1, 3, 3, 1], [1, 3, 3, 1]).astype(F32) / 64


@lru_cache(maxsize=None)
def _weights(name: str) -> dict[str, np.ndarray]:
    """The fixed "trained weights" of a generator: seeded by its name, the same for every image."""
    rng = np.random.default_rng(zlib.crc32(("weights/" + name).encode()))
    w: dict[str, np.ndarray] = {}
    e = rng.normal(0, 0.04, (3, 3))
    w["mix"] = (np.eye(3) + e - e.mean(axis=1, keepdims=True)).astype(F32)  # rows sum to 1: greys stay grey
    # 3x3 "learned" kernels: mostly identity, some binomial low-pass, random taps; unit DC gain
    delta = np.zeros((3, 3), F32)
    delta[1, 1] = 1.0
    for i in range(3):
        w[f"k{i}"] = _normalised(0.55 * delta + 0.45 * _BINOMIAL + rng.normal(0, 0.02, (3, 3)))
    w["noise_rgb"] = (0.8 + 0.4 * rng.random(3)).astype(F32)  # per-channel weight of injected noise
    return w


def _saturation_matrix(gain: float) -> np.ndarray:
    """3 x 3 matrix that keeps greys and multiplies chroma (the difference from the channel mean) by ``gain``."""
    grey = np.full((3, 3), 1.0 / 3.0)
    return (grey + gain * (np.eye(3) - grey)).astype(F32)


def _sharpen(img: np.ndarray, amount: float, kernel: np.ndarray | None = None) -> np.ndarray:
    """``img + amount * (img - lowpass(img))``: the over-sharpened look of many decoders."""
    low = _correlate(img, _BINOMIAL if kernel is None else kernel)
    return img + F32(amount) * (img - low)


#: grain std range (8-bit levels, log-uniform) per generator, calibrated so that the global
#: noise estimate of the fakes matches that of the camera images (docs/synthetic.md)
GRAIN: dict[str, tuple[float, float]] = {
    "gan": (0.5, 3.0),
    "stylegan": (0.8, 2.5),
    "ldm": (1.3, 4.0),
    "vq": (0.8, 3.5),
    "diffusion": (4.0, 16.0),  # std of the made-up detail, most of it at low frequencies
}


def _grain(rng: np.random.Generator, shape: tuple[int, ...], kernel: np.ndarray, levels: tuple[float, float]
           ) -> np.ndarray:
    """The grain a generator learned from photos: Gaussian, partly achromatic, through a 3x3 kernel.

    Unlike sensor noise it does not depend on the signal, has no Bayer structure, and its
    correlation is that of the generator's last layer. Std log-uniform in ``levels`` (8-bit).
    """
    sigma = float(np.exp(rng.uniform(np.log(levels[0]), np.log(levels[1])))) / 255.0
    c = float(rng.uniform(0.3, 0.8))  # achromatic share
    g = rng.standard_normal(shape, dtype=F32)
    g = F32(1 - c) * g + F32(c * np.sqrt(3.0)) * g.mean(axis=2, keepdims=True)
    g /= F32(np.sqrt((1 - c) ** 2 + c * c + 2 * c * (1 - c) / np.sqrt(3.0)))
    k = kernel / np.sqrt((kernel.astype(np.float64) ** 2).sum())
    return _correlate(g, k.astype(F32)) * F32(sigma)


def gan(rng: np.random.Generator, size: int) -> np.ndarray:
    """GAN: a half-resolution render up-sampled by a stride-2 transposed convolution (checkerboard)."""
    w = _weights("gan")
    low = _content(rng, size // 2, 0.5)
    # Transposed conv, 4x4 kernel: bilinear taps plus a small fixed perturbation whose four
    # polyphase components have unequal sums (relative gains +0.43, -0.49, -0.41, +0.46 %,
    # with GAN_CHECKERBOARD = 4e-4): a period-2 pattern of about +-0.5 % of the signal,
    # the classic checkerboard.
    k = _FIR + F32(GAN_CHECKERBOARD) * np.outer([1, -0.5, 0.8, -1.2], [1.1, -0.7, 0.4, -1.0]).astype(F32)
    up = _transposed_up(low, k)
    # toRGB: a fixed 3x3 convolution with a per-image amount of sharpening, colour mixing, grain.
    out = _mix(_sharpen(up, rng.uniform(0.0, 0.8), w["k0"]), w["mix"])
    return out + _grain(rng, out.shape, w["k1"], GRAIN["gan"])


def stylegan(rng: np.random.Generator, size: int) -> np.ndarray:
    """StyleGAN: modulated conv at half resolution, bilinear FIR up-sampling, full-resolution skip, noise injection.

    Like StyleGAN2's skip generator, the output is the up-sampled half-resolution image plus
    what the full-resolution layer adds (here: part of the scene's finest detail through a
    fixed 3x3 kernel); every layer adds one single-channel noise map with fixed per-channel
    weights (achromatic, signal-independent grain).
    """
    w = _weights("stylegan")
    lo, hi = GRAIN["stylegan"]
    content = _content(rng, size)
    half = _area_down(content, 2)
    style = (1.0 + rng.normal(0, 0.03, 3)).astype(F32)  # per-image modulation, demodulated
    x = _correlate(half * style, w["k0"]) / style
    x = x + F32(np.exp(rng.uniform(np.log(lo), np.log(hi))) / 255.0) * (
        rng.standard_normal((*x.shape[:2], 1), dtype=F32) * w["noise_rgb"])
    x = _transposed_up(x, _FIR)
    detail = content - _transposed_up(half, _FIR)
    x = _sharpen(x + F32(rng.uniform(0.8, 1.0)) * _correlate(detail, w["k1"]), rng.uniform(0.2, 0.8), w["k2"])
    x = x + F32(np.exp(rng.uniform(np.log(lo), np.log(hi))) / 255.0) * (
        rng.standard_normal((*x.shape[:2], 1), dtype=F32) * w["noise_rgb"])
    # toRGB: a colour rendition a little more saturated than the content's
    return _mix(x, _saturation_matrix(1.15) @ w["mix"])


def _vae_decode(latent: np.ndarray, rng: np.random.Generator, w: dict[str, np.ndarray],
                levels: tuple[float, float]) -> np.ndarray:
    """A fixed convolutional decoder: 3x3 conv at latent size, nearest 2x, two 3x3 convs (half
    binomial and a learned one), a fixed tone nonlinearity, an output conv with sharpening,
    the decoder's grain."""
    x = _correlate(latent, w["k0"])
    x = np.repeat(np.repeat(x, 2, axis=0), 2, axis=1)
    x = _correlate(_correlate(x, _HALF_BINOMIAL), w["k1"])
    x = x - F32(0.008) * np.sin(F32(2 * np.pi) * x)  # a smooth, fixed tone curve (slight S)
    x = _mix(_sharpen(x, rng.uniform(0.0, 0.8), w["k2"]), w["mix"])
    return x + _grain(rng, x.shape, w["k2"], levels)


def ldm(rng: np.random.Generator, size: int) -> np.ndarray:
    """Latent diffusion: a 2x-downsampled latent decoded by a fixed nearest-up + conv VAE decoder."""
    latent = _area_down(_content(rng, size), 2)
    return _vae_decode(latent, rng, _weights("ldm"), GRAIN["ldm"])


@lru_cache(maxsize=None)
def _codebook(patch: int, k: int) -> np.ndarray:
    """A fixed codebook of ``k`` unit-norm, mean-free ``patch x patch x 3`` patches learned from scenes.

    "Learning" is a draw of patches from fixed training scenes (those of largest energy
    first), which is what a k-means codebook of natural patches resembles.
    """
    rng = np.random.default_rng(zlib.crc32(b"weights/vq-codebook"))
    pats = []
    for _ in range(2):
        img = _content(rng, 128)
        p = img.reshape(128 // patch, patch, 128 // patch, patch, 3).transpose(0, 2, 1, 3, 4)
        pats.append(p.reshape(-1, patch * patch * 3))
    pats = np.concatenate(pats)
    pats = _remove_patch_mean(pats, patch)
    norm = np.linalg.norm(pats, axis=1)
    order = np.argsort(-norm, kind="stable")[: 4 * k]
    chosen = rng.choice(order, size=k, replace=False)
    book = pats[chosen] / norm[chosen, None]
    return np.ascontiguousarray(book.astype(F32))


def _remove_patch_mean(pats: np.ndarray, patch: int) -> np.ndarray:
    n = len(pats)
    p = pats.reshape(n, patch * patch, 3)
    return (p - p.mean(axis=1, keepdims=True)).reshape(n, -1)


def vq(rng: np.random.Generator, size: int) -> np.ndarray:
    """VQ / autoregressive: each 4x4 patch is its quantised mean colour plus a gain times the best codeword."""
    w = _weights("vq")
    patch, levels = 4, 96
    img = _content(rng, size)
    n = size // patch
    p = img.reshape(n, patch, n, patch, 3).transpose(0, 2, 1, 3, 4).reshape(n * n, patch * patch, 3)
    mean = p.mean(axis=1, keepdims=True)
    res = (p - mean).reshape(n * n, -1)
    book = _codebook(patch, 256)
    corr = res @ book.T
    best = np.argmax(np.abs(corr), axis=1)
    gain = np.take_along_axis(corr, best[:, None], axis=1)
    gain = np.round(gain * 40.0) / 40.0  # quantised gain
    mean = np.round(mean * levels) / levels  # quantised colour
    rec = (gain * book[best]).reshape(n * n, patch * patch, 3) + mean
    out = rec.reshape(n, n, patch, patch, 3).transpose(0, 2, 1, 3, 4).reshape(size, size, 3)
    out = _correlate(out, w["k0"])  # the decoder's smoothing of patch seams
    return out + _grain(rng, out.shape, w["k1"], GRAIN["vq"])


def diffusion(rng: np.random.Generator, size: int) -> np.ndarray:
    """Diffusion: fine detail is Gaussian-prior denoised noise from a few-step Euler sampler, not scene detail.

    The image is ``mu + kappa (x0 - mu) + r``: ``mu`` the blurred scene (what the model is
    sure of), ``kappa`` the share of the true detail it reproduces, and ``r`` the detail it
    makes up: an Euler sampler of the probability-flow ODE ``dr/ds = (r - D(r, s)) / s``
    for a Gaussian prior of spectrum ``S(f) = v p(f)``, ``p ~ 1/(f^2 + f0^2)``, whose ideal
    denoiser is the Wiener filter ``D = S / (S + s^2) r``. Per frequency each step from
    ``s`` to ``s'`` multiplies the residual by ``1 + (s' - s)/s * s^2/(S + s^2)`` (started
    from ``sqrt(S + s_max^2)`` white noise), so ``r`` is white noise shaped by the product
    of those gains -- exact would be ``sqrt(S)``; the few steps over-damp the high
    frequencies, the sampler's spectral fingerprint.
    """
    x0 = _content(rng, size)
    mu = _blur(x0, rng.uniform(0.6, 1.3))
    kappa = F32(rng.uniform(0.35, 0.85))
    f = _radial_freq(size)
    p = F32(1.0) / (f * f + F32(DIFFUSION_F0**2))
    lo, hi = GRAIN["diffusion"]
    v = (np.exp(rng.uniform(np.log(lo), np.log(hi))) / 255.0) ** 2
    prior = (p / p.mean() * F32(v)).astype(F32)
    steps = int(rng.integers(8, 25))
    sigmas = np.geomspace(1.0, 0.002, steps).tolist() + [0.0]
    gain = np.sqrt(prior + F32(sigmas[0] ** 2))
    for s, s_next in zip(sigmas[:-1], sigmas[1:]):
        gain *= 1.0 + F32((s_next - s) / s) * F32(s * s) / (prior + F32(s * s))
    white = rng.standard_normal((3, 2, *f.shape), dtype=F32) * F32(np.sqrt(0.5))
    r = sfft.irfft2((white[:, 0] + 1j * white[:, 1]) * gain, s=(size, size), norm="ortho", workers=1)
    c = float(rng.uniform(0.3, 0.8))  # achromatic share of the made-up detail
    r = r.astype(F32).transpose(1, 2, 0)
    r = F32(1 - c) * r + F32(c) * r.mean(axis=2, keepdims=True)
    return mu + kappa * (x0 - mu) + r


def inpaint(rng: np.random.Generator, size: int) -> np.ndarray:
    """In-painting: a real photo with one or two regions regenerated by the LDM decoder and blended in."""
    real = camera_image(rng, size)
    fill = _vae_decode(_area_down(real, 2), rng, _weights("ldm"), GRAIN["ldm"])
    yy, xx = _grid(size)
    mask = np.zeros((size, size), F32)
    area = rng.uniform(0.12, 0.35) * size * size
    for j in range(int(rng.integers(1, 3))):  # one or two ellipses sharing the area
        ecc = float(rng.uniform(0.5, 1.0))
        r = float(np.sqrt(area / (np.pi * ecc) / (j + 1)))
        cy, cx = rng.uniform(r * 0.6, size - r * 0.6, 2)
        th = rng.uniform(0, np.pi)
        c, s = F32(np.cos(th)), F32(np.sin(th))
        X, Y = xx - F32(cx), yy - F32(cy)
        u, v = (X * c + Y * s) / F32(r), (Y * c - X * s) / F32(r * ecc)
        mask[u * u + v * v < 1] = 1.0
    mask = ndimage.gaussian_filter(mask, rng.uniform(1.0, 4.0))[:, :, None]
    return real * (1 - mask) + fill * mask


GENERATORS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "gan": gan,
    "stylegan": stylegan,
    "ldm": ldm,
    "vq": vq,
    "diffusion": diffusion,
    "inpaint": inpaint,
}


def describe_generators() -> dict[str, str]:
    """Generator name -> its one-line description (the first docstring line)."""
    return {name: (fn.__doc__ or "").strip().splitlines()[0] for name, fn in GENERATORS.items()}


# --------------------------------------------------------------------------- files


def encode(img: np.ndarray, rng: np.random.Generator) -> tuple[bytes, str]:
    """Quantise a display image to 8 bits and store it as JPEG (share ``JPEG_SHARE``) or PNG.

    The format and the quality (uniform in ``JPEG_QUALITIES``) come from ``rng``, a stream
    of its own, so reals and fakes share exactly one format distribution.
    """
    arr = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    pil = Image.fromarray(arr, mode="RGB")
    buf = io.BytesIO()
    if rng.random() < JPEG_SHARE:
        lo, hi = JPEG_QUALITIES
        pil.save(buf, format="JPEG", quality=int(rng.integers(lo, hi + 1)))
        return buf.getvalue(), ".jpg"
    pil.save(buf, format="PNG", compress_level=1)
    return buf.getvalue(), ".png"


def make_image(generator: str, label: int, index: int, *, size: int = 256, seed: int = 0) -> tuple[bytes, str]:
    """The file bytes and suffix of one image of the benchmark (pure function of its arguments)."""
    if generator not in GENERATORS:
        raise KeyError(f"unknown generator {generator!r}; known: {', '.join(GENERATORS)}")
    rng, fmt = image_rng(seed, generator, label, index)
    img = camera_image(rng, size) if label == 0 else GENERATORS[generator](rng, size)
    return encode(img, fmt)


def _one_blas_thread():
    """One BLAS thread: the matrix products are small, and extra threads only contend."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _init_worker() -> None:
    global _WORKER_LIMITS
    _WORKER_LIMITS = _one_blas_thread()


_WORKER_LIMITS = None


def _write_one(task: tuple[str, str, int, int, int, int]) -> str:
    out, generator, label, index, size, seed = task
    data, suffix = make_image(generator, label, index, size=size, seed=seed)
    path = Path(out) / generator / LABELS[label] / f"{index:05d}{suffix}"
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return str(path)


def _libraries() -> dict[str, str]:
    """Versions of everything whose arithmetic or encoders shape the files' bytes."""
    import PIL
    import scipy
    from PIL import features

    return {"numpy": np.__version__, "scipy": scipy.__version__, "pillow": PIL.__version__,
            "libjpeg": str(features.version("jpg")), "zlib": str(features.version("zlib"))}


def generator_fingerprint(*, per_class: int, size: int, generators: Sequence[str] | None, seed: int) -> str:
    """sha256 of this module's source, the settings and the libraries that make the bytes.

    Stored in ``synthetic.json`` as ``generator_sha256``: data written by other generator
    code, other settings or another numpy/scipy/Pillow/libjpeg is visibly different, and a
    cache (the demo's) regenerates it instead of reusing it.
    """
    import hashlib

    names = sorted(GENERATORS if generators is None else generators)
    settings = {"per_class": per_class, "size": size, "generators": names, "seed": seed, "libraries": _libraries()}
    h = hashlib.sha256(Path(__file__).read_bytes())
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()


def generate_benchmark(
    out: Path,
    *,
    per_class: int = 200,
    size: int = 256,
    generators: Sequence[str] | None = None,
    seed: int = 0,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``<out>/<generator>/{0_real,1_fake}/`` for each generator and return ``out``.

    ``per_class`` images per class and generator, ``size`` x ``size`` pixels (a multiple of
    8, at least 16), generators by name (default: all of :data:`GENERATORS`), ``seed`` for
    the whole set, ``workers`` processes. ``progress(done, total)`` is called after every
    image. A ``synthetic.json`` beside the subsets records the parameters. Files are
    written atomically. A subset folder that already holds files is an error unless
    ``overwrite``, which first deletes the images a previous run wrote there (files named
    like ``00012.png``/``.jpg``, and ``.00012.png.tmp`` left by an interrupted write;
    anything else makes it refuse), so no stale image survives.
    """
    names = list(GENERATORS) if generators is None else list(generators)
    unknown = [g for g in names if g not in GENERATORS]
    if unknown:
        raise ValueError(f"unknown generator(s) {', '.join(unknown)}; choose from {', '.join(GENERATORS)}")
    if not names:
        raise ValueError("no generators selected")
    if len(set(names)) != len(names):
        raise ValueError(f"generators listed twice: {names}")
    if per_class < 1:
        raise ValueError(f"per_class must be >= 1, got {per_class}")
    if size < 16 or size % 8:
        raise ValueError(f"size must be a multiple of 8 and at least 16, got {size}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out = Path(out)
    for g in names:
        for lab in LABELS:
            folder = out / g / lab
            old = sorted(folder.iterdir()) if folder.is_dir() else []
            if old and not overwrite:
                raise FileExistsError(f"{folder} already holds {len(old)} file(s); choose an empty folder or "
                                      "pass overwrite=True (--overwrite) to replace a previous benchmark")
            foreign = [p.name for p in old if not _OUR_FILE.fullmatch(p.name)]
            if foreign:
                raise FileExistsError(f"{folder} holds files this generator did not write ({', '.join(foreign[:5])}); "
                                      "refusing to delete them")
            for p in old:
                p.unlink()
            folder.mkdir(parents=True, exist_ok=True)
    tasks = [(str(out), g, lab, i, size, seed) for g in names for lab in (0, 1) for i in range(per_class)]
    total = len(tasks)
    if workers == 1:
        with _one_blas_thread():
            for done, task in enumerate(tasks, 1):
                _write_one(task)
                if progress is not None:
                    progress(done, total)
    else:
        import multiprocessing as mp

        method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
        with mp.get_context(method).Pool(workers, initializer=_init_worker) as pool:
            for done, _ in enumerate(pool.imap_unordered(_write_one, tasks, chunksize=8), 1):
                if progress is not None:
                    progress(done, total)
    meta = {"format": "aigi-synthetic", "version": 1, "seed": seed, "size": size, "per_class": per_class,
            "generators": {g: describe_generators()[g] for g in names}, "jpeg_share": JPEG_SHARE,
            "jpeg_qualities": list(JPEG_QUALITIES), "libraries": _libraries(),
            "generator_sha256": generator_fingerprint(per_class=per_class, size=size, generators=names, seed=seed)}
    (out / MANIFEST).write_text(json.dumps(meta, indent=2) + "\n")
    return out
