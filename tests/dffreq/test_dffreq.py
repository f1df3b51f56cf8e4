"""DFFreq: Haar transform, regrouping, window attention, zero-scale start, size, training, checkpoints."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import aigi
from aigi.detectors import load_detector
from aigi.detectors.dffreq import DFFreq, convert_official_state_dict
from aigi.layers.frequency import (
    DualFrequencyBlock,
    WindowAttention,
    blocks_to_sequence,
    haar_dwt,
    haar_idwt,
    sequence_to_blocks,
)


def tiny() -> DFFreq:
    return aigi.create_detector("dffreq", **DFFreq.tiny_overrides)


# -- Haar DWT ---------------------------------------------------------------------------


def _haar_1d(x: torch.Tensor, dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """pywt's one-level Haar along ``dim``: cA = (x0 + x1)/sqrt2, cD = (x0 - x1)/sqrt2."""
    even = x.narrow(dim, 0, x.shape[dim] // 2 * 2)
    x0 = even.unfold(dim, 2, 2).select(-1, 0)
    x1 = even.unfold(dim, 2, 2).select(-1, 1)
    return (x0 + x1) / math.sqrt(2), (x0 - x1) / math.sqrt(2)


def test_haar_dwt_matches_separable_pywt_convention():
    # pytorch_wavelets' DWTForward(J=1, wave="haar"): rows (W) first, then columns (H);
    # yh[0][:, :, k] for k = 0, 1, 2 is (lo W, hi H), (hi W, lo H), (hi W, hi H).
    x = torch.randn(2, 3, 6, 8, dtype=torch.float64)
    lo_w, hi_w = _haar_1d(x, 3)
    ll, lh = _haar_1d(lo_w, 2)
    hl, hh = _haar_1d(hi_w, 2)
    expected = torch.stack([ll, lh, hl, hh], dim=2)
    torch.testing.assert_close(haar_dwt(x), expected, rtol=0, atol=1e-14)


def test_haar_dwt_of_one_block_is_the_documented_formula():
    x = torch.tensor([[1.0, 2.0], [3.0, 5.0]]).view(1, 1, 2, 2)  # [[a, b], [c, d]]
    bands = haar_dwt(x).flatten().tolist()
    assert bands == [(1 + 2 + 3 + 5) / 2, (1 + 2 - 3 - 5) / 2, (1 - 2 + 3 - 5) / 2, (1 - 2 - 3 + 5) / 2]


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-6), (torch.float64, 1e-12)])
def test_idwt_is_the_exact_inverse(dtype, tol):
    x = torch.randn(2, 3, 18, 26, dtype=dtype)
    bands = haar_dwt(x)
    assert bands.shape == (2, 3, 4, 9, 13)
    assert (haar_idwt(bands) - x).abs().max().item() < tol
    # orthonormal: the forward transform of the inverse is the identity too, and energy is kept
    b = torch.randn(1, 2, 4, 5, 7, dtype=dtype)
    assert (haar_dwt(haar_idwt(b)) - b).abs().max().item() < tol
    assert abs(bands.pow(2).sum().item() - x.pow(2).sum().item()) < tol * x.pow(2).sum().item()


def test_dwt_rejects_odd_sizes():
    with pytest.raises(ValueError, match="even height and width"):
        haar_dwt(torch.zeros(1, 3, 7, 8))


def test_regrouping_puts_each_2x2_block_in_one_window_of_4():
    bands = torch.arange(2 * 4 * 6 * 8, dtype=torch.float32).view(1, 2, 4, 6, 8)
    seq = blocks_to_sequence(bands)
    assert seq.shape == (1, 2, 4, 48)
    # window j of width 4 == the 2x2 block (row j // 4, col j % 4) of every band, row-major
    for j in range(12):
        by, bx = divmod(j, 4)
        block = bands[..., 2 * by : 2 * by + 2, 2 * bx : 2 * bx + 2].reshape(1, 2, 4, 4)
        assert torch.equal(seq[..., 4 * j : 4 * j + 4], block)
    assert torch.equal(sequence_to_blocks(seq, 6, 8), bands)


# -- window attention ---------------------------------------------------------------------


