"""Stage 5, apply: ``sptrace.plan``, ``sptrace.parametrize`` and ``sptrace.param_groups``.

``plan`` is trace → plan (rules) → a :class:`~sptrace.apply.planned.Plan` value, from shapes and
the graph (a model on meta is enough). ``parametrize`` is that plan applied at once: in-place
init, forward multipliers, optimizer param groups, as one transaction: if anything fails, every
parameter is restored bit for bit and every hook is removed before the error reaches the caller.
Calling it again on the same model is idempotent: a parameter whose recorded init equals the new
one is not touched (no double scaling), and the previous call's hooks are replaced. Both take
the same arguments, with the defaults of ``parametrize``'s signature.
"""
from __future__ import annotations

import inspect
import math
import os
import warnings
import weakref
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional, Sequence, Union

import torch

from ..graph.capture import MODEL_ROOT
from ..graph.report import render
from ..graph.trace import Trace, trace
from ..planning.library import detect_laws, drawn_with, library_candidates
from ..planning.plan import GROUP_EPS_MULT, GROUP_LR_NOTE, GROUP_NAMES, group, plan_warnings
from ..planning.plan import plan as plan_records
from ..planning.readouts import router_note
from ..planning.reference import DEFAULT_REFERENCE_WIDTH, model_width
from ..planning.rules import INIT_CHOICES, check_zero_readout, optimizer_family
from ..spectral import natural_spectral_norm
from ..types import NEVER_USED, Multiplier, ParamPlan, Space, SptraceError, SptraceWarning
from .hooks import mup_attention_scale
from .inputs import missing_inputs_error, resolve_example_inputs
from .planned import (OPTIMIZERS, Installed, Plan, changes, initialise, marked_columns, paused_hooks, replacing_hooks,
                      scale_eps, writes)
from .transaction import INIT_MARK, Snapshot

__all__ = ["plan", "parametrize", "param_groups", "Parametrization", "OPTIMIZERS", "default_lr", "plan_report"]


@dataclass
class Parametrization(Installed):
    """What parametrize did; ``optimizer.sptrace`` and ``model._sptrace_parametrization``: the plan
    applied (``plan``: save it next to a checkpoint), its hooks, and what each group's lr became."""

    lr_notes: list[str] = field(default_factory=list)  # one line per optimizer group: what its lr became
    model: Any = field(default=None, repr=False)  # weak reference, for measuring at report time

    @property
    def trace(self) -> Trace:
        return self.plan.trace

    @property
    def plans(self) -> list[ParamPlan]:
        return self.plan.params

    @property
    def multipliers(self) -> list[Multiplier]:
        return self.plan.multipliers

    @property
    def warnings(self) -> list[str]:
        return self.plan.warnings

    def __getitem__(self, name: str) -> ParamPlan:
        return self.plan[name]

    def report(self, format: str = "text") -> str:
        """The trace's table with the plan's columns, the natural spectral norms measured now and
        every warning of the call (the trace's, the plan's and the multipliers installed)."""
        model = self.model() if self.model is not None else None
        columns = _plan_columns(self.trace, self.plans)
        if model is not None:
            _add_measured(columns, self.trace, model)
        notes = [f"multiplier {m.value:.4g} on {m.what} of {m.module or MODEL_ROOT}: {m.reason}"
                 for m in self.multipliers]
        return render(self.trace, format, columns, self.warnings + notes, notes=self.lr_notes)


def param_groups(model: torch.nn.Module, optimizer: Any = "adam", lr: Optional[float] = None,
                 example_inputs: Any = None, base: Optional[torch.nn.Module] = None, **options) -> list[dict]:
    """Torch param groups for any optimizer: per-group lr and weight decay by the rules, exactly as
    :func:`parametrize` (same arguments, same defaults) would build them; the model is not modified
    (``plan(...).param_groups(model)``). Each group records ``sptrace_lr_multiplier`` so schedulers
    can scale relative to it."""
    return plan(model, optimizer, lr, example_inputs, base, **options).param_groups(model)


