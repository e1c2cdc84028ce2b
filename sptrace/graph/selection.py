"""Which parameters feed a discrete selection: a router's logits reaching ``topk``.

A readout (width fan-in, fixed fan-out) is zero-initialised by default (μP's recommendation,
docs/parametrize.md "Zero readouts"), except where its output decides something by ranking: an
MoE router's logits go to ``topk`` / ``argmax`` / ``sort``, and all-zero logits tie every expert.
This pass walks forward from each parameter's uses through parameter-free ops (activations,
softmax, views, arithmetic with activations) and stops at the next op that consumes a parameter:
a selection op reached on the way marks the parameter ``selected_by`` that node.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Optional

import torch.fx

from ..types import CapturedGraph, ParamRecord
from .ops import op_name

__all__ = ["SELECTIONS", "mark_selection"]

SELECTIONS = {"topk", "sort", "argsort", "argmax", "argmin", "kthvalue", "msort", "multinomial"}
_REDUCING_SELECTIONS = {"max", "min"}  # a selection only when they return indices (a dim is given)


def mark_selection(captured: CapturedGraph, records: list[ParamRecord]) -> list[ParamRecord]:
    """``records`` with ``selected_by`` set where a use's output reaches a selection op."""
    param_fed = {n for n in captured.graph.nodes if _consumes_parameter(n, captured)}
    by_name = {node.name: node for node in captured.graph.nodes}
    out = []
    for record in records:
        starts = [by_name[u.node] for u in record.uses if u.node in by_name]
        found = _first_selection(starts, param_fed)
        out.append(replace(record, selected_by=found) if found else record)
    return out


def _consumes_parameter(node: torch.fx.Node, captured: CapturedGraph) -> bool:
    return any(getattr(a, "name", None) in captured.param_nodes for a in node.all_input_nodes)


def _is_selection(node: torch.fx.Node) -> bool:
    if node.op != "call_function":
        return False
    name = op_name(node)
    return name in SELECTIONS or (name in _REDUCING_SELECTIONS and (len(node.args) > 1 or "dim" in node.kwargs))


def _first_selection(starts: list[torch.fx.Node], param_fed: set) -> Optional[str]:
    """Breadth-first from ``starts`` along users, not entering other parameters' ops."""
    seen = set(starts)
    frontier = list(starts)
    while frontier:
        following = []
        for node in frontier:
            for user in node.users:
                if user in seen:
                    continue
                seen.add(user)
                if _is_selection(user):
                    return user.name
                if user not in param_fed:
                    following.append(user)
        frontier = following
    return None
