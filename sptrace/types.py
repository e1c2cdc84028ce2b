"""The typed records that flow between sptrace's pipeline stages.

capture (CapturedGraph) -> uses (ParamUse) -> classify (ParamRecord) -> plan (ParamPlan) -> apply.
Every stage reads and writes only these dataclasses, so each can be tested alone.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Optional


class SptraceError(ValueError):
    """Raised for input sptrace cannot handle; the message names the parameter or graph node."""


class Space(str, Enum):
    """Type of a vector space (NOTES §1): dense features have RMS as natural norm, sparse ones l2."""

    DENSE = "dense"
    SPARSE = "sparse"


class Kind(str, Enum):
    """How many of a parameter's fan-in / fan-out grow with width (mup's infshape notion)."""

    MATRIX = "matrix"  # fan-in and fan-out both grow with width (hidden weights)
    VECTOR = "vector"  # exactly one grows (embeddings, input layers, readouts, biases, gains)
    SCALAR = "scalar"  # none grows
    UNCLASSIFIED = "unclassified"  # some use was not understood; see ParamRecord.problem


class Role(str, Enum):
    """The parameter's job, in words; informative, the rules read spaces and width flags."""

    HIDDEN = "hidden"  # dense -> dense, both width
    INPUT = "input"  # dense fixed fan-in -> width fan-out (first layer, patch embedding)
    READOUT = "readout"  # width fan-in -> fixed fan-out (classifier, lm head, token-mixing out)
    EMBEDDING = "embedding"  # sparse index input (token table, position table, class token)
    BIAS = "bias"  # added to activations; input is the constant-1 space (Appendix D)
    GAIN = "gain"  # elementwise scale (norm weight, layer scale): diagonal operator
    SCALAR = "scalar"  # no width dims at all
    FIXED = "fixed"  # a matrix whose fan-in and fan-out are both fixed
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ParamUse:
    """One place where the graph consumes a parameter (or a view of it).

    Axes are the parameter's own axes (as stored), whatever views the graph took of it:
    fan_in_axes are contracted with the op's input, fan_out_axes index the op's output,
    group_axes index independent blocks (conv groups are folded into fan_out_axes instead,
    with `groups` > 1; einsum/bmm batch axes shared with the input land here).
    """

    node: str  # graph node that consumes the parameter
    op: str  # canonical op name: linear, matmul, conv, embedding, norm, mul, add, cat, ...
    arg: str  # which argument: "weight", "bias", "lhs", "rhs", "operand1", ...
    module: str  # module path that owns the call (nn_module_stack), "" for the root
    fan_in_axes: tuple[int, ...]
    fan_out_axes: tuple[int, ...]
    group_axes: tuple[int, ...] = ()
    groups: int = 1
    input_space: Space = Space.DENSE
    role: Role = Role.UNKNOWN
    via: tuple[str, ...] = ()  # view/cast ops between the parameter and this use


@dataclass(frozen=True)
class DimDecision:
    """Whether one parameter axis grows with width, and why."""

    axis: int
    size: int
    width: bool
    reason: str  # e.g. "base: 64 -> 128", "contracted with input data axis x.2", "user override"


@dataclass
class ParamRecord:
    """Everything sptrace knows about one distinct parameter tensor."""

    name: str
    aliases: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str
    requires_grad: bool
    uses: tuple[ParamUse, ...]
    kind: Kind
    role: Role
    input_space: Space
    output_space: Space
    fan_in_axes: tuple[int, ...]
    fan_out_axes: tuple[int, ...]
    groups: int
    dims: tuple[DimDecision, ...]
    base_shape: Optional[tuple[int, ...]] = None  # the same parameter's shape in the base model
    base_groups: Optional[int] = None
    problem: Optional[str] = None  # why it is unclassified (names the node and op)
    secondary_uses: tuple[ParamUse, ...] = ()  # uses whose axes disagree with the primary one (ties)
    notes: tuple[str, ...] = ()

    @property
    def width_dims(self) -> tuple[int, ...]:
        return tuple(d.axis for d in self.dims if d.width)

    @staticmethod
    def _block(axes: tuple[int, ...], shape: tuple[int, ...], groups: int) -> int:
        """Product of `axes`; axis 0 holds every group of a grouped conv, so it is divided."""
        size = math.prod(shape[a] for a in axes)
        return size // groups if 0 in axes else size

    @property
    def fan_in(self) -> int:
        """Fan-in of one block (transposed grouped convs: in_channels / groups x kernel area)."""
        return self._block(self.fan_in_axes, self.shape, self.groups)

    @property
    def fan_out(self) -> int:
        """Fan-out of one block (grouped convs: out_channels / groups)."""
        return self._block(self.fan_out_axes, self.shape, self.groups)

    @property
    def fan_in_is_width(self) -> bool:
        return any(a in self.width_dims for a in self.fan_in_axes)

    @property
    def fan_out_is_width(self) -> bool:
        return any(a in self.width_dims for a in self.fan_out_axes)

    @property
    def base_fan_in(self) -> Optional[int]:
        if self.base_shape is None:
            return None
        return self._block(self.fan_in_axes, self.base_shape, self.base_groups or self.groups)

    @property
    def base_fan_out(self) -> Optional[int]:
        if self.base_shape is None:
            return None
        return self._block(self.fan_out_axes, self.base_shape, self.base_groups or self.groups)

    @property
    def classified(self) -> bool:
        return self.kind is not Kind.UNCLASSIFIED
