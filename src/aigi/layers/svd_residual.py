"""SVD-residual linear layers: Effort's orthogonal-subspace fine-tuning, usable on any ``nn.Linear``.

A pretrained weight ``W`` (out × in, ``n = min(out, in)`` singular values) is split by its SVD
``W = U diag(S) Vᵀ`` into

* a frozen principal part ``W_main = U[:, :r] diag(S[:r]) Vh[:r]`` (the top ``r`` triplets), and
* a trainable residual ``U_res (out, k)``, ``S_res (k)``, ``V_res (k, in)`` with ``k = n - r``,
  initialised from the remaining ``k`` triplets,

so the layer computes ``y = x (W_main + U_res diag(S_res) V_res)ᵀ + b`` and equals the original
layer at initialisation. The SVD runs in float64 and is then cast to the weight's dtype.

Storage: ``W_main`` is a *persistent buffer* (in the state dict exactly once, never seen by the
optimiser), ``U_res``/``S_res``/``V_res`` are parameters, the bias is a frozen parameter, and
``residual_energy`` (``‖W‖_F² − ‖W_main‖_F² = Σ S_res(0)²``, one scalar) is a persistent buffer
so the singular-value-preservation loss works after any reload.

Project choices (the papers and the released code leave them open):

* ``W_main`` is computed as ``W − U_res diag(S_res) V_res`` in float64, which equals
  ``U_r diag(S_r) V_rᵀ`` up to float64 rounding and makes the split exact.
* When gradients are needed, the forward is evaluated factorised,
  ``x W_mainᵀ + ((x V_resᵀ) ⊙ S_res) U_resᵀ + b``, if ``k (in + out) ≤ in·out / 2`` (always for
  Effort's rank 1): the same function, but the backward never forms a dense ``out × in`` weight
  gradient; larger ranks use the merged weight. Without gradients both paths are memory-bound
  extras on top of the layer's product: the factorised one touches ``rows × k (in + out)``
  numbers, the merged one (``W_main + U_res diag(S_res) V_res``, then one product) ``in × out``
  several times; the factorised path is taken when ``rows·k(in + out) ≤ 2·in·out`` (measured on
  CPU: at 257 tokens the merged weight costs +124 % per layer and the factorised path +12 %; at
  4,112 tokens the merged weight +1 % and the factorised path +25 %). Folding removes both.
* The regularisers need the frozen principal bases. Instead of keeping ``U_main (out × r)`` and
  ``V_main (r × in)`` (two extra copies of every weight: ~800 MB on ViT-L/14), a side whose
  dimension equals ``n`` is represented by its orthogonal complement, which is just the initial
  residual basis (``k`` columns): ``‖U_mainᵀ X‖² = ‖X‖² − ‖Cᵀ X‖²``. Only the long side of a
  non-square matrix stores its main basis. These bases are non-persistent buffers built from the
  SVD when the regulariser is asked for at construction, or rebuilt lazily from ``W_main`` (its
  top-``r`` / null space; exact up to the float rounding of ``W_main``) after a reload.

Speed: with a small trainable rank only the ``k`` smallest singular triplets are needed, and
``W_main = W − U_res diag(S_res) V_res`` does not need the others. For a square matrix with
``k + 8 ≤ n / 4`` they come from :func:`smallest_singular_triplets` (one LU factorisation, then
block inverse iteration with a Rayleigh–Ritz step: ~20× less work than a full SVD), checked for
convergence, with the full SVD as the fallback (non-square matrices, where the smallest singular
values are typically crowded, near-singular or slow-converging cases, larger ranks).
:func:`apply_svd_residual` decomposes independent matrices on parallel threads (each one
single-threaded, so the result does not depend on the thread count).

Reproducibility: an adapter-only checkpoint stores only the residual factors; ``W_main`` is
recomputed from the pretrained weight by the same float64 computation, run with one LAPACK thread
per matrix so the result does not depend on the machine's thread count. LAPACK builds for other
instruction sets (or a GPU) can still differ in the last bits, so a reload elsewhere reproduces
logits to float32 rounding rather than bit for bit (``W_main`` does not depend on the residual
vectors' signs).
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Iterator, Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "ATTENTION_PATTERN",
    "MLP_PATTERN",
    "SVDResidualLinear",
    "apply_svd_residual",
    "count_residual_parameters",
    "deterministic_svd",
    "fold_svd_residuals",
    "resolve_targets",
    "residual_triplets",
    "smallest_singular_triplets",
    "svd_residual_modules",
]

#: Linear layers of every transformer block's self-attention (CLIP/ViT naming): Effort's default
ATTENTION_PATTERN = r"(?:.*\.)?self_attn\.(?:q_proj|k_proj|v_proj|out_proj)"
#: the two Linear layers of every block's MLP (CLIP naming)
MLP_PATTERN = r"(?:.*\.)?mlp\.(?:fc1|fc2)"
_NAMED_TARGETS = {
    "attention": ATTENTION_PATTERN,
    "mlp": MLP_PATTERN,
    "both": f"(?:{ATTENTION_PATTERN})|(?:{MLP_PATTERN})",
}

OrthVariant = Literal["paper", "released"]


@contextmanager
def _one_thread(device: torch.device) -> Iterator[None]:
    """torch (and its LAPACK) on one thread inside the block, on CPU; restored afterwards."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def deterministic_svd(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Thin SVD; on CPU with one LAPACK thread, so the bits do not depend on the thread count.

    (MKL's multi-threaded SVD changes the last bits with the number of threads, and collapses on an
    oversubscribed CPU; an adapter-only checkpoint relies on recomputing exactly the same ``W_main``.)
    """
    with _one_thread(w.device):
        return torch.linalg.svd(w, full_matrices=False)


#: block inverse iteration: extra vectors beyond the k wanted, iteration cap, convergence tolerance
_EXTRA_VECTORS, _MAX_ITERS, _VEC_TOL = 8, 30, 1e-12


def smallest_singular_triplets(
    w: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """The ``k`` smallest singular triplets of a square float64 matrix, or None if not reliable.

    Returns ``(U (n, k), S (k,), Vh (k, n))`` ordered like the tail of a thin SVD (descending
    ``S``), each vector determined up to sign. Method: one LU factorisation of ``W``, then block
    inverse iteration on ``(WᵀW)⁻¹`` with ``k + 8`` vectors (two triangular solves per step, no
    Gram matrix, so the conditioning is that of ``W``), a Rayleigh–Ritz step on ``W X`` each
    iteration. Converged when every wanted vector moves by ≤ 1e-12 (two steps in a row, or one
    step that also shrank the change by half) and the values by ≤ 1e-13 ‖W‖_F. None when
    ``W`` is singular, not square, too small for the block, or it did not converge in 30 steps
    (repeated or crowded smallest singular values): the caller then runs a full SVD.
    Single-threaded on CPU; deterministic (fixed start block).
    """
    if w.ndim != 2 or w.shape[0] != w.shape[1] or w.dtype != torch.float64:
        return None
    n = w.shape[0]
    p = k + _EXTRA_VECTORS
    if k < 1 or 4 * p > n:
        return None
    with _one_thread(w.device), torch.no_grad():
        lu, piv, info = torch.linalg.lu_factor_ex(w)
        if int(info) != 0 or not bool(torch.isfinite(lu).all()):
            return None
        scale = float(torch.linalg.matrix_norm(w))
        gen = torch.Generator(device=w.device).manual_seed(0)
        x = torch.randn(n, p, generator=gen, dtype=w.dtype, device=w.device)
        prev_v: torch.Tensor | None = None
        prev_s: torch.Tensor | None = None
        prev_change = float("inf")
        for _ in range(_MAX_ITERS):
            y = torch.linalg.lu_solve(lu, piv, x, adjoint=True)  # Wᵀ y = x
            x = torch.linalg.qr(torch.linalg.lu_solve(lu, piv, y))[0]  # W x' = y, orthonormalised
            if not bool(torch.isfinite(x).all()):
                return None
            ub, sb, vbh = torch.linalg.svd(w @ x, full_matrices=False)  # Rayleigh–Ritz on the block
            v, s, u = x @ vbh[-k:].T, sb[-k:], ub[:, -k:]
            if prev_v is not None and prev_s is not None:
                sign = torch.where((v * prev_v).sum(0) < 0, -1.0, 1.0).to(v.dtype)
                change = float((v - prev_v * sign).norm(dim=0).max())
                s_change = float((s - prev_s).abs().max())
                if (change <= _VEC_TOL and s_change <= 1e-13 * scale
                        and (prev_change <= _VEC_TOL or change <= 0.5 * prev_change)):
                    return u.contiguous(), s.contiguous(), v.T.contiguous()
                prev_change = change
            prev_v, prev_s = v, s
    return None


def residual_triplets(
    w: torch.Tensor, k: int, *, full: bool = False
) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor] | None]:
    """The ``k`` smallest singular triplets of ``w`` (float64), and the full bases when computed.

    Returns ``((U_res, S_res, Vh_res), (U, Vh) or None)``. Uses
    :func:`smallest_singular_triplets` when it applies and ``full`` is False, else (or when it
    declines) a single-threaded full SVD, whose bases are then returned too.
    """
    if not full:
        got = smallest_singular_triplets(w, k)
        if got is not None:
            return got, None
    u, s, vh = deterministic_svd(w)
    r = s.shape[0] - k
    return (u[:, r:], s[r:], vh[r:]), (u, vh)


def _split_rank(n: int, r: int | None, trainable_rank: int | None) -> int:
    """The number of frozen components ``r`` for a matrix with ``n`` singular values."""
    if r is None:
        if trainable_rank is None:
            raise ValueError("give r (frozen components) or trainable_rank (n - r)")
        if not 1 <= trainable_rank <= n:
            raise ValueError(f"trainable_rank must be between 1 and {n} for this matrix, got {trainable_rank}")
        return n - int(trainable_rank)
    if not 0 <= r < n:
        raise ValueError(f"r must satisfy 0 <= r < {n} (n = min(out, in)) so something is trainable, got r={r}")
    return int(r)


class SVDResidualLinear(nn.Module):
    """``y = x (W_main + U_res diag(S_res) V_res)ᵀ + b``: frozen top-r SVD part + trainable residual.

    Build it from a pretrained layer with :meth:`from_linear`; :meth:`fold` returns the equivalent
    plain ``nn.Linear``. Regularisers of the Effort paper: :meth:`orthogonality_loss` and
    :meth:`keep_sv_loss` (formulas there).
    """

    weight_main: torch.Tensor
    residual_energy: torch.Tensor

    def __init__(self, in_features: int, out_features: int, r: int, *, bias: bool = True,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        n = min(in_features, out_features)
        r = _split_rank(n, r, None)
        k = n - r
        kw = {"device": device, "dtype": dtype}
        self.in_features, self.out_features, self.r, self.n = in_features, out_features, r, n
        self.register_buffer("weight_main", torch.zeros(out_features, in_features, **kw))
        self.U_res = nn.Parameter(torch.zeros(out_features, k, **kw))
        self.S_res = nn.Parameter(torch.zeros(k, **kw))
        self.V_res = nn.Parameter(torch.zeros(k, in_features, **kw))
        if bias:
            self.bias = nn.Parameter(torch.zeros(out_features, **kw), requires_grad=False)
        else:
            self.register_parameter("bias", None)
        # ‖W‖² − ‖W_main‖² of the original weight; NaN when unknown (e.g. converted checkpoints)
        self.register_buffer("residual_energy", torch.tensor(float("nan"), **kw))
        self.register_load_state_dict_pre_hook(_drop_stale_bases)

    # -- construction ------------------------------------------------------------------
    @property
    def trainable_rank(self) -> int:
        return self.n - self.r

    @classmethod
    def from_linear(cls, linear: nn.Linear, r: int | None = None, trainable_rank: int | None = 1, *,
                    decompose: bool = True, orthogonal_bases: bool = False, **kwargs: Any) -> "SVDResidualLinear":
        """Wrap a pretrained ``nn.Linear``; ``r`` (frozen components), when given, wins over ``trainable_rank``.

        ``decompose=False`` skips the SVD and only allocates the shapes (``W_main = W``, zero
        residual): for modules whose tensors a full checkpoint will overwrite. ``orthogonal_bases``
        keeps the frozen bases the orthogonality loss needs (see the module docstring).
        """
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"from_linear expects an nn.Linear, got {type(linear).__name__}")
        n = min(linear.in_features, linear.out_features)
        r = _split_rank(n, r, trainable_rank)
        w = linear.weight.detach()
        mod = cls(linear.in_features, linear.out_features, r, bias=linear.bias is not None,
                  device=w.device, dtype=w.dtype, **kwargs)
        with torch.no_grad():
            if linear.bias is not None:
                mod.bias.copy_(linear.bias.detach())
            if decompose:
                mod._decompose(w, orthogonal_bases=orthogonal_bases)
            else:
                mod.weight_main.copy_(w)
        return mod

    @torch.no_grad()
    def _decompose(self, weight: torch.Tensor, *, orthogonal_bases: bool) -> None:
        wd = weight.to(torch.float64)
        square = self.in_features == self.out_features
        # a non-square matrix's regulariser keeps the main basis of its long side: full SVD
        (u0, s0, v0), full = residual_triplets(wd, self.n - self.r, full=orthogonal_bases and not square)
        dt = weight.dtype
        self.weight_main.copy_((wd - (u0 * s0) @ v0).to(dt))
        self.U_res.copy_(u0.to(dt))
        self.S_res.copy_(s0.to(dt))
        self.V_res.copy_(v0.to(dt))
        self.residual_energy.copy_((s0 * s0).sum().to(dt))
        if orthogonal_bases:
            if full is not None:
                self._store_bases(*full)
            else:  # square: both sides keep their complement, i.e. the residual vectors
                self._set_bases(u0, False, v0.T, False)
        self._after_decompose()

    def _after_decompose(self) -> None:
        """Hook for subclasses that record more of the initial state (called under no_grad)."""

    def _store_bases(self, u: torch.Tensor, vh: torch.Tensor) -> None:
        """Keep, per side, the smaller of (main basis, orthogonal complement); see module docstring."""
        r = self.r
        u_main = self.out_features != self.n  # a long side keeps its main basis
        v_main = self.in_features != self.n
        u_basis = u[:, :r] if u_main else u[:, r:]
        v_basis = vh[:r].T if v_main else vh[r:].T
        self._set_bases(u_basis, u_main, v_basis, v_main)

    def _set_bases(self, u_basis: torch.Tensor, u_main: bool, v_basis: torch.Tensor, v_main: bool) -> None:
        dt = self.weight_main.dtype
        self.register_buffer("_u_basis", u_basis.to(dt).contiguous(), persistent=False)
        self.register_buffer("_v_basis", v_basis.to(dt).contiguous(), persistent=False)
        self._u_is_main, self._v_is_main = u_main, v_main

    def _bases(self) -> tuple[torch.Tensor, bool, torch.Tensor, bool]:
        """(U basis, is-main, V basis (columns in R^in), is-main), rebuilt from ``W_main`` if absent."""
        if getattr(self, "_u_basis", None) is None:
            with torch.no_grad():
                u, _, vh = deterministic_svd(self.weight_main.to(torch.float64))
                self._store_bases(u, vh)
        return self._u_basis, self._u_is_main, self._v_basis, self._v_is_main

    @staticmethod
    def _project_main(x: torch.Tensor, basis: torch.Tensor, is_main: bool) -> torch.Tensor:
        """``P x`` with ``P`` the projector onto one side's frozen main subspace (x: that side's rows).

        Formed as a residual (``x − C Cᵀ x`` for a complement basis ``C``), so its norm is accurate
        even when ``P x`` is tiny: no cancellation between large squared norms.
        """
        if is_main:
            return basis @ (basis.T @ x)
        return x - basis @ (basis.T @ x)

    # -- forward -----------------------------------------------------------------------
    def _factors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The residual factors used by forward (subclasses may gate their gradients)."""
        return self.U_res, self.S_res, self.V_res

    @property
    def _factorised(self) -> bool:
        k = self.n - self.r
        return 2 * k * (self.in_features + self.out_features) <= self.in_features * self.out_features

    def residual_weight(self) -> torch.Tensor:
        """``U_res diag(S_res) V_res`` (out × in)."""
        u, s, v = self._factors()
        return (u * s) @ v

    def merged_weight(self) -> torch.Tensor:
        """The current dense weight ``W_main + U_res diag(S_res) V_res``."""
        return self.weight_main + self.residual_weight()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u, s, v = self._factors()
        if torch.is_grad_enabled() and (u.requires_grad or s.requires_grad or v.requires_grad):
            factored = self._factorised  # training: never form a dense out × in weight gradient
        else:  # no gradient: the cheaper of the two extra costs (rows × k(in + out) vs in × out)
            rows = x.numel() // self.in_features
            factored = rows * (self.n - self.r) * (self.in_features + self.out_features) \
                <= 2 * self.in_features * self.out_features
        if factored:
            return F.linear(x, self.weight_main, self.bias) + F.linear(F.linear(x, v) * s, u)
        return F.linear(x, self.weight_main + (u * s) @ v, self.bias)

    # -- folding -----------------------------------------------------------------------
    @torch.no_grad()
    def fold(self) -> nn.Linear:
        """A plain ``nn.Linear`` with weight ``W_main + U_res diag(S_res) V_res`` (summed in float64).

        Its parameters are frozen (``requires_grad=False``), like the rest of an inference model.
        """
        w = self.weight_main
        merged = w.to(torch.float64) + (self.U_res.to(torch.float64) * self.S_res.to(torch.float64)) @ self.V_res.to(torch.float64)
        lin = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device=w.device, dtype=w.dtype)
        lin.weight.copy_(merged.to(w.dtype))
        if self.bias is not None:
            lin.bias.copy_(self.bias)
        lin.requires_grad_(False)
        return lin

    # -- regularisers (Effort paper) -----------------------------------------------------
    def orthogonality_loss(self, variant: OrthVariant = "paper") -> torch.Tensor:
        """Orthogonality of the full bases ``Û = [U_main, U_res]`` (out × n) and ``V̂ = [V_main; V_res]`` (n × in).

        * ``"paper"`` (squared): ``L = ‖ÛᵀÛ − I_n‖_F² + ‖V̂V̂ᵀ − I_n‖_F²``.
        * ``"released"`` (the official code's, not squared):
          ``L = ½‖ÛÛᵀ − I_out‖_F + ½‖V̂V̂ᵀ − I_n‖_F``. For a tall matrix (out > n) ``ÛÛᵀ`` has rank n,
          so this term has the constant floor ``½√(out − n)``, as in the official code.

        Evaluated without forming n × n or out × out matrices: with the frozen block exactly
        orthonormal, ``‖ÛᵀÛ − I‖² = ‖U_resᵀU_res − I_k‖² + 2‖P U_res‖²`` (``P`` the projector onto
        the main subspace), and for a square side with complement ``C``, ``X = CᵀU_res``,
        ``Y = P U_res``: ``‖ÛÛᵀ − I‖² = ‖XXᵀ − I‖² + 2⟨XᵀX, YᵀY⟩ + ‖YᵀY‖²`` (no cancellation, so
        the non-squared variant is ~1e-16, not √eps, at initialisation). Gradients reach ``U_res``
        and ``V_res`` only; ``S_res`` does not enter.
        """
        ub, u_main, vb, v_main = self._bases()
        u, v = self.U_res, self.V_res
        eye = torch.eye(u.shape[1], dtype=u.dtype, device=u.device)
        pu = self._project_main(u, ub, u_main)          # U_main U_mainᵀ U_res  (out × k)
        pv = self._project_main(v.T, vb, v_main)        # V_mainᵀ V_main V_resᵀ (in × k)
        v_term = (v @ v.T - eye).square().sum() + 2 * pv.square().sum()
        if variant == "paper":
            return (u.T @ u - eye).square().sum() + 2 * pu.square().sum() + v_term
        if variant != "released":
            raise ValueError(f"unknown orthogonality variant {variant!r}; choose 'paper' or 'released'")
        ptp = pu.T @ pu
        if u_main:  # tall matrix: ‖ÛÛᵀ − I‖² ≥ out − n > 0, no precision issue near zero
            u_sq = (self.out_features - self.r) - 2 * (u.square().sum() - pu.square().sum()) + (u.T @ u).square().sum()
        else:  # ÛÛᵀ − I = C(XXᵀ − I)Cᵀ + CXYᵀ + YXᵀCᵀ + YYᵀ, four mutually orthogonal terms
            x = ub.T @ u                                 # Cᵀ U_res (k × k)
            eye_c = torch.eye(x.shape[0], dtype=u.dtype, device=u.device)
            u_sq = (x @ x.T - eye_c).square().sum() + 2 * ((x.T @ x) * ptp).sum() + ptp.square().sum()
        return 0.5 * _safe_sqrt(u_sq) + 0.5 * _safe_sqrt(v_term)

    def keep_sv_loss(self) -> torch.Tensor:
        """Singular-value (energy) preservation ``L_ksv = | ‖Ŵ‖_F² − ‖W‖_F² |``, ``Ŵ = W_main + U_res diag(S_res) V_res``.

        Evaluated as ``| 2⟨W_main, R⟩ + ‖R‖_F² − (‖W‖² − ‖W_main‖²) |`` with ``R`` the residual, so the
        large common term ``‖W_main‖²`` cancels exactly instead of in float32. Zero at initialisation.
        """
        if torch.isnan(self.residual_energy):
            raise ValueError(
                "this layer does not know the norm of its original weight (it was imported from a "
                "checkpoint that does not record it), so the singular-value preservation loss is undefined"
            )
        u, s, v = self.U_res, self.S_res, self.V_res
        inner = (s * ((u.T @ self.weight_main) * v).sum(dim=1)).sum()
        rr = (s[:, None] * s[None, :] * (u.T @ u) * (v @ v.T)).sum()
        return (2 * inner + rr - self.residual_energy).abs()

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, r={self.r}, "
                f"trainable_rank={self.n - self.r}, bias={self.bias is not None}")


