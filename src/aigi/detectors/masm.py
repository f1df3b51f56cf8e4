"""MASM / FMSD (Zhang et al., arXiv 2601.01041): forgery-aware layer selection + multi-artifact subspaces.

A **face-forgery** method with no public code; built from the abstracts of the paper's three arXiv
versions on top of Effort (the sources and a component-by-component table of what is the paper's
and what is ours are in ``docs/effort.md``). Every selected Linear is split by its SVD into a
frozen principal part and ``K`` trainable *artifact subspaces*: subspace ``i`` holds the singular
triplets ``r + i·m … r + (i+1)·m − 1`` (``m = subspace_rank``, ordered by singular value, so
subspace 0 starts with the largest residual one), ``r = n − K·m``.

Two masks, chosen by ``mask_mode``:

``"layer"`` (default; the v3 abstract: layers are scored by the bias–variance of their gradients,
only the selected ones are updated and decomposed). For the first ``selection_steps`` training
steps (the probe) no decomposed layer is updated (the head trains); each candidate layer ``l``
records its whole-weight gradient ``G_l,t = ∂L/∂W_l`` (out × in, from a hook on its output:
``G = Σ_tokens ∂L/∂y ⊗ x``) of every step ``t``. Then, per layer,

* bias² ``b_l = ‖Ḡ_l‖_F²`` with ``Ḡ_l = mean_t G_l,t``;
* variance ``v_l = (1/(T−1)) Σ_t ‖G_l,t − Ḡ_l‖_F²``;
* score ``s_l = b_l / (b_l + v_l)`` (the consistent share of the gradient energy, in [0, 1]; our
  choice of how to combine the two, equivalent in ranking to the signal-to-noise ratio ``b/v``);

and the ``ceil(select_fraction · L)`` highest-scoring layers are selected (ties: the earlier
layer). From then on only the selected layers' artifact subspaces receive gradients. The others
are un-decomposed: their residual is merged back into ``weight_main`` (which is then the pretrained
``W``) and ``S_res`` set to 0, so nothing an optimiser does to them (zero gradients under DDP,
weight decay) changes what they compute; in one process their ``.grad`` even stays ``None``.
An adapter checkpoint stores them with ``S_res = 0``; loading it merges the freshly recomputed
SVD residual first, so the reload is exact. The accumulators (one out × in float32 tensor per
candidate layer: 96 × 4 MB on ViT-L/14) exist only during the probe and are not checkpointed, so a
run resumed inside the probe restarts it; the result (``layer_selected``, ``layer_score``) is
saved with the adapter. With several processes the statistics are summed over processes before
the choice, so every process selects the same layers. Under fp16 mixed precision the recorded
gradients carry the loss scale (the score ignores a constant scale; a scale change or an overflow
during the probe distorts it): probe in bf16 or float32.

``"subspace"`` (the documented variant; our reading of v1's "learning state of each artifact
subspace"). Per layer and subspace ``i``, on every training backward:

* ``g_i = ‖∂L/∂U_i‖² + ‖∂L/∂S_i‖² + ‖∂L/∂V_i‖²`` (raw gradient energy of this backward),
* ``e_i ← β e_i + (1 − β) g_i`` (EMA, ``β = mask_ema``), ``p_i = e_i / Σ_j e_j`` (share),
* from the ``mask_warmup``-th update on, ``mask_i = mask_scale`` if ``p_i > mask_threshold`` else 1,
* the mask multiplies the subspace's gradients in the backward (a gradient gate: logits never
  depend on it). ``mask_scale = 0`` (default) freezes the dominant subspace for that step.

Both gates act only on the gradient that flows through the layer's forward (the classification
signal); the regularisers act on the factors directly and, in layer mode, only on the selected
layers. The gates' state is made of buffers saved in the state dict and in adapter checkpoints.

Losses (weights are project choices, both 1.0):

* subspace orthogonality ``Σ_{i<j} ‖U_iᵀU_j‖_F² + ‖V_i V_jᵀ‖_F²`` (zero at initialisation);
* spectral consistency ``‖σ(U_res diag(S_res) V_res) − σ₀‖² / ‖σ₀‖²`` against the original residual
  singular values ``σ₀`` (computed from two thin QRs and a (K·m)² SVD; zero at initialisation).

Defaults: K = 4 subspaces of rank 1 on the attention projections: 96 × 4 × 2,049 = 786,816
trainable residual numbers on ViT-L/14, plus the head (layer mode updates a quarter of them).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, model_validator

from ..layers.svd_residual import SVDResidualLinear
from .base import DetectorConfig
from .effort import Effort, EffortConfig
from .registry import FACE_FORGERY, register

__all__ = ["MASM", "MASMConfig", "MultiSubspaceResidualLinear", "bias_variance_scores", "select_top_layers",
           "subspace_mask"]

GateMode = Literal["layer", "subspace", "none"]


def bias_variance_scores(grad_sum: torch.Tensor, grad_sq_sum: torch.Tensor,
                         count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-layer ``(bias², variance, score)`` from summed gradients.

    ``grad_sum`` (L, ·): ``Σ_t G_l,t`` flattened per layer; ``grad_sq_sum`` (L,): ``Σ_t ‖G_l,t‖²``;
    ``count`` = T ≥ 2 steps. ``bias² = ‖Ḡ‖²``, ``variance = (Σ‖G_t‖² − T‖Ḡ‖²) / (T − 1)`` (clamped at
    0 against rounding), ``score = bias² / (bias² + variance)`` (0 for a layer with no gradient).
    """
    if count < 2:
        raise ValueError(f"the bias-variance statistics need at least 2 gradient steps, got {count}")
    if grad_sum.shape[0] != grad_sq_sum.shape[0]:
        raise ValueError(f"grad_sum has {grad_sum.shape[0]} layers but grad_sq_sum has {grad_sq_sum.shape[0]}")
    mean = grad_sum.reshape(grad_sum.shape[0], -1).double() / count
    bias = mean.square().sum(1)
    var = ((grad_sq_sum.double() - count * bias) / (count - 1)).clamp_min(0.0)
    total = bias + var
    score = torch.where(total > 0, bias / total.clamp_min(torch.finfo(total.dtype).tiny), torch.zeros_like(total))
    return bias, var, score


