"""Which parameter axes grow with width: the deciders stage 3 (classify) asks, one per mode.

* automatic: from the graph's axis labels (:mod:`sptrace.graph.axes`);
* base: from comparing each parameter's shape with the base model's (and the delta model's,
  mup's delta model), as mup's base shapes do;
* user overrides: ``width_overrides={name: axes}`` replaces the decision for a parameter.

A decider maps a parameter's facts to ``decide(axis) -> (is_width, reason)``.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..types import AxisLabels, ParamFacts, SptraceError

__all__ = ["deciders", "delta_shapes", "override", "check_overrides"]


def deciders(facts, nodes_of, labels: AxisLabels, base_shapes, shapes_in_delta, warnings):
    def automatic(fact):
        nodes = nodes_of.get(id(fact.tensor), [])

        def decide(axis):
            decisions = [labels.decide((n, axis)) for n in nodes] or [(True, "parameter not in graph")]
            return next((d for d in decisions if not d[0]), decisions[0])

        return decide

    if base_shapes is None:
        return automatic
    others = {f.name: [tuple(f.tensor.shape), *([shapes_in_delta[f.name]] if shapes_in_delta else [])]
              for f in facts if f.name in base_shapes}
    if all(shape == base_shapes[name][0] for name, shapes in others.items() for shape in shapes):
        warnings.append("the base model has exactly the model's shapes: width dims decided automatically; "
                        "every ratio to the base is 1 (standard parametrization); pass delta= (a model at "
                        "another width) to decide them as at every other width")
        return automatic

    def from_base(fact):
        base_shape = base_shapes[fact.name][0]
        shapes = others[fact.name]

        def decide(axis):
            grown = [s[axis] for s in shapes if s[axis] != base_shape[axis]]
            return ((True, f"base: {base_shape[axis]} -> {grown[0]}") if grown
                    else (False, f"same size {base_shape[axis]} in the base model"))

        return decide

    return from_base


def delta_shapes(delta, base_shapes) -> Optional[dict[str, tuple]]:
    """{name: shape} of the delta model, checked against the base's parameters."""
    if delta is None:
        return None
    if base_shapes is None:
        raise SptraceError("delta= only tells width dims apart from the base's: pass base= as well")
    if not isinstance(delta, torch.nn.Module):
        raise SptraceError(f"delta must be a torch.nn.Module of the same architecture, got {type(delta).__name__}")
    shapes = {n: tuple(p.shape) for n, p in delta.named_parameters(remove_duplicate=False)}
    for name, (b_shape, _) in base_shapes.items():
        if name not in shapes:
            raise SptraceError(f"parameter {name!r} has no counterpart in the delta model; delta must have the same "
                               "architecture")
        if len(shapes[name]) != len(b_shape):
            raise SptraceError(f"parameter {name!r} has shape {b_shape} in the base but {shapes[name]} in the delta "
                               "model: ranks differ")
    return shapes


def override(fact: ParamFacts, overrides, decide):
    key = next(n for n in fact.aliases if n in overrides)
    axes = {a % max(fact.tensor.dim(), 1) for a in overrides[key]}
    bad = [a for a in overrides[key] if not -fact.tensor.dim() <= a < fact.tensor.dim()]
    if bad:
        raise SptraceError(f"width_overrides[{key!r}] names axes {bad} but the parameter has shape {tuple(fact.tensor.shape)}")
    return lambda axis: (axis in axes, "user override")


def check_overrides(overrides, records):
    if not overrides:
        return
    known = {a for r in records for a in r.aliases}
    unknown = [n for n in overrides if n not in known]
    if unknown:
        raise SptraceError(f"width_overrides names unknown parameters: {', '.join(unknown)}")
