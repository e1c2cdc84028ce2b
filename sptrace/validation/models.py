"""Resolve a MODEL argument (a zoo name, ``hf:<model_type>``, ``timm:<model_name>``,
``module:factory`` or a builder function) into a model and example inputs, and build a model's
optimizer under each parametrization the validation compares.

``hf:`` and ``timm:`` name an architecture of those catalogs, built from its config at a small width
with random weights and trained on the zoo's data (:mod:`sptrace.validation.catalog`).

A factory is called as ``factory(width=W)`` when it accepts ``width`` (else with no argument) and
returns either a module, traced on its ``example_inputs()`` or on what sptrace infers it takes (as
``parametrize(model)`` does: docs/parametrize.md, "Example inputs"; e.g.
``torchvision.models:resnet18``), or ``(model, args)`` / ``(model, args, kwargs)``.

``data=`` (a zoo name) trains any of them on that zoo model's batches and loss (:func:`on_data`):
how a model from outside the zoo is validated (docs/validation.md, "Your own model").
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import torch

import models_zoo
from models_zoo import ZooSpec

from ..apply.inputs import resolve_example_inputs
from ..apply.parametrize import OPTIMIZERS, parametrize
from ..types import SptraceError
from .catalog import ExternalSpec, catalog_spec

# The parametrizations the coord check and the lr sweep compare, by one name each everywhere (API,
# command line, JSON): sptrace's own, standard practice (the library's init, one global lr) and
# NTP (paper Eq. 22).
PARAMETRIZATIONS = ("sptrace", "sp", "ntp")
CATALOGS = ("hf:", "timm:")


@dataclass
class ModelSource:
    name: str
    build: Callable[[int], tuple[torch.nn.Module, tuple, dict]]
    default_width: Optional[int]
    zoo: Any = None  # the ZooSpec when MODEL names a zoo model
    # a factory's own call, width and build options -> module (None: the zoo spec's ``build``)
    factory: Optional[Callable[..., torch.nn.Module]] = None


def source_of(model: Any, data: Optional[str] = None) -> ModelSource:
    """``model`` (a MODEL string, a :class:`ModelSource` or a builder ``width -> nn.Module``) as a
    source, on the zoo model ``data``'s batches and loss where ``data`` is given."""
    if isinstance(model, ModelSource):
        src = model
    elif isinstance(model, str):
        src = resolve(model)
    elif callable(model):
        src = _from_builder(model, getattr(model, "__name__", type(model).__name__))
    else:
        raise SptraceError(f"MODEL must be a zoo name, hf:<model_type>, timm:<model_name>, module:factory or a "
                           f"function width -> nn.Module; got {type(model).__name__}")
    return src if data is None else on_data(src, data)


def on_data(src: ModelSource, data: str) -> ModelSource:
    """``src``'s model trained on the zoo model ``data``'s batches and loss, traced on its inputs."""
    spec = zoo_spec(data)
    builder = src.factory or (src.zoo.build if src.zoo is not None else (lambda width: src.build(width)[0]))
    external = ExternalSpec(src.name, f"{src.name} on {data}'s data", src.default_width or spec.default_width,
                            spec.coord_widths, spec.task, builder, spec.batches_fn)
    return ModelSource(src.name, _from_spec(src.name, external).build, external.default_width, external, src.factory)


def zoo_spec(name: str) -> ZooSpec:
    """The zoo model ``name``; an unknown name is an :class:`SptraceError` that lists the zoo."""
    try:
        return models_zoo.get(name)
    except KeyError as exc:
        raise SptraceError(f"unknown zoo model {name!r}: pass one of {', '.join(models_zoo.names())} "
                           "(python -m models_zoo describes them)") from exc


def require_data(src: ModelSource, where: str, argument: str = "data=") -> Any:
    """``src``'s zoo spec (its data and loss); a model from outside the zoo without ``data`` is one
    error that says what to pass and what each zoo model's batches hold."""
    if src.zoo is None:
        raise SptraceError(f"{where} needs data and a loss: {src.name} is not a zoo model; pass {argument} the zoo "
                           f"model whose batches and loss it trains on (its inputs must be that model's):\n"
                           f"{data_choices()}")
    return src.zoo


