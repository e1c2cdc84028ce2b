"""A plan as a value: what sptrace decided for one architecture at one width, applied later.

:class:`Plan` holds every parameter's :class:`~sptrace.types.ParamPlan`, the forward multipliers
and the parameter names and shapes it was made for. It is computed from shapes and the graph alone
(``sptrace.plan`` works on a model built on the meta device) and then

* initialises a materialised model (:meth:`Plan.init_`), plain, wrapped or FSDP2-sharded;
* installs the forward multipliers and the checkpoint marker (:meth:`Plan.install`);
* builds the optimizer's param groups under the names a wrapper shows (:meth:`Plan.param_groups`,
  :meth:`Plan.optimizer`);
* saves to JSON and loads back without tracing (:meth:`Plan.save`, :func:`load_plan`).

It refuses a model of another architecture or width (:class:`PlanMismatchError`, checked before
anything is touched). docs/scale.md walks through the whole path.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from enum import Enum
from typing import Any, Callable, Optional, Union, get_args, get_origin, get_type_hints

import torch

from ..optim import SpectralSGD
from ..planning.plan import GROUP_EPS_MULT, GROUP_NAMES, group
from ..types import Multiplier, ParamPlan, SptraceError
from .hooks import (ForwardOverride, install_attention_scale, install_checkpoint_marker, install_column_multiplier,
                    install_readout_multiplier)
from .init import apply_init, check_init
from .sharded import WRAPPER_ATTRIBUTES, is_sharded, shard_rng, whole_matrix_init
from .transaction import INIT_MARK

__all__ = ["Plan", "load_plan", "PlanMismatchError", "PlanFileError", "Installed", "replacing_hooks", "initialise",
           "install_hooks", "OPTIMIZERS", "STATE_ATTR", "LIBRARY_VALUES", "scale_eps", "changes", "writes",
           "paused_hooks", "marked_columns"]

PLAN_FORMAT = 1
STATE_ATTR = "_sptrace_parametrization"
LIBRARY_VALUES = ("scale", "keep")  # inits that read the library's own values
OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "spectral": SpectralSGD,
}

# ε added to sqrt(v) (or |g|) in the update: it is compared with the gradient's size
EPS_BESIDE_GRADIENT = (torch.optim.Adam, torch.optim.AdamW, torch.optim.Adamax, torch.optim.NAdam, torch.optim.RAdam,
                       torch.optim.RMSprop, torch.optim.Adagrad, torch.optim.SparseAdam)


def scale_eps(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Each group's ``eps`` times its ``sptrace_eps_multiplier``, once, on a freshly built optimizer
    whose ε sits beside the gradient's size (docs/rules.md "Adam's ε"); other optimizers keep theirs."""
    if isinstance(optimizer, EPS_BESIDE_GRADIENT):
        for g in optimizer.param_groups:
            if isinstance(g.get("eps"), float):
                g["eps"] *= g.get(GROUP_EPS_MULT, 1.0)
    return optimizer


class PlanMismatchError(SptraceError):
    """A plan applied to a model of another architecture or width (names, shapes or ties differ)."""


class PlanFileError(SptraceError):
    """A plan file or dict that does not parse as a plan."""