def parametrize(
    model: torch.nn.Module,
    optimizer: Union[str, type, Callable[..., torch.optim.Optimizer]] = "adam",
    lr: Optional[float] = None,
    example_inputs: Any = None,
    base: Optional[torch.nn.Module] = None,
    *,
    init: Union[str, bool] = "default",
    form: Optional[str] = None,
    reference_width: int = DEFAULT_REFERENCE_WIDTH,
    zero_readout: Union[bool, str] = "auto",
    init_gain: float = 1.0,
    attention_fix: bool = False,
    weight_decay: Optional[float] = None,
    no_decay: Sequence[str] = (),
    strict: bool = False,
    width_overrides=None,
    delta: Optional[torch.nn.Module] = None,
    family: Optional[str] = None,
    parametrization: str = "sptrace",
    library_init: Any = "auto",
    traced: Optional[Trace] = None,
    **optimizer_kwargs,
) -> torch.optim.Optimizer:
    """Re-initialise ``model`` in place and return an optimizer whose groups satisfy Condition 2.

    ``optimizer``: ``"sgd" | "adam" | "adamw" | "spectral"``, an optimizer class, or a factory
    called as ``factory(param_groups, lr=lr, **optimizer_kwargs)`` (then say ``family=``).
    ``lr``: the lr standard practice (library init, one lr) would use at ``reference_width``
    (default 256) — with ``base=``, at the base model's width; left out, the optimizer's own
    default (Adam's 1e-3). ``form="absolute"`` makes it the rules' width-free prefactor instead
    (docs/parametrize.md, "What lr means"). Each group's ``sptrace_lr_note`` says what it became.
    ``zero_readout``: ``"auto"`` starts every readout that feeds no top-k / argmax (not a router)
    at zero, μP's recommendation (docs/parametrize.md, "Zero readouts"); True, False.
    ``init_gain``: Θ(1) factor on dense-input weight inits of the absolute form (sqrt(2) for ReLU).
    ``weight_decay``: the decay standard practice would use (left out: the optimizer's default,
    AdamW's 0.01); each group gets it divided by its lr multiplier, so lr x decay is width-free.
    ``delta``: with ``base``, a model at another width (meta is enough) that tells which dims grow
    when ``model`` has the base's own shapes (tuning at the base width), as mup's delta model.
    ``init``: ``"default"`` (Gaussian by the rule; with a base, the library init times width
    ratios), ``"gaussian"``, ``"orthogonal"``, ``"spectral"`` (Eq. 16), or ``"keep"``
    (fine-tuning: only the groups change); ``True`` is ``"default"``, ``False`` is ``"keep"``.
    ``example_inputs``: what the model is traced on; without it, inferred from the model
    (:mod:`sptrace.apply.inputs`). ``attention_fix``: route SDPA calls to the μP
    ``1/head_dim`` scale. ``traced``: the :class:`Trace` of an earlier call on a model of this
    architecture and these shapes (e.g. the same width, another seed), used instead of tracing
    again; it must name every parameter with its shape. Extra keyword arguments go to the optimizer.
    """
    return _apply(model, _planned(**locals()))


def plan(model: torch.nn.Module, optimizer: Any = "adam", lr: Optional[float] = None, example_inputs: Any = None,
         base: Optional[torch.nn.Module] = None, **options) -> Plan:
    """``sptrace.plan``: what :func:`parametrize` would do to ``model``, as a :class:`Plan` value,
    without touching it. The same arguments with the same defaults (its signature is
    :func:`parametrize`'s); computed from shapes and the graph, so ``model`` may live on the meta
    device (then the library's init law is PyTorch's unless ``library_init=`` or a Hugging Face
    ``config.initializer_range`` says otherwise). Apply it with ``plan.init_(model)``,
    ``plan.install(model)`` and ``plan.optimizer(model)``; ``plan.save(path)`` (docs/scale.md)."""
    arguments = inspect.signature(parametrize).bind(model, optimizer, lr, example_inputs, base, **options)
    arguments.apply_defaults()
    return _planned(**arguments.arguments)


