"""Gains on an l2-normalised activation: ``g * x / ||x||`` over width axes (ScaleNorm, ``F.normalize``).

A vector divided by its l2 norm over k width axes of total size n has entries of RMS ``n^-1/2``,
where Condition 1 (§3) asks a hidden feature for Θ(1). A gain ``g`` that multiplies it (a scalar, a
vector over fixed axes, or a vector over the normalised axis: diag(g), the same question per entry)
is the Θ(1) gain ``γ`` of the RMS-normalised ``u = sqrt(n) x/||x||`` times the constant ``n^-1/2``:
``g x/||x|| = (n^-1/2 g) u``. So it is a forward constant ``c = n^-1/2`` on ``g``
(docs/rules.md "Constants in the forward" and "Gains on an l2-normalised activation"): g's init is
``sqrt(n)`` times a gain's (ScaleNorm's own ``g = sqrt(n)``), Adam's lr ``x sqrt(n)``, SGD's ``x n``,
SpectralSGD's scale ``x sqrt(n)``. Literal constants on the way (``* sqrt(n)``, an RMS norm written
with the l2 norm) multiply ``c`` and may cancel it.

Found from the graph alone, for a parameter whose primary use is an elementwise ``mul`` by an
activation ``A``: either ``A`` is ``Y / N`` (``F.normalize``, through views and constant factors), or
the product's only consumer chain reaches ``/ N`` with ``N``'s input ``A`` (``g * x / x.norm()``),
``N`` the l2 norm (``linalg_vector_norm`` / ``norm`` with p = 2, or ``sqrt(sum(x * x))``, through
``clamp_min``, ``+ eps``, ``expand``: graph/values.py) of ``Y`` over axes of which some grow with
width. Not when the result is a query or key (it reaches attention or a contraction with another
activation: cosine attention's scale is the logits', a dot product of two unit vectors is Θ(1) once
they align, docs/parametrize.md "Attention"), and not where a literal constant of the parameter's own axes of another size already scales it.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Callable, Mapping, Optional

import torch
import torch.fx as fx

from ..types import AxisLabels, CapturedGraph, ForwardConstant, ParamRecord, UseAnalysis
from .axes import parameter_axes
from .constants import POWERS, TOLERANCE, feeds_attention, follow_factors
from .ops import op_name
from .values import KEEPS_VALUES, l2_norm_of, scalar_constant

__all__ = ["mark_l2_normalised"]

def mark_l2_normalised(captured: CapturedGraph, uses: UseAnalysis, labels: AxisLabels, records: list[ParamRecord],
                       values: Callable[[str], torch.Tensor],
                       base_shapes: Optional[Mapping[str, tuple]] = None) -> list[ParamRecord]:
    """``records`` with ``forward_constant`` set (axis -1) where the primary use multiplies an activation
    l2-normalised over width axes (module docstring). ``values``: name -> the parameter (read for its init);
    ``base_shapes``: the base model's parameter shapes (base mode), which give the normalised axes' base size."""
    nodes = {n.name: n for n in captured.graph.nodes}
    use_nodes = {u.node for found in uses.uses.values() for u in found}
    witnesses = {component: tied[0] for component, tied in parameter_axes(captured, labels).items()}
    params = {n for n in captured.graph.nodes if n.name in captured.param_nodes}
    out = []
    for record in records:
        use = record.uses[0] if record.classified and record.uses else None
        node = nodes.get(use.node) if use is not None and use.op == "mul" else None
        found = _normalised(node, params) if node is not None else None
        constant = None
        if found is not None and not feeds_attention(found[3], uses, use_nodes, labels):
            constant = _as_constant(record, found, labels, witnesses, values, base_shapes)
        out.append(record if constant is None else
                   replace(record, forward_constant=None if constant == "cancelled" else constant))
    return out


def _back(value) -> tuple[object, float]:
    """``value`` through views, casts and constant factors, backwards: (the source, the factor on the way)."""
    factor = 1.0
    while isinstance(value, fx.Node):
        name, tensors = op_name(value), [a for a in value.args if isinstance(a, fx.Node)]
        if name in KEEPS_VALUES and len(tensors) == 1 and value.args and value.args[0] is tensors[0]:
            value = tensors[0]
            continue
        if name in ("mul", "div") and len(value.args) == 2 and isinstance(value.args[0], fx.Node):
            c = scalar_constant(value.args[1])
            if c not in (None, 0.0):
                factor, value = factor * (c if name == "mul" else 1.0 / c), value.args[0]
                continue
            c = scalar_constant(value.args[0]) if name == "mul" else None
            if c is not None and isinstance(value.args[1], fx.Node):
                factor, value = factor * c, value.args[1]
                continue
        return value, factor
    return value, factor


def _normalised(node: fx.Node, params: set) -> Optional[tuple[fx.Node, list[int], float, fx.Node]]:
    """(Y, its normalised dims, the literal factor on the way, the last node of the scaled value) where the
    ``mul`` ``node`` multiplies a parameter (one of ``params``, through views) by Y / ||Y||, else None."""
    operands = [a for a in node.args if isinstance(a, fx.Node)]
    others = [a for a in operands if _back(a)[0] not in params]
    if len(operands) != 2 or len(others) != 1:
        return None
    source, factor = _back(others[0])
    if isinstance(source, fx.Node) and op_name(source) == "div" and len(source.args) == 2:  # F.normalize(x) * g
        found = l2_norm_of(source.args[1])
        if found is not None and _back(source.args[0])[0] is _back(found[0])[0]:
            after, last, *_ = follow_factors(node)
            return found[0], found[1], factor * _back(source.args[0])[1] * after, last or node
    after, last, cur, _, stop = follow_factors(node)  # g * x / ||x||
    if stop is None or op_name(stop) != "div" or len(stop.args) != 2 or stop.args[0] is not cur:
        return None
    found = l2_norm_of(stop.args[1])
    if found is None or _back(found[0])[0] is not source:
        return None
    more, end, *_ = follow_factors(stop)
    return found[0], found[1], factor * after * more, end or stop


def _as_constant(record: ParamRecord, found, labels: AxisLabels, witnesses, values, base_shapes):
    """The ForwardConstant ``c = literal * n^-1/2`` of ``record`` (n: the normalised width axes' size), or
    ``"cancelled"`` where the literal factor is ``sqrt(n)`` (an RMS norm), or None."""
    src, dims, literal, _ = found
    axes = [(d, labels.sizes.get((src.name, d), 1)) for d in dims]
    axes = [(d, s) for d, s in axes if s > 1 and labels.decide((src.name, d))[0]]
    if not axes:
        return None
    size = math.prod(s for _, s in axes)
    q = next((p for p in POWERS if literal > 0 and math.isclose(literal, size ** p, rel_tol=TOLERANCE)), 0.0)
    existing = record.forward_constant
    if existing is not None and not math.isclose(existing.value, literal, rel_tol=TOLERANCE):
        return None  # a literal of the parameter's own axes this walk did not see: leave it
    power = q - 0.5
    if power == 0.0:
        return "cancelled"
    base_size = float(size)
    if base_shapes is not None:
        for d, s in axes:
            witness = witnesses.get(labels.component.get((src.name, d)))
            if witness is None or witness[0] not in base_shapes:
                return None
            name, axis = witness
            base_size *= base_shapes[name][0][axis] / values(name).shape[axis]
    tensor = values(record.name)
    in_init = (not tensor.is_meta and tensor.numel() > 0
               and bool(torch.allclose(tensor.detach().float(), torch.full_like(tensor.detach().float(),
                                                                               size ** -power), rtol=1e-3)))
    return ForwardConstant(node=src.name, value=literal * size ** -0.5, power=power, size=size, axis=-1,
                           module=record.uses[0].module, normalised_axes=len(axes), base_size=base_size,
                           in_init=in_init)