def _drop_stale_bases(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
    """A new ``W_main`` invalidates the cached regulariser bases (they are rebuilt on demand)."""
    if prefix + "weight_main" in state_dict:
        for name in ("_u_basis", "_v_basis"):
            if name in module._buffers:
                del module._buffers[name]


def _safe_sqrt(x: torch.Tensor) -> torch.Tensor:
    """√x with x clamped at the dtype's smallest normal number (finite gradient at 0)."""
    return x.clamp_min(torch.finfo(x.dtype).tiny).sqrt()


# ------------------------------------------------------------------------------ module trees


def resolve_targets(module: nn.Module, targets: str) -> list[str]:
    """Qualified names of the ``nn.Linear`` layers of ``module`` selected by ``targets``.

    ``targets`` is ``"attention"`` (q/k/v/out projections of every block), ``"mlp"`` (fc1, fc2),
    ``"both"``, or a regular expression matched in full against names relative to ``module``
    (e.g. ``encoder\\.layers\\.(?:2[0-3])\\.self_attn\\.(?:q|v)_proj``).
    """
    pattern = _NAMED_TARGETS.get(targets, targets)
    try:
        rx = re.compile(pattern)
    except re.error as err:
        raise ValueError(f"targets {targets!r} is neither attention/mlp/both nor a valid regex: {err}") from None
    linears = [n for n, m in module.named_modules() if isinstance(m, nn.Linear)]
    chosen = [n for n in linears if rx.fullmatch(n)]
    if not chosen:
        sample = ", ".join(linears[:6]) + (" …" if len(linears) > 6 else "")
        raise ValueError(
            f"targets {targets!r} selects no nn.Linear layer; the module's Linear layers are named like: "
            f"{sample or '(none)'}"
        )
    return chosen


def apply_svd_residual(module: nn.Module, targets: str = "attention", *, r: int | None = None,
                       trainable_rank: int | None = 1, decompose: bool = True,
                       orthogonal_bases: bool = False, layer_cls: type[SVDResidualLinear] = SVDResidualLinear,
                       **layer_kwargs: Any) -> list[str]:
    """Replace the selected ``nn.Linear`` layers of ``module`` by SVD-residual layers, in place.

    Returns the wrapped names. The new residual factors are trainable and the new biases frozen;
    nothing else in ``module`` is touched (freeze the rest yourself). See :func:`resolve_targets`
    for ``targets`` and :meth:`SVDResidualLinear.from_linear` for the rank arguments.
    """
    names = resolve_targets(module, targets)

    def build(name: str) -> SVDResidualLinear:
        return layer_cls.from_linear(getattr(*_parent(module, name)), r=r, trainable_rank=trainable_rank,
                                     decompose=decompose, orthogonal_bases=orthogonal_bases, **layer_kwargs)

    workers = min(torch.get_num_threads(), len(names))
    if decompose and workers > 1:
        # independent matrices on parallel threads, each decomposition single-threaded (its bits
        # do not depend on the thread count); torch's own threads are restored afterwards
        with _one_thread(torch.device("cpu")), ThreadPoolExecutor(workers, initializer=torch.set_num_threads,
                                                                   initargs=(1,)) as pool:
            built = list(pool.map(build, names))
    else:
        built = [build(name) for name in names]
    for name, new in zip(names, built):
        for p in (new.U_res, new.S_res, new.V_res):
            p.requires_grad_(True)
        parent, attr = _parent(module, name)
        setattr(parent, attr, new)
    return names


def svd_residual_modules(module: nn.Module) -> Iterator[tuple[str, SVDResidualLinear]]:
    """``(name, layer)`` for every SVD-residual layer in ``module``."""
    for name, m in module.named_modules():
        if isinstance(m, SVDResidualLinear):
            yield name, m


def fold_svd_residuals(module: nn.Module) -> nn.Module:
    """Replace every SVD-residual layer in ``module`` by its folded ``nn.Linear``, in place.

    Returns ``module`` (or the folded Linear when ``module`` itself is an SVD-residual layer).
    Afterwards the tree is a plain network: same logits, same speed as the original backbone.
    """
    if isinstance(module, SVDResidualLinear):
        return module.fold()
    for name, layer in list(svd_residual_modules(module)):
        parent, attr = _parent(module, name)
        setattr(parent, attr, layer.fold())
    return module


def _parent(root: nn.Module, name: str) -> tuple[nn.Module, str]:
    *path, attr = name.split(".")
    parent = root
    for p in path:
        parent = getattr(parent, p)
    return parent, attr


def count_residual_parameters(out_features: int, in_features: int, trainable_rank: int) -> int:
    """Trainable numbers of one layer: ``k (out + 1 + in)``."""
    return trainable_rank * (out_features + 1 + in_features)
