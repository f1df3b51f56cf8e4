"""Wavelet and Fourier building blocks of DFFreq (Yan et al., 2025).

* :func:`haar_dwt` / :func:`haar_idwt` -- one level of the orthonormal 2-D Haar transform
  and its exact inverse, written with tensor slicing (no filter buffers, any dtype/device).
* :func:`blocks_to_sequence` / :func:`sequence_to_blocks` -- the "reconstructed windows"
  regrouping: every 2 x 2 block of sub-band coefficients becomes one run of 4 positions.
* :class:`WindowAttention` -- channel-wise attention inside non-overlapping windows
  (qkv by 1 x 1 conv then depthwise 3 x 3, learnable temperature, GELU-gated output).
* :class:`ChannelLayerNorm` -- LayerNorm over the channel axis of a (B, C, H, W) map.
* :class:`DualFrequencyBlock` -- the wavelet branch (DWT -> regroup -> LN -> window
  attention -> residual -> IDWT) plus the FFT branch (attention over the phase with the
  magnitude kept), fused as ``idwt_weight * x_idwt + fft_weight * fft_scale * x_fft``
  (current release ``FreqLCBlock``: 0.6 and 0.4; May 2025 copy ``DFFreq``: 1 and 0.2).

Conventions follow the official code (which uses ``pytorch_wavelets`` with ``wave="haar"``),
so official weights keep their meaning. For a 2 x 2 pixel block ``[[a, b], [c, d]]``::

    LL = (a + b + c + d) / 2      LH = (a + b - c - d) / 2     (low along W, high along H)
    HL = (a - b + c - d) / 2      HH = (a - b - c + d) / 2

i.e. pywt's ``cD = (x[2i] - x[2i+1]) / sqrt(2)`` along each axis, sub-bands stacked in the
order LL, LH, HL, HH (``pytorch_wavelets``' ``yl`` then ``yh[0][:, :, 0..2]``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ChannelLayerNorm",
    "DualFrequencyBlock",
    "WindowAttention",
    "blocks_to_sequence",
    "haar_dwt",
    "haar_idwt",
    "sequence_to_blocks",
]


def haar_dwt(x: torch.Tensor) -> torch.Tensor:
    """One-level orthonormal Haar DWT: (B, C, H, W) -> (B, C, 4, H/2, W/2) as LL, LH, HL, HH.

    H and W must be even (the transform pairs neighbouring pixels).
    """
    if x.ndim != 4:
        raise ValueError(f"haar_dwt expects a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if h % 2 or w % 2:
        raise ValueError(f"haar_dwt needs even height and width, got {h} x {w}")
    a = x[..., 0::2, 0::2]
    b = x[..., 0::2, 1::2]
    c = x[..., 1::2, 0::2]
    d = x[..., 1::2, 1::2]
    ll = (a + b + c + d) * 0.5
    lh = (a + b - c - d) * 0.5
    hl = (a - b + c - d) * 0.5
    hh = (a - b - c + d) * 0.5
    return torch.stack((ll, lh, hl, hh), dim=2)


def haar_idwt(bands: torch.Tensor) -> torch.Tensor:
    """Exact inverse of :func:`haar_dwt`: (B, C, 4, h, w) -> (B, C, 2h, 2w)."""
    if bands.ndim != 5 or bands.shape[2] != 4:
        raise ValueError(f"haar_idwt expects (B, C, 4, h, w) sub-bands, got shape {tuple(bands.shape)}")
    ll, lh, hl, hh = bands.unbind(dim=2)
    a = (ll + lh + hl + hh) * 0.5
    b = (ll + lh - hl - hh) * 0.5
    c = (ll - lh + hl - hh) * 0.5
    d = (ll - lh - hl + hh) * 0.5
    bsz, ch, h, w = ll.shape
    # (B, C, h, 2, w, 2): row parity then column parity, then merge into (2h, 2w)
    top = torch.stack((a, b), dim=-1)
    bottom = torch.stack((c, d), dim=-1)
    return torch.stack((top, bottom), dim=3).reshape(bsz, ch, 2 * h, 2 * w)


def blocks_to_sequence(bands: torch.Tensor) -> torch.Tensor:
    """(B, C, S, h, w) -> (B, C, S, h*w): each 2 x 2 block of coefficients becomes 4 consecutive positions.

    Blocks are ordered row-major (block row, block column) and the 4 positions inside a
    block row-major, so a window of width 4 on the result sees exactly one 2 x 2 block of
    all ``S`` sub-bands (the paper's "reconstructed sliding windows"). h, w must be even.
    """
    bsz, ch, s, h, w = bands.shape
    if h % 2 or w % 2:
        raise ValueError(f"sub-band maps must have even sides to form 2 x 2 blocks, got {h} x {w}")
    x = bands.reshape(bsz, ch, s, h // 2, 2, w // 2, 2).permute(0, 1, 2, 3, 5, 4, 6)
    return x.reshape(bsz, ch, s, h * w)


def sequence_to_blocks(seq: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`blocks_to_sequence`: (B, C, S, h*w) -> (B, C, S, h, w)."""
    bsz, ch, s, n = seq.shape
    if n != h * w:
        raise ValueError(f"sequence of length {n} does not hold {h} x {w} coefficients")
    x = seq.reshape(bsz, ch, s, h // 2, w // 2, 2, 2).permute(0, 1, 2, 3, 5, 4, 6)
    return x.reshape(bsz, ch, s, h, w)


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channel axis of (B, C, H, W): biased variance, eps inside the sqrt."""

    def __init__(self, dim: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


class WindowAttention(nn.Module):
    """Channel-wise attention inside non-overlapping ``window x window`` windows.

    ``q, k, v = dwconv3x3(conv1x1(x))`` split along channels (q first); in every window and
    head, ``A = softmax(temperature * q k^T)`` is a (c x c) channel affinity over the
    window's ``window**2`` positions; ``out = (A v) * GELU(Linear(v))`` (the gate mixes the
    positions of the window), then a 1 x 1 output projection. The qkv map is padded
    (reflect) to a multiple of the window and the output cropped back, as in the official
    code. ``temperature`` starts at ``1 / sqrt(dim)``.
    """

    def __init__(self, dim: int, num_heads: int = 1, *, bias: bool = False, window: int = 8) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.dim, self.num_heads, self.window = dim, num_heads, window
        n = window * window
        self.gate = nn.Sequential(nn.Linear(n, n, bias=True), nn.GELU())
        self.qkv = nn.Conv2d(dim, dim * 3, kernel_size=1, bias=bias)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, kernel_size=3, padding=1, groups=dim * 3, bias=bias)
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1) / math.sqrt(dim))
        self.project_out = nn.Conv2d(dim, dim, kernel_size=1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        qkv = self.qkv_dwconv(self.qkv(x))
        h, w = qkv.shape[-2:]
        ws = self.window
        ph, pw = (-h) % ws, (-w) % ws
        if ph or pw:
            if ph >= h or pw >= w:
                raise ValueError(
                    f"a {h} x {w} map is too small for reflect padding to windows of {ws}; "
                    f"use inputs of at least {ws} x {ws}"
                )
            qkv = F.pad(qkv, (0, pw, 0, ph), mode="reflect")
        bsz, _, hp, wp = qkv.shape
        nh, nw, heads, c = hp // ws, wp // ws, self.num_heads, self.dim // self.num_heads
        # (B, 3, heads, c, nh, ws, nw, ws) -> (3, B*nh*nw, heads, c, ws*ws)
        t = qkv.reshape(bsz, 3, heads, c, nh, ws, nw, ws).permute(1, 0, 4, 6, 2, 3, 5, 7)
        t = t.reshape(3, bsz * nh * nw, heads, c, ws * ws)
        q, k, v = t[0], t[1], t[2]
        attn = (q @ k.transpose(-2, -1)) * self.temperature
        out = attn.softmax(dim=-1) @ v
        out = out * self.gate(v)
        out = out.reshape(bsz, nh, nw, heads, c, ws, ws).permute(0, 3, 4, 1, 5, 2, 6)
        out = out.reshape(bsz, heads * c, hp, wp)[:, :, :h, :w]
        return self.project_out(out)


class DualFrequencyBlock(nn.Module):
    """DFFreq's front end: wavelet branch + FFT branch, fused before the classifier.

    Wavelet branch: ``B = regroup(haar_dwt(x))`` (B, C, 4, HW/4); ``B' = B + Attn_w(LN(B))``
    with windows of ``dwt_window`` (4: one 2 x 2 block of all four sub-bands);
    ``x_idwt = haar_idwt(ungroup(B'))``.

    FFT branch: ``F = rfft2(x)``; ``phi' = Attn_f(angle(F))`` with windows of ``fft_window``;
    ``x_fft = irfft2(|F| exp(i phi'), s=(H, W)) * fft_scale`` with ``fft_scale`` a learnable
    scalar initialised to 0, so the branch contributes nothing at initialisation.

    Output: ``idwt_weight * x_idwt + fft_weight * x_fft``: 0.6 and 0.4 in the current
    release (``FreqLCBlock``), 1.0 and 0.2 in the May 2025 copy (``DFFreq``). The
    parameters are the same in both, so the parameter count is too.

    Project choice: inputs whose sides are not multiples of 4 are zero-padded at the
    bottom/right to the next multiple of 4 and the output is cropped back (the official
    code only accepts multiples of 4; for those the result is unchanged).
    """

    def __init__(self, dim: int = 3, *, num_heads: int = 1, bias: bool = False, dwt_window: int = 4,
                 fft_window: int = 8, fft_weight: float = 0.4, fft_scale_init: float = 0.0,
                 idwt_weight: float = 0.6) -> None:
        super().__init__()
        self.fft_weight = fft_weight
        self.idwt_weight = idwt_weight
        self.norm1 = ChannelLayerNorm(dim)
        self.dwt_attn = WindowAttention(dim, num_heads, bias=bias, window=dwt_window)
        self.fft_attn = WindowAttention(dim, num_heads, bias=bias, window=fft_window)
        self.fft_scale = nn.Parameter(torch.full((1,), float(fft_scale_init)))

    def wavelet_branch(self, x: torch.Tensor) -> torch.Tensor:
        bands = haar_dwt(x)
        h, w = bands.shape[-2:]
        seq = blocks_to_sequence(bands)
        seq = seq + self.dwt_attn(self.norm1(seq))
        return haar_idwt(sequence_to_blocks(seq, h, w))

    def fft_branch(self, x: torch.Tensor) -> torch.Tensor:
        """The FFT branch *before* the fusion weight (already multiplied by ``fft_scale``)."""
        h, w = x.shape[-2:]
        spec = torch.fft.rfft2(x.float() if x.dtype in (torch.float16, torch.bfloat16) else x, norm="backward")
        mag, pha = spec.abs(), spec.angle()
        pha = self.fft_attn(pha.to(x.dtype)).to(mag.dtype)
        spec = torch.complex(mag * torch.cos(pha), mag * torch.sin(pha))
        return torch.fft.irfft2(spec, s=(h, w), norm="backward").to(x.dtype) * self.fft_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"expected a (B, C, H, W) batch, got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        if h < 8 or w < 8:
            raise ValueError(f"DFFreq needs images of at least 8 x 8 pixels, got {h} x {w}")
        ph, pw = (-h) % 4, (-w) % 4
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        out = self.wavelet_branch(x) * self.idwt_weight + self.fft_branch(x) * self.fft_weight
        return out[..., :h, :w]
