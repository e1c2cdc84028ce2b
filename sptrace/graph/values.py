"""What a value in the graph is, read off the ops that make it: a one-element constant, the l2 norm of
another value, a unit vector.

Three later stages ask these questions of the same graph: the forward constants (a use's output times
``n ** p``, graph/constants.py), the gains on an l2-normalised activation (graph/l2norm.py) and the
attention and product sites (a scale on the logits; a cosine, whose operands are unit vectors, needs no
1/width: graph/attention.py). One answer each, here, so that the stages cannot disagree about what a
constant or a norm is.
"""
from __future__ import annotations

import numbers
from typing import Optional

import torch.fx as fx

from .capture import SCALAR_VALUE
from .ops import op_name

__all__ = ["KEEPS_VALUES", "scalar_constant", "l2_norm_of", "unit_vector_of"]

# ops that keep every value of their one tensor input (views, casts, copies)
KEEPS_VALUES = {
    "view", "reshape", "_unsafe_view", "to", "_to_copy", "clone", "contiguous", "alias", "detach",
    "lift_fresh", "lift_fresh_copy", "type_as", "expand", "unsqueeze", "squeeze", "flatten", "transpose", "permute", "t",
}
NORM_OPS = {"linalg_vector_norm", "norm"}
# ops between a norm and the division that keep it the norm up to O(eps): clamps, + eps, broadcasts
KEEPS_NORM = KEEPS_VALUES | {"clamp_min", "clamp", "add", "expand_as"}


def scalar_constant(value) -> Optional[float]:
    """A Python number, or a one-element constant whose value capture recorded (through casts and
    copies), or ``full([], v)`` / ``scalar_tensor(v)``; None otherwise."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    while isinstance(value, fx.Node):
        if SCALAR_VALUE in value.meta:
            return value.meta[SCALAR_VALUE]
        name = op_name(value)
        if name in ("full", "scalar_tensor") and value.args:
            size, fill = (value.args[0], value.args[1]) if name == "full" and len(value.args) > 1 else ((), value.args[0])
            ok = isinstance(fill, numbers.Real) and not isinstance(fill, bool) and all(s == 1 for s in size)
            return float(fill) if ok else None
        if name not in KEEPS_VALUES or not value.args:
            return None
        value = value.args[0]
    return None


def l2_norm_of(value) -> Optional[tuple[fx.Node, list[int]]]:
    """(Y, dims) where ``value`` is the l2 norm of Y over dims, up to clamps, + eps and broadcasts:
    ``linalg_vector_norm`` / ``norm`` with p = 2, or written out as the square root of a sum of squares
    (HF CLIP's ``pow(sum(pow(x, 2)), 0.5)``). A p-norm of another p, or a mean (an RMS), is not."""
    value = _through(value, KEEPS_NORM)
    if not isinstance(value, fx.Node) or not isinstance(value.args[0] if value.args else None, fx.Node):
        return None
    name = op_name(value)
    if name in NORM_OPS:
        args = list(value.args) + [None] * 3
        p = args[1] if args[1] is not None else 2
        return _over(value.args[0], args[2]) if isinstance(p, (int, float)) and float(p) == 2.0 else None
    if name == "sqrt" or (name == "pow" and len(value.args) == 2 and scalar_constant(value.args[1]) == 0.5):
        return _sum_of_squares(_through(value.args[0], KEEPS_NORM))
    return None


def _sum_of_squares(value) -> Optional[tuple[fx.Node, list[int]]]:
    if not isinstance(value, fx.Node) or op_name(value) != "sum" or not isinstance(value.args[0], fx.Node):
        return None
    square = value.args[0]
    name, args = op_name(square), square.args
    if name == "pow" and len(args) == 2 and scalar_constant(args[1]) == 2.0 and isinstance(args[0], fx.Node):
        return _over(args[0], value.args[1] if len(value.args) > 1 else None)
    if name == "mul" and len(args) == 2 and isinstance(args[0], fx.Node) and _same_values(args[0], args[1]):
        return _over(args[0], value.args[1] if len(value.args) > 1 else None)
    return None


def _over(src: fx.Node, dims) -> tuple[fx.Node, list[int]]:
    """(src, the reduced dims as non-negative ints; all of them where none are named)."""
    rank = len(src.meta["val"].shape) if hasattr(src.meta.get("val"), "shape") else 0
    dims = list(range(rank)) if dims is None or dims == [] else [dims] if isinstance(dims, int) else list(dims)
    return src, [d % max(rank, 1) for d in dims]


def _through(value, ops: set):
    """``value`` back through ``ops`` (each read as its first argument); ``+`` only of a constant (an eps)."""
    while isinstance(value, fx.Node) and op_name(value) in ops and value.args:
        if op_name(value) == "add" and not (len(value.args) == 2 and scalar_constant(value.args[1]) is not None):
            return value
        value = value.args[0]
    return value


def unit_vector_of(value) -> Optional[tuple[fx.Node, list[int]]]:
    """(Y, dims) where ``value`` is, up to views, ``Y / ||Y||`` over dims (``F.normalize``,
    ``x / x.norm(dim=-1, keepdim=True)``); None otherwise."""
    value = _through(value, KEEPS_VALUES)
    if not isinstance(value, fx.Node) or op_name(value) != "div" or len(value.args) != 2:
        return None
    found = l2_norm_of(value.args[1])
    return found if found is not None and _same_values(value.args[0], found[0]) else None


def _same_values(a, b) -> bool:
    """``a`` and ``b`` are one value up to views and casts."""
    return _through(a, KEEPS_VALUES) is _through(b, KEEPS_VALUES)
