"""Parameters divided by a number computed from themselves: ``W / sigma(W)``, or by one per row.

``torch.nn.utils.spectral_norm`` (the forward pre-hook) and ``torch.nn.utils.parametrizations.spectral_norm``
compute the layer's weight as ``W / sigma``, where ``sigma = u . (W v)`` is a power-iteration estimate
of W's largest singular value, with ``u`` and ``v`` kept in buffers as wide as W. A hand-written
``v / v.norm()`` is the same shape of computation, and so is ``F.normalize(W, dim=-1)`` (a cosine
classifier's prototypes), with one norm per row. In the graph it is a region of nodes computed from
one parameter and constants alone (no input, no other parameter) that leaves that region only as a
narrow value (one element, or W's shape with the normalised axes reduced to size 1, broadcast back or
not), which then multiplies or divides the parameter itself.

Such a region is not a use of the parameter: it reads no data, and what it passes on has no axis. Yet
read as uses, its contractions of W with ``u`` and ``v`` made W a parameter "combined before any
activation", and ``u`` and ``v``, read as constant data (a coordinate table), fixed every axis W
shares with the network, so that the whole model lost its width axes (docs/classification.md, "Weight
reparametrizations"). This pass finds the regions from the graph alone: the uses stage skips their
nodes, their buffers are the reparametrization's state rather than data, and the parameter is
classified by the layer's use of ``W / sigma`` (an elementwise scaling keeps its axes).

The scale of ``W / sigma`` is the normaliser's, whatever W's: the plan gives W its layer's init and
lr (they set the direction and the size of a step relative to W), never a zero start (0 / 0), and
says so (planning/readouts.py, docs/rules.md "Self-normalised weights").
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch.fx as fx

from ..types import CapturedGraph, ParamRecord, SelfNormSite
from .ops import BROADCASTS, Shapes, op_name

__all__ = ["SelfNorms", "self_normalisers", "mark_self_normalised"]

SCALINGS = {"mul", "div"}
POWER_ITERATION = {"dot", "vdot"}  # u . (W v): torch's spectral_norm's estimate of the largest singular value


@dataclass(frozen=True)
class SelfNorms:
    """What :func:`self_normalisers` found: the region nodes (each to the parameter node it reads), the
    node that scales each parameter by its region's value, and the buffers only those regions read."""

    regions: dict[str, str]
    scaled_by: dict[str, SelfNormSite]
    state_buffers: frozenset[str]


def self_normalisers(captured: CapturedGraph, shapes: Shapes) -> SelfNorms:
    nodes = list(captured.graph.nodes)
    sources = _sources(nodes, captured)
    wide = _wide(nodes, sources, shapes)
    regions, scaled_by = {}, {}
    for param in captured.param_nodes:
        region = {n.name for n in nodes if n.op == "call_function" and sources[n.name] == {param} and not wide[n.name]}
        sinks = _sinks(region, nodes, param, sources, wide)
        if sinks:
            regions.update(dict.fromkeys(region, param))
            scaled_by[param] = SelfNormSite(sinks[0][0], op_name(sinks[0][1]) in POWER_ITERATION)
    read_by = {b: {u.name for u in n.users} for n in nodes if (b := n.name) in captured.buffer_nodes}
    state = frozenset(b for b, users in read_by.items() if users and users <= set(regions))
    return SelfNorms(regions, scaled_by, state)


def mark_self_normalised(norms: SelfNorms, captured: CapturedGraph, records: list[ParamRecord]) -> list[ParamRecord]:
    """``records`` with ``self_normalized_by`` set on each parameter a region scales."""
    by_name = {captured.param_nodes[p]: node for p, node in norms.scaled_by.items()}
    return [next((replace(r, self_normalized_by=by_name[a]) for a in r.aliases if a in by_name), r) for r in records]


def _sources(nodes: list[fx.Node], captured: CapturedGraph) -> dict[str, frozenset[str]]:
    """The parameters and inputs each node is computed from (buffers and literals are constants)."""
    out: dict[str, frozenset[str]] = {}
    for node in nodes:
        if node.op == "placeholder":
            own = node.name in captured.param_nodes or node.name in captured.input_nodes
            out[node.name] = frozenset({node.name}) if own else frozenset()
        else:
            out[node.name] = frozenset().union(*(out.get(n.name, frozenset()) for n in node.all_input_nodes))
    return out


def _wide(nodes: list[fx.Node], sources, shapes: Shapes) -> dict[str, bool]:
    """Whether a value reaches something other than its own parameter's computation (an op with data
    or another parameter, or the outputs) without passing through a narrow value (:func:`_narrow`)."""
    narrow = _narrow(nodes, sources, shapes)
    wide: dict[str, bool] = {}
    for node in reversed(nodes):
        if narrow[node.name]:
            wide[node.name] = False
            continue
        wide[node.name] = any(user.op == "output" or sources[user.name] != sources[node.name] or wide[user.name]
                              for user in node.users)
    return wide


def _sinks(region: set[str], nodes: list[fx.Node], param: str, sources, wide) -> list[tuple[str, fx.Node]]:
    """(the node that scales the parameter, the region's value it scales by) for each such node, or none
    when the region's value goes anywhere else (it is then a use, as in ``x * W.mean()``)."""
    sinks = []
    for node in nodes:
        if node.name not in region:
            continue
        for user in node.users:
            if user.name in region:
                continue
            others = [a for a in user.all_input_nodes if a is not node]
            if not (op_name(user) in SCALINGS and not wide[node.name] and len(others) == 1
                    and sources[others[0].name] == {param} and wide[others[0].name]):
                return []
            sinks.append((user.name, node))
    return sinks


def _narrow(nodes: list[fx.Node], sources, shapes: Shapes) -> dict[str, bool]:
    """Whether each value has fewer entries than the parameter it is computed from: one element
    (``W / sigma(W)``), or the parameter's shape with some axes reduced to size 1 (a norm per row, as
    ``F.normalize(W, dim=-1)`` computes), broadcast back to the parameter's shape or not."""
    narrow: dict[str, bool] = {}
    for node in nodes:
        shape = shapes.get(node.name)
        if shape is None:
            narrow[node.name] = False
        elif math.prod(shape) == 1:
            narrow[node.name] = True
        elif op_name(node) in BROADCASTS and isinstance(node.args[0], fx.Node):  # a per-row norm put back
            narrow[node.name] = narrow.get(node.args[0].name, False)
        else:
            narrow[node.name] = len(sources[node.name]) == 1 and _reduced(shape, shapes.get(*sources[node.name]))
    return narrow


def _reduced(shape, whole) -> bool:
    """``shape`` is ``whole`` with some axes reduced to size 1 (a keepdim reduction)."""
    return (whole is not None and len(shape) == len(whole) and all(s in (1, w) for s, w in zip(shape, whole))
            and math.prod(shape) < math.prod(whole))