def _naive_window_attention(m: WindowAttention, x: torch.Tensor) -> torch.Tensor:
    """Loop over windows, written from the description (not from the vectorised code)."""
    qkv = m.qkv_dwconv(m.qkv(x))
    h, w = qkv.shape[-2:]
    ws = m.window
    qkv = F.pad(qkv, (0, (-w) % ws, 0, (-h) % ws), mode="reflect")
    q_all, k_all, v_all = qkv.chunk(3, dim=1)
    out = torch.zeros_like(q_all)
    heads, c = m.num_heads, m.dim // m.num_heads
    for b in range(x.shape[0]):
        for y0 in range(0, qkv.shape[-2], ws):
            for x0 in range(0, qkv.shape[-1], ws):
                for hd in range(heads):
                    sl = (b, slice(hd * c, (hd + 1) * c), slice(y0, y0 + ws), slice(x0, x0 + ws))
                    q, k, v = (t[sl].reshape(c, ws * ws) for t in (q_all, k_all, v_all))
                    a = torch.softmax(q @ k.T * m.temperature[hd], dim=-1)
                    o = (a @ v) * m.gate(v)
                    out[sl] = o.reshape(c, ws, ws)
    return m.project_out(out[..., :h, :w])


@pytest.mark.parametrize("heads,window,hw", [(1, 4, (4, 16)), (3, 8, (12, 13)), (1, 2, (6, 6))])
def test_window_attention_matches_a_loop_over_windows(heads, window, hw):
    m = WindowAttention(3 * heads if heads > 1 else 3, heads, window=window).double()
    with torch.no_grad():
        m.temperature.uniform_(0.2, 1.5)
    x = torch.randn(2, m.dim, *hw, dtype=torch.float64)
    torch.testing.assert_close(m(x), _naive_window_attention(m, x), rtol=1e-10, atol=1e-10)


def test_window_attention_is_channel_wise_with_learnable_temperature():
    m = WindowAttention(3, 1, window=8)
    assert m.temperature.shape == (1, 1, 1) and m.temperature.requires_grad
    assert m.temperature.item() == pytest.approx(1 / math.sqrt(3))
    assert m.qkv.kernel_size == (1, 1) and m.qkv.bias is None
    assert m.qkv_dwconv.kernel_size == (3, 3) and m.qkv_dwconv.groups == 9
    assert isinstance(m.gate[1], torch.nn.GELU) and m.gate[0].in_features == 64


# -- the detector --------------------------------------------------------------------------


def test_fft_branch_contributes_nothing_at_initialisation():
    model = tiny().eval()
    assert model.freq.fft_scale.item() == 0.0
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        full = model(x)
        without_fft = model.net(model.freq.wavelet_branch(x) * 0.6).squeeze(-1)
        assert torch.equal(full, without_fft)
        # ... but the branch is live: a non-zero scale changes the output
        model.freq.fft_scale.fill_(1.0)
        assert not torch.allclose(model(x), full)
        expected = 0.6 * model.freq.wavelet_branch(x) + 0.4 * model.freq.fft_branch(x)
        torch.testing.assert_close(model.freq(x), expected)
        # the May 2025 release fuses x_idwt + 0.2 x_fft with the same parameters
        may = aigi.create_detector("dffreq", **DFFreq.tiny_overrides, release="2025-05").eval()
        may.load_weights(model.state_dict())
        expected = may.freq.wavelet_branch(x) + 0.2 * may.freq.fft_branch(x)
        torch.testing.assert_close(may.freq(x), expected)


def test_fft_scale_gets_a_gradient_at_zero():
    model = tiny().train()
    loss = model.training_loss({"pixels": torch.randn(4, 3, 32, 32), "label": torch.tensor([0.0, 1, 0, 1])})["loss"]
    loss.backward()
    assert model.freq.fft_scale.grad is not None and model.freq.fft_scale.grad.abs().item() > 0


def test_fft_branch_keeps_the_magnitude():
    block = DualFrequencyBlock(3).double().eval()
    with torch.no_grad():
        block.fft_scale.fill_(1.0)
    x = torch.randn(1, 3, 16, 16, dtype=torch.float64)
    with torch.no_grad():
        y = block.fft_branch(x)
    # |rfft2| is kept except where irfft2 must drop the imaginary part (DC and Nyquist columns/rows)
    torch.testing.assert_close(torch.fft.rfft2(y).abs()[..., 1:-1], torch.fft.rfft2(x).abs()[..., 1:-1])


@pytest.mark.parametrize("release", ["current", "2025-05"])
def test_parameter_count_of_the_published_architecture(release):
    model = aigi.create_detector("dffreq", release=release)
    total = sum(p.numel() for p in model.parameters())
    assert total == 1_442_442  # "~1.44 M"
    assert sum(p.numel() for p in model.freq.parameters()) == 4_681
    npr = aigi.create_detector("npr")
    assert sum(p.numel() for p in model.net.parameters()) == sum(p.numel() for p in npr.parameters())
    with torch.no_grad():
        assert model.eval()(torch.zeros(1, 3, 224, 224)).shape == (1,)


