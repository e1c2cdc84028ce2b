"""Constants in the forward: a parameter's use output multiplied by a power of a width dim.

Gemma multiplies its token embedding's output by ``sqrt(hidden_size)`` (a 0-d buffer or a tensor
made in the forward), Gemma 4 its per-layer projection by ``hidden_size ** -0.5``. Such a constant
is part of the operator: what the next layer reads is ``c * W``, so Condition 2 is asked of
``c * W`` and the rules divide W's init and update by c's width dependence (planning/rules.py,
docs/rules.md "Constants in the forward").

Found here, from the graph alone: starting at the node of a use, follow its only consumer through
views and casts; every ``mul`` / ``div`` by a Python number or a one-element constant (its value
recorded by graph/capture.py) multiplies ``c``; the walk stops at the first other op (where
another parameter or activation enters). ``c`` counts when it equals ``n ** p`` (``p`` in ±1/2, ±1,
to 1e-4) for ``n`` the size of a width axis of the parameter itself, or of a width factor of the
use's output that a view after the chain splits off (Gemma 4's per-layer table: ``layers x
hidden_per_layer``, scaled by ``sqrt(hidden_per_layer)``). It does not count when it is also such a
power of a fixed size there (``1/sqrt(head_dim)`` with 16 heads of 16): one graph cannot tell
which is meant, and a width-free constant changes nothing; nor when the scaled value is a query or
key (it reaches attention, or a contraction with another activation): that constant is the logits'
scale, which the attention policy owns (docs/parametrize.md "Attention").

A constant on the activation a contraction reads is the same operator, ``W (c x) = (c W) x``: T5's
tied LM head reads ``h * d_model ** -0.5``. Found by walking back from the activation operand of a
linear, matmul or conv through views, casts and mul / div by a constant; not where the walk ends at
another parameter's use whose output chain already counts the constant, nor where the use's output
is a query or key. Such a constant belongs to the use: a tied secondary use can carry its own
(T5's embedding and its LM head), and its module's output is ``(c W) x`` itself.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Optional

import torch
import torch.fx as fx

from ..types import AxisLabels, CapturedGraph, ForwardConstant, OpAxes, UseAnalysis
from .capture import UNKNOWN_SCALAR, module_path, within
from .ops import Shapes, op_name
from .values import KEEPS_VALUES, scalar_constant

__all__ = ["forward_constants", "POWERS", "TOLERANCE", "feeds_attention", "follow_factors"]

POWERS = (0.5, -0.5, 1.0, -1.0)
TOLERANCE = 1e-4  # relative
RESHAPES = {"view", "reshape", "_unsafe_view", "unflatten"}
REARRANGES = {"split", "split_with_sizes", "chunk", "unbind", "getitem", "select", "slice", "stack", "cat"}
IGNORED_USERS = {"_assert_tensor_metadata", "sym_size", "sym_numel", "sym_stride"}
CONTRACTIONS = {"matmul", "conv"}  # op categories whose output is linear in the activation they contract


def forward_constants(captured: CapturedGraph, shapes: Shapes, uses: UseAnalysis,
                      labels: AxisLabels) -> dict[str, dict[str, ForwardConstant]]:
    """``{parameter node: {use node: ForwardConstant}}`` for every use whose output (or, for a
    contraction, whose activation) the forward multiplies by a power of a width dim."""
    nodes = {n.name: n for n in captured.graph.nodes}
    use_nodes = {u.node for found in uses.uses.values() for u in found}
    found: dict[str, dict[str, ForwardConstant]] = {}
    for param, param_uses in uses.uses.items():
        for use in param_uses:
            node = nodes.get(use.node)
            if node is None:
                continue
            chain = _chain(node, use.module, uses, use_nodes)
            if chain is None or feeds_attention(chain[1], uses, use_nodes, labels):
                continue
            value, last, reshaped = chain
            factors = [(key, j) for key in reshaped for j in _split_axes(uses.op_axes.get(key), key)]
            constant = _as_width_power(param, value, last, factors, use.fan_out_axes, shapes, labels)
            if constant is not None:
                found.setdefault(param, {})[use.node] = constant
    counted = {node for per_use in found.values() for node in per_use}
    for param, param_uses in uses.uses.items():
        for use in param_uses:
            node = nodes.get(use.node)
            if node is None or use.node in counted:
                continue
            constant = _input_constant(param, use, node, uses, use_nodes, counted, shapes, labels)
            if constant is not None:
                found.setdefault(param, {})[use.node] = constant
    return found


def _input_constant(param: str, use, node: fx.Node, uses: UseAnalysis, use_nodes: set, counted: set,
                    shapes: Shapes, labels: AxisLabels) -> Optional[ForwardConstant]:
    """The constant on the activation ``node`` (a linear, matmul or conv) contracts with the
    parameter, as a power of a width dim of the parameter (module docstring)."""
    ax = uses.op_axes.get(use.node)
    activation = _activation(node, ax, use.arg) if ax is not None and ax.category in CONTRACTIONS else None
    if activation is None:
        return None
    value, nearest, stop = _factors_before(activation)
    if nearest is None or not math.isfinite(value) or value <= 0 or stop.name in counted \
            or feeds_attention(node, uses, use_nodes, labels):
        return None
    constant = _as_width_power(param, value, nearest, [], use.fan_out_axes, shapes, labels)
    return None if constant is None else replace(constant, module=use.module)


def _activation(node: fx.Node, ax: OpAxes, arg: str) -> Optional[fx.Node]:
    """The one operand ``node`` contracts with its argument ``arg`` (the parameter's side)."""
    side = ax.args.get(arg)
    side = side.name if isinstance(side, fx.Node) else None
    others = {key for pair in ax.contract if side in (pair[0][0], pair[1][0]) for key, _ in pair if key != side}
    if side is None or len(others) != 1:
        return None
    name = others.pop().split(".")[0]
    return next((a for a in node.all_input_nodes if a.name == name), None)


def _factors_before(node: fx.Node) -> tuple[float, Optional[fx.Node], fx.Node]:
    """Walk back from ``node`` through views, casts and mul / div by a known constant: (c, the mul /
    div nearest ``node`` or None, the node the walk stopped at)."""
    value, nearest, cur = 1.0, None, node
    while True:
        tensors = [a for a in cur.args if isinstance(a, fx.Node) and isinstance(a.meta.get("val"), torch.Tensor)]
        if op_name(cur) in KEEPS_VALUES and len(tensors) == 1 and cur.args and cur.args[0] is tensors[0]:
            cur = tensors[0]
            continue
        scaled = [(t, _factor(cur, t)) for t in tensors] if op_name(cur) in ("mul", "div") else []
        source, factor = next(((t, f) for t, f in scaled if f is not None), (None, None))
        if source is None:
            return value, nearest, cur
        value, nearest, cur = value * factor, nearest or cur, source


def unknown_constants(captured: CapturedGraph, uses: UseAnalysis) -> list[str]:
    """One warning naming the parameters whose use's output the forward multiplies by a one-element
    buffer that has no value (built on the meta device): a width power there cannot be read."""
    nodes = {n.name: n for n in captured.graph.nodes}
    names = [captured.param_nodes.get(param, param) for param, param_uses in uses.uses.items()
             if any(use.node in nodes and _scaled_by_unknown(nodes[use.node]) for use in param_uses)]
    if not names:
        return []
    return [f"the output of {', '.join(names)} is multiplied by a one-element buffer with no value (the model is on "
            "meta): if it depends on the width (Gemma's embed_scale = sqrt(hidden_size)), the plan does not know it. "
            "Trace or plan a model whose buffers hold values (build it on the CPU, or fill its buffers after "
            "to_empty) (docs/rules.md, \"Constants in the forward\")"]


def _scaled_by_unknown(node: fx.Node) -> bool:
    """Whether the chain of views and constant factors after ``node`` stops at a factor of unknown value."""
    *_, cur, _, stop = follow_factors(node)
    return stop is not None and op_name(stop) in ("mul", "div") and any(_unknown(a) for a in stop.args if a is not cur)


def _unknown(value) -> bool:
    while isinstance(value, fx.Node):
        if value.meta.get(UNKNOWN_SCALAR):
            return True
        if op_name(value) not in KEEPS_VALUES or not value.args:
            return False
        value = value.args[0]
    return False


def _users(node: fx.Node) -> list[fx.Node]:
    return [u for u in node.users if op_name(u) not in IGNORED_USERS]


def _chain(node: fx.Node, module: str, uses: UseAnalysis, use_nodes: set) -> Optional[tuple[float, fx.Node, list[str]]]:
    """(c, the last mul / div, the reshapes of the use's output on the chain and after it) after
    ``node``, or None without a constant, or where a parent of ``module`` (the use's) multiplies
    the value a layer then reads (the constant scales that layer's input: it is the reader's)."""
    value, last, cur, seen, stop = follow_factors(node)
    if last is None or not math.isfinite(value) or value <= 0:
        return None
    if not within(module_path(last), module) and _read_by_a_layer(stop, cur, uses, use_nodes):
        return None
    return value, last, seen + _reshaped(cur)


def _read_by_a_layer(node: Optional[fx.Node], value: fx.Node, uses: UseAnalysis, use_nodes: set) -> bool:
    """Whether ``node`` is a linear, matmul or conv use of a parameter that contracts ``value``."""
    ax = uses.op_axes.get(node.name) if node is not None and node.name in use_nodes else None
    return ax is not None and ax.category in CONTRACTIONS and any(
        key.split(".")[0] == value.name for pair in ax.contract for key, _ in pair)


def follow_factors(node: fx.Node) -> tuple[float, Optional[fx.Node], fx.Node, list[str], Optional[fx.Node]]:
    """Walk from ``node`` through its only consumers while they are views, casts or a mul / div by a
    known constant: (c, the last mul / div, the last node walked, the reshapes walked, the consumer
    the walk stopped at or None where the value has no single consumer)."""
    value, last, cur, seen = 1.0, None, node, []
    while True:
        users = _users(cur)
        if len(users) != 1:
            return value, last, cur, seen, None
        nxt = users[0]
        name = op_name(nxt)
        tensors = [a for a in nxt.args if isinstance(a, fx.Node)]
        if name in KEEPS_VALUES and tensors == [cur]:
            cur = nxt
            seen += [cur.name] if name in RESHAPES else []
            continue
        factor = _factor(nxt, cur) if name in ("mul", "div") else None
        if factor is None:
            return value, last, cur, seen, nxt
        value, last, cur = value * factor, nxt, nxt


def _factor(node: fx.Node, cur: fx.Node) -> Optional[float]:
    """What ``node`` (a mul or div of ``cur`` by a constant) multiplies ``cur`` by, else None."""
    if len(node.args) != 2 or node.kwargs:
        return None
    first, second = node.args
    if op_name(node) == "div":
        if first is not cur:
            return None
        c = scalar_constant(second)
        return None if c in (None, 0.0) else 1.0 / c
    other = second if first is cur else first if second is cur else None
    return None if other is None or other is cur else scalar_constant(other)


def _split_axes(ax: Optional[OpAxes], key: str) -> list[int]:
    """The output axes a reshape made by splitting (or merging) input axes; not those it kept."""
    return sorted({j for _, rhs in (ax.products if ax is not None else ()) for dst, j in rhs if dst == key})


def _as_width_power(param: str, value: float, last: fx.Node, factors: list, fan_out_axes, shapes: Shapes,
                    labels: AxisLabels) -> Optional[ForwardConstant]:
    """``value`` as ``n ** p`` of a width size of the parameter (or a width factor of its output), if
    it is such a power of no fixed size there."""
    shape = shapes.get(param) or ()
    width, fixed = [], set()
    for axis, size in enumerate(shape):
        if size > 1:
            is_width, _ = labels.decide((param, axis))
            (width.append((size, axis, 1)) if is_width else fixed.add(size))
    for key, j in factors:
        size = (shapes.get(key) or ())[j]
        if size > 1:
            is_width, _ = labels.decide((key, j))
            if not is_width:
                fixed.add(size)
            width += [(size, axis, shape[axis] // size) for axis in fan_out_axes
                      if is_width and axis < len(shape) and shape[axis] % size == 0 and shape[axis] != size]
    matches = []
    for power in POWERS:
        n = value ** (1.0 / power)
        if any(math.isclose(n, f, rel_tol=TOLERANCE) for f in fixed):
            return None
        matches += [(size, axis, split, power) for size, axis, split in width
                    if math.isclose(n, size, rel_tol=TOLERANCE)]
    if len({(m[0], m[3]) for m in matches}) != 1:
        return None
    size, axis, split, power = matches[0]
    return ForwardConstant(node=last.name, value=value, power=power, size=size, axis=axis, split=split,
                           module=module_path(last))


def feeds_attention(last: fx.Node, uses: UseAnalysis, use_nodes: set, labels: AxisLabels) -> bool:
    """Whether the scaled value (through views, splits and stacks) is a query or key: an operand of
    attention or of a contraction with another activation. Its constant is then the logits' scale
    (``1/sqrt(head_dim)`` applied to q), which sptrace's attention policy keeps or rewrites
    (docs/parametrize.md "Attention")."""
    todo, seen = [last], set()
    while todo and len(seen) < 64:
        cur = todo.pop()
        for user in _users(cur):
            if user.name in seen:
                continue
            seen.add(user.name)
            ax = uses.op_axes.get(user.name)
            category = ax.category if ax is not None else ""
            if category == "attention" or (category == "matmul" and user.name not in use_nodes):
                return True
            if _summed_product(user, cur, labels):
                return True
            if op_name(user) in KEEPS_VALUES | REARRANGES:
                todo.append(user)
    return False


REDUCTIONS = {"sum", "mean"}


def _summed_product(node: fx.Node, cur: fx.Node, labels: AxisLabels) -> bool:
    """Whether ``node`` multiplies ``cur`` by another activation and the product (through views) is
    summed over a width axis: a contraction written as ``(a * b).sum(dim)`` (DeepSeek-V4's indexer
    scores, ``sum_h w_h * s_h`` with ``w = weights_proj(x) * heads^-1/2``, the heads growing), whose
    constant is the sum's normalisation, not part of the projection. A sum over fixed axes only (a
    masked mean over tokens) is not a contraction over width."""
    if op_name(node) != "mul" or len(node.args) != 2:
        return False
    other = node.args[1] if node.args[0] is cur else node.args[0] if node.args[1] is cur else None
    if not isinstance(other, fx.Node) or scalar_constant(other) is not None:
        return False
    todo = [node]
    while todo:
        for user in _users(todo.pop()):
            if op_name(user) in REDUCTIONS and _reduces_width(user, labels):
                return True
            if op_name(user) in KEEPS_VALUES:
                todo.append(user)
    return False


def _reduces_width(node: fx.Node, labels: AxisLabels) -> bool:
    """Whether the reduction ``node`` sums a width axis of its input (every axis when no dim is given)."""
    src = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
    if src is None:
        return False
    ndim = len(src.meta["val"].shape) if hasattr(src.meta.get("val"), "shape") else 0
    dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    dims = range(ndim) if dims is None or dims == [] else [dims] if isinstance(dims, int) else dims
    return any(labels.decide((src.name, d % max(ndim, 1)))[0] for d in dims)


def _reshaped(end: fx.Node) -> list[str]:
    """The values a chain of views after ``end`` splits its output into (only consumer each)."""
    keys, cur = [], end
    while True:
        users = _users(cur)
        if len(users) != 1 or op_name(users[0]) not in KEEPS_VALUES:
            return keys
        cur = users[0]
        if op_name(cur) in RESHAPES:
            keys.append(cur.name)
