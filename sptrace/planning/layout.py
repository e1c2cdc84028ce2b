"""The block view every spectral quantity uses: a tensor as a stack of ``fan_out x fan_in`` matrices.

Spectral norms are taken per *block*: a tensor is viewed as ``(blocks, fan_out, fan_in)`` by its
:class:`Layout` (the record's axes). For a linear weight that is ``(1, out, in)``; for a conv
weight ``(out, in/g, k, k)`` with ``g`` groups it is ``(g, out/g, in/g * k * k)``; per-head weights
with einsum batch axes put those axes in the block dimension. The operator is block-diagonal, so
its raw spectral norm is the largest block's.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import torch

from ..threads import cpu_threads
from ..types import ParamRecord, SptraceError

__all__ = ["Layout", "to_blocks", "from_blocks", "block_spectral_norms"]


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
    with cpu_threads(1):
        top = torch.linalg.eigvalsh(gram)[..., -1]
    return top.clamp_min(0).sqrt().float()
