"""The rules of a weight-normed layer, ``W = g * v / ||v||`` (docs/rules.md "Weight norm"), and the
multiplier of a spectral-normed one, ``W / sigma(W)`` (:func:`spectral_norm_multiplier`, docs/rules.md
"Self-normalised weights").

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

A weight-normed readout never has its v zeroed (v / ||v|| of a zero v is 0/0: an earlier rule did that
and made NaNs). Where ``zero_readout`` asks for a zero readout, g starts at zero instead, under Adam and
SpectralSGD: their first step moves g by ±(lr x c) whatever its gradient's size, so W reaches its planned
slice norm in one step (measured: passes, the readout's output change +0.01 against +0.14 at its rule's
init). Under SGD it starts at its rule's init: with g = 0 the gradient of v is zero, and g's own gradient
``<G_s, v_s/|v_s|>`` reads the input along a random direction, so the readout's first steps reach W only
width^-1/2 as much as they should, and the layers below learn too little (measured: their updates shrink
to -0.41; docs/rules.md "Weight norm").
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Mapping, Union

from ..types import ParamRecord, Rule
from .readouts import is_readout
from .rules import ANCHORED_FORMS, check_form, effective_dims, gaussian_std, init_spectral_target

__all__ = ["C_NORM", "C_WN", "weight_norm_rules", "slice_norm", "spectral_norm_multiplier"]

C_NORM = "weight norm: g starts at ||v|| over every axis but dim, after v's init, so W = v (docs/rules.md \"Weight norm\")"
C_WN = ("weight norm's g = c * gain, c the planned slice norm of v: the gain's rule with Adam lr x c, SGD lr x c^2, "
        "spectral scale x c, eps / c (docs/rules.md \"Weight norm\")")
C_NOT_ZERO = ("weight-normed readout under SGD: its rule's init, not zero (a zero v is 0/0; a zero g stops v's "
              "gradient and reads its input along a random direction; docs/rules.md \"Weight norm\")")
C_ZERO_G = ("weight-normed readout: g starts at zero, v at its rule's init (a zero v is 0/0; Adam's and "
            "SpectralSGD's first step sets g to its planned size; docs/rules.md \"Weight norm\")")


def slice_norm(v: ParamRecord, dim: int, *, at: str = "model", init_gain: float = 1.0) -> float:
    """c: the Frobenius norm of one slice of ``v`` along ``dim`` (all of v for dim -1) under v's Gaussian
    rule, ``sigma * sqrt(slice size)``, at the model's shapes or the base's (``at="base"``)."""
    shape = v.shape if at == "model" else v.base_shape
    sigma = gaussian_std(effective_dims(v, at=at)) * (1.0 if v.input_space.value == "sparse" else init_gain)
    size = math.prod(shape) / (shape[dim] if 0 <= dim < len(shape) else 1)
    return sigma * math.sqrt(size)


def weight_norm_rules(records: list[ParamRecord], rules: Mapping[str, Rule], zero_readout: Union[bool, str],
                      init_gain: float = 1.0, init: str = "default") -> dict[str, Rule]:
    """``rules`` with every weight norm's g ruled from its v: init ``"norm"`` (``"keep"`` under
    ``init="keep"`` and the SP baseline, which keep every value), and under sptrace's own parametrization
    its lr, spectral scale, ε and decay carried through c. A g whose v is unclassified keeps its rule; an
    unclassified g whose v is planned still starts at ``||v||`` (else W would be the old norm times the new
    direction), at the plain lr. A zero readout zeroes g under Adam and SpectralSGD, under SGD it is not
    zeroed (the module's docstring)."""
    by_name = {r.name: r for r in records}
    out = dict(rules)
    for g in records:
        site = g.weight_norm
        if site is None or site.g != g.name or site.v not in by_name or not by_name[site.v].classified:
            continue
        v, rule = by_name[site.v], rules[g.name]
        if not g.classified:
            out[g.name] = _starts_at_norm(rule, init)
            continue
        out[g.name] = _g_rule(rule, v, site.dim, init, init_gain)
        if not (zero_readout and is_readout(v) and rule.parametrization == "sptrace" and init != "keep"):
            continue
        if v.selected_by is not None or v.normalized_by is not None:
            continue  # a router or a normalised readout keeps its rule's init, as without weight norm
        if rule.optimizer == "sgd":
            out[v.name] = replace(rules[v.name], citation=f"{rules[v.name].citation}; {C_NOT_ZERO}")
        else:
            cites = out[g.name].citation.replace(f"; {C_NORM}", "")
            out[g.name] = replace(out[g.name], init_kind="zeros", citation=f"{cites}; {C_ZERO_G}")
    return out


def _starts_at_norm(rule: Rule, init: str) -> Rule:
    """g's init: ||v|| after v's, unless every value is kept (``init="keep"``, the SP baseline)."""
    if init == "keep" or rule.parametrization == "sp":
        return rule
    return replace(rule, init_kind="norm", init_scale=1.0, citation=f"{rule.citation}; {C_NORM}")


def _g_rule(rule: Rule, v: ParamRecord, dim: int, init: str, init_gain: float) -> Rule:
    rule = _starts_at_norm(rule, init)
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


def spectral_norm_multiplier(record: ParamRecord, *, form: str = "absolute") -> float:
    """Forward multiplier for a spectral-normed layer, ``W / sigma(W)`` (docs/rules.md "Self-normalised
    weights"). The weight the layer uses has spectral norm 1 at every width, whatever W's init; the
    multiplier gives it back the spectral norm the rules' init has (:func:`init_spectral_target`, which
    takes the width limit where a fixed fan-in exceeds the fan-out). Absolute form: that norm; anchored
    forms: its ratio to the same at the base (or reference) shapes, exactly 1 there, so that standard
    practice at the anchor is untouched. A hidden layer's is 1 at every width, an input layer's grows
    like sqrt(width), a readout's shrinks like 1/sqrt(width)."""
    own = init_spectral_target(effective_dims(record))
    if check_form(form) in ANCHORED_FORMS:
        return own / init_spectral_target(effective_dims(record, at="base"))
    return own
