"""Projection onto the complement of a semantic (text) subspace: NS-Net's NULL-space step.

Given text embeddings ``V`` (n × D) of image captions, the right singular vectors of ``V``
with the largest singular values span the directions CLIP uses for *content*. NS-Net keeps
only what is orthogonal to them::

    V = U S Wᵀ,   W_k = top-k right singular vectors (D × k),   P = I − W_k W_kᵀ

``P`` is symmetric and idempotent (an orthogonal projector) and ``P w = 0`` for every removed
direction ``w``. With more than D varied captions ``V`` has full rank and the exact null
space (``k = None``: remove every direction with a non-zero singular value) is empty, which
is why a fixed ``k`` is the default.

:class:`SemanticNullSpace` holds ``P`` as a persistent buffer, so a saved detector reloads
with exactly the projection it was trained with, and a ring buffer ("bank") of the most
recent caption embeddings that ``P`` is recomputed from during training.

The paper's form (NS-Net, arXiv 2508.01248) projects onto the null space of *all* training
caption features, computed once: :func:`caption_gram` accumulates ``G = Σ_i v̂_i v̂_iᵀ`` (D × D,
float64, rows L2-normalised) over any number of captions, and :func:`null_space_projector` keeps
the eigenvectors of ``G`` (the right singular vectors of ``V``) with the smallest eigenvalues
whose summed share of the captions' energy ``tr G = n`` is at most ``energy`` ("near-zero" is
the paper's word; this energy budget is our way of making it a number). Then
``Σ_i ‖P v̂_i‖² = Σ_kept λ ≤ energy · n``: every training caption feature is annihilated up to
that budget, exactly (to rounding) when ``energy = 0`` and the captions do not span R^D.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SemanticNullSpace", "caption_gram", "null_space_projector", "semantic_basis", "semantic_projector"]

log = logging.getLogger("aigi")

#: singular values below ``RANK_TOL * s_max`` count as zero (numerical rank)
RANK_TOL = 1e-5


def semantic_basis(text_feats: torch.Tensor, k: int | None, *, normalize: bool = True) -> torch.Tensor:
    """Orthonormal basis ``W_k`` (D × k') of the top semantic directions of ``text_feats`` (n × D).

    ``k' = min(k, numerical rank)``; ``k=None`` takes the whole numerical rank (the exact
    null-space formulation). Rows are L2-normalised first when ``normalize`` (every caption
    weighs the same); the SVD is uncentred because the span, not the variance, is removed.
    Computed in float32 (float64 stays float64) whatever the autocast state.
    """
    if text_feats.ndim != 2:
        raise ValueError(f"text features must be (n, D), got shape {tuple(text_feats.shape)}")
    if k is not None and k < 0:
        raise ValueError(f"k must be >= 0 or None, got {k}")
    dtype = torch.float64 if text_feats.dtype == torch.float64 else torch.float32
    with torch.autocast(device_type=text_feats.device.type, enabled=False):
        v = text_feats.detach().to(dtype)
        d = v.shape[1]
        if v.shape[0] == 0 or k == 0:
            return v.new_zeros(d, 0)
        if normalize:
            v = F.normalize(v, dim=1)
        _, s, vh = torch.linalg.svd(v, full_matrices=False)
        if s.numel() == 0 or float(s[0]) == 0.0:
            return v.new_zeros(d, 0)
        rank = int((s > RANK_TOL * s[0]).sum())
        keep = rank if k is None else min(k, rank)
        return vh[:keep].T.contiguous()


def caption_gram(text_feats: torch.Tensor, gram: torch.Tensor | None = None,
                 weights: torch.Tensor | None = None) -> torch.Tensor:
    """``gram + Σ_i w_i v̂_i v̂_iᵀ`` (D × D, float64) for the L2-normalised rows ``v̂_i`` of ``text_feats`` (n × D).

    ``weights`` (n,), default 1: how many times each row occurs (a repeated caption is encoded once).
    """
    if text_feats.ndim != 2:
        raise ValueError(f"text features must be (n, D), got shape {tuple(text_feats.shape)}")
    v = F.normalize(text_feats.detach().to(torch.float64), dim=1)
    if weights is not None:
        if weights.shape != (v.shape[0],):
            raise ValueError(f"weights must have shape ({v.shape[0]},), got {tuple(weights.shape)}")
        g = (v * weights.to(v)[:, None]).T @ v
    else:
        g = v.T @ v
    if gram is None:
        return g
    if gram.shape != g.shape:
        raise ValueError(f"gram is {tuple(gram.shape)} but the features give {tuple(g.shape)}")
    return gram.to(torch.float64) + g


def null_space_projector(gram: torch.Tensor, energy: float = 0.0) -> tuple[torch.Tensor, int]:
    """Projector onto the (near-)null space of the captions with Gram matrix ``gram``; returns ``(P, dims)``.

    Keeps the eigenvectors of smallest eigenvalue while their summed eigenvalues stay within
    ``energy · tr(gram)`` (numerical zeros, ``λ ≤ D · eps · λ_max``, always count as zero).
    Raises when no direction qualifies: the captions span the whole space at that budget.
    """
    if gram.ndim != 2 or gram.shape[0] != gram.shape[1]:
        raise ValueError(f"gram must be a square matrix, got shape {tuple(gram.shape)}")
    if not 0.0 <= energy < 1.0:
        raise ValueError(f"energy must be in [0, 1), got {energy}")
    g = 0.5 * (gram.to(torch.float64) + gram.to(torch.float64).T)
    evals, evecs = torch.linalg.eigh(g)  # ascending
    d = g.shape[0]
    top = float(evals[-1]) if d else 0.0
    if top <= 0.0:
        raise ValueError("null_space_projector: the Gram matrix is zero (no caption was seen)")
    evals = torch.where(evals <= d * torch.finfo(torch.float64).eps * top, torch.zeros_like(evals), evals)
    budget = energy * float(evals.sum())
    within = torch.cumsum(evals, 0) <= budget
    within |= evals == 0
    dims = int(within.to(torch.int64).cumprod(0).sum())  # the leading run of qualifying directions
    if dims == 0:
        raise ValueError(
            f"the captions span all {d} dimensions: no direction holds at most {energy:g} of their energy, so "
            f"the null space is empty; raise null_energy, or use projection 'bank'/'batch' (top-k removal)")
    n = evecs[:, :dims]
    p = n @ n.T
    return 0.5 * (p + p.T), dims


def semantic_projector(text_feats: torch.Tensor, k: int | None, *, normalize: bool = True) -> torch.Tensor:
    """``P = I − W_k W_kᵀ`` (D × D) for the text embeddings ``text_feats`` (n × D); see :func:`semantic_basis`."""
    w = semantic_basis(text_feats, k, normalize=normalize)
    d = text_feats.shape[1]
    p = torch.eye(d, dtype=w.dtype, device=w.device) - w @ w.T
    return 0.5 * (p + p.T)  # exactly symmetric


class SemanticNullSpace(nn.Module):
    """``f ↦ f P`` with ``P`` a persistent buffer, refitted from a caption bank while training.

    Buffers (all in the state dict): ``projector`` (D × D, starts as the identity: nothing
    removed before any caption is seen), ``bank`` (``bank_size`` × D caption embeddings, a
    ring buffer), ``bank_count`` (how many rows are filled) and ``bank_next`` (the next row
    to overwrite). Saving the bank makes training resume exactly.
    """

    def __init__(self, dim: int, k: int | None, bank_size: int) -> None:
        super().__init__()
        if bank_size < 1:
            raise ValueError(f"bank_size must be positive, got {bank_size}")
        self.dim, self.k, self.bank_size = dim, k, bank_size
        self.register_buffer("projector", torch.eye(dim))
        self.register_buffer("bank", torch.zeros(bank_size, dim))
        self.register_buffer("bank_count", torch.zeros((), dtype=torch.long))
        self.register_buffer("bank_next", torch.zeros((), dtype=torch.long))
        self._warned_empty = False

    @property
    def fitted_once(self) -> bool:
        """Whether ``projector`` was set (it starts as the identity, which no fit can produce).

        Derived from ``projector`` itself rather than stored, so checkpoints keep their keys.
        """
        return not torch.equal(self.projector, torch.eye(self.dim, dtype=self.projector.dtype,
                                                         device=self.projector.device))

    @property
    def null_dims(self) -> int:
        """Dimension of the kept subspace: ``tr P`` (rounded)."""
        return int(round(float(torch.trace(self.projector.double()))))

    @torch.no_grad()
    def fit_null_space(self, gram: torch.Tensor, energy: float) -> torch.Tensor:
        """Set ``projector`` to the null-space projector of the captions' Gram matrix (see :func:`null_space_projector`)."""
        p, dims = null_space_projector(gram, energy)
        self.projector.copy_(p.to(self.projector.dtype))
        log.info("null space of the training captions: %d of %d dimensions kept", dims, self.dim)
        return self.projector

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return feats @ self.projector.to(feats.dtype)

    @torch.no_grad()
    def add(self, text_feats: torch.Tensor) -> None:
        """Append caption embeddings (n × D) to the ring buffer (the newest ``bank_size`` are kept)."""
        x = F.normalize(text_feats.detach().float(), dim=1).to(self.bank.dtype)
        if x.shape[0] > self.bank_size:
            x = x[-self.bank_size :]
        n = x.shape[0]
        start = int(self.bank_next)
        idx = (torch.arange(n, device=self.bank.device) + start) % self.bank_size
        self.bank[idx] = x
        self.bank_next.fill_((start + n) % self.bank_size)
        self.bank_count.fill_(min(int(self.bank_count) + n, self.bank_size))

    @torch.no_grad()
    def refit(self) -> torch.Tensor:
        """Recompute ``projector`` from the filled part of the bank; returns it."""
        n = int(self.bank_count)
        w = semantic_basis(self.bank[:n], self.k)
        p = torch.eye(self.dim, dtype=w.dtype, device=w.device) - w @ w.T
        p = 0.5 * (p + p.T)
        if w.shape[1] == self.dim and not self._warned_empty:
            self._warned_empty = True
            log.warning("null-space projection removes all %d dimensions (the caption bank has full rank and "
                        "k=%s), so every feature projects to 0; set k below the feature width", self.dim, self.k)
        self.projector.copy_(p.to(self.projector.dtype))
        return self.projector

    @torch.no_grad()
    def fit(self, text_feats: torch.Tensor) -> torch.Tensor:
        """Replace the bank by ``text_feats`` (its newest ``bank_size`` rows) and refit ``P``."""
        self.bank.zero_()
        self.bank_count.zero_()
        self.bank_next.zero_()
        self.add(text_feats)
        return self.refit()