def test_published_defaults():
    model = aigi.create_detector("dffreq")
    cfg = model.config
    assert (cfg.release, cfg.dwt_window, cfg.fft_window, cfg.num_heads, cfg.fft_scale_init) == (
        "current", 4, 8, 1, 0.0)
    assert (model.freq.idwt_weight, model.freq.fft_weight) == (0.6, 0.4)
    pre = cfg.preprocess  # the current release: CenterCrop(256), no resize
    assert (pre.train, pre.test, pre.size, pre.normalize) == ("random_crop", "center_crop", 256, "imagenet")
    may = aigi.create_detector("dffreq", release="2025-05")
    assert (may.freq.idwt_weight, may.freq.fft_weight) == (1.0, 0.2)


def test_folders_saved_before_release_existed_load_as_the_may_2025_release(tmp_path):
    import json

    model = tiny()
    model.save_pretrained(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    del cfg["release"]
    cfg["fft_weight"] = 0.2  # what the previous code wrote
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    again = load_detector(tmp_path / "m")
    assert again.config.release == "2025-05" and again.freq.fft_weight == 0.2
    cfg["fft_weight"] = 0.3
    (tmp_path / "m" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="matches no DFFreq release"):
        load_detector(tmp_path / "m")


def test_frequency_block_convolutions_use_the_kaiming_fan_out_rule():
    # the official constructor runs kaiming_normal_(fan_out, relu) over every Conv2d, the block's included
    torch.manual_seed(0)
    model = aigi.create_detector("dffreq")
    torch.manual_seed(0)
    block = DualFrequencyBlock(3, fft_weight=0.4, idwt_weight=0.6)
    for m in block.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    for (name, ours), theirs in zip(model.freq.state_dict().items(), block.state_dict().values()):
        assert torch.equal(ours, theirs), name
    torch.manual_seed(0)
    default = DualFrequencyBlock(3)  # PyTorch's default init differs
    assert not torch.equal(default.fft_attn.qkv.weight, model.freq.fft_attn.qkv.weight)


def test_training_steps_fit_a_fixed_batch():
    torch.manual_seed(0)
    model = tiny().train()
    batch = {"pixels": torch.randn(8, 3, 32, 32), "label": torch.tensor([0.0, 1.0] * 4), "index": torch.arange(8)}
    opt = torch.optim.Adam(model.trainable_parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        out = model.training_loss(batch)
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(out["loss"].item())
    assert losses[-1] < 0.5 * losses[0]
    assert model.freq.fft_scale.item() != 0.0  # the FFT branch is being trained


def test_save_reload_keeps_a_trained_fft_branch(tmp_path):
    model = tiny().eval()
    with torch.no_grad():
        model.freq.fft_scale.fill_(0.7)
        model.freq.fft_attn.temperature.fill_(2.0)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ref = model(x)
    model.save_pretrained(tmp_path / "m")
    again = load_detector(tmp_path / "m").eval()
    with torch.no_grad():
        assert torch.equal(again(x), ref)
    assert again.freq.fft_scale.item() == pytest.approx(0.7)


def test_sizes_that_are_not_multiples_of_4_and_too_small_inputs():
    model = tiny().eval()
    with torch.no_grad():
        y = model(torch.randn(2, 3, 30, 35))
        assert y.shape == (2,) and torch.isfinite(y).all()
        # padding never changes a multiple-of-4 input
        x = torch.randn(1, 3, 32, 32)
        torch.testing.assert_close(model.freq(x), model.freq(x.clone()))
    with pytest.raises(ValueError, match="at least 8 x 8"):
        model(torch.randn(1, 3, 6, 32))


def test_official_state_dict_converts_and_loads():
    model = tiny().eval()
    with torch.no_grad():
        model.freq.fft_scale.fill_(0.3)
    ours = model.state_dict()
    official = {}
    for k, v in ours.items():
        if k.startswith("freq."):
            k = "DFFreq." + k[5:].replace("norm1.", "norm1.body.").replace(".gate.", ".GMLP.")
        else:
            k = k[len("net."):]
        official["module." + k] = v.clone()
    # pytorch_wavelets' filter buffers are in official checkpoints; they are dropped
    official["module.dwt_transform.h0_col"] = torch.full((1, 1, 2, 1), 2 ** -0.5)
    official["module.DFFreq.idwt_transform.g0_row"] = torch.tensor([[[[2 ** -0.5, -(2 ** -0.5)]]]])
    converted = convert_official_state_dict(official)
    assert set(converted) == set(ours)
    fresh = aigi.create_detector("dffreq", **DFFreq.tiny_overrides, release="2025-05").eval()
    fresh.load_weights(converted)
    model = aigi.create_detector("dffreq", **DFFreq.tiny_overrides, release="2025-05").eval()
    model.load_weights(ours)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(fresh(x), model(x))
    with pytest.raises(ValueError, match="not a DFFreq checkpoint"):
        convert_official_state_dict({"head.weight": torch.zeros(1)})