@dataclasses.dataclass
class Plan:
    """Everything sptrace decided for one model, as plain data (``sptrace.plan`` makes one).

    ``params``: one ParamPlan per distinct tensor; ``shapes``: every parameter name (tied aliases
    included) with its shape; ``multipliers``: the forward multipliers to install;
    ``optimizer_name``: the optimizer's name (``None`` when a factory was given: pass one to :meth:`optimizer`).
    ``trace`` is the trace it came from (not saved)."""

    params: list[ParamPlan]
    shapes: dict[str, tuple[int, ...]]
    multipliers: list[Multiplier]
    optimizer_name: Optional[str]
    family: str
    lr: float
    optimizer_kwargs: dict[str, Any]
    warnings: list[str]
    factory: Optional[Callable] = dataclasses.field(default=None, repr=False, compare=False)
    trace: Any = dataclasses.field(default=None, repr=False, compare=False)

    def __getitem__(self, name: str) -> ParamPlan:
        for p in self.params:
            if name == p.name or name in p.aliases:
                return p
        raise KeyError(f"no parameter named {name!r}")

    @property
    def digest(self) -> str:
        """What a checkpoint's weights mean under this plan: the names, shapes and forward
        multipliers (not the lr, the optimizer or the init, which a resumed run may change)."""
        key = [sorted((n, list(s)) for n, s in self.shapes.items()),
               [(m.module, m.what, m.value) + ((m.columns,) if m.columns else ()) for m in self.multipliers]]
        return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]

    # -- applying -------------------------------------------------------------------------------

    def check(self, model: torch.nn.Module) -> tuple[torch.nn.Module, str]:
        """(the model the plan was made for, the prefix its wrappers add to names); raises
        :class:`PlanMismatchError` when no such model is inside ``model``."""
        candidate, prefix = model, ""
        while True:
            params = dict(candidate.named_parameters(remove_duplicate=False))
            if params.keys() == self.shapes.keys():
                break
            children = list(candidate.named_children())
            if len(children) != 1 or children[0][0] not in WRAPPER_ATTRIBUTES:
                break
            prefix, candidate = prefix + children[0][0] + ".", children[0][1]
        wrong = [f"{n} {tuple(p.shape)} (plan: {tuple(self.shapes[n]) if n in self.shapes else 'absent'})"
                 for n, p in params.items() if tuple(self.shapes.get(n, ())) != tuple(p.shape) or n not in self.shapes]
        wrong += [f"{n} (in the plan, not in the model)" for n in self.shapes if n not in params]
        untied = [f"{p.name} and {a}" for p in self.params for a in p.aliases
                  if a in params and p.name in params and params[a] is not params[p.name]]
        if wrong or untied:
            raise PlanMismatchError(
                f"this plan was made for another architecture or width: {', '.join((wrong + untied)[:5])}"
                + (f" and {len(wrong + untied) - 5} more" if len(wrong + untied) > 5 else "")
                + "; make a plan for this model (sptrace.plan)"
                + (f". {', '.join(untied)}: one tensor in the plan, two in the model; to_empty() unties shared "
                   "parameters: tie them again before applying the plan (e.g. model.lm_head.weight = "
                   "model.transformer.wte.weight; a Hugging Face model's tie_weights())" if untied else ""))
        return candidate, prefix

    def init_(self, model: torch.nn.Module, *, reset: bool = True) -> torch.nn.Module:
        """The plan's init, in place (plain, wrapped or FSDP2-sharded parameters).

        ``reset=True`` (after ``to_empty``): where the plan keeps or rescales the library's init,
        the library draws it first (a Hugging Face model's ``_init_weights`` over its modules, else
        each owning module's ``reset_parameters()``). ``reset=False``: the model's
        current values are the library's (a model built on a real device), as for ``parametrize``.
        Everything is checked before the first value is written: a mismatch, a parameter whose
        module cannot re-draw its init, or a bad plan raises and leaves the model as it was."""
        inner, _ = self.check(model)
        params = dict(inner.named_parameters(remove_duplicate=False))
        pending = [(params[p.name], p) for p in self.params if writes(p, params[p.name])]
        for tensor, p in pending:
            check_init(tensor, p.init, std=p.init_std, target=p.init_target, scale=p.init_scale, layout=p.layout,
                       name=p.name, source=params.get(p.norm_of) if p.norm_of else None)
        redraw = self._library_init(inner) if reset else {}
        with torch.no_grad():
            for module, draw in redraw.items():
                with shard_rng(next(module.parameters())):
                    draw()
        for tensor, _ in pending if reset else ():
            if hasattr(tensor, INIT_MARK):
                delattr(tensor, INIT_MARK)  # fresh library values: nothing of an earlier init to divide out
        initialise([(t, p) for t, p in pending if changes(t, p)], params)
        return model

    def _library_init(self, inner: torch.nn.Module) -> dict[torch.nn.Module, Callable[[], None]]:
        """What draws the library's init again where the plan keeps or rescales it: a Hugging Face
        model's own ``_init_weights`` over every module (its ``initializer_range``, the law the
        plan assumed), else each owning module's ``reset_parameters()``."""
        model_init = getattr(inner, "_init_weights", None)
        needed = [p for p in self.params if p.init in LIBRARY_VALUES]
        if callable(model_init) and needed:
            # every module, children first, as the model's own post_init does: a parent's init
            # (GPT-2's attention output scaled by 1/sqrt(2 n_layer)) comes after its children's
            return {inner: lambda: inner.apply(model_init)}
        redraw, missing = {}, []
        for p in needed:
            path = p.name.rpartition(".")[0]
            module = inner.get_submodule(path) if path else inner
            if callable(getattr(module, "reset_parameters", None)):
                redraw[module] = module.reset_parameters
            else:
                missing.append(f"{p.name} ({type(module).__name__})")
        if missing:
            raise SptraceError(f"the plan keeps or rescales the library's init of {', '.join(missing[:5])}, but its "
                               "module has no reset_parameters() to draw it after to_empty: initialise the model "
                               "yourself and call init_(model, reset=False)")
        return redraw

    def install(self, model: torch.nn.Module) -> list:
        """The forward multipliers and the checkpoint marker, on the model inside any wrapper;
        a previous plan's or parametrize call's hooks are replaced. Returns the hook handles."""
        inner, _ = self.check(model)
        installed = Installed(self, [])
        with replacing_hooks(inner, installed):
            pass
        return installed.handles

    def param_groups(self, model: torch.nn.Module) -> list[dict]:
        """Torch param groups holding ``model``'s parameters (wrapped or sharded), named as the
        wrapper names them (``module.`` for DDP) in ``sptrace_names``."""
        inner, prefix = self.check(model)
        groups = group(self.params, dict(inner.named_parameters(remove_duplicate=False)))
        for g in groups:
            g[GROUP_NAMES] = [prefix + n for n in g[GROUP_NAMES]]
        return groups

    def optimizer(self, model: torch.nn.Module, optimizer: Any = None, **optimizer_kwargs) -> torch.optim.Optimizer:
        """The optimizer over :meth:`param_groups`: the plan's own (its name and keywords), or
        ``optimizer`` (a class or ``factory(groups, lr=lr, **kwargs)``) with ``optimizer_kwargs``."""
        factory = optimizer or self.factory or (OPTIMIZERS.get(self.optimizer_name) if self.optimizer_name else None) \
            or getattr(torch.optim, str(self.optimizer_name), None)
        if factory is None:
            raise SptraceError("this plan was made with an optimizer factory, which a plan file cannot hold: pass it, "
                               "plan.optimizer(model, factory)")
        kwargs = {**self.optimizer_kwargs, **optimizer_kwargs} if optimizer is None else optimizer_kwargs
        return scale_eps(factory(self.param_groups(model), lr=self.lr, **kwargs))

    # -- saving ---------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        """Plain JSON types only (the ParamPlans with their rules, multipliers, names and shapes)."""
        out = {f.name: _encode(getattr(self, f.name)) for f in dataclasses.fields(self)
               if f.name not in ("factory", "trace")}
        return {"sptrace_plan": PLAN_FORMAT, **out}

    def save(self, path: Union[str, os.PathLike]) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=1)

    @classmethod
    def from_dict(cls, data: Any) -> "Plan":
        if not isinstance(data, dict) or data.get("sptrace_plan") != PLAN_FORMAT:
            found = data.get("sptrace_plan") if isinstance(data, dict) else type(data).__name__
            raise PlanFileError(f"not a plan of format {PLAN_FORMAT} (found {found!r}): save plans with plan.save(path)")
        try:
            hints = get_type_hints(cls)
            return cls(**{f.name: _decode(hints[f.name], data[f.name]) for f in dataclasses.fields(cls)
                          if f.name not in ("factory", "trace") and (f.name in data or _required(f))})
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise PlanFileError(f"the plan does not parse: {type(exc).__name__}: {exc}") from exc