plan.__signature__ = inspect.signature(parametrize).replace(return_annotation=Plan)


def _planned(model, optimizer, lr, example_inputs, base, init, form, reference_width, zero_readout, init_gain,
             attention_fix, weight_decay, no_decay, strict, width_overrides, delta, family, parametrization,
             library_init, traced, optimizer_kwargs) -> Plan:
    """The plan of one call (every argument of :func:`parametrize`, defaults filled in)."""
    init = _init_choice(init)
    factory = _optimizer_factory(optimizer)
    lr = _global_lr(lr, factory, form)
    weight_decay = _default(factory, "weight_decay", 0.0) if weight_decay is None else weight_decay
    family = family or optimizer_family(optimizer)
    check_zero_readout(zero_readout)
    traced = _fitting(traced, model) if traced is not None else _trace(model, example_inputs, base, strict,
                                                                        width_overrides, delta)
    if library_init == "auto":
        library_init = _measured_library_init(traced, model, base)
    plans = plan_records(traced.records, family, lr=lr, form=form, reference_width=reference_width, init=init,
                 zero_readout=zero_readout, init_gain=init_gain, weight_decay=weight_decay, no_decay=no_decay,
                 parametrization=parametrization, library_init=library_init)
    own_trace = replace(traced, attention=list(traced.attention))  # attention_fix rewrites its sites, not the caller's
    multipliers, notes = _multipliers(plans, own_trace, attention_fix)
    _warn_unplanned(traced)
    _warn_unstable_scales(own_trace)
    return Plan(plans, {n: tuple(p.shape) for n, p in model.named_parameters(remove_duplicate=False)}, multipliers,
                _optimizer_name(optimizer), family, lr, dict(optimizer_kwargs),
                _warnings(traced, plans) + notes, factory=factory, trace=own_trace)


def _warnings(traced: Trace, plans) -> list[str]:
    """The trace's warnings and the plan's, one line per unclassified parameter: the plan's line
    (reason and consequence) replaces the trace's (reason alone)."""
    said = tuple(f"{p.name}: unclassified: " for p in plans if p.warning)
    return [w for w in traced.warnings if not w.startswith(said)] + plan_warnings(plans)


def _warn_unplanned(traced: Trace) -> None:
    """One :class:`SptraceWarning` where parameters keep the library's init and the plain lr
    (unclassified, or never reached by the inputs): the one-line call prints no report, and a
    model that trains with some parameters unplanned must not look planned. It points at the
    caller's line, so a loop over seeds or widths hears of it once."""
    left = [r for r in traced.records if not r.classified]
    if not left:
        return
    never = [r.name for r in left if r.problem == NEVER_USED]
    unknown = [r for r in left if r.problem != NEVER_USED]
    parts = []
    if unknown:
        parts.append(f"{len(unknown)} unclassified ({_listed([r.name for r in unknown])}; "
                     f"{unknown[0].name}: {unknown[0].problem}; strict=True raises on these)")
    if never:
        parts.append(f"{len(never)} never reached by the forward pass on these inputs ({_listed(never)}; "
                     "pass example_inputs that reach them)")
    warnings.warn(SptraceWarning(
        f"sptrace left {len(left)} of {len(traced.records)} parameters at the library's init and the plain lr: "
        f"{'; '.join(parts)}. The report (opt.sptrace.report()) says why for each"), stacklevel=_outside_sptrace())


def _warn_unstable_scales(traced: Trace) -> None:
    """One :class:`SptraceWarning` where an attention scale or an inner product of activations is
    known not to be width-stable and sptrace left it so: only the model's code can change it, and
    the one-line call prints no report."""
    left = [s for s in traced.attention if s.width_stable is False]
    if left:
        warnings.warn(SptraceWarning(
            f"{len(left)} attention or activation-product scale(s) let their logits grow with width, and sptrace "
            "leaves them so (attention_fix=True reroutes scaled_dot_product_attention only): "
            f"{_listed([f'{s.module or MODEL_ROOT} ({s.node})' for s in left])}. "
            "opt.sptrace.warnings says what to change in the model's code for each"), stacklevel=_outside_sptrace())


