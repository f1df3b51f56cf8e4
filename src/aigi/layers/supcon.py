"""Supervised contrastive loss (Khosla et al., NeurIPS 2020, the ``L_out`` form).

For L2-normalised embeddings ``z_i`` with labels ``y_i`` and temperature ``τ``::

    L = mean_{i ∈ I'}  −1/|P(i)|  Σ_{p ∈ P(i)}  log( exp(z_i·z_p / τ) / Σ_{a ≠ i} exp(z_i·z_a / τ) )

``P(i)`` are the other samples with label ``y_i`` and ``I'`` the anchors that have at least
one positive. Choices written down here: anchors without a positive are left out of the
mean (not counted as zero); a batch where no anchor has a positive gives a loss of exactly
0 that still backpropagates (zero gradients); no ``τ / base_τ`` rescaling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["supcon_loss"]


def supcon_loss(features: torch.Tensor, labels: torch.Tensor, temperature: float = 0.07,
                *, normalize: bool = True) -> torch.Tensor:
    """The supervised contrastive loss of ``features`` (B × D) with integer/float ``labels`` (B,)."""
    if features.ndim != 2:
        raise ValueError(f"features must be (B, D), got shape {tuple(features.shape)}")
    if labels.shape != (features.shape[0],):
        raise ValueError(f"labels must be ({features.shape[0]},), got shape {tuple(labels.shape)}")
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    z = F.normalize(features.float(), dim=1) if normalize else features.float()
    n = z.shape[0]
    logits = z @ z.T / temperature
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    # log-softmax over a != i (the anchor itself is excluded from the denominator)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    pos = (labels.view(-1, 1) == labels.view(1, -1)) & ~self_mask
    n_pos = pos.sum(1)
    has_pos = n_pos > 0
    if not bool(has_pos.any()):
        return features.sum() * 0.0
    per_anchor = -(log_prob.masked_fill(~pos, 0.0).sum(1)[has_pos] / n_pos[has_pos])
    return per_anchor.mean()
