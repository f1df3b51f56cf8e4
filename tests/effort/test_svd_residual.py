"""SVDResidualLinear: exact split, folding, storage, regularisers (checked against brute force)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import aigi.layers.svd_residual as svd_mod
from aigi.layers.svd_residual import (
    SVDResidualLinear,
    apply_svd_residual,
    count_residual_parameters,
    fold_svd_residuals,
    resolve_targets,
    smallest_singular_triplets,
    svd_residual_modules,
)

# (in, out, trainable rank); 64 × 64 with a small rank takes the fast path (smallest triplets only)
SHAPES = [(12, 12, 1), (12, 12, 5), (16, 9, 2), (9, 16, 3), (64, 64, 1), (64, 64, 3)]


def linear64(i: int, o: int, seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(i, o).double()


def perturb(m: SVDResidualLinear, scale: float = 0.05) -> None:
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in (m.U_res, m.S_res, m.V_res):
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


def brute_force(m: SVDResidualLinear, lin: nn.Linear) -> dict[str, torch.Tensor]:
    """The paper's formulas evaluated literally on the full bases."""
    w = lin.weight.detach().double()
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    r = m.r
    uh = torch.cat([u[:, :r], m.U_res.detach()], 1)
    vhat = torch.cat([vh[:r], m.V_res.detach()], 0)
    n = uh.shape[1]
    eye_n, eye_o = torch.eye(n, dtype=w.dtype), torch.eye(uh.shape[0], dtype=w.dtype)
    merged = m.merged_weight().detach()
    return {
        "paper": (uh.T @ uh - eye_n).square().sum() + (vhat @ vhat.T - eye_n).square().sum(),
        "released": 0.5 * torch.linalg.matrix_norm(uh @ uh.T - eye_o) + 0.5 * torch.linalg.matrix_norm(vhat @ vhat.T - eye_n),
        "ksv": (merged.square().sum() - w.square().sum()).abs(),
    }


@pytest.mark.parametrize("i,o,k", SHAPES)
def test_split_is_exact_at_init_float64(i, o, k):
    lin = linear64(i, o)
    m = SVDResidualLinear.from_linear(lin, trainable_rank=k)
    x = torch.randn(7, i, dtype=torch.float64)
    assert m.trainable_rank == k and m.r == min(i, o) - k
    assert (m(x) - lin(x)).abs().max() < 1e-10
    # W_main is the best rank-r approximation: the top r triplets of the SVD
    u, s, vh = torch.linalg.svd(lin.weight.double(), full_matrices=False)
    r = m.r
    torch.testing.assert_close(m.weight_main, (u[:, :r] * s[:r]) @ vh[:r], atol=1e-12, rtol=0)
    torch.testing.assert_close(m.S_res.detach(), s[r:], atol=1e-12, rtol=0)
    assert torch.linalg.matrix_rank(m.weight_main) == r


def test_explicit_r_wins_and_bad_ranks_are_clear():
    lin = linear64(10, 8)
    assert SVDResidualLinear.from_linear(lin, r=5, trainable_rank=1).trainable_rank == 3
    with pytest.raises(ValueError, match="r must satisfy 0 <= r < 8"):
        SVDResidualLinear.from_linear(lin, r=8)
    with pytest.raises(ValueError, match="trainable_rank must be between 1 and 8"):
        SVDResidualLinear.from_linear(lin, trainable_rank=9)
    with pytest.raises(TypeError, match="expects an nn.Linear"):
        SVDResidualLinear.from_linear(nn.Conv2d(1, 1, 1))


def test_storage_w_main_is_a_buffer_once_and_bias_frozen():
    m = SVDResidualLinear.from_linear(nn.Linear(8, 6), trainable_rank=2)
    params = dict(m.named_parameters())
    assert "weight_main" not in params
    assert {n for n, p in params.items() if p.requires_grad} == {"U_res", "S_res", "V_res"}
    assert not m.bias.requires_grad
    sd = m.state_dict()
    assert sorted(sd) == ["S_res", "U_res", "V_res", "bias", "residual_energy", "weight_main"]
    assert sd["U_res"].shape == (6, 2) and sd["S_res"].shape == (2,) and sd["V_res"].shape == (2, 8)
    assert count_residual_parameters(6, 8, 2) == sum(p.numel() for p in m.parameters() if p.requires_grad)