def select_top_layers(scores: torch.Tensor, fraction: float) -> torch.Tensor:
    """Boolean mask (L,) of the ``ceil(fraction · L)`` highest scores (at least one; ties: lower index)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    n = scores.numel()
    keep = max(1, math.ceil(fraction * n - 1e-9))
    order = sorted(range(n), key=lambda i: (-float(scores[i]), i))
    mask = torch.zeros(n, dtype=torch.bool)
    mask[order[:keep]] = True
    return mask


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
        if layer.gate == "layer":
            # probing, or not selected: no gradient at all (.grad stays None: no update, no weight decay)
            if layer.probing or not bool(layer.layer_selected):
                return None, None, None, None
            return None, gu, gs, gv
        mask = layer.observe_gradients(gu, gs, gv)
        per_col = mask.repeat_interleave(layer.subspace_rank).to(gu.dtype)
        out_u = None if gu is None else gu * per_col
        out_s = None if gs is None else gs * per_col
        out_v = None if gv is None else gv * per_col[:, None]
        return None, out_u, out_s, out_v


class MultiSubspaceResidualLinear(SVDResidualLinear):
    """An SVD-residual layer whose ``K·m`` trainable triplets form ``K`` artifact subspaces of rank ``m``."""

    adapter_buffers: ClassVar[tuple[str, ...]] = ("grad_ema", "mask", "mask_steps", "layer_selected", "layer_score")

    def __init__(self, in_features: int, out_features: int, r: int, *, num_subspaces: int = 4,
                 mask_ema: float = 0.9, mask_threshold: float = 0.5, mask_warmup: int = 10,
                 mask_scale: float = 0.0, gate: GateMode = "subspace", bias: bool = True,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
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
        if gate not in ("layer", "subspace", "none"):
            raise ValueError(f"gate must be 'layer', 'subspace' or 'none', got {gate!r}")
        self.gate = gate
        # layer mode: chosen by the bias-variance probe (False until then); score in [0, 1], -1 = not probed
        self.register_buffer("layer_selected", torch.tensor(gate != "layer", device=device))
        self.register_buffer("layer_score", torch.tensor(-1.0, device=device))
        self.probing = False  # set by the detector during the probe; never saved
        self.reset_probe()
        self.register_load_state_dict_pre_hook(_merge_before_adapter_load)

    @torch.no_grad()
    def merge_residual(self) -> None:
        """Fold the residual into ``weight_main`` and zero ``S_res``: the layer is the plain weight again.

        For the layers the probe leaves out: with ``S_res = 0`` no gradient, optimiser state or
        weight decay can change what the layer computes (``U_res``, ``V_res`` no longer matter).
        """
        w = self.weight_main
        merged = w.to(torch.float64) + (self.U_res.to(torch.float64) * self.S_res.to(torch.float64)) @ \
            self.V_res.to(torch.float64)
        self.weight_main.copy_(merged.to(w.dtype))
        self.S_res.zero_()
        for name in ("_u_basis", "_v_basis"):  # cached regulariser bases described the old split
            self._buffers.pop(name, None)

    # -- layer mode: whole-weight gradient statistics ----------------------------------------
    def reset_probe(self) -> None:
        """Drop the probe's accumulators (``Σ_t G_t``, ``Σ_t ‖G_t‖²``, T)."""
        self.grad_sum: torch.Tensor | None = None
        self.grad_sq_sum = 0.0
        self.probe_count = 0

    @torch.no_grad()
    def observe_weight_gradient(self, grad_w: torch.Tensor) -> None:
        """Add one step's whole-weight gradient ``∂L/∂W`` (out × in) to the probe's sums."""
        if grad_w.shape != (self.out_features, self.in_features):
            raise ValueError(f"weight gradient must be {(self.out_features, self.in_features)}, got {tuple(grad_w.shape)}")
        g = grad_w.detach().float()
        self.grad_sum = g.clone() if self.grad_sum is None else self.grad_sum.add_(g)
        self.grad_sq_sum += float(g.double().square().sum())
        self.probe_count += 1

    def _probe_hook(self, x: torch.Tensor, y: torch.Tensor) -> None:
        def hook(gy: torch.Tensor) -> None:
            xs = x.detach().reshape(-1, self.in_features).float()
            self.observe_weight_gradient(gy.reshape(-1, self.out_features).float().T @ xs)
        y.register_hook(hook)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        if self.probing and self.training and y.requires_grad:
            self._probe_hook(x, y)
        return y

    def _after_decompose(self) -> None:
        self.S_init.copy_(self.S_res)

    def _factors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.gate != "none" and self.training and torch.is_grad_enabled() and self.U_res.requires_grad:
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
        return super().extra_repr() + f", subspaces={self.num_subspaces}x{self.subspace_rank}, gate={self.gate}"


