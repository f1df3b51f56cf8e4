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

``rule="official"`` ranks patches exactly as DGS-Net's released
``PatchSelectionTransform`` does, so imported DGS-Net checkpoints see the patches
they were trained on: per patch ``np.dot(patch, (0.299, 0.587, 0.114))``, divided
by 255 only when its maximum exceeds 1, ``fftshift(fft2)``, power normalised by
``sum + 1e-12``, entropy ``-sum(p * log2(p + 1e-12))``, then numpy's default
(not stable) ``argsort``. The two rules order patches the same way except where
entropies tie or nearly tie (e.g. flat patches of different colours, which tie at
0 under ours). The official code draws its shuffle from Python's global
``random`` at test time too; :func:`image_seed` gives a per-image seed instead, so
the same image always gets the same arrangement.
"""

from __future__ import annotations

import hashlib
from typing import Literal

import numpy as np
from PIL import Image

from .io import to_rgb

__all__ = ["GRAY_WEIGHTS", "image_seed", "official_patch_entropies", "patch_entropies", "select_patches"]

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


def official_patch_entropies(rgb: np.ndarray, patch: int = 32) -> np.ndarray:
    """Entropies of the ``patch`` x ``patch`` blocks of ``rgb`` (H, W, 3) computed as DGS-Net's code does.

    Same block order and top-left crop as :func:`patch_entropies`; returns shape
    ``(H // patch, W // patch)``. Each block is processed on its own, in the order of
    operations of the released code, so the values (and hence near-tie orderings)
    are the official ones bit for bit.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise ValueError(f"official_patch_entropies expects an H x W x 3 array, got shape {rgb.shape}")
    blocks = _split_patches(rgb, patch)
    rows, cols = blocks.shape[:2]
    out = np.zeros((rows, cols), dtype=np.float64)
    weights = [0.299, 0.587, 0.114]
    for r in range(rows):
        for c in range(cols):
            gray = np.dot(blocks[r, c][..., :3], weights)
            if gray.max() > 1:
                gray = gray / 255.0
            power = np.abs(np.fft.fftshift(np.fft.fft2(gray))) ** 2
            flat = power.flatten()
            prob = flat / (np.sum(flat) + 1e-12)
            out[r, c] = -np.sum(prob * np.log2(prob + 1e-12))
    return out


def image_seed(img: Image.Image | np.ndarray, seed: int = 0) -> np.random.Generator:
    """A generator seeded by ``seed`` and the image's pixels (size included): same image, same draws."""
    arr = np.ascontiguousarray(np.asarray(to_rgb(img) if isinstance(img, Image.Image) else img))
    h = hashlib.blake2b(digest_size=8)
    h.update(np.asarray(arr.shape, dtype=np.int64).tobytes())
    h.update(arr.tobytes())
    return np.random.default_rng([int(seed), int.from_bytes(h.digest(), "little")])


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
    rule: Literal["aigi", "official"] = "aigi",
) -> Image.Image:
    """Keep the ``n_low`` lowest- and ``n_high`` highest-entropy patches as a grid image.

    Returns an RGB image of ``grid * patch`` pixels square (224 by default),
    patches tiled row-major. ``rng`` shuffles the kept patches (training); with
    ``rng=None`` they stay in ascending-entropy order, low group first. Images
    with fewer than ``grid**2`` patches are tiled up to ``grid * patch`` first.
    ``rule`` picks the entropy and sort (module docstring).
    """
    if rule not in ("aigi", "official"):
        raise ValueError(f"rule must be 'aigi' or 'official', got {rule!r}")
    if n_low < 0 or n_high < 0 or n_low + n_high != grid * grid:
        raise ValueError(
            f"n_low + n_high must equal grid**2 = {grid * grid}, got {n_low} + {n_high}"
        )
    rgb = np.asarray(to_rgb(img))
    side = grid * patch
    if (rgb.shape[0] // patch) * (rgb.shape[1] // patch) < grid * grid:
        rgb = _tile_to(rgb, side)

    if rule == "official":
        order = np.argsort(official_patch_entropies(rgb, patch).ravel())
    else:
        order = np.argsort(patch_entropies(_to_gray(rgb), patch).ravel(), kind="stable")
    chosen = np.concatenate([order[:n_low], order[order.size - n_high :]])
    if rng is not None:
        chosen = rng.permutation(chosen)

    blocks = _split_patches(rgb, patch).reshape(-1, patch, patch, 3)[chosen]
    out = blocks.reshape(grid, grid, patch, patch, 3).swapaxes(1, 2).reshape(side, side, 3)
    return Image.fromarray(np.ascontiguousarray(out))
