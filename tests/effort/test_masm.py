"""MASM: artifact subspaces, their losses, the per-subspace gate (variant) and the layer selection (paper)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import aigi
from aigi.detectors.masm import (
    MASMConfig,
    MultiSubspaceResidualLinear,
    bias_variance_scores,
    select_top_layers,
    subspace_mask,
)


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
        MASMConfig(num_subspaces=4, mask_threshold=0.2, mask_mode="subspace")
    MASMConfig(num_subspaces=4, mask_threshold=0.2)  # the threshold belongs to the subspace variant only
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
    m = aigi.create_detector("masm", backbone="tiny", mask_mode="subspace", mask_warmup=1).train()
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


# -- layer mode (the paper's v3 mask): bias-variance of whole-layer gradients ----------------------

def test_scores_match_brute_force_bias_and_variance():
    g = torch.Generator().manual_seed(0)
    grads = torch.randn(3, 5, 4, 6, generator=g, dtype=torch.float64)  # 3 layers, 5 steps, 4 x 6 weights
    bias, var, score = bias_variance_scores(grads.sum(1), grads.square().sum((1, 2, 3)), 5)
    mean = grads.mean(1)
    torch.testing.assert_close(bias, mean.square().sum((1, 2)))
    torch.testing.assert_close(var, (grads - mean[:, None]).square().sum((2, 3)).sum(1) / 4)
    torch.testing.assert_close(score, bias / (bias + var))
    with pytest.raises(ValueError, match="at least 2 gradient steps"):
        bias_variance_scores(grads.sum(1), grads.square().sum((1, 2, 3)), 1)


def test_selection_picks_the_layers_whose_statistics_say_so():
    # four layers, six steps of constructed gradients: a consistent direction plus noise of
    # different sizes; a large but zero-mean gradient must lose to a small consistent one.
    torch.manual_seed(0)
    layers = [MultiSubspaceResidualLinear.from_linear(nn.Linear(6, 4), trainable_rank=4, num_subspaces=4, gate="layer")
              for _ in range(4)]
    g = torch.Generator().manual_seed(3)
    direction = torch.randn(4, 6, generator=g)
    recipe = [(0.0, 10.0), (1.0, 0.05), (0.2, 1.0), (1.0, 0.5)]  # (signal, noise) per layer
    for _ in range(6):
        for layer, (signal, noise) in zip(layers, recipe):
            layer.observe_weight_gradient(signal * direction + noise * torch.randn(4, 6, generator=g))
    sums = torch.stack([m.grad_sum.reshape(-1) for m in layers])
    sq = torch.tensor([m.grad_sq_sum for m in layers])
    _, _, score = bias_variance_scores(sums, sq, 6)
    assert score.argsort(descending=True).tolist() == [1, 3, 2, 0]
    assert select_top_layers(score, 0.25).tolist() == [False, True, False, False]
    assert select_top_layers(score, 0.5).tolist() == [False, True, False, True]
    assert select_top_layers(torch.tensor([0.5, 0.5, 0.1]), 0.3).tolist() == [True, False, False]  # tie: earlier


def test_probe_hook_records_the_whole_weight_gradient():
    torch.manual_seed(0)
    lin = nn.Linear(12, 8).double()
    layer = MultiSubspaceResidualLinear.from_linear(lin, trainable_rank=4, num_subspaces=4, gate="layer").train()
    layer.probing = True
    x = torch.randn(3, 5, 12, dtype=torch.float64)
    layer(x).square().sum().backward()
    w = lin.weight.detach().clone().requires_grad_(True)
    nn.functional.linear(x, w, lin.bias.detach()).square().sum().backward()
    torch.testing.assert_close(layer.grad_sum.double(), w.grad, rtol=1e-5, atol=1e-6)
    assert layer.probe_count == 1
    assert layer.U_res.grad is None and layer.S_res.grad is None  # probing: no update


def _train_layer_mode(steps: int, **kw):
    torch.manual_seed(0)
    m = aigi.create_detector("masm", backbone="tiny", selection_steps=3, select_fraction=0.25, **kw).train()
    opt = torch.optim.AdamW(m.trainable_parameters(), lr=0.05, weight_decay=0.1)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        b = {"pixels": torch.randn(4, 3, 32, 32, generator=g), "label": torch.tensor([0.0, 1, 0, 1])}
        out = m.training_loss(b)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    return m, out


def test_layer_mode_probes_then_updates_only_the_selected_layers(tmp_path):
    torch.manual_seed(0)
    init = {k: v.clone() for k, v in aigi.create_detector("masm", backbone="tiny").state_dict().items()}
    probe, out = _train_layer_mode(3)
    assert not probe.selection_done() and "subspace_orth" not in out
    assert all(torch.equal(p, init[k]) for k, p in probe.state_dict().items() if k.endswith(("U_res", "S_res", "V_res")))
    assert all(m.probe_count == 3 for m in probe.masm_layers())

    m, out = _train_layer_mode(6)  # 3 probe steps, the choice, 3 updates
    layers = m.masm_layers()
    chosen = m.layer_selection()
    assert m.selection_done() and int(chosen.sum()) == 2  # ceil(0.25 × 8)
    scores = torch.tensor([float(layer.layer_score) for layer in layers])
    assert set(scores.argsort(descending=True)[:2].tolist()) == set(chosen.nonzero().flatten().tolist())
    assert all(layer.grad_sum is None for layer in layers)  # accumulators freed
    names = [n for n, _ in m.svd_layers()]
    state = m.state_dict()
    for name, layer, sel in zip(names, layers, chosen.tolist()):
        key = f"backbone.vision_model.{name}."
        moved = not torch.equal(state[key + "U_res"], init[key + "U_res"])
        assert moved == sel, name  # weight decay included: unselected layers never get a gradient
        assert (layer.U_res.grad is not None) == sel
        if not sel:  # un-decomposed: the residual merged back, W_main is the pretrained weight again
            assert not layer.S_res.any()
            original = init[key + "weight_main"].double() + (init[key + "U_res"].double() * init[key + "S_res"].double()) \
                @ init[key + "V_res"].double()
            torch.testing.assert_close(layer.weight_main.double(), original, rtol=0, atol=1e-6)
    assert {"subspace_orth", "spectral"} <= set(out)

    x = torch.randn(2, 3, 32, 32)
    for adapter_only in (True, False):
        m.save_pretrained(tmp_path / str(adapter_only), adapter_only=adapter_only)
        again = aigi.load_detector(tmp_path / str(adapter_only))
        assert again.selection_done() and torch.equal(again.layer_selection(), chosen)
        assert all(torch.equal(p, q) for p, q in zip(again.state_dict().values(), m.state_dict().values()))
        with torch.no_grad():
            assert torch.equal(again.eval()(x), m.eval()(x))


def test_layer_mode_is_deterministic():
    a, _ = _train_layer_mode(4)  # 3 probe steps, the choice, 1 update
    b, _ = _train_layer_mode(4)
    assert torch.equal(a.layer_selection(), b.layer_selection())
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


def test_left_out_layers_ignore_zero_gradients_and_weight_decay():
    # under DDP every parameter gets a gradient (zeros for the left-out layers); weight decay then
    # moves their factors, but with S_res = 0 and the residual merged, what they compute cannot change
    m, _ = _train_layer_mode(4)
    left_out = [layer for layer, sel in zip(m.masm_layers(), m.layer_selection().tolist()) if not sel]
    x = torch.randn(3, 16)
    with torch.no_grad():
        before = [layer.eval()(x) for layer in left_out]
    params = [p for layer in left_out for p in (layer.U_res, layer.S_res, layer.V_res)]
    u_before = [layer.U_res.detach().clone() for layer in left_out]
    for opt in (torch.optim.AdamW(params, lr=0.1, weight_decay=0.5), torch.optim.Adam(params, lr=0.1, weight_decay=0.5)):
        for _ in range(3):
            for p in params:
                p.grad = torch.zeros_like(p)
            opt.step()
    with torch.no_grad():
        for layer, y in zip(left_out, before):
            assert not layer.S_res.any()
            assert torch.equal(layer(x), y)
    assert all(not torch.equal(layer.U_res, u) for layer, u in zip(left_out, u_before))  # the factors did move
