"""What the coord check measures of each parameter: the natural spectral norm (the paper's Condition 2)
of the operator the forward applies, ``W`` as the graph uses it.

That is W itself for most parameters; ``c W`` where a constant of W's width multiplies its output
(docs/rules.md "Constants in the forward"); the width columns alone of a layer whose fixed-size input
columns carry their own rule ("Column blocks"); for a weight norm's g the operator ``g v/|v|`` it scales
("Weight norm"); for each factor of ``W = carrier * factor`` what it does to W ("Products of
parameters"). coord.py records these per step; this module says what each one is.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from torch import Tensor

from ..spectral import default_param_axes, natural_spectral_norm
from .recorder import rms

__all__ = ["parameter_spec", "natural_norm", "judge", "paired_specs", "matrix_dims"]


def parameter_spec(name: str, p: Tensor, param_axes: Optional[Mapping[str, Any]]) -> Optional[dict[str, Any]]:
    """Resolve metadata for one parameter: tuple ``(fan_in, fan_out[, input_dense[, output_dense]])``,
    a dict with those keys (plus ``groups``), an object with those attributes (a ParamRecord), or
    ``None`` in the mapping to skip the parameter."""
    if param_axes is not None and name in param_axes:
        spec = param_axes[name]
        if spec is None:
            return None
        if isinstance(spec, Mapping):
            d = dict(spec)
        elif isinstance(spec, (tuple, list)):
            keys = ("fan_in_axes", "fan_out_axes", "input_dense", "output_dense", "groups")
            d = dict(zip(keys, spec))
        else:  # ParamRecord-like object
            groups, per_channel = _groups_at(spec, p)
            d = {"fan_in_axes": spec.fan_in_axes, "fan_out_axes": spec.fan_out_axes, "groups": groups,
                 "blocks_grow": per_channel}
            space = getattr(spec, "input_space", None)
            if space is not None:
                d["input_dense"] = str(getattr(space, "value", space)) == "dense"
            space = getattr(spec, "output_space", None)
            if space is not None:
                d["output_dense"] = str(getattr(space, "value", space)) == "dense"
            constant = getattr(spec, "forward_constant", None)
            if constant is not None:  # the operator is c W (docs/rules.md "Constants in the forward")
                d["constant"] = (constant.axis, constant.split, constant.power, constant.size)
            if getattr(spec, "column_blocks", ()):
                d["column_blocks"] = spec.column_blocks  # positions at each run's width: _width_columns
    else:
        fi, fo, dense = default_param_axes(p.shape)
        d = {"fan_in_axes": fi, "fan_out_axes": fo, "input_dense": dense}
    d.setdefault("input_dense", True)
    d.setdefault("output_dense", True)
    d.setdefault("groups", 1)
    return d


def natural_norm(W: Tensor, spec: Mapping[str, Any], method: str) -> float:
    """The natural spectral norm of the operator the forward applies: ``c W`` where a constant
    ``c = n^p`` of W's own width multiplies its output (``spec["constant"] = (axis, split, p)``)."""
    if not bool(torch.isfinite(W).all()):  # a diverged run: judged as invalid, not a crash in the SVD
        return math.nan
    axis, split, power, size = (tuple(spec.get("constant") or (0, 1, 0.0)) + (None,))[:4]
    c = size ** power if axis < 0 else (W.shape[axis] / split) ** power if W.dim() else 1.0  # axis -1: an l2 norm's
    if spec.get("column_blocks"):  # a hidden layer's own columns (docs/rules.md "Column blocks")
        W = torch.cat([W[:, a:b] for a, b in _width_columns(spec["column_blocks"], W.shape[1])], 1)
    blocks = natural_spectral_norm(W, spec["fan_in_axes"], spec["fan_out_axes"], bool(spec["input_dense"]),
                                   bool(spec["output_dense"]), groups=int(spec["groups"]), method=method, reduce=None)
    if spec.get("blocks_grow"):  # a typical block: the max of more and more blocks is their tail (_groups_at)
        return c * float(blocks.square().mean().sqrt())
    return c * float(blocks.amax() if blocks.dim() else blocks)


def _width_columns(blocks, columns: int) -> list[tuple[int, int]]:
    """The width columns' slices at a run's width: the fixed blocks keep their size, the width
    ones share the rest in the traced proportions."""
    fixed = sum(stop - start for start, stop, width in blocks if not width)
    traced = sum(stop - start for start, stop, width in blocks if width)
    out, at = [], 0
    for start, stop, width in blocks:
        size = (stop - start) * (columns - fixed) // traced if width else stop - start
        if width:
            out.append((at, at + size))
        at += size
    return out


