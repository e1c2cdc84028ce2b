"""In-place (re-)initialisation of parameters.

Every function here keeps the *same* ``Parameter`` object (``copy_`` / ``mul_`` under
``torch.no_grad()``), so optimizers, hooks and ties that hold the tensor keep working. Random
values are sampled in float32 on the parameter's device from ``generator`` (default: torch's
global generator of that device, so ``torch.manual_seed`` makes them deterministic) and then cast
to the parameter's dtype: the values do not depend on the parameter's dtype (bf16 or float32).

Spectral norms are per block of the tensor's :class:`~sptrace.planning.layout.Layout`.

Init kinds (see docs/rules.md):

* ``gaussian_``   i.i.d. N(0, std^2) (Parametrization 1). A p x q block has
  ``||W||_* ~ std (sqrt(p) + sqrt(q))`` (Rudelson & Vershynin).
* ``orthogonal_`` semi-orthogonal blocks scaled to a target raw spectral norm (all singular
  values equal to the target; paper §4, "random semi-orthogonal").
* ``spectral_``   Eq. 16: sample Gaussian, then rescale each block to the exact target spectral
  norm.
* ``zeros_`` / ``ones_`` / ``scale_`` (multiply in place: base-anchored form,
  docs/derivations.md §6).
* ``norm_of_``    a weight norm's g: the norms of its v (``source``) over every axis but ``dim``, so
  that ``g * v / ||v||`` is v itself (docs/rules.md "Weight norm").
"""
from __future__ import annotations

import math
from typing import Optional

import torch

from ..planning.layout import block_spectral_norms, from_blocks
from ..threads import cpu_threads
from ..types import Layout, SptraceError

__all__ = [
    "gaussian_",
    "orthogonal_",
    "spectral_",
    "zeros_",
    "ones_",
    "scale_",
    "norm_of_",
    "apply_init",
    "check_init",
    "INIT_KINDS",
]

INIT_KINDS = ("gaussian", "orthogonal", "spectral", "zeros", "ones", "scale", "norm", "keep")


