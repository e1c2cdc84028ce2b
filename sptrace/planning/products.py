"""The rules of a weight made as the entrywise product of two parameters, ``W = carrier * factor``
(graph/products.py; docs/rules.md "Products of parameters").

Condition 2 is asked of W, the operator the layer applies. The carrier has every entry of W, so its
record is W's and it keeps W's rule, init and lr: it *is* the planned weight as long as the factor is
Θ(1). The factor is planned as a width-free gain of W's entries: it starts at a width-free value (1 in
the absolute form, so that W is exactly the planned weight; in the anchored forms the library's values
at the base's or reference width, i.e. divided by the library's width ratio), and its lr makes its
update move W as the carrier's update does. With ``σ`` the carrier's planned std (W's entry size):

* Adam (sign-like steps, ±η per entry): the carrier's step changes an entry of W by ``η_C``, the
  factor's by ``η_F σ``; both align with the same gradient, so ``η_F = η_C / σ``. Against a plain
  gain's lr (Θ(1)) this is ``n^-1/2`` smaller for a hidden layer (``η_C = 1/n``, ``σ = n^-1/2``): a
  Θ(1) relative change of every entry, with the signs the gradient picks, adds up over the fan-in
  coherently where W's random entries add up like a random sum (the same √n as Adam's 1/d_in, §3.3).
  For an input layer or a readout it is the gain's rule. Adam's ε is the gradient's size times σ.
* SGD: the factor's gradient is the carrier's times σ (summed over the entries it repeats over), and
  its step moves W by ``η_F σ²`` times the carrier's gradient: ``η_F = η_C / σ²`` (the gain's lr
  ``∝ n`` for a hidden layer and a readout, as weight norm's g's c² in planning/weightnorm.py).
* SpectralSGD: the factor is a gain, so its step is the sign, of Adam's size ``η_C,Adam / σ``. Measured
  (base form): the factors pass; the carriers fail (their change of W grows +0.5), an open case: the
  carrier's gradient ``F ⊙ G`` carries the signs of a zero-mean library factor, and its orthogonalised
  step is not aligned with G (docs/rules.md "Products of parameters").

In the anchored forms only width ratios enter (σ's over its value at the base shapes, the lrs the
carrier's anchored ones), so at the base every factor is 1 and the plan is standard practice there.
A readout's carrier that starts at zero (planning/readouts.py ``spared_factors``) keeps σ its rule's.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Mapping, Optional

from ..types import ParamRecord, Rule, Space
from .library import library_std_ratio
from .rules import effective_dims, gaussian_std, snap

__all__ = ["C_PRODUCT", "product_rules", "is_product_gain"]

C_PRODUCT = ("a factor of W = carrier * factor: a width-free gain of W's entries (init 1, or the library's at the "
             "base width), its update moving W as the carrier's does: Adam lr = carrier's / sigma, SGD's / sigma^2, "
             "sigma the carrier's planned std (docs/rules.md \"Products of parameters\")")


def is_product_gain(record: ParamRecord) -> bool:
    """Whether ``record`` is the factor of a product of parameters (not its carrier)."""
    return record.product is not None and record.product.factor == record.name


def product_rules(records: list[ParamRecord], rules: Mapping[str, Rule], init: str, init_gain: float = 1.0,
                  library: Optional[Mapping[str, float]] = None) -> dict[str, Rule]:
    """``rules`` with every product's factor planned as a width-free gain of W's entries from its carrier's
    rule (the module's docstring), under sptrace's own parametrization; the baselines keep their rules, and
    ``init="keep"`` keeps the factor's values (its lr is still the gain's)."""
    by_name = {r.name: r for r in records}
    out = dict(rules)
    for f in records:
        if not is_product_gain(f) or f.product.carrier not in by_name:
            continue
        carrier, rule = by_name[f.product.carrier], rules[f.name]
        if not (f.classified and carrier.classified) or rule.parametrization != "sptrace":
            continue
        out[f.name] = _gain_rule(rule, rules[carrier.name], carrier, f, init, init_gain, (library or {}).get(f.name))
    return out


def _sigma(carrier: ParamRecord, rule: Rule, init_gain: float) -> float:
    """The carrier's planned entry size: its Gaussian rule's std (anchored: over the same at the base,
    where the init gain cancels)."""
    if rule.base_dims is not None:
        return gaussian_std(effective_dims(carrier)) / gaussian_std(effective_dims(carrier, at="base"))
    return gaussian_std(effective_dims(carrier)) * (1.0 if carrier.input_space is Space.SPARSE else init_gain)


def _gain_rule(rule: Rule, of: Rule, carrier: ParamRecord, factor: ParamRecord, init: str, init_gain: float,
               library_ratio: Optional[float]) -> Rule:
    sigma = _sigma(carrier, of, init_gain)
    lr, eps, scale, update = rule.lr_multiplier, rule.eps_multiplier, rule.spectral_scale, rule.update
    if rule.optimizer == "adam":
        lr, eps = of.lr_multiplier / sigma, of.eps_multiplier * sigma
    elif rule.optimizer == "sgd":
        lr = of.lr_multiplier / sigma ** 2
    else:  # SpectralSGD: a gain's sign step, Adam's size
        d = effective_dims(carrier)
        adam = 1.0 / d.d_in if of.base_dims is None else effective_dims(carrier, at="base").d_in / d.d_in
        lr, scale, update = 1.0, adam / sigma, "sign"
    kind, init_scale = _gain_init(rule, factor, init, library_ratio)
    return replace(rule, init_kind=kind, init_std=None, init_target=None, init_scale=init_scale,
                   lr_multiplier=snap(lr), weight_decay_multiplier=1.0 / snap(lr), eps_multiplier=snap(eps),
                   spectral_scale=snap(scale), update=update, citation=f"{rule.citation}; {C_PRODUCT}")


def _gain_init(rule: Rule, factor: ParamRecord, init: str, library_ratio: Optional[float]) -> tuple[str, float]:
    """(init kind, scale): kept under ``init="keep"``; anchored (``init="default"``): the library's values
    divided by their width ratio, so they are what the library draws at the base's width; else 1."""
    if init == "keep":
        return "keep", 1.0
    if rule.base_dims is not None and init == "default":
        ratio = library_std_ratio(factor) if library_ratio is None else library_ratio
        scale = snap(1.0 / ratio)
        return ("keep", 1.0) if scale == 1.0 else ("scale", scale)
    return "ones", 1.0

