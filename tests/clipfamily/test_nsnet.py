"""NS-Net: the projector P (fitted once, or from the caption bank), the loss, and P's save/reload."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import aigi
from aigi.detectors import load_detector
from aigi.layers.nullspace import (
    SemanticNullSpace,
    caption_gram,
    null_space_projector,
    semantic_basis,
    semantic_projector,
)
from aigi.layers.supcon import supcon_loss


def _texts(n: int, d: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_projector_symmetric_idempotent_and_annihilates_removed(k):
    v = _texts(12, 16)
    w = semantic_basis(v, k)
    p = semantic_projector(v, k)
    assert w.shape == (16, k)
    eye = torch.eye(16, dtype=torch.float64)
    torch.testing.assert_close(w.T @ w, torch.eye(k, dtype=torch.float64), atol=1e-10, rtol=0)
    assert torch.equal(p, p.T)
    torch.testing.assert_close(p @ p, p, atol=1e-10, rtol=0)
    torch.testing.assert_close(p @ w, torch.zeros(16, k, dtype=torch.float64), atol=1e-10, rtol=0)
    # the complement is untouched and the trace counts the kept dimensions
    u = (eye - w @ w.T) @ _texts(1, 16, seed=5).T
    torch.testing.assert_close(p @ u, u, atol=1e-10, rtol=0)
    assert float(torch.trace(p)) == pytest.approx(16 - k)
    # they are the top singular directions: the top-1 direction holds the most caption energy
    vn = F.normalize(v, dim=1)
    energy = ((vn @ w) ** 2).sum(0)
    assert torch.all(energy[:-1] >= energy[1:])


def test_exact_null_space_and_k_above_rank():
    v = _texts(4, 10)  # rank 4 in 10 dims
    assert semantic_basis(v, 50).shape == (10, 4)
    p = semantic_projector(v, None)
    # every caption embedding is annihilated: P spans the exact null space of V
    torch.testing.assert_close(v @ p, torch.zeros(4, 10, dtype=torch.float64), atol=1e-10, rtol=0)
    assert float(torch.trace(p)) == pytest.approx(6)
    assert torch.equal(semantic_projector(v, 0), torch.eye(10, dtype=torch.float64))


def test_bank_is_a_ring_buffer_of_the_newest_rows():
    ns = SemanticNullSpace(dim=4, k=1, bank_size=5)
    assert torch.equal(ns.projector, torch.eye(4))
    rows = torch.eye(4).repeat(2, 1)[:7] * 3.0  # 7 rows
    ns.add(rows[:3])
    ns.add(rows[3:])
    assert int(ns.bank_count) == 5 and int(ns.bank_next) == 2
    expected = F.normalize(rows[2:], dim=1)  # the 5 newest, stored at positions (2,3,4,0,1)
    assert torch.equal(ns.bank[[2, 3, 4, 0, 1]], expected)
    p = ns.refit()
    torch.testing.assert_close(p, semantic_projector(expected, 1))


def test_nsnet_training_refits_p_and_reload_is_identical(tmp_path):
    model = aigi.create_detector("nsnet", backbone="tiny", k=2, bank_size=16, projection="bank")
    assert torch.equal(model.nullspace.projector, torch.eye(8))
    batch = {"pixels": torch.randn(4, 3, 32, 32), "label": torch.tensor([0.0, 1.0, 0.0, 1.0]),
             "index": torch.arange(4), "caption": ["a cat", "a dog on grass", None, "a red car"]}
    model.train()
    out = model.training_loss(batch)
    out["loss"].backward()
    assert float(out["removed_dims"]) == pytest.approx(2.0)
    text = model.text_encoder.encode(["a cat", "a dog on grass", "a photo", "a red car"])
    torch.testing.assert_close(model.nullspace.projector, semantic_projector(text, 2), atol=1e-5, rtol=0)
    # the loss is (1 - lam) supcon + lam bce on the projected features
    torch.testing.assert_close(out["loss"].detach(), 0.5 * out["supcon"] + 0.5 * out["bce"])
    # inference: fc(f P)
    model.eval()
    x = batch["pixels"]
    with torch.no_grad():
        ref = model(x)
        f = model.embeds(x)
        torch.testing.assert_close(ref, model.fc(f @ model.nullspace.projector).squeeze(-1))
    for adapter_only in (False, True):
        model.save_pretrained(tmp_path / str(adapter_only), adapter_only=adapter_only)
        again = load_detector(tmp_path / str(adapter_only)).eval()
        assert torch.equal(again.nullspace.projector, model.nullspace.projector)
        with torch.no_grad():
            assert torch.equal(again(x), ref)


def test_per_batch_projection_uses_the_batch_captions():
    model = aigi.create_detector("nsnet", backbone="tiny", k=2, projection="batch", refit_during_training=False)
    captions = ["a cat", "a dog", "a boat", "a tree"]
    batch = {"pixels": torch.randn(4, 3, 32, 32), "label": torch.tensor([0.0, 1.0, 0.0, 1.0]),
             "index": torch.arange(4), "caption": captions}
    model.eval()  # no LoRA dropout: the loss below is reproducible by hand
    out = model.training_loss(batch)
    assert torch.equal(model.nullspace.projector, torch.eye(8))  # bank untouched
    with torch.no_grad():
        p = semantic_projector(model.text_encoder.encode(captions), 2)
        h = model.embeds(batch["pixels"]) @ p
        bce = F.binary_cross_entropy_with_logits(model.fc(h).squeeze(-1), batch["label"])
    torch.testing.assert_close(out["bce"], bce)


def test_fit_semantic_subspace_removes_the_caption_directions():
    model = aigi.create_detector("nsnet", backbone="tiny", k=3, bank_size=32, projection="bank")
    captions = ["a cat", "a dog", "a cat and a dog"]
    p = model.fit_semantic_subspace(captions)
    text = F.normalize(model.text_encoder.encode(captions), dim=1)
    torch.testing.assert_close(text @ p, torch.zeros(3, 8), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="at least one caption"):
        model.fit_semantic_subspace([])


# ---------------------------------------------------------------- the paper's form: fitted once

def test_null_space_of_all_captions_annihilates_every_one():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(5, 12, generator=g, dtype=torch.float64) * torch.rand(5, 1, generator=g, dtype=torch.float64)
    gram = caption_gram(feats[:2])
    gram = caption_gram(feats[2:], gram)  # accumulated in chunks
    torch.testing.assert_close(gram, caption_gram(feats))
    # a caption that occurs twice is encoded once and weighted 2
    torch.testing.assert_close(caption_gram(feats[:2], weights=torch.tensor([2.0, 1.0])), caption_gram(feats[[0, 0, 1]]))
    p, dims = null_space_projector(gram, 0.0)
    assert dims == 12 - 5
    torch.testing.assert_close(p, p.T, atol=0, rtol=0)
    torch.testing.assert_close(p @ p, p, atol=1e-12, rtol=0)
    assert float(torch.trace(p)) == pytest.approx(7.0)
    assert (F.normalize(feats, dim=1) @ p).abs().max() < 1e-12  # every training caption: 0
    other = torch.randn(3, 12, generator=g, dtype=torch.float64)
    assert (other @ p).norm(dim=1).min() > 0.1  # a generic vector keeps its null-space part


def test_near_null_space_keeps_the_energy_budget():
    g = torch.Generator().manual_seed(1)
    scales = torch.logspace(0, -3, 12, dtype=torch.float64)
    feats = torch.randn(200, 12, generator=g, dtype=torch.float64) * scales  # full rank, decaying spectrum
    gram = caption_gram(feats)
    with pytest.raises(ValueError, match="null space is empty"):
        null_space_projector(gram, 0.0)
    p, dims = null_space_projector(gram, 0.01)
    assert 0 < dims < 12
    residual = (F.normalize(feats, dim=1) @ p).square().sum()
    assert residual <= 0.01 * 200
    _, more = null_space_projector(gram, 0.1)
    assert more > dims  # a larger budget keeps more directions
    with pytest.raises(ValueError, match=r"energy must be in \[0, 1\)"):
        null_space_projector(gram, 1.0)


def test_nsnet_fitted_projection_is_stored_and_not_refitted(tmp_path):
    model = aigi.create_detector("nsnet", backbone="tiny")
    assert model.config.projection == "fitted" and not model.nullspace.fitted_once
    captions = ["a cat", "a dog on grass", "a red car", None]
    dims = model.fit_null_space(captions, batch_size=3)
    text = F.normalize(model.text_encoder.encode(["a cat", "a dog on grass", "a red car", "a photo"]), dim=1)
    assert dims == 8 - torch.linalg.matrix_rank(text.double()).item()
    assert (text @ model.nullspace.projector).abs().max() < 1e-5  # every training caption annihilated
    p = model.nullspace.projector.clone()
    batch = {"pixels": torch.randn(4, 3, 32, 32), "label": torch.tensor([0.0, 1.0, 0.0, 1.0]),
             "index": torch.arange(4), "caption": ["a boat", "a tree", "a house", "a sky"]}
    model.train()
    model.training_loss(batch)["loss"].backward()
    assert torch.equal(model.nullspace.projector, p)  # fitted once: training never refits it
    model.save_pretrained(tmp_path / "m", adapter_only=True)
    again = load_detector(tmp_path / "m")
    assert torch.equal(again.nullspace.projector, p) and again.nullspace.null_dims == dims


def test_prepare_training_fits_on_the_samples_captions_and_lazy_fit_warns(caplog):
    from aigi.data.layouts import Sample

    model = aigi.create_detector("nsnet", backbone="tiny")
    samples = [Sample(path=Path(f"{i}.png"), label=i % 2, subset="s", caption=c)
               for i, c in enumerate(["a cat", "a dog", "a boat"])]
    model.prepare_training(samples)
    text = F.normalize(model.text_encoder.encode(["a cat", "a dog", "a boat"]), dim=1)
    assert model.nullspace.fitted_once and (text @ model.nullspace.projector).abs().max() < 1e-5

    lazy = aigi.create_detector("nsnet", backbone="tiny").train()
    batch = {"pixels": torch.randn(2, 3, 32, 32), "label": torch.tensor([0.0, 1.0]), "caption": ["a cat", "a dog"]}
    with caplog.at_level(logging.WARNING, logger="aigi"):
        lazy.training_loss(batch)
    assert "fitting it on this batch's 2 captions" in caplog.text and lazy.nullspace.fitted_once


# ---------------------------------------------------------------- supervised contrastive loss


def test_supcon_matches_hand_computation():
    z = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-0.6, 0.8]])
    y = torch.tensor([0, 0, 1, 1])
    tau = 0.5
    # by hand: every anchor has exactly one positive, the other same-label point
    dots = [[sum(a * b for a, b in zip(zi, zj)) for zj in z.tolist()] for zi in z.tolist()]
    losses = []
    for i in range(4):
        denom = sum(math.exp(dots[i][a] / tau) for a in range(4) if a != i)
        p = {0: 1, 1: 0, 2: 3, 3: 2}[i]
        losses.append(-math.log(math.exp(dots[i][p] / tau) / denom))
    expected = sum(losses) / 4
    assert float(supcon_loss(z, y, tau)) == pytest.approx(expected, rel=1e-6)
    # features are L2-normalised first: scaling a row changes nothing
    assert float(supcon_loss(z * torch.tensor([[3.0], [1.0], [0.5], [2.0]]), y, tau)) == pytest.approx(expected, rel=1e-6)


def test_supcon_several_positives_and_anchor_without_positive():
    z = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [0.0, 1.0]])
    y = torch.tensor([1, 1, 1, 0])  # anchor 3 has no positive and is left out
    tau = 1.0
    dots = (z @ z.T).tolist()
    losses = []
    for i in range(3):
        denom = sum(math.exp(dots[i][a] / tau) for a in range(4) if a != i)
        pos = [p for p in range(3) if p != i]
        losses.append(-sum(math.log(math.exp(dots[i][p] / tau) / denom) for p in pos) / len(pos))
    assert float(supcon_loss(z, y, tau)) == pytest.approx(sum(losses) / 3, rel=1e-6)


def test_supcon_no_positive_is_zero_with_gradient():
    z = torch.randn(3, 4, requires_grad=True)
    loss = supcon_loss(z, torch.tensor([0, 1, 2]))
    assert float(loss.detach()) == 0.0
    loss.backward()
    assert torch.equal(z.grad, torch.zeros(3, 4))
    with pytest.raises(ValueError, match="labels must be"):
        supcon_loss(z, torch.tensor([0, 1]))
