"""How a library's own init scales with width: what the base form divides out.

The base form (docs/derivations.md §6) keeps the library's init at the base shapes and scales it
by the rule's width ratio over the library's own width ratio. The library's ratio is read from a
law (how its default std depends on a weight's shape), from a number, or from a measured ratio per
parameter (:func:`sptrace.parametrize` with ``library_init="auto"`` matches the model's tensors
against the base's, using :func:`library_candidates`).
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

from ..types import ParamRecord, Role, Space, SptraceError

__all__ = ["LIBRARY_LAWS", "library_std_ratio", "library_ratios", "library_candidates"]

# How a library's default init std depends on a weight's shape (``torch.nn.init`` names): the
# candidates that the base form matches against a real base model's tensors.
LIBRARY_LAWS = ("torch", "fan_out", "fan_avg", "constant")


def library_std_ratio(record: ParamRecord, library_init: Any = "torch") -> float:
    """std(library default at the model shape) / std(library default at the base shape).

    ``"torch"``: PyTorch's defaults: weights of ≥2 dims (Linear, Conv, ConvTranspose, MHA) have
    std ∝ 1/sqrt(fan_in), fan_in = shape[1] * prod(shape[2:])
    (``torch.nn.init._calculate_fan_in_and_fan_out``); embedding tables (N(0,1)), norm weights (1)
    and 1-D tensors are width-independent. ``"fan_out"``: kaiming ``mode="fan_out"`` (torchvision's
    and timm's ResNets and MobileNets), fan_out = shape[0] * prod(shape[2:]). ``"fan_avg"``: xavier,
    (fan_in + fan_out) / 2 (timm's MLP-Mixer). ``"constant"``: every std is width-independent
    (HF models: N(0, initializer_range)). A float: that ratio.
    """
    if isinstance(library_init, (int, float)):
        return float(library_init)
    if library_init not in LIBRARY_LAWS:
        raise SptraceError(f"library_init must be one of {', '.join(LIBRARY_LAWS)} or a float, got {library_init!r}")
    if library_init == "constant":
        return 1.0
    if record.base_shape is None or len(record.shape) < 2 or record.input_space is Space.SPARSE:
        return 1.0
    if record.role in (Role.BIAS, Role.GAIN, Role.SCALAR, Role.EMBEDDING):
        return 1.0
    fan = _LAW_FANS[library_init]
    return math.sqrt(fan(record.base_shape) / fan(record.shape))


def _fan_in(shape) -> int:
    return shape[1] * math.prod(shape[2:])


def _fan_out(shape) -> int:
    return shape[0] * math.prod(shape[2:])


_LAW_FANS = {
    "torch": _fan_in,
    "fan_out": _fan_out,
    "fan_avg": lambda shape: (_fan_in(shape) + _fan_out(shape)) / 2,
}


def _paired_weights(records: Sequence[ParamRecord]) -> dict[str, ParamRecord]:
    """bias name -> the weight consumed by the same graph node (linear / conv / addmm)."""
    by_node: dict[str, ParamRecord] = {}
    for r in records:
        if r.classified and r.role is not Role.BIAS:
            for u in r.uses:
                by_node.setdefault(u.node, r)
    return {
        r.name: by_node[r.uses[0].node]
        for r in records
        if r.classified and r.role is Role.BIAS and r.uses and r.uses[0].node in by_node
    }


def _ratio(record: ParamRecord, library_init: Any, paired: Mapping[str, ParamRecord]) -> Optional[float]:
    """std(library init at model) / std(at base) for one record (see :func:`library_std_ratio`).

    A bias takes its weight's ratio under PyTorch's defaults (bias ~ U(±1/sqrt(weight fan-in))).
    """
    if isinstance(library_init, Mapping):
        for n in (record.name, *record.aliases):
            if n in library_init:
                return float(library_init[n])
        library_init = "torch"
    if isinstance(library_init, str) and record.role is Role.BIAS and record.name in paired:
        weight = paired[record.name]
        return library_std_ratio(weight, library_init) if weight.base_shape is not None else 1.0
    return library_std_ratio(record, library_init)


def library_ratios(records: Sequence[ParamRecord], library_init: Any) -> dict[str, float]:
    """{name: library std ratio} of every classified record, for :func:`sptrace.planning.plan.plan`.

    ``library_init``: a law of :data:`LIBRARY_LAWS`, a float, or a mapping name -> measured ratio
    (names it lacks fall back to PyTorch's law). A bias takes the ratio of the weight consumed by
    the same graph node, as μP's ``rescale_linear_bias``.
    """
    records = list(records)
    paired = _paired_weights(records)
    return {r.name: _ratio(r, library_init, paired) for r in records if r.classified}


def library_candidates(records: Sequence[ParamRecord]) -> dict[str, list[float]]:
    """Per classified record with a base shape, its std ratio (model / base) under each library
    init law (:data:`LIBRARY_LAWS`; a bias under its weight's), for matching measured ratios to."""
    records = list(records)
    paired = _paired_weights(records)
    return {
        r.name: sorted({_ratio(r, law, paired) for law in LIBRARY_LAWS})
        for r in records if r.classified and r.base_shape is not None
    }
