"""The typed records that flow between sptrace's pipeline stages, in one package: ``base`` (errors, enums),
``graph`` (what the graph stages hand on), ``plans`` (what planning and apply do).

    graph    capture -> CapturedGraph; uses -> UseAnalysis (ParamUse, OpAxes); axes -> AxisLabels;
             attention -> AttentionSite; constants -> ForwardConstant; weightnorm -> WeightNormSite;
             blocks -> ColumnBlock; products -> ProductSite; trace gathers ParamFacts -> classify -> ParamRecord
    planning ParamRecord -> Dims -> Rule -> ParamPlan (Layout, ForwardMultiplier)
    apply    ParamPlan -> in-place init, Multiplier (forward hooks), optimizer param groups

Every stage reads and writes only these dataclasses, so each can be driven alone from hand-built
records (tests/graph, tests/planning, tests/apply). The logic that produces them stays in the
stage modules; the few methods here only read a record's own fields (``ParamRecord.fan_in``,
``AxisLabels.decide``, ``Layout``'s index arithmetic). What is left in a stage module on purpose:
``Trace`` (graph/trace.py: the public result, with its report), ``Shapes`` (graph/ops.py: built
from a graph), ``Parametrization`` (apply/parametrize.py: holds hooks) and ``Snapshot``
(apply/transaction.py: copies tensors) carry behaviour, not just data.

Nothing here imports torch at run time (only for type annotations).
"""
from .base import NEVER_USED, SptraceError, SptraceWarning, Space, Kind, Role
from .graph import (Ref, ColumnBlock, WIDTH_REASON, CapturedGraph, OpAxes, UseAnalysis, AxisLabels, AttentionSite,
    ParamUse, DimDecision, ForwardConstant, SelfNormSite, WeightNormSite, ProductSite, ParamFacts,
    ParamRecord)
from .plans import Layout, Dims, Rule, ForwardMultiplier, ParamPlan, Multiplier

__all__ = [
    "NEVER_USED", "SptraceError", "SptraceWarning", "Space", "Kind", "Role", "Ref", "ColumnBlock",
    "WIDTH_REASON", "CapturedGraph", "OpAxes", "UseAnalysis", "AxisLabels", "AttentionSite", "ParamUse",
    "DimDecision", "ForwardConstant", "SelfNormSite", "WeightNormSite", "ProductSite", "ParamFacts",
    "ParamRecord", "Layout", "Dims", "Rule", "ForwardMultiplier", "ParamPlan", "Multiplier",
]
