"""Stage 4: records + optimizer -> one :class:`ParamPlan` per parameter, and torch param groups.

Pure functions: nothing here touches a model. ``apply`` (the next stage) runs each plan's init with
:func:`sptrace.apply.init.apply_init`, installs the forward multipliers of tied secondary uses, and builds
the optimizer from :func:`group`'s dicts.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional, Sequence, Union

import torch

from ..types import NEVER_USED, ForwardMultiplier, Layout, ParamPlan, ParamRecord, Role, Rule, SptraceError
from .blocks import ColumnPlan, close_to_one, column_rules
from .library import library_ratios
from .products import C_PRODUCT, is_product_gain, product_rules
from .readouts import spared_factors
from .reference import DEFAULT_REFERENCE_WIDTH, at_reference, model_width
from .rules import ANCHORED_FORMS, check_form, check_parametrization, forward_multiplier, optimizer_family, rule_for
from .weightnorm import spectral_norm_multiplier, weight_norm_rules

__all__ = ["plan", "group", "plan_warnings"]

GROUP_LR_MULT = "sptrace_lr_multiplier"
GROUP_BASE_LR = "sptrace_base_lr"
GROUP_NAMES = "sptrace_names"
GROUP_LR_NOTE = "sptrace_lr_note"
GROUP_EPS_MULT = "sptrace_eps_multiplier"

# How each family's lr scales (the rules' LR_LAWS, in words for the report).
_LR_LAW_TEXT = {
    ("sptrace", "sgd"): "SGD: lr ∝ d_out/d_in",
    ("sptrace", "adam"): "Adam: lr ∝ 1/d_in",
    ("sptrace", "spectral"): "spectral: lr x 1, the update scaled by sqrt(d_out/d_in)",
    ("ntp", "sgd"): "NTP SGD: lr ∝ 1/fan_in",
    ("ntp", "adam"): "NTP Adam: lr ∝ 1/sqrt(fan_in)",
}


def _resolve_form(records: Sequence[ParamRecord], form: Optional[str]) -> str:
    """``form`` checked; ``None``: the base form exactly when every classified record has a base
    shape, else the reference-width form."""
    classified = [r for r in records if r.classified]
    have = [r.base_shape is not None for r in classified]
    if form is None:
        return "base" if classified and all(have) else "reference"
    if check_form(form) == "base":
        missing = [r.name for r, h in zip(classified, have) if not h]
        if missing:
            raise SptraceError(f"form='base' asked for, but these parameters have no base shape (trace with "
                               f"base= a narrower model): {', '.join(missing)}")
    return form


def _role_names(roles: Iterable[Union[Role, str]]) -> set[str]:
    return {r.value if isinstance(r, Role) else str(r) for r in roles}


def plan(
    records: Iterable[ParamRecord],
    optimizer: Any,
    *,
    lr: float,
    form: Optional[str] = None,
    reference_width: int = DEFAULT_REFERENCE_WIDTH,
    init: str = "default",
    parametrization: str = "sptrace",
    zero_readout: Union[bool, str] = "auto",
    weight_decay: float = 0.0,
    no_decay: Iterable[Union[Role, str]] = (),
    init_gain: float = 1.0,
    library_init: Union[str, float, Mapping[str, float]] = "torch",
) -> list[ParamPlan]:
    """One :class:`ParamPlan` per record (same order).

    Args:
        records: classified parameters (``Trace.records``).
        optimizer: family name (``"sgd"``, ``"adam"``, ``"spectral"``, or ``"adamw"``, ``"muon"``…),
            optimizer class or instance.
        lr: the global learning rate: the lr standard practice uses at the reference width
            (``"reference"``) or at the base model's (``"base"``); a Θ(1) prefactor (``"absolute"``).
        form: ``"reference"``, ``"base"`` (anchored to the base model's shapes) or ``"absolute"``
            (docs/derivations.md §6). ``None``: the base form exactly when every classified record
            has a base shape, else the reference form.
        reference_width: the width at which ``lr`` is standard practice's (reference form).
        init: ``"default"`` (absolute: Gaussian by Parametrization 1; base: library default times
            width ratios), ``"gaussian"``, ``"orthogonal"``, ``"spectral"`` (Eq. 16), ``"keep"``.
        parametrization: ``"sptrace"`` (μP), or the baselines ``"sp"`` / ``"ntp"``.
        zero_readout: zero-initialise readouts (dense, width fan-in, fixed fan-out): ``"auto"``
            (every readout whose output reaches no top-k / argmax, i.e. not a router), True, False.
        weight_decay: global decay; each group gets ``weight_decay / lr_multiplier`` so that the
            per-step shrink ``group lr * group wd = lr * weight_decay`` is width-independent.
        no_decay: roles (e.g. ``{"bias", "gain"}``) whose weight decay is 0.
        init_gain: Θ(1) prefactor on dense-input weight inits (sqrt(2) for ReLU nets).
        library_init: how the library's own init scales with width (base form, ``init="default"``):
            ``"torch"`` (PyTorch defaults; a bias takes the ratio of the weight consumed by the same
            graph node, as μP's ``rescale_linear_bias``), ``"constant"`` (HF-style fixed std), a
            float, or a mapping name -> measured std ratio (model tensor / base tensor).

    Unclassified records keep the library init and get the plain lr (a warning names them);
    frozen records are planned (init) but :func:`group` leaves them out.
    """
    records = list(records)
    family = optimizer_family(optimizer)
    check_parametrization(parametrization)
    form = _resolve_form(records, form)
    if form == "reference":
        records = at_reference(records, reference_width)
    library = library_ratios(records, library_init) if form in ANCHORED_FORMS else {}
    anchor = _anchor_text(form, records, reference_width)
    skip_decay = _role_names(no_decay)
    spared = spared_factors(records, zero_readout)  # factors of one product: only one starts at zero
    rules = {r.name: rule_for(
        r, family, form=form if r.classified else "absolute", parametrization=parametrization, init=init,
        zero_readout=False if r.name in spared else zero_readout, init_gain=init_gain,
        library_ratio=library.get(r.name),
    ) for r in records}
    rules = weight_norm_rules(records, rules, zero_readout, init_gain, init)  # a weight norm's g from its v
    rules = product_rules(records, rules, init, init_gain, library)  # W = carrier * factor: the factor from the carrier
    columns = {}  # fixed-size input columns: the width columns' rule for the tensor, a multiplier for them
    for r in records:
        split = column_rules(r, rules[r.name], init=init, init_gain=init_gain, library_ratio=library.get(r.name)) \
            if r.column_blocks and r.classified else None
        if split is not None:
            rules[r.name], columns[r.name] = split
    return [_param_plan(r, rules[r.name], lr, 0.0 if r.role.value in skip_decay else weight_decay, anchor,
                        columns.get(r.name)) for r in records]


def _anchor_text(form: str, records: Sequence[ParamRecord], reference_width: int) -> str:
    if form == "reference":
        width = model_width(records)
        return (f"lr is the lr at width {reference_width} (this model's width: {width})" if width is not None
                else "no width dims: every multiplier is 1")
    if form == "base":
        return "lr is the lr at the base model's width"
    return "absolute form: lr is the rules' width-free prefactor"


def _lr_note(record: ParamRecord, rule: Rule, lr: float, anchor: str, columns: Optional[ColumnPlan] = None) -> str:
    """What the lr became for this parameter and why, in one line (the report's and the group's)."""
    if not record.classified:
        return f"{lr:g} x 1: unclassified, the plain lr"
    law = _LR_LAW_TEXT.get((rule.parametrization, rule.optimizer), "SP: one global lr")
    if record.forward_constant is not None and rule.parametrization == "sptrace":  # docs/rules.md
        law += f", of c W ({record.forward_constant.text})"
    if record.weight_norm is not None and record.name == record.weight_norm.g and "weight norm's g" in rule.citation:
        law += ", x the planned slice norm of v (Adam c, SGD c^2: docs/rules.md \"Weight norm\")"
    if columns is not None:
        spans = ", ".join(f"{a}:{b}" for a, b in columns.columns)
        law += (f"; fixed-size input columns {spans}: an input layer's lr (x {columns.lr_ratio:.4g}) through a forward "
                f"multiplier {columns.multiplier:.4g} (docs/rules.md \"Column blocks\")")
    if record.product is not None and record.name == record.product.carrier:
        law += f", of W = this * {record.product.factor} (docs/rules.md \"Products of parameters\")"
    if is_product_gain(record) and C_PRODUCT in rule.citation:
        law = (f"a gain of W = {record.product.carrier} * this: {record.product.carrier}'s lr / sigma "
               "(Adam; SGD / sigma^2), sigma its planned std (docs/rules.md \"Products of parameters\")")
    return f"{lr:g} x {rule.lr_multiplier:.4g} = {lr * rule.lr_multiplier:.4g}: {law}; {anchor}"


def _param_plan(record: ParamRecord, rule: Rule, lr: float, weight_decay: float, anchor: str,
                columns: Optional[ColumnPlan] = None) -> ParamPlan:
    """The rule's numbers for one record, with the global lr and weight decay multiplied in."""
    scaled = columns is not None and not close_to_one(columns.scale)
    return ParamPlan(
        name=record.name, aliases=tuple(record.aliases), optimizer=rule.optimizer,
        parametrization=rule.parametrization, form=rule.form, trainable=record.requires_grad,
        classified=record.classified, init=rule.init_kind, init_std=rule.init_std, init_target=rule.init_target,
        init_scale=rule.init_scale, layout=Layout.from_record(record), lr=lr * rule.lr_multiplier, global_lr=lr,
        lr_multiplier=rule.lr_multiplier, weight_decay=weight_decay * rule.weight_decay_multiplier,
        spectral_scale=rule.spectral_scale, update=rule.update,
        forward_multipliers=_forward_multipliers(record, rule) + _column_multiplier(record, columns),
        citation=rule.citation, rule=rule, lr_note=_lr_note(record, rule, lr, anchor, columns),
        eps_multiplier=rule.eps_multiplier,
        norm_of=record.weight_norm.v if rule.init_kind == "norm" else None,
        norm_dim=record.weight_norm.dim if rule.init_kind == "norm" else 0,
        warning=_warning(record, rule, lr),
        fixed_columns=columns.columns if scaled else (), column_scale=columns.scale if scaled else 1.0,
    )


def _column_multiplier(record: ParamRecord, columns: Optional[ColumnPlan]) -> tuple[ForwardMultiplier, ...]:
    """The forward multiplier on a layer's fixed-size input columns (planning/blocks.py)."""
    if columns is None or close_to_one(columns.multiplier):
        return ()
    return (ForwardMultiplier(record.uses[0], columns.multiplier, "fixed input columns", columns.columns),)


def _warning(record: ParamRecord, rule: Rule, lr: float) -> Optional[str]:
    if not record.classified and record.problem != NEVER_USED:  # the trace lists the never-used ones
        return (f"{record.name}: unclassified ({record.problem or 'no reason recorded'}): library-default init "
                f"and the plain lr {lr:g}")
    site = record.self_normalized_by
    if record.classified and site is not None and not site.spectral and rule.parametrization == "sptrace":
        return (f"{record.name}: the forward divides it by a norm computed from itself (node {site.node!r}) that "
                "is not its spectral norm, so the layer's scale is that normaliser's at every width: sptrace plans "
                "its init and lr (its direction and step), not its scale (docs/rules.md \"Self-normalised weights\")")
    return None


def _forward_multipliers(record: ParamRecord, rule: Rule) -> tuple[ForwardMultiplier, ...]:
    """sptrace's multiplier on each secondary use of a tied tensor (docs/derivations.md §5), and on a
    spectral-normed layer's own use (docs/rules.md "Self-normalised weights")."""
    if not (record.classified and rule.parametrization == "sptrace"):
        return ()
    tied = tuple(ForwardMultiplier(u, forward_multiplier(record, u, form=rule.form)) for u in record.secondary_uses)
    site = record.self_normalized_by
    if site is None or not site.spectral or record.forward_constant is not None:
        return tied
    own = spectral_norm_multiplier(record, form=rule.form)
    return tied + ((ForwardMultiplier(record.uses[0], own, "spectral-normed layer input"),) if own != 1.0 else ())


def plan_warnings(plans: Iterable[ParamPlan]) -> list[str]:
    return [p.warning for p in plans if p.warning]


def _lookup(params: Mapping[str, torch.Tensor], p: ParamPlan) -> torch.Tensor:
    for n in (p.name, *p.aliases):
        if n in params:
            return params[n]
    raise SptraceError(f"{p.name}: no tensor under this name (or its aliases {p.aliases}) in the mapping")


def group(plans: Iterable[ParamPlan], params: Optional[Mapping[str, torch.Tensor]] = None) -> list[dict]:
    """Merge trainable parameters with equal hyperparameters into as few param-group dicts as possible.

    Each dict has ``"params"`` (the tensors from ``params`` when given — a name -> Parameter
    mapping such as ``dict(model.named_parameters(remove_duplicate=False))`` — else the names),
    ``"lr"``, ``"weight_decay"``, ``"sptrace_lr_multiplier"`` (scale schedules relative to it),
    ``"sptrace_base_lr"``, ``"sptrace_lr_note"`` (what the lr became and why), ``"sptrace_eps_multiplier"``
    (the factor on Adam's ε: a user building the optimizer multiplies each group's ``eps`` by it) and
    ``"sptrace_names"``; for the spectral family also
    ``"spectral_scale"``, ``"sptrace_update"`` and ``"sptrace_layout"`` (layouts differ between
    e.g. linear and conv weights, so those split groups further). Groups come in order of first
    appearance. Frozen parameters are left out.
    """
    groups: dict[tuple, dict] = {}
    for p in plans:
        if not p.trainable:
            continue
        key: tuple = (p.lr, p.weight_decay, p.lr_multiplier, p.lr_note, p.eps_multiplier)  # notes: a forward constant
        extra: dict[str, Any] = {}
        if p.optimizer == "spectral":
            layout = p.layout.to_dict()
            key += (p.spectral_scale, p.update, tuple(sorted(layout.items())))
            extra = {"spectral_scale": p.spectral_scale, "sptrace_update": p.update, "sptrace_layout": layout}
        g = groups.get(key)
        if g is None:
            g = groups[key] = {
                "params": [], "lr": p.lr, "weight_decay": p.weight_decay, GROUP_LR_MULT: p.lr_multiplier,
                GROUP_BASE_LR: p.global_lr, GROUP_LR_NOTE: p.lr_note, GROUP_EPS_MULT: p.eps_multiplier, GROUP_NAMES: [],
                **extra,
            }
        g["params"].append(_lookup(params, p) if params is not None else p.name)
        g[GROUP_NAMES].append(p.name)
    return list(groups.values())