def judge(name: str, spec: Mapping[str, Any], W0: Mapping[str, Tensor], now: Mapping[str, Tensor],
            method: str) -> Callable[[Tensor, bool], float]:
    """What is judged of a parameter's value (``True``: at init) or change: its natural spectral norm; for
    a weight norm's g (``spec["weight_norm"] = (v's name, dim)``) the operator it scales, ``W0 = g0 v0/|v0|``
    on v's axes, at init, and ``W0`` times the RMS relative change of its slices, ``rms(Δg) / rms(g0)``,
    for a change: what g's update does to W with every slice scaled alike (the RMS over the slices, not
    their max, which grows with their count under SGD, as a depthwise conv's blocks). A g that starts at
    zero (a zero readout) has its change judged as the operator it adds, ``Δg v/|v|`` with v now
    (docs/rules.md "Weight norm")."""
    found = spec.get("weight_norm")
    if spec.get("product") is not None:  # W = carrier * factor: each judged by what it does to W (docs/rules.md)
        carrier, factor, axes = spec["product"]
        at = lambda n, at_init: W0[n] if at_init or rms(W0[n]) > 0 else now[n]  # a zero start: the other now
        if name == carrier:
            return lambda value, at_init: natural_norm(value * _spread(at(factor, at_init), axes, value), spec, method)
        return lambda value, at_init: natural_norm(_spread(value, axes, W0[carrier]) * at(carrier, at_init), spec, method)
    if found is None:
        return lambda value, at_init: natural_norm(value, spec, method)
    v, dim = found
    operator, start = natural_norm(torch._weight_norm(W0[v], W0[name], dim), spec, method), rms(W0[name])

    def judged(value: Tensor, at_init: bool) -> float:
        if at_init:
            return operator
        if start > 0:
            return operator * rms(value) / start
        return natural_norm(torch._weight_norm(now[v], value, dim), spec, method)

    return judged


def _spread(factor: Tensor, axes: Sequence[int], like: Tensor) -> Tensor:
    """A product's factor as the forward multiplies it: its axis j on ``like``'s axis ``axes[j]``."""
    shape = [1] * like.dim()
    for j, a in enumerate(axes):
        shape[a] = factor.shape[j]
    return factor.reshape(shape)


def paired_specs(specs: dict[str, Optional[dict]], param_axes: Optional[Mapping[str, Any]]) -> dict:
    """A weight norm's g judged by the operator it scales (:func:`judge`): v's axes, and the pair; both
    factors of a product of parameters by what they do to it: the carrier's axes, and the pair."""
    for name, spec in list(specs.items()):
        record = (param_axes or {}).get(name)
        site, product = getattr(record, "weight_norm", None), getattr(record, "product", None)
        if spec is not None and site is not None and record.name == site.g and specs.get(site.v) is not None:
            specs[name] = {**specs[site.v], "weight_norm": (site.v, site.dim)}
        elif spec is not None and product is not None and specs.get(product.carrier) and name in (product.carrier,
                                                                                                   product.factor):
            specs[name] = {**specs[product.carrier], "product": (product.carrier, product.factor, product.axes)}
    return specs


def _groups_at(record: Any, p: Tensor) -> tuple[int, bool]:
    """The group count of ``record`` (traced at one width) at ``p``'s width, and whether it grows.
    Groups of one input channel each (depthwise) grow with the channels, as in the plan
    (:attr:`sptrace.types.ParamRecord.groups_grow`); a fixed count (ResNeXt's 32, a stack of
    experts) stays. Kept at the traced count, a depthwise conv 4x wider was measured
    in blocks of 4 channels, whose natural norm falls with width (ConvNeXt's conv_dw update slope
    -0.33 under Adam, nat@0 -0.45). Where the blocks grow in number they are judged by their RMS, not
    their max: the zoo CNN's per-channel SGD updates have a flat median (0.00077 / 0.00071 at widths
    64 / 512) and a max over the channels that grows with their count (0.0029 / 0.0068, slope +0.41),
    the tail of one distribution sampled more often, whatever the rule (docs/validation.md)."""
    groups = getattr(record, "groups", 1)
    if getattr(record, "groups_grow", False):
        return groups * p.shape[0] // record.shape[0], True
    return groups, False


def matrix_dims(p: Tensor, spec: Mapping[str, Any]) -> list[int]:
    """``[fan_out, fan_in]`` of ``p`` seen as a matrix (one group's block)."""
    groups = int(spec["groups"])
    size = lambda axes: math.prod(p.shape[a] // (groups if a % p.dim() == 0 else 1) for a in axes)
    return [size(spec["fan_out_axes"]), size(spec["fan_in_axes"])]
