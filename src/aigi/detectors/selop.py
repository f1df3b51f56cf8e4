"""SeLop (Wang, Hu, Wang, He, Fu; arXiv 2601.11915): remove a learned low-rank "spurious" subspace.

A **face-forgery** method (its introduction puts whole-image GAN/diffusion synthesis out of
scope) with no public code; built from the abstracts of its two arXiv versions (v1 "From Spurious
to Causal: Low-rank Orthogonal Subspace Intervention for Generalizable Face Forgery Detection",
method LOSI, 0.43 M trainable; v2 "Low-rank Orthogonal Subspace Intervention for Generalizable
Face Forgery Detection", method SeLop, 0.39 M trainable). The frozen CLIP feature ``f`` (the
tower's ``pooler_output``, 1024-d on ViT-L/14) loses its component in a learned orthonormal basis
``Q`` (D × k, ``QᵀQ = I``): ``f' = (I − QQᵀ) f = f − Q(Qᵀf)``, and the classifier sees only ``f'``.

Project choices (the abstracts leave them open):

* ``Q`` is kept exactly orthonormal by ``torch.nn.utils.parametrizations.orthogonal`` with the
  Householder map (no trivialisation buffer, so the state holds only the D × k reflectors);
  it is trained jointly with the head by the classification loss.
* Initialisation ``init="pca"`` (default): the top-``k`` principal directions of training
  features. ``init_from_features(features)`` does it explicitly (call it with as many features as
  you like before training); otherwise it happens lazily on the first training batch (gathered
  over processes under DDP), with directions beyond the batch's rank completed by a seeded random
  orthonormal complement. ``init="random"``: a seeded random orthonormal basis at construction.
  The buffer ``q_initialized`` records that it happened (saved with the model, so a reload never
  re-initialises).
* ``k = 16`` and an MLP head ``Linear(D, 364) → ReLU → Linear(364, 1)``, sized so the trainable
  count matches **v2's 0.39 M** on ViT-L/14: 1024·16 + (1024·364 + 364) + (364 + 1) = 389,849
  (``hidden: 403`` gives v1's 0.43 M: 429,863).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn
from torch.nn.utils import parametrizations

from .base import DetectorConfig
from .clip_base import ClipDetector, ClipDetectorConfig
from .registry import FACE_FORGERY, register

__all__ = ["SeLop", "SeLopConfig", "SpuriousSubspace", "pca_basis"]


def _orthonormal_completion(basis: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """Extend the orthonormal columns of ``basis`` (D × j) to D × k with seeded random directions."""
    d, j = basis.shape
    if j >= k:
        return basis[:, :k]
    g = torch.Generator(device="cpu").manual_seed(seed)
    extra = torch.randn(d, k - j, generator=g, dtype=torch.float64).to(basis.device)
    extra = extra - basis @ (basis.T @ extra)
    q, _ = torch.linalg.qr(torch.cat([basis, extra], dim=1))
    q[:, :j] = basis  # QR may flip signs; keep the given columns exactly
    return q


def pca_basis(features: torch.Tensor, k: int, *, seed: int = 0) -> torch.Tensor:
    """Top-``k`` principal directions (D × k, float64, orthonormal) of ``features`` (N × D).

    Centred, SVD in float64; each direction's sign makes its largest-magnitude entry positive
    (deterministic). Directions beyond the data's rank come from a seeded random completion.
    """
    if features.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {tuple(features.shape)}")
    x = features.detach().to(torch.float64)
    x = x - x.mean(dim=0, keepdim=True)
    _, s, vh = torch.linalg.svd(x, full_matrices=False)
    tol = s.max().clamp_min(1e-300) * max(x.shape) * torch.finfo(torch.float64).eps if s.numel() else 0.0
    rank = int((s > tol).sum()) if s.numel() else 0
    v = vh[: min(rank, k)].T
    if v.numel():
        idx = v.abs().argmax(dim=0)
        v = v * torch.sign(v[idx, torch.arange(v.shape[1])])[None, :]
    return _orthonormal_completion(v, k, seed)


class SpuriousSubspace(nn.Module):
    """``f ↦ f − Q(Qᵀf)`` with ``Q`` (D × k) orthonormal by parametrisation."""

    def __init__(self, dim: int, rank: int) -> None:
        super().__init__()
        if not 1 <= rank < dim:
            raise ValueError(f"rank must satisfy 1 <= rank < {dim} (feature width), got {rank}")
        self.Q = nn.Parameter(torch.eye(dim, rank))  # a valid basis until PCA or random init replaces it
        parametrizations.orthogonal(self, "Q", orthogonal_map="householder", use_trivialization=False)

    @torch.no_grad()
    def set_basis(self, basis: torch.Tensor) -> None:
        """Assign an orthonormal basis (D × k)."""
        self.Q = basis.to(self.parametrizations.Q.original.dtype)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        q = self.Q
        return f - (f @ q) @ q.T


class SeLopConfig(ClipDetectorConfig):
    rank: int = Field(16, ge=1, le=4096, description="k: dimension of the removed spurious subspace")
    hidden: int = Field(364, ge=0, le=65536, description="hidden width of the MLP head (0: a linear head); 364 puts the "
                        "trainable count at v2's 0.39 M on ViT-L/14")
    init: Literal["pca", "random"] = Field("pca", description="initial Q: PCA of training features, or random orthonormal")
    seed: int = Field(0, ge=0, le=2**63 - 1, description="seed of the random basis / random PCA completion")


@register("selop", task=FACE_FORGERY)
class SeLop(ClipDetector):
    """SeLop (faces): frozen CLIP features minus a learned orthonormal spurious subspace, MLP head (0.39 M)."""

    config_class: ClassVar[type[DetectorConfig]] = SeLopConfig
    config: SeLopConfig
    tiny_overrides: ClassVar[dict[str, Any]] = {"backbone": "tiny", "rank": 4, "hidden": 8}

    def __init__(self, config: SeLopConfig, *, pretrained_backbone: bool = True) -> None:
        super().__init__(config, pretrained_backbone=pretrained_backbone)
        d = self.feature_dim
        self.projection = SpuriousSubspace(d, self.config.rank)
        self.head = self.build_head(d, self.config.hidden)
        self.register_buffer("q_initialized", torch.tensor(False))
        if self.config.init == "random":
            self.projection.set_basis(_orthonormal_completion(torch.zeros(d, 0, dtype=torch.float64), self.config.rank,
                                                              self.config.seed))
            self.q_initialized.fill_(True)

    @staticmethod
    def build_head(dim: int, hidden: int) -> nn.Module:
        """``Linear(dim, hidden) → ReLU → Linear(hidden, 1)``, or ``Linear(dim, 1)`` when hidden = 0."""
        if hidden == 0:
            return nn.Linear(dim, 1)
        return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """Frozen CLIP ``pooler_output`` (no gradients)."""
        with torch.no_grad():
            return self.pooled(pixels)

    @torch.no_grad()
    def init_from_features(self, features: torch.Tensor) -> None:
        """Set ``Q`` to the top-k principal directions of ``features`` (N × D) and mark it initialised."""
        if features.shape[-1] != self.feature_dim:
            raise ValueError(f"features have width {features.shape[-1]}, the backbone gives {self.feature_dim}")
        self.projection.set_basis(pca_basis(features, self.config.rank, seed=self.config.seed))
        self.q_initialized.fill_(True)

    def _lazy_init(self, feats: torch.Tensor) -> None:
        if bool(self.q_initialized) or self.config.init != "pca":
            return
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            parts = [torch.empty_like(feats) for _ in range(torch.distributed.get_world_size())]
            torch.distributed.all_gather(parts, feats.contiguous())
            feats = torch.cat(parts)
        self.init_from_features(feats)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.head(self.projection(self.features(pixels))).squeeze(-1)

    def training_loss(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        feats = self.features(batch["pixels"])
        if self.training:
            self._lazy_init(feats)
        logits = self.head(self.projection(feats)).squeeze(-1)
        bce = F.binary_cross_entropy_with_logits(logits, batch["label"].to(logits.dtype))
        return {"loss": bce, "bce": bce.detach()}
