"""PiN-CLIP: the noise, the KL term, the class logits and the inference setting."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

import aigi
from aigi.detectors import load_detector
from aigi.detectors.pinclip import gaussian_kl
from aigi.layers.captions import TextTower


def _batch(n: int = 4) -> dict:
    g = torch.Generator().manual_seed(2)
    return {"pixels": torch.randn(n, 3, 32, 32, generator=g), "label": torch.tensor([0.0, 1.0] * (n // 2)),
            "index": torch.arange(n)}


def test_kl_matches_torch_and_is_non_negative():
    g = torch.Generator().manual_seed(0)
    mu = torch.randn(16, 8, generator=g)
    sigma = torch.rand(16, 8, generator=g) * 3 + 0.05
    ref = kl_divergence(Normal(mu, sigma), Normal(torch.zeros(8), torch.ones(8))).sum(-1).mean()
    torch.testing.assert_close(gaussian_kl(mu, sigma), ref, rtol=1e-5, atol=1e-5)
    for _ in range(20):
        m = torch.randn(4, 8, generator=g) * torch.rand(1, generator=g)
        s = torch.rand(4, 8, generator=g) * 2
        assert float(gaussian_kl(m, s)) >= 0.0
    assert float(gaussian_kl(torch.zeros(3, 8), torch.zeros(3, 8))) > 0  # sigma = 0 is finite, not inf
    assert torch.isfinite(gaussian_kl(torch.zeros(3, 8), torch.zeros(3, 8)))


def test_kl_is_zero_exactly_at_the_prior_and_pulls_mu_to_zero():
    assert float(gaussian_kl(torch.zeros(5, 8), torch.ones(5, 8))) == 0.0
    mu = torch.tensor([[0.5, -2.0, 0.0, 3.0]], requires_grad=True)
    sigma = torch.ones(1, 4, requires_grad=True)
    gaussian_kl(mu, sigma).backward()
    # dKL/dmu = mu (one sample): positive where mu > 0, so gradient descent moves mu to 0
    torch.testing.assert_close(mu.grad, mu.detach())
    assert torch.equal(torch.sign(mu.grad), torch.sign(mu.detach()))
    torch.testing.assert_close(sigma.grad, torch.zeros(1, 4))  # sigma = 1 is the minimum


def test_zero_sigma_makes_the_noise_deterministic():
    model = aigi.create_detector("pinclip", backbone="tiny").train()
    with torch.no_grad():
        model.noise.fc_sigma.weight.zero_()
        model.noise.fc_sigma.bias.zero_()
    x = _batch()["pixels"]
    with torch.no_grad():
        torch.manual_seed(1)
        a = model.noisy_features(x, sample=True)
        torch.manual_seed(2)
        b = model.noisy_features(x, sample=True)
    assert torch.equal(a["sigma"], torch.zeros_like(a["sigma"]))
    assert torch.equal(a["noisy"] - a["f"], b["noisy"] - b["f"])
    torch.testing.assert_close(a["noisy"] - a["f"], a["mu"], rtol=0, atol=1e-7)
    # with sigma > 0 the draws differ
    model2 = aigi.create_detector("pinclip", backbone="tiny").train()
    with torch.no_grad():
        c = model2.noisy_features(x, sample=True)["noisy"]
        d = model2.noisy_features(x, sample=True)["noisy"]
    assert not torch.equal(c, d)


def test_class_logits_and_inference_settings(tmp_path):
    model = aigi.create_detector("pinclip", backbone="tiny").eval()
    assert not hasattr(model, "text_encoder")  # the prompts' embeddings are a buffer instead
    tower = TextTower(model.config.backbone)
    torch.testing.assert_close(model.class_text, tower.encode(["a photo of a real image", "a photo of a fake image"]))
    with torch.no_grad():
        for layer in model.backbone.modules():
            if hasattr(layer, "lora_B"):
                layer.lora_B.normal_(0, 0.3)
        model.noise.fc_mu.bias.normal_()
    x = _batch()["pixels"]
    with torch.no_grad():
        f = F.normalize(model.embeds(x), dim=-1)
        t = F.normalize(model.class_text, dim=-1)
        off = model(x)
        torch.testing.assert_close(off, 100.0 * (f @ t[1] - f @ t[0]))
        assert torch.equal(model(x), off)  # deterministic
        model.config.inference_noise = "mean"
        mu, _ = model.noise(f, t)
        mean = model(x)
        torch.testing.assert_close(mean, 100.0 * (F.normalize(f + mu, dim=-1) @ (t[1] - t[0])))
        assert not torch.allclose(mean, off)
    model.save_pretrained(tmp_path / "m", adapter_only=True)
    again = load_detector(tmp_path / "m").eval()
    assert again.config.inference_noise == "mean"
    assert torch.equal(again.class_text, model.class_text)
    with torch.no_grad():
        assert torch.equal(again(x), mean)


def test_training_loss_is_ce_plus_beta_kl():
    model = aigi.create_detector("pinclip", backbone="tiny", beta=0.5).train()
    b = _batch()
    torch.manual_seed(7)
    out = model.training_loss(b)
    torch.testing.assert_close(out["loss"].detach(), out["ce"] + 0.5 * out["kl"])
    out["loss"].backward()
    assert model.noise.fc_sigma.weight.grad is not None and model.noise.attn.in_proj_weight.grad is not None
    with pytest.raises(ValueError, match="must divide"):
        aigi.create_detector("pinclip", backbone="tiny", attn_heads=3)


def _noisy_model(**kw):
    torch.manual_seed(0)
    model = aigi.create_detector("pinclip", backbone="tiny", **kw).eval()
    with torch.no_grad():
        model.noise.fc_mu.bias.normal_(0, 0.3)
        model.noise.fc_sigma.bias.fill_(0.4)  # noise large enough to move the scores
    return model


def test_feature_averaged_sampling_converges_to_the_mean_noise_forward():
    model = _noisy_model()
    x = _batch()["pixels"]
    with torch.no_grad():
        model.config.inference_noise = "mean"
        mean = model(x)
        errors = [float((model.sampled_logits(x, n, reduce="feature") - mean).abs().max()) for n in (1, 64, 16384)]
    scale = float(mean.abs().max())
    assert errors[0] > 0.1 * scale  # one draw is far from the mean forward
    assert errors[2] < errors[1] < errors[0]
    assert errors[2] < 0.02 * scale  # the Monte-Carlo average has converged


def test_logit_averaged_sampling_is_seeded_and_batch_independent(tmp_path):
    model = _noisy_model(inference_noise="sample", inference_samples=64, inference_seed=3)
    x = _batch()["pixels"]
    with torch.no_grad():
        a = model(x)
        assert torch.equal(model(x), a)  # reproducible: the same seed at every call
        torch.testing.assert_close(model(x[:1]), a[:1], rtol=0, atol=1e-5)  # same draws whatever the batch
        assert not torch.allclose(model.sampled_logits(x, seed=4), a)  # another seed, other draws
        # the logit average is the mean of the per-draw logits
        out = model.noisy_features(x, sample=False)
        g = torch.Generator().manual_seed(3)
        z = torch.randn(64, out["mu"].shape[-1], generator=g)
        t = F.normalize(model.class_text, dim=-1)
        per_draw = [100.0 * F.normalize(out["base"] + out["mu"] + out["sigma"] * zi, dim=-1) @ (t[1] - t[0]) for zi in z]
        torch.testing.assert_close(a, torch.stack(per_draw).mean(0), rtol=0, atol=1e-4)
        model.config.inference_noise = "mean"
        assert not torch.allclose(model(x), a)
        model.config.inference_noise = "sample"
    model.save_pretrained(tmp_path / "m", adapter_only=True)
    again = load_detector(tmp_path / "m").eval()
    assert (again.config.inference_samples, again.config.inference_seed) == (64, 3)
    with torch.no_grad():
        assert torch.equal(again(x), a)


def test_noise_on_the_raw_feature_is_pinis_placement():
    model = _noisy_model(noise_on="raw", inference_noise="mean")
    x = _batch()["pixels"]
    with torch.no_grad():
        raw = model.embeds(x)
        t = F.normalize(model.class_text, dim=-1)
        mu, _ = model.noise(F.normalize(raw, dim=-1), t)
        torch.testing.assert_close(model(x), 100.0 * F.normalize(raw + mu, dim=-1) @ (t[1] - t[0]))
