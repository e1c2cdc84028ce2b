"""sptrace: width-stable training for any PyTorch model, from its traced graph.

Public API: :func:`trace` (classify every parameter), :func:`parametrize` (re-initialise and
build optimizer groups so Condition 2 holds), their returned objects, the CLI and the zoo.
"""
from .trace import Trace, trace
from .types import DimDecision, Kind, ParamRecord, ParamUse, Role, Space, SptraceError

__all__ = ["trace", "Trace", "ParamRecord", "ParamUse", "DimDecision", "Kind", "Role", "Space", "SptraceError"]