@pytest.mark.parametrize("i,o,k", [(12, 12, 1), (16, 9, 8)])  # factorised path and merged-weight path
def test_gradients_reach_only_the_residual_and_match_the_dense_formula(i, o, k):
    lin = linear64(i, o)
    m = SVDResidualLinear.from_linear(lin, trainable_rank=k)
    perturb(m)
    x = torch.randn(5, i, dtype=torch.float64)
    m(x).square().sum().backward()
    grads = {n: p.grad.clone() for n, p in m.named_parameters() if p.requires_grad}
    # same function written densely
    u, s, v = (t.detach().clone().requires_grad_(True) for t in (m.U_res, m.S_res, m.V_res))
    y = x @ (m.weight_main + (u * s) @ v).T + m.bias
    y.square().sum().backward()
    for name, ref in zip(("U_res", "S_res", "V_res"), (u.grad, s.grad, v.grad)):
        torch.testing.assert_close(grads[name], ref, atol=1e-10, rtol=1e-10)
    assert m.bias.grad is None


@pytest.mark.parametrize("i,o,k", SHAPES)
def test_fold_gives_a_plain_linear_with_identical_outputs(i, o, k):
    torch.manual_seed(0)
    m = SVDResidualLinear.from_linear(nn.Linear(i, o), trainable_rank=k)
    perturb(m)
    x = torch.randn(9, i)
    lin = m.fold()
    assert type(lin) is nn.Linear and not lin.weight.requires_grad
    torch.testing.assert_close(lin(x), m(x).detach(), atol=1e-5, rtol=1e-5)


def test_fold_svd_residuals_replaces_every_layer_in_a_tree():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 6), nn.ReLU(), nn.Sequential(nn.Linear(6, 4)))
    x = torch.randn(3, 6)
    net[0] = SVDResidualLinear.from_linear(net[0], trainable_rank=2)
    net[2][0] = SVDResidualLinear.from_linear(net[2][0], trainable_rank=1)
    for _, layer in svd_residual_modules(net):
        perturb(layer)
    ref = net(x).detach()
    out = fold_svd_residuals(net)
    assert out is net and not list(svd_residual_modules(net))
    assert all(type(mod) is nn.Linear for mod in (net[0], net[2][0]))
    torch.testing.assert_close(net(x), ref, atol=1e-5, rtol=1e-5)
    single = SVDResidualLinear.from_linear(nn.Linear(4, 4))
    assert type(fold_svd_residuals(single)) is nn.Linear


def test_decompose_false_allocates_shapes_and_keeps_the_function():
    lin = linear64(8, 8)
    m = SVDResidualLinear.from_linear(lin, trainable_rank=3, decompose=False)
    x = torch.randn(4, 8, dtype=torch.float64)
    torch.testing.assert_close(m(x), lin(x))
    assert m.U_res.shape == (8, 3) and torch.isnan(m.residual_energy)


# -- regularisers ---------------------------------------------------------------------------
@pytest.mark.parametrize("i,o,k", SHAPES)
@pytest.mark.parametrize("bases", [True, False])  # kept from the SVD, or rebuilt lazily from W_main
def test_regularisers_zero_at_init_then_equal_brute_force(i, o, k, bases):
    lin = linear64(i, o)
    m = SVDResidualLinear.from_linear(lin, trainable_rank=k, orthogonal_bases=bases)
    assert m.orthogonality_loss("paper") < 1e-10
    assert m.keep_sv_loss() < 1e-10
    floor = 0.5 * max(o - min(i, o), 0) ** 0.5  # ½√(out − n): the released variant's floor on tall matrices
    assert abs(m.orthogonality_loss("released") - floor) < 1e-10
    perturb(m)
    ref = brute_force(m, lin)
    for name, value in (("paper", m.orthogonality_loss("paper")), ("released", m.orthogonality_loss("released")),
                        ("ksv", m.keep_sv_loss())):
        assert value > 1e-6 + (floor if name == "released" else 0.0)
        torch.testing.assert_close(value, ref[name], atol=1e-9, rtol=1e-9)


