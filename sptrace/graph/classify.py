"""Stage 3b: one ParamRecord per distinct parameter tensor, from its uses and its axes' widths.

The rules in words (docs/classification.md has the table):
* the first use in graph order is the primary one; later uses with other axes are secondary
  (a tied embedding used again as a readout);
* kind counts how many of fan-in / fan-out hold a width axis (matrix 2, vector 1, scalar 0);
* a parameter added to activations is a bias when all its non-singleton axes are width, an
  embedding of a one-hot position when some are fixed (those become its sparse fan-in).
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable

from ..types import NEVER_USED, DimDecision, Kind, ParamFacts, ParamRecord, ParamUse, Role, Space

Decide = Callable[[int], tuple[bool, str]]  # axis -> (is_width, reason)


def classify(facts: ParamFacts, decide: Decide, base_shape=None, base_groups=None) -> ParamRecord:
    shape = tuple(facts.tensor.shape)
    dims = tuple(DimDecision(a, shape[a], *decide(a)) for a in range(len(shape)))
    width = {d.axis for d in dims if d.width}
    uses = tuple(_counted(_with_role(_settle_additive(u, shape, width), width), width) for u in facts.uses)
    base = dict(
        name=facts.name, aliases=facts.aliases, shape=shape, dtype=str(facts.tensor.dtype).replace("torch.", ""),
        requires_grad=facts.tensor.requires_grad, uses=uses, dims=dims, base_shape=base_shape,
        base_groups=base_groups,
    )
    problem = facts.problem or (None if uses else NEVER_USED) or _mixed_along_width(uses, shape, width)
    if problem:
        return ParamRecord(
            kind=Kind.UNCLASSIFIED, role=Role.UNKNOWN, input_space=Space.DENSE, output_space=Space.DENSE,
            fan_in_axes=(), fan_out_axes=(), groups=1, problem=problem, **base,
        )
    primary = uses[0]
    secondary = tuple(u for u in uses[1:] if _axes(u) != _axes(primary))
    fan_in_width = any(a in width for a in primary.fan_in_axes)
    fan_out_width = any(a in width for a in primary.fan_out_axes)
    kind = [Kind.SCALAR, Kind.VECTOR, Kind.MATRIX][fan_in_width + fan_out_width]
    return ParamRecord(
        kind=kind, role=primary.role, input_space=primary.input_space,
        output_space=Space.DENSE, fan_in_axes=primary.fan_in_axes, fan_out_axes=primary.fan_out_axes,
        groups=primary.groups, secondary_uses=secondary,
        forward_constant=primary.constant, **base,
    )


def _counted(use: ParamUse, width: set[int]) -> ParamUse:
    """``use`` with its constant only where the constant's axis grows with width (docs/rules.md)."""
    return use if use.constant is None or use.constant.axis in width else replace(use, constant=None)


def _mixed_along_width(uses, shape, width: set[int]):
    """A softmax / cumsum over a parameter's axis keeps the other axes intact (a width axis passes
    through), but over a width axis each entry of its output depends on the width: say so."""
    for use in uses:
        for axis, node in use.mixed_axes:
            if axis in width:
                return (f"node {node!r} ({', '.join(use.via)}) combines its entries along axis {axis} (size "
                        f"{shape[axis]}), which grows with width, before its use at node {use.node!r}: the result's "
                        "scale depends on width; sptrace's rules hold when that axis is a fixed count (pass "
                        "width_overrides if it is)")
    return None


def _axes(use: ParamUse):
    return (use.fan_in_axes, use.fan_out_axes)


def _settle_additive(use: ParamUse, shape, width: set[int]) -> ParamUse:
    """Fixed non-singleton axes of an added parameter index positions: it is an embedding."""
    if use.role is not Role.BIAS or use.op in ("linear", "addmm", "baddbmm", "addmv") or not use.fan_out_axes:
        return use
    index_axes = tuple(a for a in use.fan_out_axes if a not in width)
    if not index_axes or len(index_axes) == len(use.fan_out_axes):
        return use
    return replace(
        use, role=Role.EMBEDDING, fan_in_axes=index_axes,
        fan_out_axes=tuple(a for a in use.fan_out_axes if a in width),
    )


def _role(use: ParamUse, fan_in_width: bool, fan_out_width: bool) -> Role:
    """A use's role; without a width axis it is a scalar, except a bias: a fixed-size bias (a
    readout's) is still added to its layer's output, and its library init shrinks with that layer's
    width-sized fan-in (PyTorch's U(±1/sqrt(fan_in))), so it needs a bias's rule (Appendix D)."""
    if use.role is not Role.UNKNOWN:
        keeps = fan_in_width or fan_out_width or use.role in (Role.SCALAR, Role.BIAS)
        return use.role if keeps else Role.SCALAR
    if use.input_space is Space.SPARSE:
        return Role.EMBEDDING
    return {
        (True, True): Role.HIDDEN,
        (False, True): Role.INPUT,
        (True, False): Role.READOUT,
        (False, False): Role.FIXED,
    }[(fan_in_width, fan_out_width)]


def _with_role(use: ParamUse, width: set[int]) -> ParamUse:
    fan_in_width = any(a in width for a in use.fan_in_axes)
    fan_out_width = any(a in width for a in use.fan_out_axes)
    return replace(use, role=_role(use, fan_in_width, fan_out_width))
