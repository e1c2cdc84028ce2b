"""Spectral measurements of plain tensors: the natural spectral norm Condition 2 is stated in.

Nothing here depends on the tracer or on parametrize; every stage and the validation read it.

* spectral norms: :func:`power_iteration` (batched, warm-startable), :func:`spectral_norm`
  (exact for small matrices, power iteration for large ones), :func:`natural_spectral_norm`
  (``sqrt(d_in / d_out) * sigma_max`` of a tensor reshaped to ``(fan_out, fan_in)``);
* matrix statistics: :func:`stable_rank`, :func:`relative_change`, :func:`alignment`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence, Union

import torch
from torch import Tensor

from .threads import cpu_threads
from .types import SptraceError

__all__ = [
    "PowerIterationResult",
    "power_iteration",
    "spectral_norm",
    "as_matrix",
    "natural_spectral_norm",
    "default_param_axes",
    "stable_rank",
    "relative_change",
    "alignment",
    "accumulation_dtype",
]

# spectral_norm(method="auto") uses the exact SVD when a matrix's smaller side is at most this, and
# power iteration otherwise (timings in docs/measurements.md).
EXACT_MAX_SIDE = 256
# Run the exact CPU SVD with one intra-op thread (restored afterwards). LAPACK's threaded SVD
# degrades badly when the CPU is oversubscribed: measured on 2 busy cores, 256x256 took 81 ms with
# 2 threads and 9 ms with 1; 1024x1024 4.8 s and 0.49 s. Set to False to leave threads alone.
SVD_SINGLE_THREAD = True


# --------------------------------------------------------------------------------------------
# spectral norms
# --------------------------------------------------------------------------------------------


def accumulation_dtype(A: Tensor) -> torch.dtype:
    """Accumulate in float32 at least (float64 stays float64)."""
    if not A.is_floating_point():
        return torch.float32
    return torch.float64 if A.dtype == torch.float64 else torch.float32


def _normalize(x: Tensor, fallback: Tensor) -> tuple[Tensor, Tensor]:
    """Normalise the last axis; rows with zero norm take the (normalised) fallback instead."""
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    ok = norm > torch.finfo(x.dtype).tiny
    safe = torch.where(ok, norm, torch.ones_like(norm))
    fb = fallback / torch.linalg.vector_norm(fallback, dim=-1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    return torch.where(ok, x / safe, fb), norm.squeeze(-1)


@dataclass
class PowerIterationResult:
    """Result of :func:`power_iteration`.

    ``sigma`` has the batch shape ``(...)``; ``v`` (``(..., n)``) and ``u`` (``(..., m)``) are the
    current right / left singular vector estimates (unit norm). Pass ``v`` back as ``v0`` on the next
    call to warm-start. ``iters`` is the number of iterations run; ``converged`` is whether the
    tolerance was reached (``None`` in fixed-iteration mode).
    """

    sigma: Tensor
    v: Tensor
    u: Tensor
    iters: int
    converged: Optional[bool] = None


@torch.no_grad()
def power_iteration(
    A: Tensor,
    iters: Optional[int] = None,
    *,
    tol: Optional[float] = None,
    v0: Optional[Tensor] = None,
    seed: int = 0,
) -> PowerIterationResult:
    """Largest singular value of each matrix in a stack ``A`` of shape ``(..., m, n)``.

    Alternates ``u = A v / |A v|`` and ``v = A^T u / |A^T u|``; the estimate ``sigma = |A^T u|`` is a
    lower bound of the true value that increases monotonically. Accumulates in float32 (float64
    input stays float64), on ``A``'s device.

    * ``iters`` only: run exactly that many iterations (default 20 when neither is given).
    * ``tol``: stop when every matrix's relative change of sigma over one iteration is below ``tol``;
      ``iters`` is then the cap (default 1000). A small change per iteration is not a bound on the
      error when the top singular values are close (random matrices): see docs/measurements.md.
    * ``v0``: warm start, shape ``(..., n)`` (or broadcastable), e.g. ``result.v`` of a previous call
      on a nearby matrix; rows that are zero fall back to the seeded random start.

    The random start uses its own generator seeded with ``seed``: the global RNG is not touched.
    """
    if A.dim() < 2:
        raise SptraceError(f"power_iteration: A has shape {tuple(A.shape)}; pass a (..., m, n) stack of matrices")
    if iters is None:
        iters = 20 if tol is None else 1000
    if iters < 1:
        raise SptraceError(f"power_iteration: iters={iters}; pass iters >= 1 (or tol= alone)")
    dtype = accumulation_dtype(A)
    A = A.detach().to(dtype)
    *batch, m, n = A.shape
    gen = torch.Generator(device=A.device)
    gen.manual_seed(seed)
    rand = torch.randn((*batch, n), generator=gen, device=A.device, dtype=dtype)
    if v0 is None:
        v = rand
    else:
        v = v0.detach().to(device=A.device, dtype=dtype).expand(*batch, n)
    v, _ = _normalize(v, rand)
    At = A.mT  # A v is computed as the row vector v^T A^T: batched (1 x n) @ (n x m) products are
    # ~6-10x faster than (m x n) @ (n x 1) ones on CPU (measured, torch 2.13, 64 x 256 x 256)
    sigma = torch.zeros(batch, device=A.device, dtype=dtype)
    u = torch.zeros((*batch, m), device=A.device, dtype=dtype)
    converged: Optional[bool] = None
    done = 0
    ones_m = torch.ones((*batch, m), device=A.device, dtype=dtype)
    for k in range(iters):
        u, _ = _normalize((v.unsqueeze(-2) @ At).squeeze(-2), ones_m)
        w = (u.unsqueeze(-2) @ A).squeeze(-2)
        v_new, new_sigma = _normalize(w, v)
        done = k + 1
        if tol is not None:
            change = (new_sigma - sigma).abs() / new_sigma.clamp_min(torch.finfo(dtype).tiny)
            change = torch.where(new_sigma > 0, change, torch.zeros_like(change))
            sigma, v = new_sigma, v_new
            if k > 0 and bool((change <= tol).all()):
                converged = True
                break
        else:
            sigma, v = new_sigma, v_new
    if tol is not None and converged is None:
        converged = False
    return PowerIterationResult(sigma=sigma, v=v, u=u, iters=done, converged=converged)


def spectral_norm(
    A: Tensor,
    method: str = "auto",
    *,
    iters: Optional[int] = None,
    tol: Optional[float] = 1e-6,
    v0: Optional[Tensor] = None,
) -> Tensor:
    """Largest singular value of each matrix in ``A`` (``(..., m, n)``), shape ``(...)``, float32+.

    ``method``: ``"exact"`` (``torch.linalg.matrix_norm(ord=2)``, an SVD), ``"power"``
    (:func:`power_iteration` with ``iters`` / ``tol``; default tol 1e-6 capped at 1000 iterations:
    relative error ~1e-4 on Gaussian matrices, whose top singular values have no gap, and ~1e-7 on
    low-rank updates), or ``"auto"``: exact when the smaller side is at most ``EXACT_MAX_SIDE`` (256),
    power iteration otherwise. The exact CPU path runs single-threaded (``SVD_SINGLE_THREAD``).
    """
    if A.dim() < 2:
        raise SptraceError(f"spectral_norm: A has shape {tuple(A.shape)}; pass a (..., m, n) stack of matrices "
                           "(natural_spectral_norm takes vectors)")
    if method == "auto":
        method = "exact" if min(A.shape[-1], A.shape[-2]) <= EXACT_MAX_SIDE else "power"
    if method == "exact":
        with torch.no_grad(), cpu_threads(1, active=SVD_SINGLE_THREAD and A.device.type == "cpu"):
            return torch.linalg.matrix_norm(A.detach().to(accumulation_dtype(A)), ord=2)
    if method == "power":
        return power_iteration(A, iters, tol=tol, v0=v0).sigma
    raise SptraceError(f"spectral_norm: unknown method {method!r}; use 'auto', 'exact' or 'power'")


def _norm_axes(axes: Iterable[int], ndim: int) -> tuple[int, ...]:
    out = []
    for a in axes:
        a = int(a)
        if not -ndim <= a < ndim:
            raise SptraceError(f"as_matrix: axis {a} is out of range for a {ndim}-d tensor; pass axes in "
                               f"-{ndim}..{ndim - 1}")
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise SptraceError(f"as_matrix: axes {tuple(axes)} repeat an axis; name each axis once")
    return tuple(out)


def as_matrix(
    W: Tensor,
    fan_in_axes: Sequence[int],
    fan_out_axes: Sequence[int],
    groups: int = 1,
) -> Tensor:
    """View ``W`` as a stack of ``(fan_out, fan_in)`` matrices, shape ``(*batch, fan_out, fan_in)``.

    Axes listed in neither tuple become batch axes (heads, einsum batch axes), in their order.
    ``groups > 1`` splits axis 0 (which holds every group of a grouped or depthwise conv, whether it
    is a fan-in or fan-out axis) into ``(groups, size // groups)``; the group index becomes the
    leading batch axis, so each block of the block-diagonal operator is its own matrix. An empty
    axis tuple gives a dimension of size 1 (a bias is ``fan_in_axes=()``: an ``(n, 1)`` matrix).
    """
    ndim = W.dim()
    fi = _norm_axes(fan_in_axes, ndim)
    fo = _norm_axes(fan_out_axes, ndim)
    if set(fi) & set(fo):
        raise SptraceError(f"as_matrix: axes {sorted(set(fi) & set(fo))} are in both fan_in_axes and fan_out_axes; "
                           "an axis is one or the other")
    shape = list(W.shape)
    if groups > 1:
        if ndim == 0 or shape[0] % groups:
            raise SptraceError(f"as_matrix: axis 0 of shape {tuple(shape)} does not split into groups={groups}; "
                               "pass the module's groups")
        W = W.reshape(groups, shape[0] // groups, *shape[1:])
        # the old axis i is the new axis i + 1; the group axis (new 0) is a batch axis
        fi = tuple(a + 1 for a in fi)
        fo = tuple(a + 1 for a in fo)
        ndim += 1
        shape = list(W.shape)
    batch = [a for a in range(ndim) if a not in fi and a not in fo]
    P = W.permute(*batch, *fo, *fi) if ndim else W  # a 0-d tensor (a scalar gain) has no axes to permute
    bshape = [shape[a] for a in batch]
    m = math.prod(shape[a] for a in fo)
    n = math.prod(shape[a] for a in fi)
    return P.reshape(*bshape, m, n)


def default_param_axes(shape: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...], bool]:
    """Axes used when no metadata is given: ``(fan_in_axes, fan_out_axes, input_dense)``.

    2-D and larger: ``(out, in, *kernel)`` like ``nn.Linear`` / ``nn.Conv*`` (dense input);
    1-D: a vector from the constant-1 space (bias, gain: sparse input); 0-D: a scalar (sparse in).
    """
    nd = len(shape)
    if nd >= 2:
        return tuple(range(1, nd)), (0,), True
    if nd == 1:
        return (), (0,), False
    return (), (), False


def natural_spectral_norm(
    W: Tensor,
    fan_in_axes: Optional[Sequence[int]] = None,
    fan_out_axes: Optional[Sequence[int]] = None,
    input_dense: bool = True,
    output_dense: bool = True,
    *,
    groups: int = 1,
    method: str = "auto",
    reduce: Optional[str] = "max",
    **power_kwargs: Any,
) -> Tensor:
    """Natural spectral norm ``sqrt(d_in / d_out) * sigma_max`` of ``W`` as an operator
    (docs/derivations.md §1, §4).

    ``W`` is reshaped with :func:`as_matrix` to ``(fan_out, fan_in)`` matrices (conv weights
    ``(out, in, k, k)`` become ``(out, in*k*k)``). ``d_in = fan_in`` if ``input_dense`` else 1 and
    ``d_out = fan_out`` if ``output_dense`` else 1, so the result is the largest factor by which the
    operator can grow the natural norm (RMS for dense spaces, l2 for sparse ones). Condition 2 asks
    for Theta(1) for W and for every update. Defaults (both axis tuples ``None``):
    :func:`default_param_axes`.

    ``reduce="max"`` returns a 0-d tensor (max over blocks / batch axes, which is the natural norm of
    the block-diagonal whole); ``reduce=None`` keeps one value per block.
    """
    if fan_in_axes is None and fan_out_axes is None:
        fan_in_axes, fan_out_axes, _ = default_param_axes(W.shape)
    elif fan_in_axes is None or fan_out_axes is None:
        raise SptraceError("natural_spectral_norm: fan_in_axes and fan_out_axes go together; give both or neither "
                           "(neither: the nn.Linear / nn.Conv layout)")
    M = as_matrix(W, fan_in_axes, fan_out_axes, groups)
    m, n = M.shape[-2], M.shape[-1]
    d_in = n if input_dense else 1
    d_out = m if output_dense else 1
    if m == 1 or n == 1:  # a vector: sigma is its l2 norm, no SVD needed
        sigma = torch.linalg.vector_norm(M.detach().to(accumulation_dtype(M)), dim=(-2, -1))
    else:
        sigma = spectral_norm(M, method, **power_kwargs)
    out = sigma * math.sqrt(d_in / d_out)
    if reduce == "max":
        return out.amax() if out.dim() else out
    if reduce is None:
        return out
    raise SptraceError(f"natural_spectral_norm: unknown reduce {reduce!r}; use 'max' or None")


# --------------------------------------------------------------------------------------------
# matrix statistics
# --------------------------------------------------------------------------------------------


def stable_rank(M: Tensor, method: str = "auto", **power_kwargs: Any) -> Tensor:
    """``|M|_F^2 / |M|_*^2`` for each matrix in ``(..., m, n)``; a zero matrix gives 0.

    Lies in ``[1, min(m, n)]``: 1 for rank one, ``min(m, n)`` for a semi-orthogonal matrix.
    """
    sigma = spectral_norm(M, method, **power_kwargs)
    fro = torch.linalg.matrix_norm(M.detach().to(sigma.dtype), ord="fro")
    return torch.where(sigma > 0, fro.square() / sigma.clamp_min(torch.finfo(sigma.dtype).tiny).square(),
                       torch.zeros_like(sigma))


def relative_change(
    W: Tensor,
    W0: Tensor,
    ord: str = "spectral",
    *,
    method: str = "auto",
    **power_kwargs: Any,
) -> Tensor:
    """``|W - W0| / |W0|`` in spectral (``ord="spectral"``) or Frobenius (``ord="fro"``) norm.

    Works on ``(..., m, n)`` stacks; for vectors both norms are the l2 norm.
    """
    D = (W.detach() - W0.detach()).to(accumulation_dtype(W))
    W0 = W0.detach().to(D.dtype)
    if ord == "fro":
        if D.dim() < 2:
            return torch.linalg.vector_norm(D) / torch.linalg.vector_norm(W0)
        return torch.linalg.matrix_norm(D, ord="fro") / torch.linalg.matrix_norm(W0, ord="fro")
    if ord == "spectral":
        if D.dim() < 2:
            return torch.linalg.vector_norm(D) / torch.linalg.vector_norm(W0)
        return spectral_norm(D, method, **power_kwargs) / spectral_norm(W0, method, **power_kwargs)
    raise SptraceError(f"relative_change: unknown ord {ord!r}; use 'spectral' or 'fro'")


def alignment(
    M: Tensor,
    h: Tensor,
    *,
    sigma: Optional[Union[Tensor, float]] = None,
    method: str = "auto",
    reduce: str = "mean",
) -> Tensor:
    """Alignment ``|M h| / (|M|_* |h|)`` averaged over a batch (paper Eq. 24, 25; Fig. 1 right).

    ``M``: ``(m, n)`` matrix (an update ``Delta W`` for Fig. 1, the final weight ``W_3`` for Fig. 2C);
    ``h``: ``(n,)`` or ``(B, n)`` inputs, one per row. Returns the batch mean (``reduce="mean"``) or
    the per-row values (``reduce="none"``); 1 means ``h`` lies in the top right-singular space of ``M``.
    Rows with ``h = 0`` are left out of the mean. ``sigma`` may pass a precomputed ``|M|_*``.
    """
    if M.dim() != 2:
        raise SptraceError(f"alignment: M has shape {tuple(M.shape)}; pass one 2-d matrix")
    dtype = accumulation_dtype(M)
    M = M.detach().to(dtype)
    H = h.detach().to(dtype=dtype, device=M.device)
    if H.dim() == 1:
        H = H.unsqueeze(0)
    if sigma is None:
        sigma = spectral_norm(M, method) if min(M.shape) > 1 else torch.linalg.vector_norm(M)
    sigma = torch.as_tensor(sigma, dtype=dtype, device=M.device)
    num = torch.linalg.vector_norm(H @ M.T, dim=-1)
    hn = torch.linalg.vector_norm(H, dim=-1)
    keep = hn > 0
    vals = num[keep] / (sigma * hn[keep])
    if sigma <= 0:
        vals = torch.zeros_like(vals)
    if reduce == "none":
        return vals
    if reduce == "mean":
        return vals.mean() if vals.numel() else torch.tensor(float("nan"), dtype=dtype)
    raise SptraceError(f"alignment: unknown reduce {reduce!r}; use 'mean' or 'none'")
