"""The block view every spectral quantity uses: a tensor as a stack of ``fan_out x fan_in`` matrices.

Spectral norms are taken per *block*: a tensor is viewed as ``(blocks, fan_out, fan_in)`` by its
:class:`Layout` (the record's axes). For a linear weight that is ``(1, out, in)``; for a conv
weight ``(out, in/g, k, k)`` with ``g`` groups it is ``(g, out/g, in/g * k * k)``; per-head weights
with einsum batch axes put those axes in the block dimension. The operator is block-diagonal, so
its raw spectral norm is the largest block's.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch

from ..threads import cpu_threads
from ..types import Layout

__all__ = ["to_blocks", "from_blocks", "block_spectral_norms"]


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