def _merge_before_adapter_load(module: MultiSubspaceResidualLinear, state_dict: dict[str, Any], prefix: str,
                               *args: Any) -> None:
    """An adapter (no ``weight_main``) of a layer the probe left out: merge the fresh SVD residual first.

    The adapter stores such a layer with ``S_res = 0``; its residual lives in the full model's
    ``weight_main``, which an adapter does not carry. Rebuilt by the same SVD, the residual is merged
    exactly as :meth:`MultiSubspaceResidualLinear.merge_residual` did during training.
    """
    score, selected = state_dict.get(prefix + "layer_score"), state_dict.get(prefix + "layer_selected")
    if (module.gate != "layer" or prefix + "weight_main" in state_dict or score is None or selected is None
            or float(score) < 0 or bool(selected) or float(module.layer_score) >= 0):
        return
    module.merge_residual()


class MASMConfig(EffortConfig):
    trainable_rank: int | None = Field(None, ge=1, le=4096, description="derived: num_subspaces × subspace_rank")
    num_subspaces: int = Field(4, ge=1, le=64, description="K artifact subspaces per matrix (project default)")
    subspace_rank: int = Field(1, ge=1, le=1024, description="singular triplets per artifact subspace")
    mask: bool = Field(True, description="selective mask on the decomposed layers' gradients (off: every subspace learns)")
    mask_mode: Literal["layer", "subspace"] = Field(
        "layer", description="layer: the paper's (v3) bias-variance layer selection; subspace: the per-subspace "
        "gradient-energy gate (project variant)")
    selection_steps: int = Field(20, ge=2, le=1_000_000, description="layer mode: training steps whose gradients score the layers")
    select_fraction: float = Field(0.25, gt=0.0, le=1.0, description="layer mode: share of candidate layers selected")
    mask_ema: float = Field(0.9, ge=0.0, lt=1.0, description="EMA decay of the per-subspace gradient energy")
    mask_threshold: float = Field(0.5, gt=0.0, le=1.0, description="share of a layer's gradient energy above which a subspace is masked")
    mask_warmup: int = Field(10, ge=0, le=1_000_000, description="updates before the mask may act")
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
        if self.mask and self.mask_mode == "subspace" and self.mask_threshold <= 1.0 / self.num_subspaces:
            raise ValueError(
                f"mask_threshold must exceed 1/num_subspaces = {1.0 / self.num_subspaces:.3g} (an even split), "
                f"got {self.mask_threshold}")
        return self