def _listed(names: list[str], most: int = 5) -> str:
    return ", ".join(names[:most]) + (f" and {len(names) - most} more" if len(names) > most else "")


def _outside_sptrace() -> int:
    """The ``stacklevel`` of the first frame outside the sptrace package, seen from the function
    that calls :func:`warnings.warn` (so that the warning names the user's line)."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frame, level = inspect.currentframe().f_back, 1
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        frame, level = frame.f_back, level + 1
    return level


def _optimizer_name(optimizer) -> Optional[str]:
    """What a plan file can hold of ``optimizer``: a name of OPTIMIZERS or of torch.optim."""
    if isinstance(optimizer, str):
        return optimizer.lower()
    named = next((name for name, cls in OPTIMIZERS.items() if cls is optimizer), None)
    if named is None and getattr(torch.optim, getattr(optimizer, "__name__", ""), None) is optimizer:
        named = optimizer.__name__
    return named


def _apply(model, planned: Plan) -> torch.optim.Optimizer:
    """Init, multipliers and the optimizer as one transaction: on any failure every parameter
    and the previous call's hooks are put back before the error propagates."""
    pending = _pending(model, planned.params)
    snapshot = Snapshot.take(model, (t for t, _ in pending))
    result = Parametrization(planned, [], model=weakref.ref(model))
    try:
        with replacing_hooks(model, result):
            initialise(pending, dict(model.named_parameters(remove_duplicate=False)))
            groups = group(planned.params, dict(model.named_parameters(remove_duplicate=False)))
            built = scale_eps(planned.factory(groups, lr=planned.lr, **planned.optimizer_kwargs))
            result.lr_notes = [_group_line(g) for g in built.param_groups]
    except BaseException:
        snapshot.restore(model)
        raise
    built.sptrace = result
    return built


def plan_report(traced: Trace, model: torch.nn.Module, optimizer: str = "adam", format: str = "text",
                lr: float = 1.0, **options) -> str:
    """The trace's report with the planned init and lr columns, without changing the model."""
    options.setdefault("library_init", _detected_laws(traced, model))
    plans = plan_records(traced.records, optimizer_family(optimizer), lr=lr, **options)
    columns = _plan_columns(traced, plans)
    _add_measured(columns, traced, model)
    return render(traced, format, columns, _warnings(traced, plans))


# ---------------------------------------------------------------------------------------------


def _global_lr(lr, factory, form) -> float:
    """``lr`` checked; left out, the optimizer's own default (the lr standard practice starts from),
    except in the absolute form, where lr is a prefactor that no optimizer's default means."""
    if lr is None:
        if form == "absolute":
            raise SptraceError("form='absolute' needs lr=: there lr is the rules' width-free prefactor (Adam's hidden "
                               "lr is lr/fan_in), which no optimizer's default means; leave form out to use the "
                               "optimizer's default lr at the reference width")
        lr = _default_lr(factory)
    _check_lr(lr)
    return float(lr)


def default_lr(optimizer) -> float:
    """The lr the one-line call uses for ``optimizer`` (a name, class or factory): its own default."""
    return _default_lr(_optimizer_factory(optimizer))


def _default_lr(factory) -> float:
    default = _default(factory, "lr", None)
    if default is None:
        raise SptraceError(f"{getattr(factory, '__name__', 'this optimizer')} has no default lr: pass lr= (the lr you "
                           "would give it for this model at the reference width, 256 unless reference_width= says)")
    return default


def _default(factory, argument: str, otherwise: Optional[float]) -> Optional[float]:
    """The optimizer's own default for ``argument`` (a number), else ``otherwise``."""
    try:
        default = inspect.signature(factory).parameters[argument].default
    except (KeyError, TypeError, ValueError):
        return otherwise
    return float(default) if isinstance(default, (int, float)) and not isinstance(default, bool) else otherwise


