"""MASM: artifact subspaces, their losses, and the gradient-driven selective layer mask."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import aigi
from aigi.detectors.masm import MASMConfig, MultiSubspaceResidualLinear, subspace_mask


def layer64(k: int = 3, m: int = 2, n: int = 12, **kw) -> MultiSubspaceResidualLinear:
    torch.manual_seed(0)
    return MultiSubspaceResidualLinear.from_linear(nn.Linear(n, n).double(), trainable_rank=k * m, num_subspaces=k, **kw)


def perturb(layer, scale=0.05):
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for p in (layer.U_res, layer.S_res, layer.V_res):
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


def test_config_derives_the_rank_and_checks_it():
    c = MASMConfig(num_subspaces=3, subspace_rank=2)
    assert c.trainable_rank == 6
    with pytest.raises(ValueError, match="leave r unset"):
        MASMConfig(r=10)
    with pytest.raises(ValueError, match=r"trainable_rank 5 != num_subspaces × subspace_rank = 4"):
        MASMConfig(trainable_rank=5)
    with pytest.raises(ValueError, match="mask_threshold must exceed 1/num_subspaces"):
        MASMConfig(num_subspaces=4, mask_threshold=0.2)
    m = aigi.create_detector("masm", backbone="tiny")
    assert m.num_trainable() == 8 * 4 * (16 + 1 + 16) + 17
    assert all(layer.num_subspaces == 4 and layer.subspace_rank == 1 for layer in m.masm_layers())


def test_subspaces_are_consecutive_singular_triplets():
    layer = layer64()
    s = torch.linalg.svdvals(layer.merged_weight().detach())
    torch.testing.assert_close(layer.S_res.detach(), s[layer.r:], atol=1e-12, rtol=0)
    torch.testing.assert_close(layer.S_init, s[layer.r:], atol=1e-12, rtol=0)


def test_subspace_orthogonality_zero_at_init_then_brute_force():
    layer = layer64()
    assert layer.subspace_orthogonality_loss() < 1e-20
    perturb(layer)
    k, m = layer.num_subspaces, layer.subspace_rank
    u, v = layer.U_res.detach(), layer.V_res.detach()
    ref = sum((u[:, i * m:(i + 1) * m].T @ u[:, j * m:(j + 1) * m]).square().sum()
              + (v[i * m:(i + 1) * m] @ v[j * m:(j + 1) * m].T).square().sum()
              for i in range(k) for j in range(i + 1, k))
    value = layer.subspace_orthogonality_loss()
    assert value > 1e-6
    torch.testing.assert_close(value, ref, atol=1e-12, rtol=1e-10)


def test_spectral_consistency_zero_at_init_then_brute_force():
    layer = layer64()
    assert layer.spectral_consistency_loss() < 1e-20
    perturb(layer)
    sigma = torch.linalg.svdvals(layer.residual_weight().detach())[: layer.trainable_rank]
    ref = (sigma - layer.S_init).square().sum() / layer.S_init.square().sum()
    value = layer.spectral_consistency_loss()
    assert value > 1e-6
    torch.testing.assert_close(value, ref, atol=1e-12, rtol=1e-8)
    value.backward()
    assert layer.S_res.grad is not None and layer.bias.grad is None


def test_mask_rule_on_hand_made_statistics():
    rule = dict(threshold=0.5, warmup=5, scale=0.0)
    assert torch.equal(subspace_mask(torch.tensor([1.0, 1.0, 1.0, 1.0]), 9, **rule), torch.ones(4))
    assert torch.equal(subspace_mask(torch.tensor([6.0, 1.0, 1.0, 1.0]), 9, **rule), torch.tensor([0.0, 1, 1, 1]))
    assert torch.equal(subspace_mask(torch.tensor([6.0, 1.0, 1.0, 1.0]), 4, **rule), torch.ones(4))  # warming up
    assert torch.equal(subspace_mask(torch.zeros(4), 9, **rule), torch.ones(4))  # no gradient seen yet
    assert torch.equal(subspace_mask(torch.tensor([1.0, 1.0, 2.0, 0.0]), 9, **rule), torch.ones(4))  # 0.5 is not > 0.5
    soft = subspace_mask(torch.tensor([[0.0, 9.0, 1.0], [1.0, 1.0, 1.0]]), 9, threshold=0.6, warmup=0, scale=0.25)
    assert torch.equal(soft, torch.tensor([[1.0, 0.25, 1.0], [1.0, 1.0, 1.0]]))


def test_gate_records_statistics_and_scales_this_backwards_gradients():
    layer = layer64(k=3, m=2, mask_ema=0.0, mask_threshold=0.5, mask_warmup=0, mask_scale=0.0).train()
    x = torch.randn(6, 12, dtype=torch.float64)
    with torch.no_grad():  # make subspace 0 dominate the gradient
        layer.S_res.mul_(torch.tensor([5.0, 5.0, 0.1, 0.1, 0.1, 0.1], dtype=torch.float64))
    # the raw gradients of the same loss, without the gate
    u, s, v = (t.detach().clone().requires_grad_(True) for t in (layer.U_res, layer.S_res, layer.V_res))
    y = nn.functional.linear(x, layer.weight_main, layer.bias) + nn.functional.linear(nn.functional.linear(x, v) * s, u)
    y.square().sum().backward()
    energy = torch.stack([u.grad[:, 2 * i:2 * i + 2].square().sum() + s.grad[2 * i:2 * i + 2].square().sum()
                          + v.grad[2 * i:2 * i + 2].square().sum() for i in range(3)])
    expected_mask = (energy / energy.sum() <= 0.5).to(torch.float64)
    assert expected_mask.tolist() == [0.0, 1.0, 1.0]
    u0, s0, v0 = u.grad.clone(), s.grad.clone(), v.grad.clone()
    layer(x).square().sum().backward()
    torch.testing.assert_close(layer.grad_ema, energy.float(), rtol=1e-5, atol=0)
    assert layer.mask.tolist() == [0.0, 1.0, 1.0] and int(layer.mask_steps) == 1
    per_col = expected_mask.repeat_interleave(2)
    torch.testing.assert_close(layer.U_res.grad, u0 * per_col)
    torch.testing.assert_close(layer.S_res.grad, s0 * per_col)
    torch.testing.assert_close(layer.V_res.grad, v0 * per_col[:, None])
    # evaluation never touches the statistics
    layer.eval()
    layer(x).sum().backward()
    assert int(layer.mask_steps) == 1


def _run(steps: int = 3):
    torch.manual_seed(0)
    m = aigi.create_detector("masm", backbone="tiny", mask_warmup=1).train()
    opt = torch.optim.Adam(m.trainable_parameters(), lr=0.05)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        b = {"pixels": torch.randn(4, 3, 32, 32, generator=g), "label": torch.tensor([0.0, 1, 0, 1])}
        out = m.training_loss(b)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    return m.eval(), out


def test_training_is_deterministic_and_the_mask_is_saved(tmp_path):
    a, out = _run()
    b, _ = _run()
    assert set(out) == {"loss", "bce", "subspace_orth", "spectral"}
    assert out["subspace_orth"] > 0 and out["spectral"] > 0
    assert torch.equal(a.mask_state(), b.mask_state())
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    assert (a.mask_state() < 1).any()  # something was held back in 3 steps with warmup 1
    adapter = a.adapter_state_dict()
    assert sum(k.endswith(".mask") for k in adapter) == 8 and sum(k.endswith(".grad_ema") for k in adapter) == 8
    a.save_pretrained(tmp_path / "m", adapter_only=True)
    again = aigi.load_detector(tmp_path / "m").eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(again(x), a(x))
    assert torch.equal(again.mask_state(), a.mask_state())
