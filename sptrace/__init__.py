"""sptrace: width-stable training for any PyTorch model, from its traced graph.

Public API: :func:`trace` (classify every parameter), :func:`parametrize` (re-initialise and
build optimizer groups so Condition 2 holds), :func:`param_groups`, their returned objects, the
CLI (``python -m sptrace``) and the zoo (``models_zoo``).
"""
from .parametrize import Parametrization, param_groups, parametrize
from .trace import Trace, trace
from .types import DimDecision, Kind, ParamRecord, ParamUse, Role, Space, SptraceError

__all__ = [
    "trace", "parametrize", "param_groups", "Trace", "Parametrization", "ParamRecord", "ParamUse",
    "DimDecision", "Kind", "Role", "Space", "SptraceError",
]