def _check_lr(lr):
    if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not math.isfinite(lr) or lr <= 0:
        raise SptraceError(f"lr must be a positive finite number, got {lr!r}")


def _optimizer_factory(optimizer) -> Callable[..., torch.optim.Optimizer]:
    if isinstance(optimizer, str):
        if optimizer.lower() not in OPTIMIZERS:
            raise SptraceError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}, "
                               "or pass an optimizer class or factory")
        return OPTIMIZERS[optimizer.lower()]
    if callable(optimizer):
        return optimizer
    raise SptraceError(f"optimizer must be a name, an optimizer class or a factory, got {type(optimizer).__name__}")


def _fitting(traced: Trace, model) -> Trace:
    """``traced`` if it describes ``model``'s parameters (every name, with its shape)."""
    if not isinstance(traced, Trace):
        raise SptraceError(f"traced must be a Trace (from sptrace.trace or opt.sptrace.trace), got "
                           f"{type(traced).__name__}")
    shapes = {a: r.shape for r in traced.records for a in r.aliases}
    params = dict(model.named_parameters(remove_duplicate=False))
    wrong = [f"{n} {tuple(p.shape)} (trace: {shapes.get(n, 'absent')})" for n, p in params.items()
             if shapes.get(n) != tuple(p.shape)] + [f"{n} (not in the model)" for n in shapes if n not in params]
    if wrong:
        raise SptraceError("traced= is a trace of another architecture or width: " + ", ".join(wrong[:5])
                           + (f" and {len(wrong) - 5} more" if len(wrong) > 5 else "")
                           + "; trace this model (leave traced= out)")
    return traced


def _trace(model, example_inputs, base, strict, width_overrides, delta) -> Trace:
    found = resolve_example_inputs(model, example_inputs)
    tried, failures = [], []  # the sources of the inferred inputs the model did not run on, and why, in order
    while True:
        try:
            with paused_hooks(model):
                traced = trace(model, *found.args, base=base, delta=delta, strict=strict,
                               width_overrides=width_overrides, **found.kwargs)
            break
        except SptraceError as exc:
            if not (found.inferred and str(exc).startswith("could not capture")):
                raise
            tried.append(found.source)
            failures.append("; ".join(line.strip() for line in str(exc).splitlines()[1:] if line.startswith("  ")))
            if found.fallback is None:
                raise missing_inputs_error(model, tried=f"{'; then '.join(tried)}, and the model does not run on "
                                                        f"them ({_why_not(failures)})") from exc
            found = found.fallback
    if found.inferred:
        traced.warnings.append(f"example inputs inferred: {found.source} (docs/parametrize.md, \"Example inputs\")")
    return traced


def _why_not(failures: list[str]) -> str:
    """The first try's failure, which comes from the layer that first takes the input and so says the
    most (a sequence length the model fixes, a shape it reshapes to), then the last's where they differ."""
    if len(failures) == 1 or failures[-1] == failures[0]:
        return failures[0]
    return f"the first: {failures[0]}; the last: {failures[-1]}"


def _init_choice(init):
    """``init=False`` is fine-tuning (``"keep"``), ``init=True`` the default; strings by the rules."""
    if isinstance(init, bool):
        return "default" if init else "keep"
    if not isinstance(init, str) or init not in INIT_CHOICES:
        raise SptraceError(f"init must be one of {', '.join(map(repr, INIT_CHOICES))}, or True (= 'default') / False "
                           f"(= 'keep': fine-tuning, only the optimizer groups change), got {init!r}")
    return init


