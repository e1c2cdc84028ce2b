"""In-place (re-)initialisation of parameters, and the block view every spectral quantity uses.

Every function here keeps the *same* ``Parameter`` object (``copy_`` / ``mul_`` under
``torch.no_grad()``), so optimizers, hooks and ties that hold the tensor keep working. Random
values are sampled in float32 on the parameter's device from ``generator`` (default: torch's
global generator of that device, so ``torch.manual_seed`` makes them deterministic) and then cast
to the parameter's dtype: the values do not depend on the parameter's dtype (bf16 or float32).

Spectral norms are taken per *block*: a tensor is viewed as ``(blocks, fan_out, fan_in)`` by its
:class:`Layout` (the record's axes). For a linear weight that is ``(1, out, in)``; for a conv
weight ``(out, in/g, k, k)`` with ``g`` groups it is ``(g, out/g, in/g * k * k)``; per-head weights
with einsum batch axes put those axes in the block dimension. The operator is block-diagonal, so
its raw spectral norm is the largest block's.

Init kinds (see docs/rules.md):

* ``gaussian_``   i.i.d. N(0, std^2) (Parametrization 1). A p x q block has
  ``||W||_* ~ std (sqrt(p) + sqrt(q))`` (Rudelson & Vershynin).
* ``orthogonal_`` semi-orthogonal blocks scaled to a target raw spectral norm (all singular
  values equal to the target; paper §4, "random semi-orthogonal").
* ``spectral_``   Eq. 16: sample Gaussian, then rescale each block to the exact target spectral
  norm.
* ``zeros_`` / ``ones_`` / ``scale_`` (multiply in place: base-anchored form, NOTES §6).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import torch

from .types import ParamRecord, SptraceError

__all__ = [
    "Layout",
    "to_blocks",
    "from_blocks",
    "block_spectral_norms",
    "gaussian_",
    "orthogonal_",
    "spectral_",
    "zeros_",
    "ones_",
    "scale_",
    "apply_init",
    "INIT_KINDS",
]

INIT_KINDS = ("gaussian", "orthogonal", "spectral", "zeros", "ones", "scale", "keep")


@dataclass(frozen=True)
class Layout:
    """How to view a tensor as a stack of ``fan_out x fan_in`` matrices.

    ``groups`` splits axis 0 into ``groups`` contiguous chunks (grouped / depthwise conv: axis 0
    holds every group, docs/classification.md); ``group_axes`` are further independent-block axes
    (einsum / bmm batch axes shared by input and output). Axes in none of the three tuples are
    treated as block axes too (they are size 1 in practice, e.g. the leading 1 of a position table).
    """

    fan_out_axes: tuple[int, ...]
    fan_in_axes: tuple[int, ...]
    group_axes: tuple[int, ...] = ()
    groups: int = 1

    @classmethod
    def default(cls, shape: Sequence[int]) -> "Layout":
        """PyTorch's convention: axis 0 is fan-out, the rest fan-in; a 1-D tensor is ``n x 1``."""
        nd = len(shape)
        if nd == 0:
            return cls((), ())
        return cls((0,), tuple(range(1, nd)))

    @classmethod
    def from_record(cls, record: ParamRecord) -> "Layout":
        """The record's primary-use axes; the default layout when the record is unclassified."""
        if not record.classified:
            return cls.default(record.shape)
        group_axes = record.uses[0].group_axes if record.uses else ()
        layout = cls(tuple(record.fan_out_axes), tuple(record.fan_in_axes), tuple(group_axes), record.groups)
        layout.check(record.shape, record.name)
        return layout

    @classmethod
    def coerce(cls, value: Any, shape: Sequence[int]) -> "Layout":
        """Accept a Layout, a dict from :meth:`to_dict`, or None (the default for ``shape``)."""
        if value is None:
            return cls.default(shape)
        if isinstance(value, Layout):
            return value
        if isinstance(value, Mapping):
            return cls(
                tuple(value.get("fan_out_axes", ())), tuple(value.get("fan_in_axes", ())),
                tuple(value.get("group_axes", ())), int(value.get("groups", 1)),
            )
        raise TypeError(f"not a layout: {value!r}")

    def to_dict(self) -> dict:
        """Plain tuples and ints only, so it survives ``torch.load(weights_only=True)``."""
        return {
            "fan_out_axes": tuple(self.fan_out_axes), "fan_in_axes": tuple(self.fan_in_axes),
            "group_axes": tuple(self.group_axes), "groups": int(self.groups),
        }

    def check(self, shape: Sequence[int], name: str = "tensor") -> None:
        nd = len(shape)
        axes = list(self.fan_out_axes) + list(self.fan_in_axes) + list(self.group_axes)
        if any(a < 0 or a >= nd for a in axes) or len(set(axes)) != len(axes):
            raise SptraceError(f"{name}: layout {self} does not fit shape {tuple(shape)}")
        if self.groups > 1:
            if 0 in self.group_axes or 0 not in (self.fan_out_axes + self.fan_in_axes):
                raise SptraceError(f"{name}: groups={self.groups} but axis 0 is not a fan axis ({self})")
            if shape[0] % self.groups:
                raise SptraceError(f"{name}: axis 0 of size {shape[0]} is not divisible by groups={self.groups}")

    def _plan(self, shape: Sequence[int]):
        """(split shape, permutation, (B, fan_out, fan_in)) for a tensor of ``shape``."""
        shape = tuple(int(s) for s in shape)
        self.check(shape)
        g = self.groups
        if g > 1:
            split = (g, shape[0] // g) + shape[1:]
            shift = 1
            batch = [0]
        else:
            split, shift, batch = shape, 0, []
        used = set(self.fan_out_axes) | set(self.fan_in_axes) | set(self.group_axes)
        batch += [a + shift for a in self.group_axes]
        batch += [a + shift for a in range(len(shape)) if a not in used]
        fo = [a + shift for a in self.fan_out_axes]
        fi = [a + shift for a in self.fan_in_axes]
        perm = batch + fo + fi
        blocks = math.prod(split[a] for a in batch)
        fan_out = math.prod(split[a] for a in fo)
        fan_in = math.prod(split[a] for a in fi)
        return split, perm, (blocks, fan_out, fan_in)

    def block_shape(self, shape: Sequence[int]) -> tuple[int, int, int]:
        """``(blocks, fan_out, fan_in)`` of a tensor of ``shape`` under this layout."""
        return self._plan(shape)[2]


def to_blocks(t: torch.Tensor, layout: Optional[Layout] = None) -> torch.Tensor:
    """View ``t`` as ``(blocks, fan_out, fan_in)`` (a copy when the permutation needs one)."""
    layout = Layout.coerce(layout, t.shape)
    split, perm, bshape = layout._plan(t.shape)
    return t.reshape(split).permute(perm).reshape(bshape)


def from_blocks(b: torch.Tensor, layout: Optional[Layout], shape: Sequence[int]) -> torch.Tensor:
    """Inverse of :func:`to_blocks`: a tensor of ``shape`` (contiguous)."""
    layout = Layout.coerce(layout, shape)
    split, perm, bshape = layout._plan(shape)
    permuted = b.reshape([split[p] for p in perm])
    inverse = [0] * len(perm)
    for i, p in enumerate(perm):
        inverse[p] = i
    return permuted.permute(inverse).reshape(tuple(shape)).contiguous()


@torch.no_grad()
def block_spectral_norms(t: torch.Tensor, layout: Optional[Layout] = None) -> torch.Tensor:
    """Exact raw spectral norm (largest singular value) of every block, in float32."""
    b = to_blocks(t.detach(), layout)
    if b.shape[-1] == 1 or b.shape[-2] == 1:
        return b.float().flatten(1).norm(dim=1)
    # largest eigenvalue of the smaller Gram matrix, in float64: much faster than an SVD of a
    # wide matrix on CPU, and exact to float32 precision for the top singular value.
    b = b.double()
    gram = b @ b.transpose(-2, -1) if b.shape[-2] <= b.shape[-1] else b.transpose(-2, -1) @ b
    with single_cpu_thread():
        top = torch.linalg.eigvalsh(gram)[..., -1]
    return top.clamp_min(0).sqrt().float()


@contextlib.contextmanager
def single_cpu_thread():
    """Run the enclosed CPU work with one intra-op thread (restored afterwards).

    For work that gains little from threads and loses much when cores are shared, where threads
    spin-wait on each other: LAPACK factorisations (measured on a loaded 2-core machine, eigvalsh
    of a 512 x 512 Gram took 7-8 s with 2 threads and 0.02 s with 1; the factorised matrices here
    are at most min(fan_out, fan_in) square) and memory-bound copies (parametrize's rollback copy of
    GPT-2 small's 124M parameters, same machine: 0.8-1.2 s with 2 threads, 0.15-0.37 s with 1).
    GPU work is unaffected.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _randn(shape, param: torch.Tensor, generator: Optional[torch.Generator]) -> torch.Tensor:
    return torch.randn(tuple(shape), generator=generator, device=param.device, dtype=torch.float32)


def _check_param(param: torch.Tensor) -> None:
    if not isinstance(param, torch.Tensor):
        raise TypeError(f"expected a tensor, got {type(param).__name__}")


@torch.no_grad()
def gaussian_(param: torch.Tensor, std: float, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Entries i.i.d. N(0, std^2) (Parametrization 1's sigma), in place."""
    _check_param(param)
    if not (std >= 0 and math.isfinite(std)):
        raise SptraceError(f"gaussian init needs a finite std >= 0, got {std}")
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
    layout = Layout.coerce(layout, param.shape)
    split, perm, (nb, fo, fi) = layout._plan(param.shape)
    tall, short = max(fo, fi), min(fo, fi)
    g = _randn((nb, tall, short), param, generator)
    with single_cpu_thread():
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
    """Multiply in place (base-anchored form: library default times a width ratio, NOTES §6).

    A factor of exactly 1.0 leaves the tensor untouched (bit-identical at the base shapes).
    """
    _check_param(param)
    if factor != 1.0:
        param.mul_(factor)
    return param


def apply_init(
    param: torch.Tensor, kind: str, *, std: Optional[float] = None, target: Optional[float] = None,
    scale: float = 1.0, layout: Optional[Layout] = None, generator: Optional[torch.Generator] = None,
) -> torch.Tensor:
    """Dispatch on an init kind (a ``ParamPlan.init``); returns the same tensor object."""
    if kind == "gaussian":
        if std is None:
            raise SptraceError("gaussian init needs std")
        return gaussian_(param, std, generator=generator)
    if kind in ("orthogonal", "spectral"):
        if target is None:
            raise SptraceError(f"{kind} init needs a target spectral norm")
        fn = orthogonal_ if kind == "orthogonal" else spectral_
        return fn(param, target, layout, generator=generator)
    if kind == "zeros":
        return zeros_(param)
    if kind == "ones":
        return ones_(param)
    if kind == "scale":
        return scale_(param, scale)
    if kind == "keep":
        return param
    raise SptraceError(f"unknown init kind {kind!r}; known: {', '.join(INIT_KINDS)}")