def _randn(shape, param: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    return torch.randn(tuple(shape), generator=generator, device=param.device, dtype=torch.float32)


def _check_param(param: torch.Tensor) -> None:
    if not isinstance(param, torch.Tensor):
        raise SptraceError(f"param must be the tensor to initialise in place, got {type(param).__name__}")


def _check_number(value: float, what: str, name: str = "tensor") -> None:
    """``value`` is a finite number >= 0 (a std, a spectral-norm target or a scale)."""
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
        raise SptraceError(f"{name}: {what} must be a finite number >= 0, got {value!r}")


@torch.no_grad()
def gaussian_(param: torch.Tensor, std: float, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Entries i.i.d. N(0, std^2) (Parametrization 1's sigma), in place."""
    _check_param(param)
    _check_number(std, "the std of the gaussian init")
    param.normal_(0.0, std, generator=generator)  # in place: one pass, no temporary
    return param


@torch.no_grad()
def orthogonal_(
    param: torch.Tensor, target: float, layout: Optional[Layout] = None, *,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Each block a random semi-orthogonal matrix times ``target`` (every singular value = target).

    Haar-distributed: QR of a Gaussian matrix with the signs of R's diagonal folded into Q (as
    ``torch.nn.init.orthogonal_``), batched over blocks, in float32.
    """
    _check_param(param)
    _check_number(target, "the target spectral norm of the orthogonal init")
    layout = Layout.coerce(layout, param.shape)
    split, perm, (nb, fo, fi) = layout._plan(param.shape)
    tall, short = max(fo, fi), min(fo, fi)
    g = _randn((nb, tall, short), param, generator)
    with cpu_threads(1):
        q, r = torch.linalg.qr(g)  # q: (nb, tall, short), orthonormal columns
    d = torch.diagonal(r, dim1=-2, dim2=-1).sign()
    d = torch.where(d == 0, torch.ones_like(d), d)
    q = q * d.unsqueeze(-2)
    if fo < fi:
        q = q.transpose(-2, -1)
    param.copy_(from_blocks(q * target, layout, param.shape))
    return param


@torch.no_grad()
def spectral_(
    param: torch.Tensor, target: float, layout: Optional[Layout] = None, *,
    generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Eq. 16: sample i.i.d. Gaussian, then rescale each block to raw spectral norm ``target``."""
    _check_param(param)
    _check_number(target, "the target spectral norm of the spectral init")
    layout = Layout.coerce(layout, param.shape)
    split, perm, bshape = layout._plan(param.shape)
    w = _randn(bshape, param, generator)
    norms = block_spectral_norms(w, Layout((1,), (2,), (0,))).clamp_min(1e-30)
    w = w * (target / norms).view(-1, 1, 1)
    param.copy_(from_blocks(w, layout, param.shape))
    return param


@torch.no_grad()
def zeros_(param: torch.Tensor) -> torch.Tensor:
    param.zero_()
    return param


@torch.no_grad()
def ones_(param: torch.Tensor) -> torch.Tensor:
    param.fill_(1.0)
    return param


@torch.no_grad()
def scale_(param: torch.Tensor, factor: float) -> torch.Tensor:
    """Multiply in place (base-anchored form: library default times a width ratio,
    docs/derivations.md §6).

    A factor of exactly 1.0 leaves the tensor untouched (bit-identical at the base shapes).
    """
    _check_param(param)
    _check_number(factor, "the factor of the scale init")
    if factor != 1.0:
        param.mul_(factor)
    return param


@torch.no_grad()
def norm_of_(param: torch.Tensor, source: torch.Tensor, dim: int) -> torch.Tensor:
    """``param`` := the l2 norms of ``source`` over every axis but ``dim`` (all of them for -1), in
    ``param``'s shape: a weight norm's g from its v, as ``torch.nn.utils.parametrizations.weight_norm``
    computes it when it wraps a layer."""
    _check_param(param)
    norms = torch.norm_except_dim(source.detach().float(), 2, dim)
    if norms.numel() != param.numel():
        raise SptraceError(f"the norms of a tensor of shape {tuple(source.shape)} over every axis but {dim} have "
                           f"{norms.numel()} entries, the tensor to hold them {param.numel()}")
    param.copy_(norms.reshape(param.shape))
    return param


def check_init(
    param: torch.Tensor, kind: str, *, std: Optional[float] = None, target: Optional[float] = None,
    scale: float = 1.0, layout: Optional[Layout] = None, name: str = "tensor", source: Optional[torch.Tensor] = None,
) -> None:
    """Raise :class:`SptraceError` where :func:`apply_init` would refuse these arguments; touches nothing."""
    _check_param(param)
    if kind not in INIT_KINDS:
        raise SptraceError(f"{name}: unknown init kind {kind!r}; known: {', '.join(INIT_KINDS)}")
    if kind == "gaussian":
        if std is None:
            raise SptraceError(f"{name}: init 'gaussian' needs std=")
        _check_number(std, "std", name)
    elif kind in ("orthogonal", "spectral"):
        if target is None:
            raise SptraceError(f"{name}: init {kind!r} needs target= (the raw spectral norm per block)")
        _check_number(target, "target", name)
        Layout.coerce(layout, param.shape).check(param.shape, name)
    elif kind == "scale":
        _check_number(scale, "scale", name)
    elif kind == "norm" and not isinstance(source, torch.Tensor):
        raise SptraceError(f"{name}: init 'norm' (a weight norm's g) needs source= (its v, initialised first)")


def apply_init(
    param: torch.Tensor, kind: str, *, std: Optional[float] = None, target: Optional[float] = None,
    scale: float = 1.0, layout: Optional[Layout] = None, generator: Optional[torch.Generator] = None,
    name: str = "tensor", source: Optional[torch.Tensor] = None, dim: int = 0,
) -> torch.Tensor:
    """Dispatch on an init kind (a ``ParamPlan.init``); returns the same tensor object.

    ``name`` (the parameter's) is what an error names; every argument is checked before the tensor
    is touched (:func:`check_init`). ``source`` and ``dim``: the v and the dim of a ``"norm"`` init.
    """
    check_init(param, kind, std=std, target=target, scale=scale, layout=layout, name=name, source=source)
    if kind == "gaussian":
        return gaussian_(param, std, generator=generator)
    if kind in ("orthogonal", "spectral"):
        fn = orthogonal_ if kind == "orthogonal" else spectral_
        return fn(param, target, layout, generator=generator)
    if kind == "zeros":
        return zeros_(param)
    if kind == "ones":
        return ones_(param)
    if kind == "scale":
        return scale_(param, scale)
    if kind == "norm":
        return norm_of_(param, source, dim)
    return param  # "keep"
