"""What planning prescribes and apply installs: layouts, rules, parameter plans, forward multipliers
(sptrace/types's docstring has the flow)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

from .base import SptraceError
from .graph import ParamRecord, ParamUse


# --- planning: what the rules prescribe and the plan hands to apply ---------------------------------
@dataclass(frozen=True)
class Layout:
    """How to view a tensor as a stack of ``fan_out x fan_in`` matrices.

    ``groups`` splits axis 0 into ``groups`` contiguous chunks (grouped / depthwise conv: axis 0
    holds every group, docs/classification.md); ``group_axes`` are further independent-block axes
    (einsum / bmm batch axes shared by input and output). Axes in none of the three tuples are
    treated as block axes too (they are size 1 in practice, e.g. the leading 1 of a position table).
    """

    fan_out_axes: tuple[int, ...]
    fan_in_axes: tuple[int, ...]
    group_axes: tuple[int, ...] = ()
    groups: int = 1

    @classmethod
    def default(cls, shape: Sequence[int]) -> "Layout":
        """PyTorch's convention: axis 0 is fan-out, the rest fan-in; a 1-D tensor is ``n x 1``."""
        nd = len(shape)
        if nd == 0:
            return cls((), ())
        return cls((0,), tuple(range(1, nd)))

    @classmethod
    def from_record(cls, record: ParamRecord) -> "Layout":
        """The record's primary-use axes; the default layout when the record is unclassified."""
        if not record.classified:
            return cls.default(record.shape)
        group_axes = record.uses[0].group_axes if record.uses else ()
        layout = cls(tuple(record.fan_out_axes), tuple(record.fan_in_axes), tuple(group_axes), record.groups)
        layout.check(record.shape, record.name)
        return layout

    @classmethod
    def coerce(cls, value: Any, shape: Sequence[int]) -> "Layout":
        """Accept a Layout, a dict from :meth:`to_dict`, or None (the default for ``shape``)."""
        if value is None:
            return cls.default(shape)
        if isinstance(value, Layout):
            return value
        if isinstance(value, Mapping):
            return cls(
                tuple(value.get("fan_out_axes", ())), tuple(value.get("fan_in_axes", ())),
                tuple(value.get("group_axes", ())), int(value.get("groups", 1)),
            )
        raise SptraceError(f"layout must be a Layout, a dict from Layout.to_dict() or None, got {value!r}")

    def to_dict(self) -> dict:
        """Plain tuples and ints only, so it survives ``torch.load(weights_only=True)``."""
        return {
            "fan_out_axes": tuple(self.fan_out_axes), "fan_in_axes": tuple(self.fan_in_axes),
            "group_axes": tuple(self.group_axes), "groups": int(self.groups),
        }

    def check(self, shape: Sequence[int], name: str = "tensor") -> None:
        nd = len(shape)
        axes = list(self.fan_out_axes) + list(self.fan_in_axes) + list(self.group_axes)
        if any(a < 0 or a >= nd for a in axes) or len(set(axes)) != len(axes):
            raise SptraceError(f"{name}: layout {self} does not fit shape {tuple(shape)}")
        if self.groups > 1:
            if 0 in self.group_axes or 0 not in (self.fan_out_axes + self.fan_in_axes):
                raise SptraceError(f"{name}: groups={self.groups} but axis 0 is not a fan axis ({self})")
            if shape[0] % self.groups:
                raise SptraceError(f"{name}: axis 0 of size {shape[0]} is not divisible by groups={self.groups}")

    def _plan(self, shape: Sequence[int]):
        """(split shape, permutation, (B, fan_out, fan_in)) for a tensor of ``shape``."""
        shape = tuple(int(s) for s in shape)
        self.check(shape)
        g = self.groups
        if g > 1:
            split = (g, shape[0] // g) + shape[1:]
            shift = 1
            batch = [0]
        else:
            split, shift, batch = shape, 0, []
        used = set(self.fan_out_axes) | set(self.fan_in_axes) | set(self.group_axes)
        batch += [a + shift for a in self.group_axes]
        batch += [a + shift for a in range(len(shape)) if a not in used]
        fo = [a + shift for a in self.fan_out_axes]
        fi = [a + shift for a in self.fan_in_axes]
        perm = batch + fo + fi
        blocks = math.prod([split[a] for a in batch])
        fan_out = math.prod([split[a] for a in fo])
        fan_in = math.prod([split[a] for a in fi])
        return split, perm, (blocks, fan_out, fan_in)

    def block_shape(self, shape: Sequence[int]) -> tuple[int, int, int]:
        """``(blocks, fan_out, fan_in)`` of a tensor of ``shape`` under this layout."""
        return self._plan(shape)[2]


@dataclass(frozen=True)
class Dims:
    """The numbers a rule reads, for one block of one parameter (at the model or the base shapes)."""

    fan_in: int
    fan_out: int
    d_in: int  # effective: fan_in if the input space is dense, else 1
    d_out: int  # effective: fan_out if the output space is dense, else 1
    blocks: int  # independent blocks: conv groups x einsum/bmm group axes
    fan_in_w: float  # block fan-in counting width axes only (fixed axes such as a kernel set to 1)
    fan_out_w: float  # block fan-out counting width axes only
    fan_in_width: bool
    fan_out_width: bool
    sparse_in: bool


@dataclass(frozen=True)
class Rule:
    """What the rules prescribe for one parameter under one optimizer family.

    Fields:
        optimizer, parametrization, form: the family, ``"sptrace"|"sp"|"ntp"``,
            ``"absolute"|"base"``.
        dims: the model-shape :class:`Dims`; ``base_dims`` at the base shapes (base form only).
        target_spectral_W, target_spectral_dW: Condition 2 in raw spectral norm per block,
            ``sqrt(d_out/d_in)`` (absolute values in both forms: a Θ target for diagnostics).
        init_kind: ``"gaussian"`` (use ``init_std``), ``"orthogonal"`` / ``"spectral"`` (use
            ``init_target``), ``"zeros"``, ``"ones"``, ``"scale"`` (multiply the library-default
            values in place by ``init_scale``), ``"keep"`` (leave them).
        init_std: the Gaussian std of the absolute rule (``None`` where it does not apply).
        init_target: raw spectral norm per block for orthogonal / Eq. 16 init (``None`` where it
            does not apply).
        init_scale: factor for ``"scale"`` (1.0 otherwise).
        lr_multiplier: the group lr is ``lr * lr_multiplier``.
        weight_decay_multiplier: the group weight decay is ``weight_decay * this``.
        spectral_scale: :class:`~sptrace.optim.SpectralSGD`'s per-parameter factor (1.0 for other
            families): the update is ``-lr * spectral_scale * orthogonalise(buffer)``; for the
            ``"sign"`` update it is the per-entry step.
        update: how SpectralSGD treats the tensor: ``"column"`` (sparse input: each one-hot
            input's column normalised), ``"orthogonal"`` (blocks orthogonalised; a
            block with one row or column is l2-normalised, which is its exact polar factor) or
            ``"sign"`` (diagonal operators and scalars).
        citation: paper section / docs/derivations.md item each number comes from.
        eps_multiplier: the group's Adam ε is the optimizer's ε times this: the size of the
            parameter's gradient under the rules, η_Adam / η_SGD (docs/rules.md "Adam's ε").
    """

    optimizer: str
    parametrization: str
    form: str
    dims: Dims
    base_dims: Optional[Dims]
    target_spectral_W: float
    target_spectral_dW: float
    init_kind: str
    init_std: Optional[float]
    init_target: Optional[float]
    init_scale: float
    lr_multiplier: float
    weight_decay_multiplier: float
    spectral_scale: float
    update: str
    citation: str
    eps_multiplier: float = 1.0


@dataclass(frozen=True)
class ForwardMultiplier:
    """Multiply the tensor by ``multiplier`` in this use: a tied readout's secondary use (docs/derivations.md
    §5), or a spectral-normed layer's own (docs/rules.md "Self-normalised weights")."""

    use: ParamUse
    multiplier: float
    what: str = "tied readout input"
    columns: tuple[tuple[int, int], ...] = ()  # "fixed input columns": the input's slices it scales


@dataclass(frozen=True)
class ParamPlan:
    """What to do with one parameter.

    ``init`` is one of ``"gaussian"`` (``init_std``), ``"orthogonal"`` / ``"spectral"``
    (``init_target``: raw spectral norm per block of ``layout``), ``"zeros"``, ``"ones"``,
    ``"scale"`` (multiply the current values by ``init_scale``) or ``"keep"``; run it with
    ``sptrace.apply.init.apply_init(param, p.init, std=p.init_std, target=p.init_target,
    scale=p.init_scale, layout=p.layout)``. ``lr = global_lr * lr_multiplier``; ``weight_decay`` is
    the group's (already multiplied). ``spectral_scale``, ``update`` and ``layout`` are for
    :class:`sptrace.optim.SpectralSGD`.
    """

    name: str
    aliases: tuple[str, ...]
    optimizer: str
    parametrization: str
    form: str
    trainable: bool
    classified: bool
    init: str
    init_std: Optional[float]
    init_target: Optional[float]
    init_scale: float
    layout: Layout
    lr: float
    global_lr: float
    lr_multiplier: float
    weight_decay: float
    spectral_scale: float
    update: str
    forward_multipliers: tuple[ForwardMultiplier, ...]
    citation: str
    warning: Optional[str] = None
    rule: Optional[Rule] = field(default=None, repr=False, compare=False)
    lr_note: str = ""  # what the lr became and why, in one line
    eps_multiplier: float = 1.0  # the group's Adam ε = the optimizer's ε x this (Rule.eps_multiplier)
    norm_of: Optional[str] = None  # init "norm": this v's norms over every axis but norm_dim, after its init
    norm_dim: int = 0
    fixed_columns: tuple[tuple[int, int], ...] = ()  # fan-in slices read x a forward multiplier:
    column_scale: float = 1.0  # their values x this after the init (docs/rules.md "Column blocks")


# --- apply: what parametrize installed -----------------------------------------------------------
@dataclass(frozen=True)
class Multiplier:
    """One forward multiplier that sptrace installed, for the report."""

    module: str
    what: str  # "tied readout input" | "spectral-normed layer input" | "attention scale" | "fixed input columns"
    value: float
    reason: str
    columns: tuple[tuple[int, int], ...] = ()  # "fixed input columns": the slices of the last input axis
