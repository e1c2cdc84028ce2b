"""Column blocks (graph/blocks.py): a hidden matrix's fixed-size input columns get an input layer's rule.

The tensor is planned as its width columns alone (a hidden layer of fan-in d, not d + k). Param
groups give one tensor one lr, so the fixed columns' own lr comes from a forward multiplier m
on their slice of the layer's input, with their stored values divided by m (docs/derivations.md §5,
docs/rules.md "Column blocks"). The effective block ``m·V`` then starts at the input rule's init, and
one step at the tensor's lr η moves it by ``m·η`` under Adam (sign-like: ΔV ≈ η) and ``m²·η`` under SGD
(the gradient of V is m times the effective block's): m = η_input / η (Adam), sqrt(η_input / η) (SGD).
SpectralSGD orthogonalises the whole matrix's update, so no per-block m exists there: not planned.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Optional

from ..types import ParamRecord, Role, Rule
from .rules import gaussian_std, rule_for

__all__ = ["ColumnPlan", "column_rules", "fixed_columns", "close_to_one"]

FAMILY_POWER = {"adam": 1.0, "sgd": 0.5}  # m = (η_input / η) ** power: the update of m·V is m η, m² η


@dataclass(frozen=True)
class ColumnPlan:
    columns: tuple[tuple[int, int], ...]  # the fixed blocks' fan-in slices
    multiplier: float  # m on those slices of the input
    scale: float  # their values x this after the tensor's init: (input rule's init / the tensor's) / m
    lr_ratio: float  # η_input / η


def fixed_columns(record: ParamRecord) -> tuple[tuple[int, int], ...]:
    return tuple((start, stop) for start, stop, width in record.column_blocks if not width)


def _block(record: ParamRecord, width: bool) -> ParamRecord:
    """The width columns (``width``) or the fixed ones as a layer of their own: its fan-in that
    block's columns, the fixed ones not width; the base fan-in less the fixed columns for the width block."""
    k = sum(stop - start for start, stop in fixed_columns(record))
    size = record.shape[1] - k if width else k
    base = None if record.base_shape is None else (record.base_shape[0], record.base_shape[1] - k if width else k)
    dims = tuple(replace(d, width=width, size=size, reason=d.reason if width else "fixed-size block of a concatenation")
                 if d.axis == 1 else d for d in record.dims)
    return replace(record, shape=(record.shape[0], size), base_shape=base, dims=dims,
                   role=Role.HIDDEN if width else Role.INPUT, column_blocks=())


def column_rules(record: ParamRecord, rule: Rule, *, init: str, init_gain: float,
                 library_ratio: Optional[float]) -> Optional[tuple[Rule, ColumnPlan]]:
    """The tensor's rule (its width columns' hidden rule: fan-in the width columns) and its fixed
    columns' plan, for ``record`` under ``rule`` (the whole tensor's); None where nothing is planned
    per block (another parametrization, SpectralSGD). ``library_ratio`` is the whole tensor's: the
    library drew every column with the whole fan-in."""
    if not fixed_columns(record) or rule.parametrization != "sptrace" or rule.optimizer not in FAMILY_POWER:
        return None
    hidden, block = (rule_for(_block(record, width), rule.optimizer, form=rule.form, parametrization="sptrace",
                              init=init, init_gain=init_gain, library_ratio=library_ratio) for width in (True, False))
    lr_ratio = block.lr_multiplier / hidden.lr_multiplier
    m = lr_ratio ** FAMILY_POWER[rule.optimizer]
    if init == "keep":  # the values are kept (a checkpoint of this plan already holds V = W / m)
        ratio = m
    elif hidden.init_kind in ("keep", "scale") and block.init_kind in ("keep", "scale"):
        ratio = block.init_scale / hidden.init_scale  # both scale the library's values (anchored forms)
    else:
        ratio = gaussian_std(block.dims) / gaussian_std(hidden.dims)
    return hidden, ColumnPlan(fixed_columns(record), m, ratio / m, lr_ratio)


def close_to_one(x: float) -> bool:
    return math.isclose(x, 1.0, rel_tol=1e-9)
