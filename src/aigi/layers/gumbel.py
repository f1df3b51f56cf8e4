"""Per-dimension binary Gumbel-Softmax mask (Jang et al. 2017; Maddison et al. 2017).

Each feature dimension is a two-way choice keep / drop with logit difference ``ℓ``. The
two-class Gumbel-Softmax ``softmax((ℓ_keep + g₁, ℓ_drop + g₂) / τ)[keep]`` equals
``sigmoid((ℓ + g₁ − g₂) / τ)`` and ``g₁ − g₂`` is Logistic(0, 1), so the relaxed mask is::

    m_soft = sigmoid((ℓ + log u − log(1 − u)) / τ),   u ~ U(0, 1)

With ``hard=True`` the straight-through estimator returns ``m_hard = [m_soft > 0.5]`` in the
forward pass and the gradient of ``m_soft`` in the backward pass. As ``τ → 0`` the soft mask
itself becomes binary.

Deterministic mask (inference, project choice): no noise, ``[ℓ > 0]`` (hard) or
``sigmoid(ℓ / τ)`` (soft).
"""

from __future__ import annotations

import torch

__all__ = ["deterministic_mask", "gumbel_sigmoid"]

_EPS = 1e-6


def gumbel_sigmoid(logits: torch.Tensor, tau: float = 1.0, *, hard: bool = False,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """A sampled keep-mask in [0, 1] (or {0, 1} with ``hard``) with the shape of ``logits``."""
    if tau <= 0:
        raise ValueError(f"temperature tau must be positive, got {tau}")
    u = torch.rand(logits.shape, generator=generator, device=logits.device, dtype=torch.float32)
    u = u.clamp(_EPS, 1.0 - _EPS).to(logits.dtype)
    noise = torch.log(u) - torch.log1p(-u)
    soft = torch.sigmoid((logits + noise) / tau)
    if not hard:
        return soft
    hard_mask = (soft > 0.5).to(soft.dtype)
    return hard_mask - soft.detach() + soft


def deterministic_mask(logits: torch.Tensor, tau: float = 1.0, *, hard: bool = True) -> torch.Tensor:
    """The noise-free mask: ``[ℓ > 0]`` or ``sigmoid(ℓ / τ)``."""
    if hard:
        return (logits > 0).to(logits.dtype)
    return torch.sigmoid(logits / tau)
