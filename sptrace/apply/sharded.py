"""Initialising parameters that live as shards (FSDP2's ``DTensor``s) and models inside wrappers.

* **Elementwise inits** (Gaussian, zeros, ones, a rescale, a module's own ``reset_parameters``)
  run on each rank's shard alone. Random draws come from a stream of their own per shard: torch
  draws a DTensor's shards from each rank's global generator where its mesh has no offset-based
  RNG (every CPU mesh; measured: with one seed, the two shards of a 2-rank mesh came out equal),
  so sptrace seeds each shard from one draw of the global generator (the same on every rank that
  was seeded alike) and the shard's coordinates on the mesh. Replicated mesh dims keep equal
  values.
* **Whole-matrix inits** (orthogonal, Eq. 16's spectral rescale) need the full matrix: every rank
  draws it, and ``distribute_tensor`` hands each rank its slice of rank 0's draw (torch >= 2.6;
  older torch slices each rank's own draw, equal where every rank was seeded alike). That costs
  one full copy of the largest such matrix per rank, for the time of its init.
* **Wrappers** (DDP, ``torch.compile``'s ``OptimizedModule``) hold the model as their one child:
  :func:`unwrap` finds it and the prefix the wrapper adds to every parameter name.
"""
from __future__ import annotations

import contextlib
import hashlib
import inspect
from typing import Callable, Iterator

import torch

__all__ = ["is_sharded", "shard_rng", "whole_matrix_init", "unwrap"]

WRAPPER_ATTRIBUTES = ("module", "_orig_mod")  # DDP / DataParallel, torch.compile


def is_sharded(tensor: torch.Tensor) -> bool:
    return hasattr(tensor, "device_mesh") and hasattr(tensor, "placements") and hasattr(tensor, "to_local")


def _shard_key(tensor) -> tuple[int, ...]:
    """The shard's coordinates along the mesh dims it is sharded over (replicas share a key)."""
    coordinate = tensor.device_mesh.get_coordinate() or []
    return tuple(c for c, placement in zip(coordinate, tensor.placements) if placement.is_shard())


@contextlib.contextmanager
def shard_rng(tensor: torch.Tensor) -> Iterator[None]:
    """Random draws inside come from a stream of this shard's own (nothing changes for a plain
    tensor). One value is drawn from the global generator either way, so every rank advances it
    alike."""
    if not is_sharded(tensor):
        yield
        return
    base = int(torch.randint(0, 2**62, (1,)).item())
    digest = hashlib.sha256(repr((base, _shard_key(tensor))).encode()).digest()
    devices = [tensor.device] if tensor.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int.from_bytes(digest[:8], "little") % 2**63)
        yield


@torch.no_grad()
def whole_matrix_init(tensor: torch.Tensor, init: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``init`` on the full matrix of a sharded ``tensor`` (a plain one: in place), then each rank
    keeps its slice."""
    if not is_sharded(tensor):
        return init(tensor)
    from torch.distributed.tensor import distribute_tensor

    full = init(torch.empty(tensor.shape, dtype=tensor.dtype, device=tensor.to_local().device))
    keywords = {"src_data_rank": 0} if "src_data_rank" in inspect.signature(distribute_tensor).parameters else {}
    tensor.to_local().copy_(distribute_tensor(full, tensor.device_mesh, tensor.placements, **keywords).to_local())
    return tensor


def unwrap(model: torch.nn.Module) -> tuple[torch.nn.Module, str]:
    """(the wrapped model, the prefix its wrappers add to parameter names): ``module.`` for DDP,
    ``_orig_mod.`` for a compiled module, nested as they are."""
    prefix = ""
    while True:
        children = list(model.named_children())
        if len(children) != 1 or children[0][0] not in WRAPPER_ATTRIBUTES or list(model.parameters(recurse=False)):
            return model, prefix
        name, model = children[0]
        prefix += name + "."
