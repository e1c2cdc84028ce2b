"""Column blocks: a layer whose fan-in reads a concatenation of a width-growing input and a fixed-size one.

DLRM's top MLP reads ``cat([dense (d), interactions (k)])`` and NeRF's skip layer ``cat([h (d), γ(x)])``:
the weight's fan-in ``d + k`` grows with width, so it is a hidden matrix, but its ``k`` columns map
fixed-size features to width, an input layer's job (Condition 2: that block's spectral norm
sqrt(d_out / k), entries Θ(1)). The record lists the concatenation's blocks; planning gives the fixed
ones an input layer's rule through a forward multiplier (docs/rules.md "Column blocks").

Which block grows: automatic mode reads each input's axis label (:meth:`AxisLabels.decide`) and
takes a block for growing only where a parameter's axis is tied to it; with
``base=`` a block grows exactly when its size differs in the base model (or the delta), read off a parameter axis
tied to it (the layer before it) and, for the one block no parameter reaches (the interactions), as
the rest of the weight's base fan-in. Only an ``nn.Linear`` reading the concatenation directly is
marked (the multiplier scales that module's input).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Optional

import torch

from ..types import AxisLabels, CapturedGraph, ColumnBlock, Kind, ParamRecord
from .axes import parameter_axes
from .ops import op_name

__all__ = ["mark_column_blocks"]


def mark_column_blocks(captured: CapturedGraph, labels: AxisLabels, records: list[ParamRecord], model: torch.nn.Module,
                       base_shapes: Optional[dict], delta_shapes: Optional[dict]) -> list[ParamRecord]:
    """``records`` with ``column_blocks`` set where a width block and a fixed one feed one weight's
    fan-in; ``base_shapes`` {name: (shape, groups)} and ``delta_shapes`` {name: shape} in base mode."""
    nodes = {n.name: n for n in captured.graph.nodes}
    others = None if base_shapes is None else [{n: shape for n, (shape, _) in base_shapes.items()},
                                                *([delta_shapes] if delta_shapes else [])]
    param_axes = parameter_axes(captured, labels)
    out = []
    for record in records:
        cat = _concatenation(record, nodes, model)
        blocks = None if cat is None else _blocks(record, cat, labels, param_axes, others)
        out.append(replace(record, column_blocks=blocks) if blocks else record)
    return out


def _concatenation(record: ParamRecord, nodes: dict, model: torch.nn.Module):
    """(the cat's inputs, their concatenated axis) where an nn.Linear's weight reads a concatenation
    along its input's last axis; None otherwise (a tie, a forward constant or a weight norm keeps its rule)."""
    if not (record.classified and record.kind is Kind.MATRIX and record.fan_in_is_width and record.fan_in_axes == (1,)
            and len(record.shape) == 2 and not record.secondary_uses and record.forward_constant is None
            and record.weight_norm is None and record.self_normalized_by is None and record.uses):
        return None
    use = record.uses[0]
    if use.op != "linear" or use.arg != "weight" or use.via:
        return None
    try:  # the multiplier scales this module's input: it must be the nn.Linear that owns the weight
        module = model.get_submodule(use.module) if use.module else model
        if not isinstance(module, torch.nn.Linear) or module.weight is not model.get_parameter(record.name):
            return None
    except AttributeError:  # a path the capture named that is no attribute path (nothing to wrap)
        return None
    node = nodes.get(use.node)
    source = node.args[0] if node is not None and node.args else None
    if getattr(source, "op", None) != "call_function" or op_name(source) != "cat":
        return None
    inputs = source.args[0]
    dim = source.args[1] if len(source.args) > 1 else source.kwargs.get("dim", 0)
    shapes = [getattr(i, "meta", {}).get("val") for i in inputs]
    if not all(isinstance(s, torch.Tensor) for s in shapes) or len(inputs) < 2:
        return None
    ndim = shapes[0].dim()
    if dim % ndim != ndim - 1:
        return None
    return [(i.name, int(s.shape[-1])) for i, s in zip(inputs, shapes)], ndim - 1


def _blocks(record, cat, labels: AxisLabels, param_axes, others) -> tuple[ColumnBlock, ...]:
    """The blocks, or () where none is fixed or none grows, or where base mode cannot tell them apart."""
    inputs, axis = cat
    if sum(size for _, size in inputs) != record.shape[1]:
        return ()
    if others is None:
        grows = _grown_automatic(inputs, axis, labels, param_axes)
    else:
        grows = _grown_in_base(record, inputs, axis, labels, param_axes, others)
    if grows is None or None in grows or all(grows) or not any(grows):
        return ()
    blocks, start = [], 0
    for (_, size), width in zip(inputs, grows):
        blocks.append((start, start + size, width))
        start += size
    return tuple(blocks)


def _grown_automatic(inputs, axis, labels: AxisLabels, param_axes) -> list[Optional[bool]]:
    """Automatic mode: fixed where the axis labels say so (data, a vocabulary); growing only where a
    parameter's width axis is tied to it (the layer before). An axis that is width for want of
    anything fixing it (DLRM's interaction count, a positional encoding's frequencies) cannot tell: None."""
    out: list[Optional[bool]] = []
    for name, _ in inputs:
        width, _reason = labels.decide((name, axis))
        out.append(False if not width else True if param_axes.get(labels.component.get((name, axis))) else None)
    return out


def _grown_in_base(record, inputs, axis, labels, param_axes, others: list[dict]) -> Optional[list[bool]]:
    """Whether each block grows: its size differs in the base model or the delta (``others``:
    {parameter name: shape} each). A parameter axis tied to a block says its size there; at most
    one block without one takes the rest of the weight's fan-in there."""
    grows = [False] * len(inputs)
    for shapes in others:
        if record.name not in shapes:
            return None
        sizes: list[Optional[int]] = []
        for name, _ in inputs:  # a component ties axes of one size: a parameter's axis in it is the block's
            tied = param_axes.get(labels.component.get((name, axis)), [])
            sizes.append(next((shapes[p][a] for p, a in tied if p in shapes), None))
        unknown = [i for i, b in enumerate(sizes) if b is None]
        if len(unknown) > 1:
            return None
        if unknown:
            rest = shapes[record.name][1] - sum(b for b in sizes if b is not None)
            if rest <= 0:
                return None
            sizes[unknown[0]] = rest
        if sum(sizes) != shapes[record.name][1]:
            return None
        grows = [g or b != size for g, b, (_, size) in zip(grows, sizes, inputs)]
    return grows
