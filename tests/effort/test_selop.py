"""SeLop: orthonormal spurious subspace, its removal, PCA/random initialisation, parameter budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

import aigi
from aigi.detectors.selop import SeLop, SpuriousSubspace, pca_basis


def tiny(**kw) -> SeLop:
    return aigi.create_detector("selop", **{**SeLop.tiny_overrides, **kw})


def batch(n: int = 8, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {"pixels": torch.randn(n, 3, 32, 32, generator=g), "label": torch.tensor([0.0, 1.0] * (n // 2))}


V2_COUNT = 1024 * 16 + (1024 * 364 + 364) + (364 + 1)  # 389,849: v2's "0.39 M"


@pytest.fixture(scope="module")
def selop_vit_l() -> SeLop:
    # the ViT-L/14 tower with random weights, built as a full checkpoint is loaded into (~10-25 s here)
    model = SeLop.build_full_size()
    assert model.config.backbone.source == "clip-vit-large-patch14-random"
    return model


def test_trainable_count_on_the_full_size_config_is_v2s(selop_vit_l):
    assert V2_COUNT == 389_849 and round(V2_COUNT / 1e6, 2) == 0.39
    assert selop_vit_l.feature_dim == 1024 and selop_vit_l.config.rank == 16 and selop_vit_l.config.hidden == 364
    assert selop_vit_l.num_trainable() == V2_COUNT
    v1 = 1024 * 16 + sum(p.numel() for p in SeLop.build_head(1024, 403).parameters())
    assert v1 == 429_863 and round(v1 / 1e6, 2) == 0.43  # hidden: 403 follows v1 instead


def test_parameter_budget_parts():
    d, k = 1024, 16
    proj = SpuriousSubspace(d, k)
    assert sum(p.numel() for p in proj.parameters()) == d * k
    assert list(proj.state_dict()) == ["parametrizations.Q.original"]  # no D × D trivialisation buffer
    m = tiny()
    assert m.num_trainable() == 16 * 4 + (16 * 8 + 8) + (8 + 1)


def test_projection_removes_exactly_the_subspace():
    proj = SpuriousSubspace(10, 3)
    basis, _ = torch.linalg.qr(torch.randn(10, 3))
    proj.set_basis(basis)
    f = torch.randn(5, 10)
    out = proj(f).detach()
    torch.testing.assert_close(out @ basis, torch.zeros(5, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(out, f - (f @ basis) @ basis.T, atol=1e-5, rtol=1e-5)
    inside = torch.randn(4, 3) @ basis.T
    torch.testing.assert_close(proj(inside).detach(), torch.zeros(4, 10), atol=1e-5, rtol=0)


def test_q_stays_orthonormal_during_training():
    m = tiny().train()
    opt = torch.optim.Adam(m.trainable_parameters(), lr=0.1)
    start = m.projection.Q.detach().clone()
    for step in range(5):
        out = m.training_loss(batch(seed=step))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
    q = m.projection.Q.detach()
    assert not torch.allclose(q, start, atol=1e-3)  # it moved
    torch.testing.assert_close(q.T @ q, torch.eye(4), atol=1e-5, rtol=0)


def test_pca_basis_matches_scikit_learn():
    rng = np.random.default_rng(0)
    feats = rng.normal(size=(200, 12)) * np.linspace(5, 0.5, 12) @ np.linalg.qr(rng.normal(size=(12, 12)))[0]
    basis = pca_basis(torch.from_numpy(feats), 4)
    ref = PCA(n_components=4).fit(feats).components_.T
    torch.testing.assert_close(basis.abs(), torch.from_numpy(np.abs(ref)), atol=1e-8, rtol=0)
    torch.testing.assert_close(basis.T @ basis, torch.eye(4, dtype=torch.float64), atol=1e-12, rtol=0)
    few = pca_basis(torch.randn(3, 12), 6)  # rank 2 after centring: completed with random directions
    torch.testing.assert_close(few.T @ few, torch.eye(6, dtype=torch.float64), atol=1e-12, rtol=0)


def test_pca_initialises_lazily_on_the_first_training_batch_once():
    m = tiny().train()
    assert not bool(m.q_initialized)
    b = batch()
    m.training_loss(b)
    assert bool(m.q_initialized)
    expected = pca_basis(m.features(b["pixels"]), 4)
    torch.testing.assert_close(m.projection.Q.detach().double().abs(), expected.abs(), atol=1e-5, rtol=0)
    before = m.projection.Q.detach().clone()
    m.training_loss(batch(seed=9))  # no optimiser step: Q must not be re-initialised
    assert torch.equal(m.projection.Q.detach(), before)
    fresh = tiny().eval()
    with torch.no_grad():
        fresh(b["pixels"])
    assert not bool(fresh.q_initialized)  # inference never initialises


def test_explicit_and_random_initialisation():
    m = tiny()
    feats = torch.randn(40, 16)
    m.init_from_features(feats)
    assert bool(m.q_initialized)
    torch.testing.assert_close(m.projection.Q.detach().double().abs(), pca_basis(feats, 4).abs(), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="features have width 7"):
        m.init_from_features(torch.randn(5, 7))
    a, b = tiny(init="random"), tiny(init="random")
    assert bool(a.q_initialized) and torch.equal(a.projection.Q, b.projection.Q)
    assert not torch.equal(a.projection.Q, tiny(init="random", seed=1).projection.Q)


def test_adapter_reload_keeps_the_learned_basis(tmp_path):
    m = tiny().train()
    opt = torch.optim.Adam(m.trainable_parameters(), lr=0.1)
    out = m.training_loss(batch())
    out["loss"].backward()
    opt.step()
    m.eval()
    m.save_pretrained(tmp_path / "s", adapter_only=True)
    again = aigi.load_detector(tmp_path / "s").eval()
    assert bool(again.q_initialized)
    x = batch()["pixels"]
    with torch.no_grad():
        assert torch.equal(again(x), m(x))
