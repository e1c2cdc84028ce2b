"""Weights made as the entrywise product of two parameters, ``W = carrier * factor``, seen from the graph.

An efficient-KAN layer computes its spline weight as ``spline_weight * spline_scaler.unsqueeze(-1)``
(out x in x grid times out x in, repeated over the grid) and uses the product as one matrix over fan-in
``in * grid``. The uses stage (graph/uses.py) follows each factor through the ``mul`` into the layer's
operand, so each factor is classified by W's use, and the plan used to give each one W's whole rule:
the product's init then shrank like the square of the rule's (measured: the hidden layer's product
RMS slope -1.00 against the rule's -0.50; docs/rules.md "Products of parameters").

This pass names the pair on both records (``ParamRecord.product``): the *carrier* is the factor that has
every entry of W (its shape is the product's), so its record is W's and it carries W's rule; the other
factor is a gain of W's entries, repeated along the axes it lacks (planning/products.py plans it). Only
plain broadcasting counts (views, unsqueeze, expand; no transpose), so that each of the factor's axes is
one axis of W, and only a ``mul`` whose product both factors' records reach the same operand through,
by views alone (no reduction or other op after the ``mul``).
Where both factors have every entry, the larger (then the first by name) carries, as
planning/readouts.py's ``spared_factors`` zeroes that one.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Optional

from torch import fx

from ..types import CapturedGraph, ParamRecord, ProductSite
from .ops import SHAPE_OPS, op_name

__all__ = ["mark_products"]

# ops that pass a tensor on with its entries in the same order (no transpose), possibly with axes of size 1
# added or removed or repeated by broadcasting
_PLAIN = {"view", "_unsafe_view", "reshape", "unsqueeze", "squeeze", "view_copy", "clone", "contiguous", "_to_copy",
          "to", "alias"}
_BROADCASTS = {"expand", "expand_copy", "expand_as"}


def mark_products(captured: CapturedGraph, records: list[ParamRecord]) -> list[ParamRecord]:
    """``records`` with ``product`` set on both factors of every ``mul`` of two parameters (through plain
    views) that one operand of a use receives; a parameter's first such product counts."""
    by_alias = {a: r for r in records for a in r.aliases}
    sites: dict[str, ProductSite] = {}
    for node in captured.graph.nodes:
        if node.op != "call_function" or op_name(node) != "mul" or len(node.all_input_nodes) != 2:
            continue
        site = _site(node, captured, by_alias)
        if site is not None:
            for name in (site.carrier, site.factor):
                sites.setdefault(name, site)
    return [replace(r, product=sites[r.name]) if r.name in sites else r for r in records]


def _behind(node: fx.Node, param_nodes: dict[str, str]) -> Optional[tuple[str, tuple[int, ...]]]:
    """The parameter ``node`` shows through plain views, and its shape as multiplied: ``node``'s, or the
    input's of an ``expand`` that feeds the mul (broadcast made explicit); None for any other expand."""
    shape, first = _shape(node), True
    while node.name not in param_nodes:
        broadcast = op_name(node) in _BROADCASTS  # expand_as(x, other) reads only other's shape
        source = node.args[0] if node.args and broadcast else None
        if not broadcast and (op_name(node) not in _PLAIN or len(node.all_input_nodes) != 1):
            return None
        source = source if isinstance(source, fx.Node) else node.all_input_nodes[0]
        if broadcast:
            if not first:
                return None
            shape = _shape(source)
        node, first = source, False
    return (param_nodes[node.name], shape) if shape is not None else None


def _shape(node: fx.Node) -> Optional[tuple[int, ...]]:
    """The node's shape where every size is a number (a data-dependent size, a SymInt, is not read)."""
    shape = getattr(node.meta.get("val"), "shape", None)
    return tuple(shape) if shape is not None and all(type(s) is int for s in shape) else None


def _site(node: fx.Node, captured: CapturedGraph, by_alias: dict[str, ParamRecord]) -> Optional[ProductSite]:
    out = _shape(node)
    found = [_behind(a, captured.param_nodes) for a in node.all_input_nodes]
    if out is None or any(f is None for f in found) or found[0][0] == found[1][0]:
        return None
    records = [by_alias.get(name) for name, _ in found]
    if any(r is None for r in records) or records[0].name == records[1].name or not _same_operand(*records):
        return None
    whole = [i for i, r in enumerate(records) if r.shape == out]
    if not whole:
        return None  # neither factor has every entry of W (an outer product a b^T): no carrier
    carrier = max(sorted(whole, key=lambda i: records[i].name), key=lambda i: math.prod(records[i].shape))
    other = 1 - carrier
    axes = _axes_in(records[other].shape, found[other][1], out)
    if axes is None:
        return None
    broadcast = tuple(a for a in range(len(out)) if a not in axes and out[a] > 1)
    return ProductSite(node.name, records[carrier].name, records[other].name, axes, broadcast)


def _axes_in(own: tuple[int, ...], multiplied: tuple[int, ...], out: tuple[int, ...]) -> Optional[tuple[int, ...]]:
    """For each axis of the factor (shape ``own``), the axis of W it lands on, when the factor reaches the
    mul as ``multiplied`` (its own axes with axes of size 1 added or removed: broadcasting aligns from the
    right); None where the views regroup its entries or the factor has an axis of size 1."""
    padded = (1,) * (len(out) - len(multiplied)) + tuple(multiplied)
    kept = [a for a, s in enumerate(padded) if s != 1]
    sizes = [s for s in own if s != 1]
    if 1 in own or len(padded) != len(out) or [padded[a] for a in kept] != sizes:
        return None  # an axis of size 1 of the factor would land nowhere in particular
    return tuple(kept) if all(padded[a] == out[a] for a in kept) else None


def _same_operand(a: ParamRecord, b: ParamRecord) -> bool:
    """Whether both records reach one operand of one node through a mul and then only views of the product
    (it is that operand, as a whole: DiffLlama's ``exp(sum(lambda_q1 * lambda_k1))`` is no weight)."""
    def reached(r: ParamRecord) -> set:
        return {(u.node, u.arg) for u in r.uses
                if "mul" in u.via and all(op in SHAPE_OPS for op in u.via[u.via.index("mul") + 1:])}
    return bool(reached(a) & reached(b))