@register("masm", task=FACE_FORGERY)
class MASM(Effort):
    """MASM/FMSD (faces): bias-variance gradient layer selection, K artifact SVD subspaces per selected layer."""

    config_class: ClassVar[type[DetectorConfig]] = MASMConfig
    config: MASMConfig

    def layer_class(self) -> type[SVDResidualLinear]:
        return MultiSubspaceResidualLinear

    def layer_kwargs(self) -> dict[str, Any]:
        c = self.config
        return {"num_subspaces": c.num_subspaces, "mask_ema": c.mask_ema,
                "mask_threshold": c.mask_threshold if c.mask else float("inf"),
                "mask_warmup": c.mask_warmup, "mask_scale": c.mask_scale,
                "gate": c.mask_mode if c.mask else "none"}

    def masm_layers(self) -> list[MultiSubspaceResidualLinear]:
        return [m for _, m in self.svd_layers() if isinstance(m, MultiSubspaceResidualLinear)]

    # -- layer mode ----------------------------------------------------------------------
    @property
    def layer_mode(self) -> bool:
        return self.config.mask and self.config.mask_mode == "layer"

    def selection_done(self) -> bool:
        """Layer mode: whether the probe has chosen the layers (always True in the other modes)."""
        layers = self.masm_layers()
        return not self.layer_mode or not layers or float(layers[0].layer_score) >= 0

    def active_layers(self) -> list[MultiSubspaceResidualLinear]:
        """The decomposed layers that are updated: the selected ones in layer mode (none while probing)."""
        layers = self.masm_layers()
        if not self.layer_mode:
            return layers
        return [m for m in layers if bool(m.layer_selected) and float(m.layer_score) >= 0]

    @torch.no_grad()
    def select_layers(self) -> torch.Tensor:
        """End the probe: score every candidate layer from its gradients, select the top ones; returns the mask."""
        layers = self.masm_layers()
        missing = [i for i, m in enumerate(layers) if m.grad_sum is None]
        if missing:
            raise RuntimeError(f"MASM layer selection: {len(missing)} of {len(layers)} layers saw no gradient "
                               f"during the probe (first: layer {missing[0]})")
        device = layers[0].grad_sum.device
        sums = torch.stack([m.grad_sum.reshape(-1) for m in layers])
        sq = torch.tensor([m.grad_sq_sum for m in layers], dtype=torch.float64, device=device)
        count = torch.tensor([m.probe_count for m in layers], dtype=torch.float64, device=device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            for t in (sums, sq, count):
                torch.distributed.all_reduce(t)
        if not bool((count == count[0]).all()):
            raise RuntimeError(f"MASM layer selection: layers saw different numbers of steps {count.tolist()}")
        _, _, score = bias_variance_scores(sums, sq, int(count[0]))
        chosen = select_top_layers(score.cpu(), self.config.select_fraction)
        for m, sc, ch in zip(layers, score.tolist(), chosen.tolist()):
            m.layer_score.fill_(sc)
            m.layer_selected.fill_(ch)
            m.reset_probe()
            m.probing = False
            if not ch:
                m.merge_residual()
        return chosen

    def layer_selection(self) -> torch.Tensor:
        """Layer mode: (layers,) bool, True where the layer is updated (all False before the probe ends)."""
        return torch.tensor([bool(m.layer_selected) and float(m.layer_score) >= 0
                             for m in self.masm_layers()], dtype=torch.bool)

    def training_loss(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        if self.layer_mode and self.training and not self.selection_done():
            layers = self.masm_layers()
            if layers and layers[0].probe_count >= self.config.selection_steps:
                self.select_layers()
            else:
                for m in layers:
                    m.probing = True
        return super().training_loss(batch)

    def regularizers(self) -> dict[str, tuple[float, torch.Tensor]]:
        c = self.config
        layers = self.active_layers()
        terms: dict[str, tuple[float, torch.Tensor]] = {}
        if layers and c.orthogonality != "off":
            terms["orth"] = (c.reg_weight, torch.stack([m.orthogonality_loss(c.orthogonality) for m in layers]).mean())
        if layers and c.keep_singular_values:
            terms["ksv"] = (c.reg_weight, torch.stack([m.keep_sv_loss() for m in layers]).mean())
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
