"""MASM (Zhang et al., 2026): multi-artifact subspaces with a selective layer mask.

No public code; built from the paper's abstract on top of Effort. Every selected Linear is split
by its SVD into a frozen principal part and ``K`` trainable *artifact subspaces*: subspace ``i``
holds the singular triplets ``r + i·m … r + (i+1)·m − 1`` (``m = subspace_rank``, ordered by
singular value, so subspace 0 starts with the largest residual one), ``r = n − K·m``.

Selective layer mask (project choice, the paper only says "learning state of each artifact
subspace"; third-party summaries mention gradient statistics). Per layer and subspace ``i``:

* ``g_i = ‖∂L/∂U_i‖² + ‖∂L/∂S_i‖² + ‖∂L/∂V_i‖²`` (raw gradient energy of this backward),
* ``e_i ← β e_i + (1 − β) g_i`` (EMA, ``β = mask_ema``), ``p_i = e_i / Σ_j e_j`` (share),
* from the ``mask_warmup``-th update on, ``mask_i = mask_scale`` if ``p_i > mask_threshold`` else 1: a
  subspace that takes more than that share of its layer's learning signal is held back, so no
  single artifact type dominates; the others keep learning.
* the mask multiplies the subspace's gradients in the backward (a gradient gate: it changes the
  update, never the function, so logits do not depend on it). The EMA and mask of this backward
  are applied to this backward's gradients. ``mask_scale = 0`` (default) freezes the dominant
  subspace for that step: with Adam a constant factor ≠ 0 would be normalised away, a zero is not
  (Adam's momentum still carries ~1/(1 − β₁) steps).

Only the gradient that flows through the layer's forward (the classification signal) is counted
and gated; the regularisers below act on the factors directly.

The EMA (``grad_ema``), mask (``mask``) and update counter (``mask_steps``) are buffers in the
state dict and in adapter checkpoints, so training resumes exactly. With several processes each
one's statistics come from its own slice of the batch (DDP keeps rank 0's buffers).

Losses (weights are project choices, both 1.0):

* subspace orthogonality ``Σ_{i<j} ‖U_iᵀU_j‖_F² + ‖V_i V_jᵀ‖_F²`` (zero at initialisation: the
  SVD bases are orthonormal);
* spectral consistency ``‖σ(U_res diag(S_res) V_res) − σ₀‖² / ‖σ₀‖²``: the singular values of the
  trainable part against the original residual singular values ``σ₀``. With the frozen principal
  part fixed and the subspaces kept orthogonal to it (Effort's optional orthogonality term), these
  are exactly the singular values of the folded weight that can move. Computed from two thin QRs
  and a (K·m)² SVD, so it is cheap; zero at initialisation.

Defaults: K = 4 subspaces of rank 1 on the attention projections: 96 × 4 × 2,049 = 786,816
trainable residual numbers on ViT-L/14, plus the head.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field, model_validator

from ..layers.svd_residual import SVDResidualLinear
from .base import DetectorConfig
from .effort import Effort, EffortConfig
from .registry import FACE_FORGERY, register

__all__ = ["MASM", "MASMConfig", "MultiSubspaceResidualLinear", "subspace_mask"]


def subspace_mask(ema: torch.Tensor, steps: int, *, threshold: float, warmup: int, scale: float) -> torch.Tensor:
    """The mask rule on gradient-energy EMAs ``ema`` (..., K): ``scale`` where a share exceeds ``threshold``.

    No masking during the first ``warmup`` updates or while a layer has seen no gradient.
    """
    total = ema.sum(dim=-1, keepdim=True)
    share = torch.where(total > 0, ema / total.clamp_min(torch.finfo(ema.dtype).tiny), torch.zeros_like(ema))
    dominated = (share > threshold) & (steps >= warmup)
    return torch.where(dominated, torch.full_like(ema, scale), torch.ones_like(ema))


class _SubspaceGate(torch.autograd.Function):
    """Identity in the forward; in the backward, updates the layer's statistics and gates the gradients."""

    @staticmethod
    def forward(ctx, layer: "MultiSubspaceResidualLinear", u: torch.Tensor, s: torch.Tensor,  # type: ignore[override]
                v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        ctx.layer = layer
        return u.view_as(u), s.view_as(s), v.view_as(v)

    @staticmethod
    def backward(ctx, gu: torch.Tensor, gs: torch.Tensor, gv: torch.Tensor):  # type: ignore[override]
        layer: MultiSubspaceResidualLinear = ctx.layer
        mask = layer.observe_gradients(gu, gs, gv)
        k, m = layer.num_subspaces, layer.subspace_rank
        per_col = mask.repeat_interleave(m).to(gu.dtype)
        out_u = None if gu is None else gu * per_col
        out_s = None if gs is None else gs * per_col
        out_v = None if gv is None else gv * per_col[:, None]
        return None, out_u, out_s, out_v


class MultiSubspaceResidualLinear(SVDResidualLinear):
    """An SVD-residual layer whose ``K·m`` trainable triplets form ``K`` artifact subspaces of rank ``m``."""

    adapter_buffers: ClassVar[tuple[str, ...]] = ("grad_ema", "mask", "mask_steps")

    def __init__(self, in_features: int, out_features: int, r: int, *, num_subspaces: int = 4,
                 mask_ema: float = 0.9, mask_threshold: float = 0.5, mask_warmup: int = 10,
                 mask_scale: float = 0.0, bias: bool = True, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__(in_features, out_features, r, bias=bias, device=device, dtype=dtype)
        k = self.n - self.r
        if k % num_subspaces:
            raise ValueError(f"trainable rank {k} is not divisible into {num_subspaces} subspaces")
        self.num_subspaces, self.subspace_rank = num_subspaces, k // num_subspaces
        self.mask_ema, self.mask_threshold, self.mask_warmup, self.mask_scale = mask_ema, mask_threshold, mask_warmup, mask_scale
        self.register_buffer("S_init", torch.zeros(k, device=device, dtype=dtype))
        self.register_buffer("grad_ema", torch.zeros(num_subspaces, device=device, dtype=torch.float32))
        self.register_buffer("mask", torch.ones(num_subspaces, device=device, dtype=torch.float32))
        self.register_buffer("mask_steps", torch.zeros((), device=device, dtype=torch.long))

    def _after_decompose(self) -> None:
        self.S_init.copy_(self.S_res)

    def _factors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.training and torch.is_grad_enabled() and self.U_res.requires_grad:
            return _SubspaceGate.apply(self, self.U_res, self.S_res, self.V_res)
        return self.U_res, self.S_res, self.V_res

    @torch.no_grad()
    def subspace_energy(self, gu: torch.Tensor | None, gs: torch.Tensor | None, gv: torch.Tensor | None) -> torch.Tensor:
        """Per-subspace squared gradient norm ``g_i`` (K,) from the factor gradients."""
        k, m = self.num_subspaces, self.subspace_rank
        e = torch.zeros(k, device=self.grad_ema.device, dtype=torch.float32)
        if gu is not None:
            e += gu.float().square().sum(0).view(k, m).sum(1)
        if gs is not None:
            e += gs.float().square().view(k, m).sum(1)
        if gv is not None:
            e += gv.float().square().sum(1).view(k, m).sum(1)
        return e

    @torch.no_grad()
    def observe_gradients(self, gu: torch.Tensor | None, gs: torch.Tensor | None, gv: torch.Tensor | None) -> torch.Tensor:
        """Fold one backward's gradient energies into the EMA, recompute and return the mask."""
        g = self.subspace_energy(gu, gs, gv)
        self.grad_ema.mul_(self.mask_ema).add_(g, alpha=1.0 - self.mask_ema)
        self.mask_steps.add_(1)
        self.mask.copy_(subspace_mask(self.grad_ema, int(self.mask_steps), threshold=self.mask_threshold,
                                      warmup=self.mask_warmup, scale=self.mask_scale))
        return self.mask

    def subspace_orthogonality_loss(self) -> torch.Tensor:
        """``Σ_{i<j} ‖U_iᵀU_j‖_F² + ‖V_i V_jᵀ‖_F²`` over the artifact subspaces."""
        k, m = self.num_subspaces, self.subspace_rank
        block = torch.arange(k, device=self.U_res.device).repeat_interleave(m)
        off = (block[:, None] != block[None, :]).to(self.U_res.dtype)
        gu = self.U_res.T @ self.U_res
        gv = self.V_res @ self.V_res.T
        return 0.5 * ((gu.square() * off).sum() + (gv.square() * off).sum())

    def spectral_consistency_loss(self) -> torch.Tensor:
        """``‖σ(U_res diag(S_res) V_res) − σ₀‖² / ‖σ₀‖²`` (both sorted descending)."""
        qu, ru = torch.linalg.qr(self.U_res)
        qv, rv = torch.linalg.qr(self.V_res.T)
        sigma = torch.linalg.svdvals(ru @ torch.diag(self.S_res) @ rv.T)
        ref = self.S_init.abs().sort(descending=True).values
        return (sigma - ref).square().sum() / ref.square().sum().clamp_min(torch.finfo(ref.dtype).tiny)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", subspaces={self.num_subspaces}x{self.subspace_rank}"


class MASMConfig(EffortConfig):
    trainable_rank: int | None = Field(None, ge=1, description="derived: num_subspaces × subspace_rank")
    num_subspaces: int = Field(4, ge=1, description="K artifact subspaces per matrix (project default)")
    subspace_rank: int = Field(1, ge=1, description="singular triplets per artifact subspace")
    mask: bool = Field(True, description="selective layer mask on the subspaces' gradients")
    mask_ema: float = Field(0.9, ge=0.0, lt=1.0, description="EMA decay of the per-subspace gradient energy")
    mask_threshold: float = Field(0.5, gt=0.0, le=1.0, description="share of a layer's gradient energy above which a subspace is masked")
    mask_warmup: int = Field(10, ge=0, description="updates before the mask may act")
    mask_scale: float = Field(0.0, ge=0.0, le=1.0, description="gradient factor of a masked subspace (0 freezes it for that step)")
    subspace_orth_weight: float = Field(1.0, ge=0.0, description="weight of the between-subspace orthogonality loss")
    spectral_weight: float = Field(1.0, ge=0.0, description="weight of the spectral-consistency loss")

    @model_validator(mode="after")
    def _rank(self) -> "MASMConfig":
        if self.r is not None:
            raise ValueError("MASM sets the residual rank as num_subspaces × subspace_rank; leave r unset")
        rank = self.num_subspaces * self.subspace_rank
        if self.trainable_rank is None:
            self.trainable_rank = rank
        elif self.trainable_rank != rank:
            raise ValueError(f"trainable_rank {self.trainable_rank} != num_subspaces × subspace_rank = {rank}")
        if self.mask and self.mask_threshold <= 1.0 / self.num_subspaces:
            raise ValueError(
                f"mask_threshold must exceed 1/num_subspaces = {1.0 / self.num_subspaces:.3g} (an even split), "
                f"got {self.mask_threshold}")
        return self


@register("masm", task=FACE_FORGERY)
class MASM(Effort):
    """MASM: Effort's residual split into K artifact subspaces with a gradient-driven layer mask."""

    config_class: ClassVar[type[DetectorConfig]] = MASMConfig
    config: MASMConfig

    def layer_class(self) -> type[SVDResidualLinear]:
        return MultiSubspaceResidualLinear

    def layer_kwargs(self) -> dict[str, Any]:
        c = self.config
        return {"num_subspaces": c.num_subspaces, "mask_ema": c.mask_ema,
                "mask_threshold": c.mask_threshold if c.mask else float("inf"),
                "mask_warmup": c.mask_warmup, "mask_scale": c.mask_scale}

    def masm_layers(self) -> list[MultiSubspaceResidualLinear]:
        return [m for _, m in self.svd_layers() if isinstance(m, MultiSubspaceResidualLinear)]

    def regularizers(self) -> dict[str, tuple[float, torch.Tensor]]:
        terms = super().regularizers()
        layers = self.masm_layers()
        c = self.config
        if layers and c.subspace_orth_weight > 0:
            terms["subspace_orth"] = (c.subspace_orth_weight,
                                      torch.stack([m.subspace_orthogonality_loss() for m in layers]).mean())
        if layers and c.spectral_weight > 0:
            terms["spectral"] = (c.spectral_weight,
                                 torch.stack([m.spectral_consistency_loss() for m in layers]).mean())
        return terms

    def mask_state(self) -> torch.Tensor:
        """Current masks of every layer, (layers, K): 1 = learning, ``mask_scale`` = held back."""
        layers = self.masm_layers()
        if not layers:
            return torch.zeros(0, self.config.num_subspaces)
        return torch.stack([m.mask for m in layers])
