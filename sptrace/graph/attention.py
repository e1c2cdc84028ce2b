"""Where the graph computes attention logits, with what scale, and whether head_dim grows.

q·k of aligned vectors grows like head_dim, so the usual 1/sqrt(head_dim) keeps logits Θ(1)
only while head_dim is fixed (docs/derivations.md §5); μP uses 1/head_dim when head_dim grows with
width.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Optional

import torch.fx as fx

from ..types import AttentionSite, AxisLabels, CapturedGraph, OpAxes
from .capture import module_path
from .ops import Shapes, op_name

SCALE_OPS = {"mul", "div", "true_divide"}
MATMULS = {"matmul", "bmm", "einsum", "mm", "baddbmm"}
SHAPE_OPS = {"view", "_unsafe_view", "reshape", "transpose", "permute", "t", "expand", "clone", "contiguous",
             "unsqueeze", "squeeze", "_to_copy", "to", "alias", "flatten", "unflatten"}


def with_base(sites: list[AttentionSite], base_sites: list[AttentionSite],
              delta_sites: Optional[list[AttentionSite]] = None) -> list[AttentionSite]:
    """Base mode: head_dim grows exactly when it differs from the base model's (or the delta
    model's from the base's), site by site."""
    if len(sites) != len(base_sites):
        return sites
    deltas = delta_sites if delta_sites is not None and len(delta_sites) == len(sites) else sites
    return [replace(s, head_dim_is_width=b.head_dim != s.head_dim or b.head_dim != d.head_dim, base_head_dim=b.head_dim)
            for s, b, d in zip(sites, base_sites, deltas)]


def find_attention(captured: CapturedGraph, shapes: Shapes, axes: dict[str, OpAxes], labels: AxisLabels) -> list[AttentionSite]:
    sites = []
    for node in captured.graph.nodes:
        ax = axes.get(node.name)
        if ax is None:
            continue
        if ax.category == "attention":
            site = _sdpa_site(node, ax, shapes, labels)
        elif op_name(node) in MATMULS and ax.contract:
            site = _manual_site(node, ax, shapes, labels, captured)
        else:
            site = None
        if site is not None:
            sites.append(site)
    return sites


def _sdpa_site(node, ax: OpAxes, shapes, labels) -> Optional[AttentionSite]:
    q = node.args[0]
    q_shape = shapes.get(q.name) if isinstance(q, fx.Node) else None
    if not q_shape:
        return None
    head_dim = q_shape[-1]
    explicit = ax.args.get("scale")
    scale = float(explicit) if isinstance(explicit, (int, float)) else 1.0 / math.sqrt(head_dim)
    source = "explicit scale=" if isinstance(explicit, (int, float)) else "sdpa default 1/sqrt(head_dim)"
    return AttentionSite(node.name, module_path(node), "sdpa", head_dim, _grows(labels, (q.name, len(q_shape) - 1)), scale, source)


def _grows(labels: AxisLabels, ref) -> Optional[bool]:
    """A fixed head axis is known; a width one may be a fixed-size split of a width dim: unknown."""
    return None if labels.decide(ref)[0] else False


def _manual_site(node, ax: OpAxes, shapes, labels, captured) -> Optional[AttentionSite]:
    """A matmul of two activations whose result reaches a softmax; the scale may be applied to q
    (or k) before the matmul or to the logits after it."""
    (left, right) = ax.contract[0]
    if left[0] in captured.param_nodes or right[0] in captured.param_nodes:
        return None
    scale, sources = 1.0, []
    for operand in (node.all_input_nodes):
        factor = _upstream_scale(operand)
        if factor is not None:
            scale, sources = scale * factor, sources + [f"{op_name(operand)} of an operand"]
    current = node
    for _ in range(6):
        users = list(current.users)
        if len(users) != 1:
            return None
        current = users[0]
        name = op_name(current)
        if name in ("softmax", "_softmax", "_safe_softmax"):
            head_dim = shapes.get(left[0])[left[1]]
            source = " and ".join(sources) if sources else "no scale"
            return AttentionSite(node.name, module_path(node), "manual", head_dim, _grows(labels, left), scale, source)
        factor = _scale_factor(current)
        if factor is not None:
            scale, sources = scale * factor, sources + [f"{name} by a constant"]
    return None


def _constant(value) -> Optional[float]:
    """A Python number, or a 0-d tensor made by full()/scalar_tensor() in the graph."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, fx.Node) and op_name(value) in ("full", "scalar_tensor") and value.args:
        fill = value.args[-1] if op_name(value) == "full" else value.args[0]
        return float(fill) if isinstance(fill, (int, float)) else None
    return None


def _scale_factor(node: fx.Node) -> Optional[float]:
    name = op_name(node)
    if name not in SCALE_OPS or len(node.args) < 2:
        return None
    value = _constant(node.args[1]) if name != "mul" else (_constant(node.args[1]) or _constant(node.args[0]))
    if value is None or value == 0:
        return None
    return value if name == "mul" else 1.0 / value


def _upstream_scale(node: fx.Node) -> Optional[float]:
    """q * c, then views, then the matmul: the factor c."""
    for _ in range(6):
        if node.op != "call_function":
            return None
        factor = _scale_factor(node)
        if factor is not None:
            return factor
        if op_name(node) not in SHAPE_OPS or not node.all_input_nodes:
            return None
        node = node.all_input_nodes[0]
    return None
