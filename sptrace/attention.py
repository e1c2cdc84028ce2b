"""Where the graph computes attention logits, with what scale, and whether head_dim grows.

q·k of aligned vectors grows like head_dim, so the usual 1/sqrt(head_dim) keeps logits Θ(1)
only while head_dim is fixed (NOTES §5); μP uses 1/head_dim when head_dim grows with width.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional

import torch.fx as fx

from .axes import AxisLabels
from .capture import CapturedGraph, module_path
from .ops import OpAxes, Shapes, op_name

SCALE_OPS = {"mul", "div", "true_divide"}
MATMULS = {"matmul", "bmm", "einsum", "mm"}


@dataclass(frozen=True)
class AttentionSite:
    node: str
    module: str
    kind: str  # "sdpa" (scaled_dot_product_attention) or "manual" (matmul, scale, softmax)
    head_dim: int
    head_dim_is_width: Optional[bool]  # None: automatic mode cannot tell (head_dim splits a width dim)
    scale: Optional[float]  # the scale in use; None where it is a runtime value
    scale_source: str
    base_head_dim: Optional[int] = None

    @property
    def width_stable(self) -> Optional[bool]:
        """1/sqrt(head_dim) is only width-stable when head_dim is fixed; None when unknown."""
        if self.head_dim_is_width is None:
            return None
        if not self.head_dim_is_width or self.scale is None:
            return True
        return math.isclose(self.scale, 1.0 / self.head_dim, rel_tol=1e-6)


def with_base(sites: list[AttentionSite], base_sites: list[AttentionSite]) -> list[AttentionSite]:
    """Base mode: head_dim grows exactly when it differs from the base model's, site by site."""
    if len(sites) != len(base_sites):
        return sites
    return [replace(s, head_dim_is_width=s.head_dim != b.head_dim, base_head_dim=b.head_dim)
            for s, b in zip(sites, base_sites)]


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
    """A matmul of two activations whose result reaches a softmax, maybe through a scale."""
    (left, right) = ax.contract[0]
    if left[0] in captured.param_nodes or right[0] in captured.param_nodes:
        return None
    scale, source, current = 1.0, "no scale", node
    for _ in range(6):
        users = list(current.users)
        if len(users) != 1:
            return None
        current = users[0]
        name = op_name(current)
        if name in ("softmax", "_softmax", "_safe_softmax"):
            head_dim = shapes.get(left[0])[left[1]]
            return AttentionSite(node.name, module_path(node), "manual", head_dim, _grows(labels, left), scale, source)
        if name in SCALE_OPS:
            constants = [a for a in current.args if isinstance(a, (int, float))]
            if not constants:
                return None
            scale = scale * constants[0] if name == "mul" else scale / constants[0]
            source = f"{name} by a constant"
    return None
