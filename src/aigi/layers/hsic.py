"""Hilbert–Schmidt Independence Criterion with Gaussian kernels (Gretton et al., 2005).

The biased empirical estimate used by CausalCLIP::

    HSIC(X, Y) = tr(K H L H) / (n − 1)²,   H = I − 1 1ᵀ / n,
    K_ij = exp(−‖x_i − x_j‖² / (2 σ_X²)),   L_ij likewise for Y with σ_Y.

It is ≥ 0 and, for characteristic kernels, 0 in the population exactly when X and Y are
independent. Bandwidth (project choice, the usual median heuristic): ``σ`` is the median
of the pairwise Euclidean distances between *distinct* samples, computed without gradient;
when that median is 0 (e.g. a constant input) ``σ = 1`` is used, and a constant input then
gives ``K = 1 1ᵀ`` and ``HSIC = 0``.
"""

from __future__ import annotations

import torch

__all__ = ["gaussian_kernel", "hsic", "median_bandwidth"]


def _sq_dists(x: torch.Tensor) -> torch.Tensor:
    sq = (x * x).sum(1, keepdim=True)
    return (sq + sq.T - 2.0 * (x @ x.T)).clamp_min(0.0)


@torch.no_grad()
def median_bandwidth(x: torch.Tensor) -> torch.Tensor:
    """Median pairwise distance between distinct rows of ``x`` (n × d); 1.0 when it is 0."""
    n = x.shape[0]
    d = _sq_dists(x.float()).sqrt()
    off = d[~torch.eye(n, dtype=torch.bool, device=x.device)]
    if off.numel() == 0:
        return torch.ones((), device=x.device)
    med = off.median()
    return torch.where(med > 0, med, torch.ones_like(med))


def gaussian_kernel(x: torch.Tensor, sigma: torch.Tensor | float | None = None) -> torch.Tensor:
    """``K_ij = exp(−‖x_i − x_j‖² / (2σ²))``; ``sigma=None`` takes the median heuristic."""
    x = x.reshape(x.shape[0], -1).float()
    if sigma is None:
        sigma = median_bandwidth(x)
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    return torch.exp(-_sq_dists(x) / (2.0 * sigma * sigma))


def hsic(x: torch.Tensor, y: torch.Tensor, *, sigma_x: float | None = None,
         sigma_y: float | None = None) -> torch.Tensor:
    """Biased HSIC estimate between paired samples ``x`` (n × ·) and ``y`` (n × ·)."""
    n = x.shape[0]
    if y.shape[0] != n:
        raise ValueError(f"x and y must have the same number of samples, got {n} and {y.shape[0]}")
    if n < 2:
        raise ValueError("HSIC needs at least 2 samples")
    k = gaussian_kernel(x, sigma_x)
    l = gaussian_kernel(y, sigma_y)
    # H K H without forming H: subtract row and column means
    kc = k - k.mean(0, keepdim=True) - k.mean(1, keepdim=True) + k.mean()
    lc = l - l.mean(0, keepdim=True) - l.mean(1, keepdim=True) + l.mean()
    # tr(K H L H) = tr(HKH · HLH) = sum of the elementwise product (both symmetric)
    return (kc * lc).sum() / float((n - 1) ** 2)
