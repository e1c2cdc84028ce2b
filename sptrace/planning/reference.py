"""The reference-width form: ``lr`` means the lr standard practice uses at a width users know.

Without a base model, sptrace anchors every factor at a *reference width* (256 unless the caller
says otherwise; mup calls it the base width): the model is read as if a copy of it had been built
with every width axis scaled by ``reference_width / width``, where ``width`` is the model's most
common width-axis size (the report prints it). That virtual copy plays the base model's part in
the base form (docs/derivations.md §6): at the reference width every lr multiplier is 1 and the
init is the library's, so the lr a user would give the plain optimizer there is the right one,
and the width ratios carry it to every other width (docs/parametrize.md, "What lr means").
"""
from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Optional, Sequence

from ..types import ParamRecord, SptraceError

__all__ = ["DEFAULT_REFERENCE_WIDTH", "model_width", "at_reference", "check_reference_width"]

DEFAULT_REFERENCE_WIDTH = 256


def check_reference_width(reference_width) -> int:
    if isinstance(reference_width, bool) or not isinstance(reference_width, int) or reference_width < 1:
        raise SptraceError(f"reference_width must be a positive int (the width at which lr is the lr standard "
                           f"practice would use; default {DEFAULT_REFERENCE_WIDTH}), got {reference_width!r}")
    return reference_width


def model_width(records: Sequence[ParamRecord]) -> Optional[int]:
    """The most common size among the width axes of the classified parameters (ties: the smaller),
    e.g. ``d_model`` of a transformer whose MLP is ``4 d_model`` wide; ``None`` without width axes."""
    sizes = Counter(r.shape[a] for r in records if r.classified for a in r.width_dims)
    if not sizes:
        return None
    return max(sizes, key=lambda size: (sizes[size], -size))


def at_reference(records: Sequence[ParamRecord], reference_width: int) -> list[ParamRecord]:
    """``records`` with base shapes at the reference width: each width axis times
    ``reference_width / model_width`` (fractional sizes are kept: only ratios are read)."""
    check_reference_width(reference_width)
    width = model_width(records)
    scale = 1.0 if width is None else reference_width / width
    return [replace(r, base_shape=_scaled(r, scale), base_groups=_scaled_groups(r, scale),
                    forward_constant=_scaled_constant(r.forward_constant, scale)) for r in records]


def _scaled_constant(found, scale: float):
    """An l2 norm's constant (graph/l2norm.py) over k width axes: its size at the reference, size * scale^k."""
    if found is None or not found.normalised_axes:
        return found
    return replace(found, base_size=found.size * scale ** found.normalised_axes)


def _scaled(record: ParamRecord, scale: float) -> tuple:
    width = set(record.width_dims)
    if scale == 1.0:
        return record.shape
    shape = [size * scale if axis in width else size for axis, size in enumerate(record.shape)]
    if record.column_blocks:  # a fan-in of width and fixed-size columns: only the width ones scale (graph/blocks.py)
        shape[1] = sum((stop - start) * (scale if width else 1) for start, stop, width in record.column_blocks)
    return tuple(shape)


def _scaled_groups(record: ParamRecord, scale: float):
    """Depthwise-style groups (one input channel per group, channels are width) grow with the
    channels; a fixed group count (ResNeXt's 32) does not."""
    width = set(record.width_dims)
    grows = record.groups > 1 and 0 in width and (len(record.shape) < 2 or 1 not in width) and scale != 1.0
    return record.groups * scale if grows else record.groups
