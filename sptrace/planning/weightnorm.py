"""The rules of a weight-normed layer, ``W = g * v / ||v||`` (docs/rules.md "Weight norm").

``v`` has W's axes and is planned as the layer's weight (rules.py, from its own record). ``g`` holds
one norm per slice of ``v`` along ``dim`` (graph/weightnorm.py). It starts at ``||v||`` after v's init,
so that W equals the planned weight exactly (init ``"norm"``), and its value is then the planned
weight's slice norm ``c``. Write ``g = c * gamma``: ``gamma`` is a gain of the slices (Θ(1) entries, a
diagonal operator, the rule its own record gets), and a relative change of g is what moves W by a
multiple of itself, ``ΔW = (Δg / g) W`` slice by slice. So g's rule is gamma's with c carried through,
as a forward constant 1/c would be (docs/rules.md "Constants in the forward"): Adam's lr x c, SGD's x
c², SpectralSGD's scale x c, Adam's ε / c (g's gradient is gamma's over c), the decay 1 / lr
multiplier. c's width dependence is read from v's rule: the Gaussian std of v's rule times the square
root of a slice's size (anchored forms: its ratio to the base's).

A weight-normed readout starts at its rule's init, not at zero, whatever ``zero_readout`` says: a zero v
is 0/0, and a zero g makes v's gradient ``(g / ||v||) P G`` zero, so the readout can only scale a fixed
random direction until g grows (measured: its output change grows like width^+2.3 under Adam and the
whole net's update like width^+2.5 under SGD; docs/rules.md "Weight norm").
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Mapping, Union

from ..types import ParamRecord, Rule
from .readouts import is_readout
from .rules import effective_dims, gaussian_std

__all__ = ["C_NORM", "C_WN", "weight_norm_rules", "slice_norm"]

C_NORM = "weight norm: g starts at ||v|| over every axis but dim, after v's init, so W = v (docs/rules.md \"Weight norm\")"
C_WN = ("weight norm's g = c * gain, c the planned slice norm of v: the gain's rule with Adam lr x c, SGD lr x c^2, "
        "spectral scale x c, eps / c (docs/rules.md \"Weight norm\")")
C_NOT_ZERO = ("weight-normed readout: its rule's init, not zero (a zero v is 0/0, a zero g stops v's gradient; "
              "docs/rules.md \"Weight norm\")")


def slice_norm(v: ParamRecord, dim: int, *, at: str = "model", init_gain: float = 1.0) -> float:
    """c: the Frobenius norm of one slice of ``v`` along ``dim`` (all of v for dim -1) under v's Gaussian
    rule, ``sigma * sqrt(slice size)``, at the model's shapes or the base's (``at="base"``)."""
    shape = v.shape if at == "model" else v.base_shape
    sigma = gaussian_std(effective_dims(v, at=at)) * (1.0 if v.input_space.value == "sparse" else init_gain)
    size = math.prod(shape) / (shape[dim] if 0 <= dim < len(shape) else 1)
    return sigma * math.sqrt(size)


def weight_norm_rules(records: list[ParamRecord], rules: Mapping[str, Rule], zero_readout: Union[bool, str],
                      init_gain: float = 1.0, init: str = "default") -> dict[str, Rule]:
    """``rules`` with every weight norm's g ruled from its v: init ``"norm"`` (``"keep"`` under ``init="keep"``
    and the SP baseline, which keep every value), and under sptrace's own parametrization its lr, spectral scale, ε and decay carried through
    c. A g whose v is unclassified keeps its rule; a weight-normed readout's v says why it is not zero."""
    by_name = {r.name: r for r in records}
    out = dict(rules)
    for g in records:
        site = g.weight_norm
        if site is None or site.g != g.name or not g.classified or site.v not in by_name:
            continue
        v, rule = by_name[site.v], rules[g.name]
        if not v.classified:
            continue
        out[g.name] = _g_rule(rule, v, site.dim, init != "keep", init_gain)
        if zero_readout and is_readout(v) and rules[v.name].parametrization == "sptrace":
            out[v.name] = replace(rules[v.name], citation=f"{rules[v.name].citation}; {C_NOT_ZERO}")
    return out


def _g_rule(rule: Rule, v: ParamRecord, dim: int, initialise: bool, init_gain: float) -> Rule:
    if initialise and rule.parametrization != "sp":
        rule = replace(rule, init_kind="norm", init_scale=1.0, citation=f"{rule.citation}; {C_NORM}")
    if rule.parametrization != "sptrace":
        return rule
    c = slice_norm(v, dim, init_gain=init_gain)
    if rule.base_dims is not None:  # anchored: only c's width dependence
        c /= slice_norm(v, dim, at="base", init_gain=init_gain)
    power = {"sgd": 2, "adam": 1}.get(rule.optimizer, 0)
    lr = rule.lr_multiplier * c ** power
    return replace(rule, lr_multiplier=lr, weight_decay_multiplier=1.0 / lr,
                   spectral_scale=rule.spectral_scale * c if rule.optimizer == "spectral" else rule.spectral_scale,
                   eps_multiplier=rule.eps_multiplier / c if rule.optimizer == "adam" else rule.eps_multiplier,
                   citation=f"{rule.citation}; {C_WN}")