def test_regulariser_gradients_reach_only_the_residual():
    lin = linear64(10, 10)
    m = SVDResidualLinear.from_linear(lin, trainable_rank=2, orthogonal_bases=True)
    perturb(m)
    (m.orthogonality_loss("paper") + m.orthogonality_loss("released") + m.keep_sv_loss()).backward()
    assert m.U_res.grad.abs().sum() > 0 and m.V_res.grad.abs().sum() > 0 and m.S_res.grad.abs().sum() > 0
    assert m.bias.grad is None
    assert not m.weight_main.requires_grad and not m.residual_energy.requires_grad
    # orthogonality does not involve S_res at all
    m.zero_grad()
    m.orthogonality_loss("paper").backward()
    assert m.S_res.grad is None


def test_bases_are_not_in_the_state_dict_and_are_rebuilt_after_a_new_w_main():
    lin = linear64(8, 8)
    m = SVDResidualLinear.from_linear(lin, trainable_rank=2, orthogonal_bases=True)
    assert "_u_basis" in dict(m.named_buffers()) and "_u_basis" not in m.state_dict()
    other = SVDResidualLinear.from_linear(linear64(8, 8, seed=5), trainable_rank=2)
    m.load_state_dict(other.state_dict())
    assert "_u_basis" not in dict(m.named_buffers())  # stale bases dropped
    assert m.orthogonality_loss() < 1e-10  # rebuilt from the new W_main


def test_keep_sv_loss_refuses_an_unknown_original_norm():
    m = SVDResidualLinear.from_linear(nn.Linear(4, 4), decompose=False)
    with pytest.raises(ValueError, match="does not know the norm of its original weight"):
        m.keep_sv_loss()


# -- selecting layers in a tree -------------------------------------------------------------
class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.self_attn = nn.Module()
        for p in ("q_proj", "k_proj", "v_proj", "out_proj"):
            setattr(self.self_attn, p, nn.Linear(8, 8))
        self.mlp = nn.Module()
        self.mlp.fc1, self.mlp.fc2 = nn.Linear(8, 16), nn.Linear(16, 8)


def _tower(blocks: int = 2) -> nn.Module:
    t = nn.Module()
    t.encoder = nn.Module()
    t.encoder.layers = nn.ModuleList([_Block() for _ in range(blocks)])
    t.head = nn.Linear(8, 3)
    return t


@pytest.mark.parametrize("targets,count", [("attention", 8), ("mlp", 4), ("both", 12),
                                           (r"encoder\.layers\.1\.self_attn\.(?:q|v)_proj", 2)])
def test_targets(targets, count):
    t = _tower()
    names = apply_svd_residual(t, targets, trainable_rank=1)
    assert len(names) == count == len(list(svd_residual_modules(t)))
    assert type(t.head) is nn.Linear
    if targets == "attention":
        assert names[0] == "encoder.layers.0.self_attn.q_proj"


def test_targets_errors_are_clear():
    with pytest.raises(ValueError, match="selects no nn.Linear layer.*encoder.layers.0"):
        resolve_targets(_tower(), r"nothing\.here")
    with pytest.raises(ValueError, match="neither attention/mlp/both nor a valid regex"):
        resolve_targets(_tower(), "(unclosed")


@pytest.mark.parametrize("rows", [4, 64])  # 16 × 16, rank 1: ≤ 16 rows factorised, more rows merged
def test_inference_paths_compute_the_same_function(rows):
    lin = linear64(16, 16)
    m = SVDResidualLinear.from_linear(lin, trainable_rank=1)
    perturb(m)
    x = torch.randn(rows, 16, dtype=torch.float64)
    train_out = m(x)  # gradient path (factorised)
    with torch.no_grad():
        dense = x @ m.merged_weight().T + m.bias
        torch.testing.assert_close(m(x), dense, atol=1e-12, rtol=0)
    torch.testing.assert_close(train_out.detach(), dense, atol=1e-12, rtol=0)