def _measured_library_init(traced: Trace, model, base):
    """Per parameter, the std ratio (model / base) of the library init law (planning.library.LIBRARY_LAWS:
    PyTorch's fan-in, kaiming fan-out, xavier, constant) that the model's and the base's tensors
    agree with best. Without a base (the reference form), or with a base that has no values (meta),
    the law each weight's own std matches (planning.library.detect_laws); a Hugging Face model's
    initializer_range means a constant std; PyTorch's law where the model has no values either."""
    if base is None or any(p.device.type == "meta" for p in base.parameters()):
        return _detected_laws(traced, model)
    ours = dict(model.named_parameters(remove_duplicate=False))
    theirs = dict(base.named_parameters(remove_duplicate=False))
    laws = {}
    base_stds = {name: _std(t) for name, t in theirs.items()}
    for name, candidates in library_candidates(traced.records, base_stds).items():
        if name not in theirs:
            continue
        measured = _library_std(ours[name]) / max(_std(theirs[name]), 1e-30)
        if math.isfinite(measured) and measured > 0:
            laws[name] = min(candidates, key=lambda ratio: abs(math.log(measured / ratio)))
    return laws


def _detected_laws(traced: Trace, model) -> Union[str, dict[str, str]]:
    """A config's ``initializer_range`` (a constant std) where the model has no values or some weight
    was drawn with it (planning.library.drawn_with), else the laws the weights' own stds match."""
    params = dict(model.named_parameters(remove_duplicate=False))
    valued = [r.name for r in traced.records if r.name in params and params[r.name].device.type != "meta"]
    stds = {name: _library_std(params[name]) for name in valued}
    declared = getattr(getattr(model, "config", None), "initializer_range", None)
    if isinstance(declared, (int, float)) and (not stds or drawn_with(traced.records, stds, declared)):
        return "constant"
    return detect_laws(traced.records, stds, {name: _library_mean(params[name]) for name in valued},
                       width=model_width(traced.records))


def _library_std(tensor) -> float:
    return _of_library_values(tensor, _std)


def _library_mean(tensor) -> float:
    return _of_library_values(tensor, _mean)


def _of_library_values(tensor, statistic) -> float:
    """``statistic`` (a std or a mean: scaled by a factor, it scales by it) of the library's own
    values: a previous call's "scale" is divided out; after any other re-init they are gone (NaN: no
    measurement). Fixed input columns it scaled on their own (docs/rules.md "Column blocks") are scaled back."""
    mark = getattr(tensor, INIT_MARK, None)
    scale, columns = marked_columns(mark)
    if columns and mark[0] in ("keep", "scale"):
        tensor = tensor.detach().clone()
        for start, stop in columns:
            tensor[:, start:stop] /= scale
    if mark is None or mark[0] == "keep":
        return statistic(tensor)
    return statistic(tensor) / mark[3] if mark[0] == "scale" else math.nan


def _mean(tensor) -> float:
    return float(tensor.detach().float().mean()) if tensor.numel() > 0 else 0.0


def _std(tensor) -> float:
    return float(tensor.detach().float().std()) if tensor.numel() > 1 else 0.0


def _pending(model, plans: list[ParamPlan]) -> list[tuple[torch.Tensor, ParamPlan]]:
    """(tensor, plan) for every parameter whose init this call changes."""
    params = dict(model.named_parameters(remove_duplicate=False))
    return [(params[p.name], p) for p in plans if writes(p, params[p.name]) and changes(params[p.name], p)]


