"""Forward multipliers that init and learning rates cannot provide (docs/derivations.md §5).

* Tied readout: a tensor used as an embedding (entries Θ(1)) and again as a readout (which wants
  entries Θ(1/width)) gets a multiplier on the readout use. The hook scales the readout module's
  input, so ``F.linear(m·h, W) + b = m·(W h) + b``: only the weight's term is scaled.
* Attention scale: ``scaled_dot_product_attention`` calls made inside a module are rerouted to
  ``scale = 1/head_dim`` (anchored: ``sqrt(base_head_dim)/head_dim``) by a TorchFunctionMode that
  is active only while that module runs.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ..types import SptraceError


class _AttentionScale(TorchFunctionMode):
    def __init__(self, scale: float):
        super().__init__()
        self.scale = scale

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func is F.scaled_dot_product_attention:
            kwargs["scale"] = self.scale
        return func(*args, **kwargs)


def install_readout_multiplier(model: torch.nn.Module, module_path: str, value: float):
    if not module_path:
        raise SptraceError(
            "a tied parameter is used as a readout directly in the root module's forward; sptrace can only "
            "scale a readout that runs inside a submodule: move it into an nn.Linear (or scale by hand)"
        )
    module = model.get_submodule(module_path)

    def scale_input(_module, args):
        return (args[0] * value,) + tuple(args[1:])

    return module.register_forward_pre_hook(scale_input)


def install_attention_scale(model: torch.nn.Module, module_path: str, scale: float):
    module = model.get_submodule(module_path) if module_path else model
    mode = _AttentionScale(scale)

    def enter(_module, _args):
        mode.__enter__()

    def leave(_module, _args, _out):
        mode.__exit__(None, None, None)

    return [module.register_forward_pre_hook(enter), module.register_forward_hook(leave, always_call=True)]


def mup_attention_scale(head_dim: int, base_head_dim: Optional[int]) -> float:
    """1/head_dim (μP), anchored so that it equals the standard 1/sqrt(head_dim) at the base."""
    if base_head_dim is None:
        return 1.0 / head_dim
    return math.sqrt(base_head_dim) / head_dim
