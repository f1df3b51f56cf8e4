"""Official DFFreq checkpoints of both releases: the imported folder gives the official logits.

The official state dicts are built from the released module names and shapes at tiny size
(``FreqLCBlock.*`` with gate ``mlp`` for the current release, ``DFFreq.*`` with gate ``GMLP`` for
May 2025, the Haar buffers of ``pytorch_wavelets`` twice, the truncated ResNet), every tensor
random. The reference forward below is written from the released ``FreqLC.py`` / ``DFFreq.py``
and ``resnet.py``: the DWT and its inverse run as strided (transposed) convolutions with the
checkpoint's own filter buffers, as ``pytorch_wavelets`` does, and the einops rearrangements
are spelled out with reshape/permute. It shares no code with ``aigi.layers.frequency``.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F
from test_baselines import _randomised, official_resnet

import aigi
from aigi.convert.dffreq import convert_dffreq
from aigi.detectors import CheckpointError
from aigi.detectors.dffreq import DFFreq

S = 2 ** -0.5
HAAR = {  # pytorch_wavelets' prep_filt_afb2d reverses the analysis filters; synthesis ones are as pywt gives them
    "h0_col": torch.tensor([S, S]).reshape(1, 1, 2, 1), "h1_col": torch.tensor([S, -S]).reshape(1, 1, 2, 1),
    "h0_row": torch.tensor([S, S]).reshape(1, 1, 1, 2), "h1_row": torch.tensor([S, -S]).reshape(1, 1, 1, 2),
    "g0_col": torch.tensor([S, S]).reshape(1, 1, 2, 1), "g1_col": torch.tensor([S, -S]).reshape(1, 1, 2, 1),
    "g0_row": torch.tensor([S, S]).reshape(1, 1, 1, 2), "g1_row": torch.tensor([S, -S]).reshape(1, 1, 1, 2),
}
RELEASES = {"current": ("FreqLCBlock", "mlp", 0.6, 0.4), "2025-05": ("DFFreq", "GMLP", 1.0, 0.2)}


def official_state(release: str) -> dict[str, torch.Tensor]:
    """The official key layout at tiny size: names from the released code, random values."""
    block, gate, _, _ = RELEASES[release]
    net = _randomised(aigi.create_detector("npr", **aigi.detectors.registry.detector_class("npr").tiny_overrides)
                      .net.state_dict())
    g = torch.Generator().manual_seed(7)
    sd = dict(net)
    sd[f"{block}.norm1.body.weight"] = torch.rand(3, generator=g) + 0.5
    sd[f"{block}.norm1.body.bias"] = torch.randn(3, generator=g) * 0.1
    for attn, window in (("dwt_attn", 4), ("fft_attn", 8)):
        p = f"{block}.{attn}."
        n = window * window
        sd[p + f"{gate}.0.weight"] = torch.randn(n, n, generator=g) * 0.2
        sd[p + f"{gate}.0.bias"] = torch.randn(n, generator=g) * 0.1
        sd[p + "qkv.weight"] = torch.randn(9, 3, 1, 1, generator=g) * 0.5
        sd[p + "qkv_dwconv.weight"] = torch.randn(9, 1, 3, 3, generator=g) * 0.5
        sd[p + "temperature"] = torch.rand(1, 1, 1, generator=g) + 0.3
        sd[p + "project_out.weight"] = torch.randn(3, 3, 1, 1, generator=g) * 0.5
        sd[p + "project_out.bias"] = torch.randn(3, generator=g) * 0.1
    sd[f"{block}.fft_scale"] = torch.tensor([0.7])
    for prefix in ("", f"{block}."):
        for name, filt in HAAR.items():
            sd[f"{prefix}{'dwt' if name[0] == 'h' else 'idwt'}_transform.{name}"] = filt.clone()
    return sd


# -- the official forward, functionally ----------------------------------------------------
def _afb1d(x, h0, h1, dim):
    c = x.shape[1]
    h = torch.cat([h0, h1] * c, dim=0)
    stride = (2, 1) if dim == 2 else (1, 2)
    return F.conv2d(x, h, stride=stride, groups=c)


def dwt(x, sd, p):
    lohi = _afb1d(x, sd[p + "h0_row"], sd[p + "h1_row"], dim=3)
    y = _afb1d(lohi, sd[p + "h0_col"], sd[p + "h1_col"], dim=2)
    b, _, h, w = y.shape
    y = y.reshape(b, x.shape[1], 4, h, w)
    return y[:, :, 0], y[:, :, 1:]


def _sfb1d(lo, hi, g0, g1, dim):
    c = lo.shape[1]
    stride = (2, 1) if dim == 2 else (1, 2)
    return (F.conv_transpose2d(lo, torch.cat([g0] * c, 0), stride=stride, groups=c)
            + F.conv_transpose2d(hi, torch.cat([g1] * c, 0), stride=stride, groups=c))


def idwt(yl, yh, sd, p):
    lh, hl, hh = yh.unbind(2)
    lo = _sfb1d(yl, lh, sd[p + "g0_col"], sd[p + "g1_col"], dim=2)
    hi = _sfb1d(hl, hh, sd[p + "g0_col"], sd[p + "g1_col"], dim=2)
    return _sfb1d(lo, hi, sd[p + "g0_row"], sd[p + "g1_row"], dim=3)


def layer_norm(x, sd, p):  # d4_to_3d, WithBias_LayerNorm, d3_to_4d
    b, c, h, w = x.shape
    t = x.reshape(b, c, h * w).transpose(1, 2)
    mu = t.mean(-1, keepdim=True)
    var = t.var(-1, keepdim=True, unbiased=False)
    t = (t - mu) / torch.sqrt(var + 1e-5) * sd[p + "weight"] + sd[p + "bias"]
    return t.transpose(1, 2).reshape(b, c, h, w)


def local_attention(x, sd, p, gate, ws, heads=1):
    qkv = F.conv2d(F.conv2d(x, sd[p + "qkv.weight"]), sd[p + "qkv_dwconv.weight"], padding=1, groups=9)
    H, W = qkv.shape[-2:]
    ph, pw = (ws - H % ws) % ws, (ws - W % ws) % ws
    qkv = F.pad(qkv, (0, pw, 0, ph), mode="reflect")
    b, _, hx, wx = qkv.shape
    c = 3 // heads
    # 'b (z head c) (h1 h) (w1 w) -> z (b h1 w1) head c (h w)'
    t = qkv.reshape(b, 3, heads, c, hx // ws, ws, wx // ws, ws).permute(1, 0, 4, 6, 2, 3, 5, 7)
    t = t.reshape(3, b * (hx // ws) * (wx // ws), heads, c, ws * ws)
    q, k, v = t[0], t[1], t[2]
    attn = ((q @ k.transpose(-2, -1)) * sd[p + "temperature"]).softmax(dim=-1)
    out = (attn @ v) * F.gelu(F.linear(v, sd[p + f"{gate}.0.weight"], sd[p + f"{gate}.0.bias"]))
    # '(b h1 w1) head c (h w) -> b (head c) (h1 h) (w1 w)'
    out = out.reshape(b, hx // ws, wx // ws, heads, c, ws, ws).permute(0, 3, 4, 1, 5, 2, 6).reshape(b, 3, hx, wx)
    return F.conv2d(out[:, :, :H, :W], sd[p + "project_out.weight"], sd[p + "project_out.bias"])


def official_dffreq(sd, x, release):
    block, gate, a, b = RELEASES[release]
    p = block + "."
    yl, yh = dwt(x, sd, p + "dwt_transform.")
    x_dwt = torch.cat([yl.unsqueeze(2), yh], dim=2)
    bs, c, c1, hh, ww = x_dwt.shape
    img = x_dwt.reshape(bs, c, c1, hh // 2, 2, ww // 2, 2).permute(0, 1, 2, 3, 5, 4, 6).reshape(bs, c, c1, hh * ww)
    img = img + local_attention(layer_norm(img, sd, p + "norm1.body."), sd, p + "dwt_attn.", gate, 4)
    back = img.reshape(bs, c, c1, hh // 2, ww // 2, 2, 2).permute(0, 1, 2, 3, 5, 4, 6).reshape(bs, c, c1, hh, ww)
    x_idwt = idwt(back[:, :, 0], back[:, :, 1:], sd, p + "idwt_transform.")
    H, W = x.shape[-2:]
    spec = torch.fft.rfft2(x, norm="backward")
    mag, pha = torch.abs(spec), torch.angle(spec)
    pha = local_attention(pha, sd, p + "fft_attn.", gate, 8)
    x_ifft = torch.fft.irfft2(torch.complex(mag * torch.cos(pha), mag * torch.sin(pha)), s=(H, W)) * sd[p + "fft_scale"]
    return official_resnet(sd, x_idwt * a + x_ifft * b, stem_kernel=3, stages=2, fc="fc1")


X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("release", ["current", "2025-05"])
def test_both_releases_import_to_the_official_logits(tmp_path, release):
    sd = official_state(release)
    ckpt = tmp_path / "model_epoch_last.pth"
    torch.save(sd, ckpt)
    out = convert_dffreq(ckpt, tmp_path / "out")
    model = aigi.load_detector(out).eval()
    with torch.no_grad():
        ref = official_dffreq(sd, X, release)
        got = model(X)
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-5)
    assert model.config.release == release
    record = json.loads((out / "conversion.json").read_text())
    want = {"current": "dffreq-center-crop256", "2025-05": "forensynths-resize256"}[release]
    assert record["release"] == release and record["preset"] == want
    assert model.config.preprocess == aigi.data.transforms.preset(want)
    assert any("16 pytorch_wavelets Haar filter buffers" in n for n in record["notes"])
    # the other release's fusion gives other logits: the release matters
    other = aigi.create_detector("dffreq", **DFFreq.tiny_overrides,
                                 release="2025-05" if release == "current" else "current").eval()
    other.load_weights(model.state_dict())
    with torch.no_grad():
        assert not torch.allclose(other(X), ref, atol=1e-3)


def test_a_preset_can_be_chosen_and_the_module_prefix_is_removed(tmp_path):
    sd = {"module." + k: v for k, v in official_state("current").items()}
    ckpt = tmp_path / "c.pth"
    torch.save({"state_dict": sd}, ckpt)
    out = convert_dffreq(ckpt, tmp_path / "o", preset="native")
    assert aigi.load_detector(out).config.preprocess.test == "none"


def test_unknown_missing_and_mixed_keys_are_listed(tmp_path):
    sd = official_state("current")
    cases = {
        "extra": ({**sd, "FreqLCBlock.extra.weight": torch.zeros(1)}, "unexpected keys.*extra.weight"),
        "missing": ({k: v for k, v in sd.items() if k != "layer1.0.conv1.weight"}, "missing keys.*layer1.0.conv1.weight"),
        "both": ({**sd, "DFFreq.fft_scale": torch.zeros(1)}, "holds both"),
        "gate": ({**sd, "FreqLCBlock.dwt_attn.GMLP.0.bias": torch.zeros(16)}, "unexpected keys.*GMLP"),
        "filter": ({**sd, "dwt_transform.h0_col": torch.ones(1, 1, 2, 1)}, "not a Haar filter"),
        "foreign": ({"conv.weight": torch.zeros(1)}, "not a DFFreq checkpoint"),
    }
    for name, (state, message) in cases.items():
        ckpt = tmp_path / f"{name}.pth"
        torch.save(state, ckpt)
        with pytest.raises(CheckpointError, match=message):
            convert_dffreq(ckpt, tmp_path / name)
        assert not (tmp_path / name / "config.json").exists()


def test_haar_buffers_hold_the_pywt_filters():
    # the values used above are pywt's haar dec/rec filters (1/sqrt 2): the official buffers
    for name, filt in HAAR.items():
        assert torch.allclose(filt.abs(), torch.full_like(filt, 1 / math.sqrt(2)))