def _multipliers(plans: list[ParamPlan], traced: Trace, attention_fix: bool) -> tuple[list[Multiplier], list[str]]:
    """The forward multipliers to install (tied readouts; attention scales with ``attention_fix``,
    whose sites ``traced`` then records as fixed) and the warnings about attention left alone."""
    multipliers, notes = [], []
    for p in plans:
        for fm in p.forward_multipliers:
            why = (f"{p.name} is also a readout here (docs/derivations.md §5)" if fm.what == "tied readout input" else
                   f"{p.name} is divided by its spectral norm: its layer's target scale (docs/rules.md \"Self-normalised weights\")"
                   if not fm.columns else
                   f"{p.name}'s input columns {', '.join(f'{a}:{b}' for a, b in fm.columns)} are fixed-size features: "
                   "an input layer's init and lr (docs/rules.md \"Column blocks\")")
            multipliers.append(Multiplier(fm.use.module, fm.what, fm.multiplier, why, fm.columns))
    for i, site in enumerate(traced.attention):
        if attention_fix and site.kind == "sdpa":
            scale = mup_attention_scale(site.head_dim, site.base_head_dim)
            multipliers.append(Multiplier(site.module, "attention scale", scale, "μP 1/head_dim (docs/derivations.md §5)"))
            traced.attention[i] = replace(site, scale=scale, scale_source="attention_fix: μP 1/head_dim",
                                          fixed_by_sptrace=True)
        elif site.kind == "product" and not site.width_stable:
            notes.append(f"{site.module or MODEL_ROOT}: {site.node} is an inner product of two activations over a "
                         f"width axis ({site.head_dim}) with scale {site.scale:.4g}: its entries grow like "
                         "sqrt(width) at init and like width once trained (the attention-logit law, "
                         "docs/derivations.md §5); multiply it by 1/width in the model's code")
        elif site.kind == "manual" and (attention_fix or site.head_dim_is_width):
            notes.append(f"{site.module}: attention scale is computed by hand ({site.scale_source}) and "
                         "sptrace only reroutes scaled_dot_product_attention: where head_dim grows with "
                         "width, scale the logits by 1/head_dim in the model's code")
        elif site.head_dim_is_width:
            notes.append(f"{site.module}: head_dim grows with width ({site.head_dim}) and the attention "
                         "scale stays 1/sqrt(head_dim): pass attention_fix=True for μP's 1/head_dim")
    return multipliers, notes


def _group_line(group_dict: dict) -> str:
    names = group_dict[GROUP_NAMES]
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    multiplier, eps = group_dict[GROUP_EPS_MULT], group_dict.get("eps")
    scaled = f"; eps x {multiplier:.4g} = {eps:.3g}" if multiplier != 1.0 and isinstance(eps, float) else ""
    return f"lr {group_dict[GROUP_LR_NOTE]}{scaled} ({shown})"


def _plan_columns(traced: Trace, plans: list[ParamPlan]) -> dict[str, dict[str, str]]:
    return {p.name: {"init": _init_text(p), "lr x": f"{p.lr_multiplier:.4g}",
                     "target nat ||W||": "-" if p.rule is None else
                     f"{_natural(traced[p.name], p.rule.target_spectral_W):.3g}"} for p in plans}


def _add_measured(columns: dict[str, dict[str, str]], traced: Trace, model):
    params = dict(model.named_parameters(remove_duplicate=False))
    for record in traced.records:
        columns.setdefault(record.name, {})["nat ||W||"] = _measured(record, params.get(record.name))


def _init_text(p: ParamPlan) -> str:
    return _init_value(p) + router_note(p.citation)


def _init_value(p: ParamPlan) -> str:
    if p.init == "gaussian":
        return f"N(0, {p.init_std:.3g}²)"
    if p.init in ("orthogonal", "spectral"):
        return f"{p.init} ||W||={p.init_target:.3g}"
    if p.init == "scale":
        return f"default x{p.init_scale:.4g}"
    if p.init == "norm":
        return f"|{p.norm_of.rpartition('.')[2]}| over all but dim {p.norm_dim}"
    return p.init


def _natural(record, raw: float) -> float:
    d_in = record.fan_in if record.input_space is Space.DENSE else 1
    d_out = record.fan_out if record.output_space is Space.DENSE else 1
    return raw * math.sqrt(d_in / d_out)


def _measured(record, tensor) -> str:
    if tensor is None or tensor.device.type == "meta" or not record.classified or tensor.dim() == 0:
        return "-"
    value = natural_spectral_norm(
        tensor.detach(), record.fan_in_axes, record.fan_out_axes,
        input_dense=record.input_space is Space.DENSE, output_dense=record.output_space is Space.DENSE,
        groups=record.groups,
    )
    return f"{float(value):.3g}"
