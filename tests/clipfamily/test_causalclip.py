"""CausalCLIP: HSIC, the Gumbel mask, and the detector's train/inference masks."""

from __future__ import annotations

import pytest
import torch

import aigi
from aigi.layers.gumbel import deterministic_mask, gumbel_sigmoid
from aigi.layers.hsic import gaussian_kernel, hsic, median_bandwidth


def _explicit_hsic(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    n = x.shape[0]
    k, l = gaussian_kernel(x).double(), gaussian_kernel(y).double()
    h = torch.eye(n, dtype=torch.float64) - torch.ones(n, n, dtype=torch.float64) / n
    return torch.trace(k @ h @ l @ h) / (n - 1) ** 2


def test_hsic_matches_the_trace_formula():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(30, 3, generator=g), torch.randn(30, 2, generator=g)
    y = y + x[:, :2]
    torch.testing.assert_close(hsic(x, y).double(), _explicit_hsic(x, y), rtol=1e-5, atol=1e-8)


def test_hsic_independent_near_zero_dependent_clearly_positive():
    g = torch.Generator().manual_seed(1)
    n = 200
    x = torch.randn(n, 4, generator=g)
    independent = hsic(x, torch.randn(n, 4, generator=g))
    nonlinear = hsic(x, x**2 + 0.1 * torch.randn(n, 4, generator=g))  # uncorrelated yet dependent
    same = hsic(x, x)
    assert 0.0 <= float(independent) < 0.01
    assert float(nonlinear) > 3 * float(independent)
    assert float(same) > 20 * float(independent)
    # a constant is independent of everything
    assert float(hsic(x, torch.ones(n, 4))) == pytest.approx(0.0, abs=1e-9)


def test_median_bandwidth():
    x = torch.tensor([[0.0], [1.0], [3.0]])  # distances 1, 2, 3 (each twice)
    assert float(median_bandwidth(x)) == pytest.approx(2.0)
    assert float(median_bandwidth(torch.zeros(4, 2))) == 1.0
    k = gaussian_kernel(x)
    assert float(k[0, 1]) == pytest.approx(float(torch.exp(torch.tensor(-1.0 / 8.0))))


def test_mask_is_hard_at_low_temperature():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 16, generator=g)
    m = gumbel_sigmoid(logits, tau=1e-4, generator=g)
    assert torch.all((m < 1e-3) | (m > 1 - 1e-3))
    warm = gumbel_sigmoid(logits, tau=5.0, generator=g)
    assert ((warm > 0.1) & (warm < 0.9)).float().mean() > 0.5
    with pytest.raises(ValueError, match="tau must be positive"):
        gumbel_sigmoid(logits, tau=0.0)


@pytest.mark.parametrize("hard", [False, True])
def test_gradient_flows_through_the_mask(hard):
    logits = torch.zeros(8, 6, requires_grad=True)
    w = torch.randn(8, 6)
    m = gumbel_sigmoid(logits, tau=0.5, hard=hard, generator=torch.Generator().manual_seed(3))
    if hard:
        assert set(m.detach().unique().tolist()) <= {0.0, 1.0}
    (m * w).sum().backward()
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0
    # d m_soft / d logit = m_soft (1 - m_soft) / tau: the gradient has the sign of w
    assert torch.equal(torch.sign(logits.grad), torch.sign(w))


def test_deterministic_mask():
    logits = torch.tensor([-2.0, -0.1, 0.3, 4.0])
    assert torch.equal(deterministic_mask(logits, hard=True), torch.tensor([0.0, 0.0, 1.0, 1.0]))
    torch.testing.assert_close(deterministic_mask(logits, tau=2.0, hard=False), torch.sigmoid(logits / 2.0))


@pytest.mark.parametrize("mask", ["global", "conditional"])
def test_detector_uses_the_causal_part_and_a_fixed_mask_at_inference(mask):
    model = aigi.create_detector("causalclip", backbone="tiny", mask=mask)
    x = torch.randn(4, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        f = model.embeds(x)
        m = model.inference_mask(f)
        assert set(m.unique().tolist()) <= {0.0, 1.0}
        assert torch.equal(model(x), model(x))
        torch.testing.assert_close(model(x), model.fc(m * f).squeeze(-1))
    model.config.inference_mask = "soft"
    with torch.no_grad():
        soft = model.inference_mask(f)
        torch.testing.assert_close(soft, torch.sigmoid(model.logits_for(f)))
    model.train()
    b = {"pixels": x, "label": torch.tensor([0.0, 1.0, 0.0, 1.0]), "index": torch.arange(4)}
    out = model.training_loss(b)
    torch.testing.assert_close(out["loss"].detach(), out["bce"] + out["hsic"] + out["ratio"])
    assert float(out["hsic"]) >= 0.0
    out["loss"].backward()
    grad = model.mask_logits.grad if mask == "global" else model.mask_net.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert all(not p.requires_grad for p in model.backbone.parameters())  # frozen encoder by default
