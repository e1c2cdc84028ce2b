"""Which parameters feed a discrete selection (a router's logits reaching ``topk``) or a normalisation.

A readout (width fan-in, fixed fan-out) is zero-initialised by default (μP's recommendation,
docs/parametrize.md "Zero readouts"), except where its output decides something by ranking: an
MoE router's logits go to ``topk`` / ``argmax`` / ``sort``, and all-zero logits tie every expert.
This pass walks forward from each parameter's uses through parameter-free ops (activations,
softmax, views, arithmetic with activations) and stops at the next op that consumes a parameter:
a selection op reached on the way marks the parameter ``selected_by`` that node.

A readout whose output is normalised before anything else is added to it (CLIP's projections,
``z / z.norm(dim=-1, keepdim=True)``; ``F.normalize``; a LayerNorm or BatchNorm on a projection head)
cannot start at zero either: the normalised value of an all-zero output is 0/0 (NaN), or, with an
epsilon, zero with a gradient scaled by 1/sqrt(eps). The same walk, stopping also where another
activation joins the value (a residual add: the sum is no longer zero at init), marks such a
readout ``normalized_by`` the normalising node.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Optional

import torch.fx

from ..types import CapturedGraph, ParamRecord, Role
from .capture import computed_from_inputs
from .ops import NORMS_CHANNEL, NORMS_LAST, REDUCTIONS, op_name

__all__ = ["SELECTIONS", "mark_selection"]

SELECTIONS = {"topk", "sort", "argsort", "argmax", "argmin", "kthvalue", "msort", "multinomial"}
_REDUCING_SELECTIONS = {"max", "min"}  # a selection only when they return indices (a dim is given)


def mark_selection(captured: CapturedGraph, records: list[ParamRecord]) -> list[ParamRecord]:
    """``records`` with ``selected_by`` set where a use's output reaches a selection op."""
    param_fed = {n for n in captured.graph.nodes if _consumes_parameter(n, captured)}
    by_name = {node.name: node for node in captured.graph.nodes}
    data = computed_from_inputs(captured)
    out = []
    for record in records:
        starts = [by_name[u.node] for u in record.uses if u.node in by_name]
        found = _first_selection(starts, param_fed)
        record = replace(record, selected_by=found) if found else record
        normalised = _own_normalisation(starts) or _first_normalisation(starts, param_fed, data) \
            if record.role is Role.READOUT else None
        out.append(replace(record, normalized_by=normalised) if normalised else record)
    return out


def _own_normalisation(starts: list[torch.fx.Node]) -> Optional[str]:
    """A use that normalises the parameter itself (cosine similarity with learned prototypes)."""
    return next((node.name for node in starts if node.op == "call_function" and op_name(node) in _SELF_NORMALISING),
                None)


def _consumes_parameter(node: torch.fx.Node, captured: CapturedGraph) -> bool:
    return any(getattr(a, "name", None) in captured.param_nodes for a in node.all_input_nodes)


def _is_selection(node: torch.fx.Node) -> bool:
    if node.op != "call_function":
        return False
    name = op_name(node)
    return name in SELECTIONS or (name in _REDUCING_SELECTIONS and (len(node.args) > 1 or "dim" in node.kwargs))


def _first_selection(starts: list[torch.fx.Node], param_fed: set) -> Optional[str]:
    """Breadth-first from ``starts`` along users, not entering other parameters' ops."""
    return _first_reached(starts, lambda user, node: _is_selection(user), lambda user, on: user not in param_fed)


def _first_reached(starts: list[torch.fx.Node], is_target, passes) -> Optional[str]:
    """The first node, breadth-first along users from ``starts``, that ``is_target(user, node)`` (the
    value ``node`` reaching it); the walk goes on through the users that ``passes(user, on)`` (``on``:
    the nodes walked so far)."""
    on = set(starts)
    frontier = list(starts)
    while frontier:
        following = []
        for node in frontier:
            for user in node.users:
                if user in on:
                    continue
                if is_target(user, node):
                    return user.name
                if passes(user, on):
                    on.add(user)
                    following.append(user)
        frontier = following
    return None


_NORMALISING = NORMS_LAST | NORMS_CHANNEL
_DIVIDING = {"div", "mul"}  # x / f(x), x * rsqrt(f(x))
_SELF_NORMALISING = {"cosine_similarity"}  # normalises each input along the axis it contracts
_DENOMINATOR_DEPTH = 8  # ops between x and the reduction of it that divides it (F.normalize: 3)


def _first_normalisation(starts: list[torch.fx.Node], param_fed: set, data: set) -> Optional[str]:
    """Breadth-first from ``starts`` along users through parameter-free ops that mix in no other
    activation, to a node that normalises the value (module docstring)."""
    return _first_reached(starts, lambda user, node: _normalises(user, node, param_fed),
                          lambda user, on: user not in param_fed and not any(a.name in data and a not in on
                                                                             for a in user.all_input_nodes))


def _normalises(user: torch.fx.Node, value: torch.fx.Node, param_fed: set) -> bool:
    """``user`` divides ``value`` by a statistic of it: a norm layer's input, or ``value / g(value)`` /
    ``value * g(value)`` with a reduction of ``value`` in ``g``."""
    if user.op != "call_function":
        return False
    name = op_name(user)
    if name in _SELF_NORMALISING:
        return True
    if name in _NORMALISING:
        return bool(user.args) and user.args[0] is value
    if name not in _DIVIDING:
        return False
    others = [a for a in user.all_input_nodes if a is not value]
    return any(_reduces(other, value, param_fed, _DENOMINATOR_DEPTH, False) for other in others)


def _reduces(node: torch.fx.Node, value: torch.fx.Node, param_fed: set, depth: int, reduced: bool) -> bool:
    """``node`` is computed from ``value`` through parameter-free ops, one of them a reduction."""
    if node is value:
        return reduced
    if depth == 0 or node.op != "call_function" or node in param_fed:
        return False
    reduced = reduced or op_name(node) in REDUCTIONS
    return any(_reduces(a, value, param_fed, depth - 1, reduced) for a in node.all_input_nodes)
