"""sptrace: width-stable training for any PyTorch model, from its traced graph.

Public API (docs/api.md): :func:`trace` (classify every parameter), :func:`parametrize`
(re-initialise and build optimizer groups so Condition 2 holds), :func:`plan` (the same decisions
as a :class:`Plan` value, from a model on meta; docs/scale.md) and :func:`load_plan`, :func:`param_groups`,
:func:`validate` (coord-check a model under sptrace and the baselines), :class:`SpectralSGD`, the
records they return, the CLI (``python -m sptrace``) and the zoo (``models_zoo``).

The pipeline, one subpackage per stage: ``graph`` (capture → uses → axes → classify) →
``planning`` (rules → plan) → ``apply`` (init, hooks, groups); ``spectral`` measures and
``validation`` checks.
"""
from .apply.parametrize import Parametrization, param_groups, parametrize, plan
from .apply.planned import Plan, PlanFileError, PlanMismatchError, load_plan
from .graph.trace import Trace, trace
from .optim import SpectralSGD
from .types import DimDecision, Kind, ParamRecord, ParamUse, Role, Space, SptraceError, SptraceWarning
from .validation.validate import Validation, validate

__all__ = [
    "trace", "parametrize", "plan", "load_plan", "Plan", "PlanMismatchError", "PlanFileError", "param_groups",
    "validate", "SpectralSGD", "Trace", "Parametrization", "Validation",
    "ParamRecord", "ParamUse", "DimDecision", "Kind", "Role", "Space", "SptraceError",
    "SptraceWarning",
]
