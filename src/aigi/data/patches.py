"""NS-Net / DGS-Net Patch Selection: keep the flattest and busiest patches.

The image is cut into 32x32 patches; each patch is scored by the Shannon
entropy of its normalised power spectrum; the 24 lowest- and 25 highest-entropy
patches are kept and tiled into a 7x7 grid (224x224). No resampling happens,
so fine generation artifacts survive. Exact rules chosen here:

* grayscale ``(0.299 R + 0.587 G + 0.114 B) / 255`` on 0..255 values;
* the image is cropped to a multiple of ``patch`` from the **top-left** corner
  (the right and bottom remainders are dropped);
* entropy of ``P = |fft2(p)|^2 / sum |fft2(p)|^2`` with the natural log and
  ``0 log 0 = 0``; an all-zero patch (no power at all) has entropy 0. The
  ``fftshift`` of the reference code only permutes the spectrum and does not
  change the entropy, so it is skipped;
* ties are broken by patch position (row-major) through a stable sort;
* selected patches are shuffled with the given ``rng``; without an rng the
  order is the low patches then the high patches, each in ascending entropy;
* **small-image fallback**: when the image holds fewer than ``grid**2``
  patches it is first translate-duplicated (tiled, never resampled) until both
  sides reach ``grid * patch`` pixels, then selected as usual; the result is
  still deterministic and still made of original pixels.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .io import to_rgb

__all__ = ["GRAY_WEIGHTS", "patch_entropies", "select_patches"]

GRAY_WEIGHTS: tuple[float, float, float] = (0.299, 0.587, 0.114)


def _to_gray(rgb: np.ndarray) -> np.ndarray:
    """uint8 (H,W,3) -> float64 (H,W) grey in 0..1 with the ITU-R 601 weights."""
    w = np.asarray(GRAY_WEIGHTS, dtype=np.float64)
    return (rgb.astype(np.float64) @ w) / 255.0


def _split_patches(arr: np.ndarray, patch: int) -> np.ndarray:
    """(H,W[,C]) -> (rows, cols, patch, patch[, C]) after a top-left crop to a multiple of patch."""
    rows, cols = arr.shape[0] // patch, arr.shape[1] // patch
    cropped = arr[: rows * patch, : cols * patch]
    tail = cropped.shape[2:]
    blocks = cropped.reshape(rows, patch, cols, patch, *tail)
    return blocks.swapaxes(1, 2)


def patch_entropies(gray: np.ndarray, patch: int = 32) -> np.ndarray:
    """Spectral entropy of every ``patch``x``patch`` block of a 2-D grey image.

    ``gray`` is cropped top-left to a multiple of ``patch``; returns a float64
    array of shape ``(H // patch, W // patch)`` in row-major patch order. Low
    values mean flat content (a constant patch scores 0: all power in DC),
    high values mean noise-like content (white noise approaches ``log(patch**2)``).
    """
    gray = np.asarray(gray, dtype=np.float64)
    if gray.ndim != 2:
        raise ValueError(f"patch_entropies expects a 2-D grey array, got shape {gray.shape}")
    if patch < 1:
        raise ValueError(f"patch must be positive, got {patch}")
    blocks = _split_patches(gray, patch)  # (R, C, p, p)
    if blocks.size == 0:
        return np.zeros(blocks.shape[:2], dtype=np.float64)
    power = np.abs(np.fft.fft2(blocks, axes=(-2, -1))) ** 2
    total = power.sum(axis=(-2, -1), keepdims=True)
    prob = np.divide(power, total, out=np.zeros_like(power), where=total > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(prob > 0, prob * np.log(prob), 0.0)
    return -terms.sum(axis=(-2, -1))


def _tile_to(arr: np.ndarray, target: int) -> np.ndarray:
    """Repeat ``arr`` (H,W,C) until both sides are at least ``target`` (no resampling)."""
    h, w = arr.shape[:2]
    reps_h = max(1, -(-target // h))
    reps_w = max(1, -(-target // w))
    return np.tile(arr, (reps_h, reps_w, 1))


def select_patches(
    img: Image.Image,
    rng: np.random.Generator | None = None,
    *,
    patch: int = 32,
    n_low: int = 24,
    n_high: int = 25,
    grid: int = 7,
) -> Image.Image:
    """Keep the ``n_low`` lowest- and ``n_high`` highest-entropy patches as a grid image.

    Returns an RGB image of ``grid * patch`` pixels square (224 by default),
    patches tiled row-major. ``rng`` shuffles the kept patches (training); with
    ``rng=None`` they stay in ascending-entropy order, low group first. Images
    with fewer than ``grid**2`` patches are tiled up to ``grid * patch`` first.
    """
    if n_low < 0 or n_high < 0 or n_low + n_high != grid * grid:
        raise ValueError(
            f"n_low + n_high must equal grid**2 = {grid * grid}, got {n_low} + {n_high}"
        )
    rgb = np.asarray(to_rgb(img))
    side = grid * patch
    if (rgb.shape[0] // patch) * (rgb.shape[1] // patch) < grid * grid:
        rgb = _tile_to(rgb, side)

    ent = patch_entropies(_to_gray(rgb), patch).ravel()
    order = np.argsort(ent, kind="stable")
    chosen = np.concatenate([order[:n_low], order[order.size - n_high :]])
    if rng is not None:
        chosen = rng.permutation(chosen)

    blocks = _split_patches(rgb, patch).reshape(-1, patch, patch, 3)[chosen]
    out = blocks.reshape(grid, grid, patch, patch, 3).swapaxes(1, 2).reshape(side, side, 3)
    return Image.fromarray(np.ascontiguousarray(out))
