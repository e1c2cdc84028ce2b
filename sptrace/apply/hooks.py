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


CHECKPOINT_MARK = "sptrace_plan"  # key in the root module's entry of a state_dict's _metadata


def install_checkpoint_marker(model: torch.nn.Module, digest: str) -> list:
    """``model.state_dict()`` records the plan's digest in its metadata (``state_dict._metadata``,
    kept by ``torch.save`` / ``torch.load(weights_only=True)``; a plain model ignores it), and
    ``load_state_dict`` refuses a state_dict that carries metadata but another digest or none: a
    checkpoint saved before parametrize (the library's values, without the plan's init or
    multipliers) or under another plan. A state_dict without metadata (built by hand, by
    torch.distributed.checkpoint, or ``dict(state_dict)`` to load one deliberately) cannot tell and
    is loaded. (Load hooks cannot see ``strict=``: torch passes them True.)"""

    def save(_module, _state_dict, _prefix, local_metadata):
        local_metadata[CHECKPOINT_MARK] = digest

    def load(_module, state_dict, _prefix, local_metadata, *_):
        if getattr(state_dict, "_metadata", None) is None or local_metadata.get(CHECKPOINT_MARK) == digest:
            return
        found = local_metadata.get(CHECKPOINT_MARK)
        what = ("was saved before sptrace parametrized this model (or from a model without sptrace): its values are "
                "not the plan's, and the plan's forward multipliers would change what it computes"
                if found is None else f"was saved under another sptrace plan (digest {found}, this model's {digest})")
        raise SptraceError(f"this checkpoint {what}. Load it before parametrize / plan.install (then parametrize "
                           "with init='keep' to fine-tune it), or load dict(state_dict) (without its metadata) to "
                           "load it anyway")

    register_load = getattr(model, "register_load_state_dict_pre_hook", None)
    load_handle = (register_load(load) if register_load is not None
                   else model._register_load_state_dict_pre_hook(load, with_module=True))
    return [model._register_state_dict_hook(save), load_handle]
