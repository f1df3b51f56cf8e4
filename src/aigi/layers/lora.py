"""LoRA (Hu et al., 2021) for ``nn.Linear``: ``y = W x + b + s · B A dropout(x)``.

``A`` (rank × in) starts Kaiming-uniform, ``B`` (out × rank) starts at zero, so a freshly
wrapped layer computes exactly what the wrapped one did. The scale ``s`` is ``alpha / rank``
(the original LoRA paper) or ``alpha / sqrt(rank)`` (the CLIP-LoRA ``loralib`` that DGS-Net's
code derives from); :class:`LoRAConfig` picks one.

* :meth:`LoRALinear.fold` merges ``s · B A`` into the dense weight once, so a trained model
  runs exactly as fast as its backbone; a persistent ``merged`` flag keeps a folded model's
  full checkpoint reloadable.
* :func:`lora_disabled` switches every adapter off for a forward pass: DGS-Net's frozen
  teacher is the student's own backbone with LoRA off, so no second copy is held.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

__all__ = ["LoRAConfig", "LoRALinear", "fold_lora", "inject_lora", "lora_disabled", "lora_layers"]


class LoRAConfig(BaseModel):
    """Where the adapters go and how big they are; ``rank = 0`` means no LoRA at all."""

    model_config = ConfigDict(extra="forbid")

    rank: int = Field(6, ge=0, le=1024, description="rank r of B A; 0 disables LoRA (frozen encoder)")
    alpha: float = Field(6.0, gt=0, description="LoRA alpha")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="dropout on the adapter's input (training only)")
    targets: tuple[str, ...] = Field(
        ("q_proj", "k_proj", "v_proj"),
        description="names of the nn.Linear children that get an adapter (HF CLIP attention: q_proj, k_proj, v_proj, out_proj)",
    )
    scaling: Literal["alpha/r", "alpha/sqrt(r)"] = Field(
        "alpha/sqrt(r)", description="s = alpha/r (LoRA paper) or alpha/sqrt(r) (CLIP-LoRA loralib, DGS-Net)"
    )

    @property
    def scale(self) -> float:
        if self.rank == 0:
            return 0.0
        return self.alpha / self.rank if self.scaling == "alpha/r" else self.alpha / math.sqrt(self.rank)


class LoRALinear(nn.Module):
    """A frozen ``nn.Linear`` plus a trainable low-rank update ``s · B A``.

    State-dict keys: ``weight``/``bias`` (the wrapped layer's, unchanged names), ``lora_A``,
    ``lora_B`` and the boolean buffer ``merged``.
    """

    def __init__(self, base: nn.Linear, *, rank: int, alpha: float, dropout: float = 0.0,
                 scaling: Literal["alpha/r", "alpha/sqrt(r)"] = "alpha/sqrt(r)") -> None:
        super().__init__()
        if not isinstance(base, nn.Linear):
            raise TypeError(f"LoRALinear wraps nn.Linear, got {type(base).__name__}")
        if rank < 1:
            raise ValueError(f"LoRA rank must be at least 1, got {rank}")
        self.in_features, self.out_features = base.in_features, base.out_features
        self.weight = base.weight
        self.bias = base.bias
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        self.rank = rank
        self.scale = LoRAConfig(rank=rank, alpha=alpha, scaling=scaling).scale
        self.lora_A = nn.Parameter(torch.empty(rank, self.in_features, dtype=base.weight.dtype, device=base.weight.device))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, rank, dtype=base.weight.dtype, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.register_buffer("merged", torch.tensor(False))
        #: a plain attribute (not state): :func:`lora_disabled` turns it off for teacher passes
        self.enabled = True

    def delta_weight(self) -> torch.Tensor:
        """``s · B A``, shape (out, in)."""
        return (self.lora_B @ self.lora_A) * self.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight, self.bias)
        if not self.enabled:
            if bool(self.merged):
                raise RuntimeError("this LoRA layer is folded into its weight; it cannot be disabled any more")
            return y
        if bool(self.merged):
            return y
        update = F.linear(F.linear(self.dropout(x), self.lora_A), self.lora_B)
        return y + update * self.scale

    @torch.no_grad()
    def fold(self) -> None:
        """Merge ``s · B A`` into ``weight`` (idempotent); afterwards the adapter branch is skipped."""
        if bool(self.merged):
            return
        self.weight.add_(self.delta_weight().to(self.weight.dtype))
        self.merged.fill_(True)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, rank={self.rank}, scale={self.scale:.4g}"


def inject_lora(root: nn.Module, config: LoRAConfig) -> list[LoRALinear]:
    """Replace every ``nn.Linear`` child of ``root`` named in ``config.targets`` by a LoRALinear.

    Returns the new layers in module order; raises if nothing matched (a typo in ``targets``
    would otherwise silently train nothing).
    """
    if config.rank == 0:
        return []
    made: list[LoRALinear] = []
    for module in list(root.modules()):
        for name, child in list(module.named_children()):
            if name in config.targets and isinstance(child, nn.Linear):
                layer = LoRALinear(child, rank=config.rank, alpha=config.alpha, dropout=config.dropout,
                                   scaling=config.scaling)
                setattr(module, name, layer)
                made.append(layer)
    if not made:
        raise ValueError(f"no nn.Linear named {list(config.targets)} found for LoRA in {type(root).__name__}")
    return made


def lora_layers(root: nn.Module) -> list[LoRALinear]:
    return [m for m in root.modules() if isinstance(m, LoRALinear)]


def fold_lora(root: nn.Module) -> int:
    """Fold every LoRA layer under ``root``; returns how many were folded."""
    layers = lora_layers(root)
    for layer in layers:
        layer.fold()
    return len(layers)


@contextmanager
def lora_disabled(root: nn.Module) -> Iterator[None]:
    """Run ``root`` as its frozen base model: every LoRA branch is skipped inside the block."""
    layers = lora_layers(root)
    previous = [layer.enabled for layer in layers]
    for layer in layers:
        layer.enabled = False
    try:
        yield
    finally:
        for layer, was in zip(layers, previous):
            layer.enabled = was