def data_choices() -> str:
    """What each zoo model's batches hold, for an error that asks for ``data=``."""
    lines = []
    for name in models_zoo.names():
        spec = models_zoo.get(name)
        (inputs, target), = spec.batches(2, seed=0, source="synthetic", steps=1)
        shown = ", ".join(f"{tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}" for t in inputs)
        classes = models_zoo.data.VOCAB_SIZE if spec.task == "language-modelling" else models_zoo.data.NUM_CLASSES
        lines.append(f"  {name}: inputs {shown}; output (..., {classes}) logits for {spec.task}, "
                     f"targets {tuple(target.shape)}")
    return "\n".join(lines)


def resolve(model: str) -> ModelSource:
    if model.startswith(CATALOGS):
        return _from_spec(model, catalog_spec(model))
    if ":" in model:
        return _from_factory(model)
    try:
        spec = models_zoo.get(model)
    except KeyError as exc:
        raise SptraceError(f"unknown model {model!r}: pass a zoo name ({', '.join(models_zoo.names())}), "
                           "hf:<model_type>, timm:<model_name> or module:factory") from exc
    return _from_spec(model, spec)


def _from_spec(model: str, spec: Any) -> ModelSource:
    def build(width):
        net = spec.build(width)
        args, kwargs = spec.example_inputs()
        return net, tuple(args), dict(kwargs)

    return ModelSource(model, build, spec.default_width, spec)


def _from_factory(text: str) -> ModelSource:
    module_name, _, attr = text.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise SptraceError(f"cannot load {text!r}: {exc}. MODEL is a zoo name or module:factory") from exc
    return _from_builder(factory, text)


def _from_builder(factory: Callable, name: str) -> ModelSource:
    takes_width = "width" in inspect.signature(factory).parameters

    def call(width: Optional[int], **options: Any) -> Any:
        return factory(width=width, **options) if takes_width and width is not None else factory(**options)

    def build(width):
        made = call(width)
        if isinstance(made, torch.nn.Module):
            found = resolve_example_inputs(made)  # its example_inputs(), else what the model says it takes
            made = (made, found.args, found.kwargs)
        if len(made) == 2:
            made = (*made, {})
        model, args, kwargs = made
        return model, tuple(args) if isinstance(args, (tuple, list)) else (args,), dict(kwargs)

    def module(width: int, **options: Any) -> torch.nn.Module:
        made = call(width, **options)
        return made if isinstance(made, torch.nn.Module) else made[0]

    return ModelSource(name, build, None, factory=module)


def check_parametrizations(names: Any, where: str, allowed: tuple[str, ...] = PARAMETRIZATIONS) -> None:
    """Raise an :class:`SptraceError` naming every name in ``names`` that is not in ``allowed``."""
    unknown = sorted(set(names) - set(allowed))
    if unknown:
        raise SptraceError(f"{where}: unknown parametrizations {unknown}; choose from {', '.join(allowed)}")


def optimizer_for(
    model: torch.nn.Module,
    parametrization: str,
    optimizer: str,
    lr: float,
    example_inputs: Any,
    base: Optional[torch.nn.Module] = None,
    delta: Optional[torch.nn.Module] = None,
    zero_readout: Union[bool, str] = "auto",
    traces: Optional[dict] = None,
    attention_fix: bool = False,
) -> torch.optim.Optimizer:
    """``model``'s optimizer under ``parametrization``: ``"sp"`` keeps the model as built and gives
    every parameter ``lr``; ``"sptrace"`` and ``"ntp"`` call :func:`sptrace.parametrize` (which
    re-initialises the model in place) anchored at ``base``, or at the reference width without one. ``traces``: a dict the caller keeps across
    calls; the trace of each model shape is kept there and reused (every seed at a width has the
    same graph: one capture serves them all). ``attention_fix``: as :func:`sptrace.parametrize`'s."""
    check_parametrizations([parametrization], "optimizer_for")
    if parametrization == "sp":
        return OPTIMIZERS[optimizer](model.parameters(), lr=lr)
    key = tuple((n, tuple(p.shape)) for n, p in model.named_parameters(remove_duplicate=False))
    traced = traces.get(key) if traces is not None else None
    built = parametrize(model, optimizer, lr=lr, example_inputs=example_inputs, base=base, delta=delta,
                        zero_readout=zero_readout, traced=traced, parametrization=parametrization,
                        attention_fix=attention_fix)
    if traces is not None:
        traces.setdefault(key, built.sptrace.trace)
    return built