# -- the fast path: only the smallest singular triplets --------------------------------------
def _same_up_to_sign(a: torch.Tensor, b: torch.Tensor, tol: float) -> None:
    """Columns of a and b equal up to one sign per column."""
    sign = torch.sign((a * b).sum(0))
    torch.testing.assert_close(a * sign, b, atol=tol, rtol=0)


@pytest.mark.parametrize("n,k,seed", [(64, 1, 0), (64, 1, 1), (96, 4, 2), (128, 2, 3)])
def test_smallest_triplets_equal_the_full_svd_tail(n, k, seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, n, generator=g, dtype=torch.float64) / n ** 0.5
    got = smallest_singular_triplets(w, k)
    assert got is not None
    u0, s0, v0 = got
    u, s, vh = torch.linalg.svd(w, full_matrices=False)
    torch.testing.assert_close(s0, s[-k:], atol=1e-12, rtol=1e-10)
    _same_up_to_sign(u0, u[:, -k:], 1e-9)
    _same_up_to_sign(v0.T, vh[-k:].T, 1e-9)
    assert bool((s0[:-1] >= s0[1:]).all())  # descending, like the tail of a thin SVD


def test_fast_path_layer_equals_the_original_and_skips_the_full_svd(monkeypatch):
    def no_full_svd(w):
        raise AssertionError("the full SVD ran although only the smallest triplet is needed")

    monkeypatch.setattr(svd_mod, "deterministic_svd", no_full_svd)
    lin = linear64(96, 96, seed=4)
    m = SVDResidualLinear.from_linear(lin, trainable_rank=1, orthogonal_bases=True)
    x = torch.randn(7, 96, dtype=torch.float64)
    assert (m(x) - lin(x)).abs().max() < 1e-10
    assert m.orthogonality_loss("paper") < 1e-10 and m.keep_sv_loss() < 1e-10


@pytest.mark.parametrize("case", ["singular", "repeated", "tall", "rank_too_large"])
def test_fast_path_declines_and_the_full_svd_takes_over(case):
    n, k = 64, 1
    g = torch.Generator().manual_seed(7)
    if case == "singular":
        w = torch.randn(n, n - 2, generator=g, dtype=torch.float64) @ torch.randn(n - 2, n, generator=g, dtype=torch.float64)
        w[:, 0] = 0.0  # an exactly zero column: LU meets a zero pivot
    elif case == "repeated":  # all singular values equal: the smallest vector is not determined
        w = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))[0]
    elif case == "tall":
        w = torch.randn(2 * n, n, generator=g, dtype=torch.float64)
    else:
        w, k = torch.randn(n, n, generator=g, dtype=torch.float64), 20
    got = smallest_singular_triplets(w, k)
    if case == "repeated":  # any unit vector is a smallest one: whatever comes back must be a triplet
        if got is not None:
            u0, s0, v0 = got
            torch.testing.assert_close(w @ v0.T, u0 * s0, atol=1e-10, rtol=0)
    else:
        assert got is None
    lin = nn.Linear(w.shape[1], w.shape[0]).double()
    with torch.no_grad():
        lin.weight.copy_(w)
    m = SVDResidualLinear.from_linear(lin, trainable_rank=k)
    x = torch.randn(5, w.shape[1], dtype=torch.float64)
    assert (m(x) - lin(x)).abs().max() < 1e-10
    torch.testing.assert_close(m.S_res.detach(), torch.linalg.svdvals(w)[-k:], atol=1e-10, rtol=0)


def test_parallel_build_is_bit_identical_to_one_thread():
    """Matrices are decomposed on parallel threads; the result must not depend on the thread count."""
    def build(threads: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        net = nn.ModuleDict({f"l{i}": nn.Linear(64, 64) for i in range(4)})
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            apply_svd_residual(net, r"l\d", trainable_rank=1)
            assert torch.get_num_threads() == threads  # restored after the thread pool
        finally:
            torch.set_num_threads(before)
        return net.state_dict()

    one, two = build(1), build(2)
    assert one.keys() == two.keys()
    for key in one:
        assert torch.equal(one[key], two[key]), key
