"""The names every stage shares: the errors, and the enums a record's class is made of (sptrace/types)."""
from __future__ import annotations

from enum import Enum

# ParamRecord.problem of a parameter the forward never reads (cross-attention without encoder states)
NEVER_USED = "never used by the forward pass"


class SptraceError(ValueError):
    """Raised for input sptrace cannot handle; the message names the parameter or graph node."""


class SptraceWarning(UserWarning):
    """Issued when a call leaves parameters unplanned (library init, plain lr); names them."""


class Space(str, Enum):
    """Type of a vector space (docs/derivations.md §1): dense features have RMS as natural norm, sparse ones l2."""

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
