"""Forward multipliers that init and learning rates cannot provide (docs/derivations.md §5).

* Tied readout: a tensor used as an embedding (entries Θ(1)) and again as a readout (which wants
  entries Θ(1/width)) gets a multiplier on the readout use. The readout module's forward scales
  its input, so ``F.linear(m·h, W) + b = m·(W h) + b``: only the weight's term is scaled.
* Fixed input columns: a layer reading ``cat([width features, fixed-size features])`` scales the
  fixed slice of its input by m, so those columns act as ``m·V`` (an input layer's lr through one
  tensor's param group: docs/rules.md "Column blocks").
* Attention scale: ``scaled_dot_product_attention`` calls made inside a module are rerouted to
  ``scale = 1/head_dim`` (anchored: ``sqrt(base_head_dim)/head_dim``) by a TorchFunctionMode that
  is active only while that module's forward runs.

Both wrap the module's ``forward`` on the instance (:class:`ForwardOverride`: why not hooks).
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


class ForwardOverride:
    """The handle of a module whose ``forward`` sptrace wrapped (on the instance, not the class).

    A wrapped forward rather than forward hooks: ``torch.compile`` does not guard on a module's
    hooks (``torch._dynamo.config.skip_nnmodule_hook_guards``), so a model compiled after another
    of the same class without them silently reused that code without the multiplier (measured:
    the zoo GPT, tied readout and attention scale both dropped); an instance ``forward`` is
    guarded, compiles with ``fullgraph=True`` and recompiles when its value changes.
    ``remove()`` puts the previous forward back (or, when something else wrapped it since,
    turns this wrapper into a pass-through)."""

    def __init__(self, module: torch.nn.Module, wrap):
        self.module, self.active = module, True
        self.previous = module.__dict__.get("forward")  # None: the class's own
        inner = module.forward

        def forward(*args, **kwargs):
            return wrap(inner, *args, **kwargs) if self.active else inner(*args, **kwargs)

        self.installed = forward
        module.forward = forward

    def remove(self):
        self.active = False
        if self.module.__dict__.get("forward") is self.installed:
            if self.previous is None:
                del self.module.forward
            else:
                self.module.forward = self.previous


def install_readout_multiplier(model: torch.nn.Module, module_path: str, value: float) -> ForwardOverride:
    if not module_path:
        raise SptraceError(
            "a tied parameter is used as a readout directly in the root module's forward; sptrace can only "
            "scale a readout that runs inside a submodule: move it into an nn.Linear (or scale by hand)"
        )

    def scale_input(inner, h, *args, **kwargs):
        return inner(h * value, *args, **kwargs)

    return ForwardOverride(model.get_submodule(module_path), scale_input)


def install_column_multiplier(model: torch.nn.Module, module_path: str, columns, value: float) -> ForwardOverride:
    """The module's input (last axis) with the slices ``columns`` times ``value``."""
    def scale_columns(inner, x, *args, **kwargs):
        parts, at = [], 0
        for start, stop in columns:
            parts += [x[..., at:start], x[..., start:stop] * value]
            at = stop
        return inner(torch.cat(parts + [x[..., at:]], -1), *args, **kwargs)

    return ForwardOverride(model.get_submodule(module_path) if module_path else model, scale_columns)


def install_attention_scale(model: torch.nn.Module, module_path: str, scale: float) -> list[ForwardOverride]:
    module = model.get_submodule(module_path) if module_path else model

    def rerouted(inner, *args, **kwargs):
        with _AttentionScale(scale):
            return inner(*args, **kwargs)

    return [ForwardOverride(module, rerouted)]


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