def _required(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


def load_plan(source: Union[str, os.PathLike, dict]) -> Plan:
    """A plan saved with :meth:`Plan.save` (a path) or :meth:`Plan.to_dict` (a dict); no tracing.
    A file that is not a plan raises :class:`PlanFileError`."""
    if isinstance(source, dict):
        return Plan.from_dict(source)
    try:
        with open(source, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PlanFileError(f"cannot read a plan from {os.fspath(source)!r}: {exc}") from exc
    return Plan.from_dict(data)


@dataclasses.dataclass
class Installed:
    """The hooks a plan put on a model (``model._sptrace_parametrization``): its forward multipliers
    and its checkpoint marker. :class:`~sptrace.apply.parametrize.Parametrization` is one too."""

    plan: Plan
    handles: list = dataclasses.field(repr=False)

    def remove_hooks(self):
        """Remove the forward multipliers and the checkpoint marker."""
        for h in self.handles:
            h.remove()
        self.handles.clear()

    def reinstall(self, model):
        self.handles = install_hooks(model, self.plan.multipliers) + install_checkpoint_marker(model, self.plan.digest)


@contextlib.contextmanager
def replacing_hooks(model: torch.nn.Module, state: Installed):
    """``state``'s hooks replace those of the model's previous plan for the body of the ``with``;
    if the body (or the install) fails, the previous hooks are back before the error propagates,
    else ``state`` is recorded on the model."""
    previous = getattr(model, STATE_ATTR, None)
    if previous is not None:
        previous.remove_hooks()
    try:
        state.reinstall(model)
        yield state
    except BaseException:
        state.remove_hooks()
        if previous is not None:
            previous.reinstall(model)
        raise
    setattr(model, STATE_ATTR, state)


@contextlib.contextmanager
def paused_hooks(model: torch.nn.Module):
    """The model's own forward, without a previous plan's forward multipliers, for the body of the
    ``with``: a new call traces the model's code (a wrapper's slices and products would read as the
    model's; the new plan replaces them anyway)."""
    previous = getattr(model, STATE_ATTR, None)
    wrappers = [h for h in (previous.handles if previous is not None else []) if isinstance(h, ForwardOverride)]
    states = [h.active for h in wrappers]
    for h in wrappers:
        h.active = False
    try:
        yield
    finally:
        for h, state in zip(wrappers, states):
            h.active = state


def install_hooks(model: torch.nn.Module, multipliers: list[Multiplier]) -> list:
    """Every forward multiplier's wrapper, or none: a failure removes those already installed."""
    handles = []
    try:
        for m in multipliers:
            if m.what == "attention scale":
                handles += install_attention_scale(model, m.module, m.value)
            elif m.columns:
                handles.append(install_column_multiplier(model, m.module, m.columns, m.value))
            else:
                handles.append(install_readout_multiplier(model, m.module, m.value))
    except BaseException:
        for h in reversed(handles):
            h.remove()
        raise
    return handles


def init_key(p: ParamPlan) -> tuple:
    columns = (p.column_scale, p.fixed_columns) if p.fixed_columns else ()  # docs/rules.md "Column blocks"
    return (p.init, p.init_std, p.init_target, p.init_scale) + columns


def marked_columns(mark: Optional[tuple]) -> tuple[float, tuple]:
    """(scale, fixed column slices) an earlier call's :func:`init_key` recorded; (1.0, ()) where none."""
    return (mark[4], mark[5]) if mark is not None and len(mark) > 4 else (1.0, ())


def writes(p: ParamPlan, tensor: torch.Tensor) -> bool:
    """Whether ``p``'s init writes values: any init but "keep"; a keep whose fixed columns are rescaled,
    or undone from an earlier call's (docs/rules.md "Column blocks")."""
    return p.init != "keep" or bool(p.fixed_columns) or bool(marked_columns(getattr(tensor, INIT_MARK, None))[1])


def _scale_columns(tensor: torch.Tensor, p: ParamPlan, previous: Optional[tuple]) -> None:
    """The fixed input columns x ``column_scale`` (docs/rules.md "Column blocks"); an init that reads
    the values (scale, keep) first divides out the scale an earlier call gave its columns (no double scaling)."""
    scale, columns = marked_columns(previous)
    with torch.no_grad():
        if p.init in LIBRARY_VALUES:
            for start, stop in columns:
                tensor[:, start:stop].div_(scale)
        for start, stop in p.fixed_columns:
            tensor[:, start:stop].mul_(p.column_scale)


def changes(tensor: torch.Tensor, p: ParamPlan) -> bool:
    """Whether ``p``'s init is still to run on ``tensor``: an init recorded on it already is not run again
    (no double scaling), but a weight norm's g is always set again from its v, which may have changed."""
    return p.init == "norm" or getattr(tensor, INIT_MARK, None) != init_key(p)


def initialise(pending: list[tuple[torch.Tensor, ParamPlan]], params: Optional[dict] = None) -> None:
    """Each tensor's plan, in place; a "scale" on values an earlier call already scaled rescales from
    the library's (no double scaling). Random draws of a shard come from its own stream, and the
    whole-matrix inits of a sharded tensor draw the full matrix (:mod:`sptrace.apply.sharded`). A weight
    norm's g (init "norm") is set last, from its v in ``params`` (name -> tensor) once v has its init."""
    for tensor, p in sorted(pending, key=lambda pair: pair[1].init == "norm"):
        if p.init == "norm":
            source = (params or {}).get(p.norm_of)
            apply_init(tensor, "norm", source=source, dim=p.norm_dim, name=p.name)
            setattr(tensor, INIT_MARK, init_key(p))
            continue
        scale = p.init_scale
        previous = getattr(tensor, INIT_MARK, None)
        if p.init == "scale" and previous is not None and previous[0] == "scale":
            scale = p.init_scale / previous[3]

        def init(t, p=p, scale=scale):
            return apply_init(t, p.init, std=p.init_std, target=p.init_target, scale=scale, layout=p.layout, name=p.name)

        with shard_rng(tensor):
            if is_sharded(tensor) and p.init in ("orthogonal", "spectral"):
                whole_matrix_init(tensor, init)
            else:
                init(tensor)
        _scale_columns(tensor, p, previous)
        setattr(tensor, INIT_MARK, init_key(p))


# -- JSON of the records: dataclasses, enums, tuples, from their type hints ------------------------


def _encode(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise SptraceError(f"cannot save {value!r} ({type(value).__name__}) in a plan file: plan keywords must be plain "
                       "numbers, strings, lists or dicts")


def _decode(hint, data):
    origin, args = get_origin(hint), get_args(hint)
    if origin is Union:
        return None if data is None else _decode(next(a for a in args if a is not type(None)), data)
    if origin is tuple:
        inner = [args[0]] * len(data) if len(args) == 2 and args[1] is Ellipsis else args
        return tuple(_decode(a, v) for a, v in zip(inner, data, strict=True))
    if origin is list:
        return [_decode(args[0], v) for v in data]
    if origin is dict:
        return {k: _decode(args[1], v) for k, v in data.items()}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        hints = get_type_hints(hint)
        return hint(**{f.name: _decode(hints[f.name], data[f.name]) for f in dataclasses.fields(hint)
                       if f.init and (f.name in data or _required(f))})
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint(data)
    expected = {float: (int, float), int: (int, float), str: str, bool: bool}.get(hint)
    if expected is not None and (not isinstance(data, expected) or (hint is not bool and isinstance(data, bool))):
        raise TypeError(f"expected {hint.__name__}, got {data!r}")
    return _tuples(data) if hint is Any else data


def _tuples(value):
    """Optimizer keywords come back with JSON's lists as tuples (Adam's ``betas``)."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    return value
