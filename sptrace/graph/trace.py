"""``sptrace.trace``: capture → uses → axes → classify, and the ``Trace`` object it returns."""
from __future__ import annotations

import inspect
import json
import math
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Callable, Iterator, Mapping, Optional, Sequence

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from ..types import NEVER_USED, AttentionSite, CapturedGraph, Kind, ParamFacts, ParamRecord, Space, SptraceError, UseAnalysis
from . import report as _report
from .attention import assume_fixed_head_dims, find_attention, with_base
from .axes import label_axes
from .blocks import mark_column_blocks
from .capture import MODEL_ROOT, capture, within
from .classify import classify
from .constants import forward_constants, unknown_constants
from .ops import Shapes, op_name
from .selection import mark_selection
from .siblings import from_identical_siblings
from .l2norm import mark_l2_normalised
from .selfnorm import mark_self_normalised, self_normalisers
from .uses import analyse_uses
from .products import mark_products
from .weightnorm import mark_weight_norms
from .repeats import MetaScalars, Run, renamed, repeated_runs, truncated
from .widths import check_overrides, deciders, delta_shapes, override

CONTRACTIONS = ("linear", "mm", "bmm", "matmul", "addmm", "baddbmm", "einsum", "mv", "dot", "conv")


@dataclass
class Trace:
    """One record per distinct parameter tensor; index by any of its names (aliases included).

    ``captured`` / ``graph``: the graph the records were derived from. Where ``repeats`` is not
    empty, runs of identical blocks were captured as three kept blocks each (graph/repeats.py):
    the graph then lacks the elided blocks' nodes, and their records and attention sites are the
    second kept block's, renamed (their ``node`` fields name that block's nodes)."""

    records: list[ParamRecord]
    route: str
    failures: dict[str, str]
    warnings: list[str]
    attention: list[AttentionSite]
    width_mode: str  # "automatic" | "base"
    captured: CapturedGraph = field(repr=False)
    # runs of identical blocks captured once (graph/repeats.py): ``captured`` then holds the first,
    # second and last child of each run; the records of the others are the second's, renamed
    repeats: list[Run] = field(default_factory=list, repr=False)

    def __iter__(self) -> Iterator[ParamRecord]:
        return iter(self.records)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, name: str) -> ParamRecord:
        for record in self.records:
            if name == record.name or name in record.aliases:
                return record
        raise KeyError(f"no parameter named {name!r}; known: {', '.join(r.name for r in self.records)}")

    def __contains__(self, name: str) -> bool:
        return any(name == r.name or name in r.aliases for r in self.records)

    @property
    def graph(self):
        return self.captured.graph

    @property
    def unclassified(self) -> list[ParamRecord]:
        return [r for r in self.records if r.kind is Kind.UNCLASSIFIED]

    def summary(self) -> dict:
        return {
            "route": self.route,
            "width_mode": self.width_mode,
            "width_sizes": sorted({r.shape[a] for r in self.records if r.classified for a in r.width_dims}),
            "parameters": len(self.records),
            "kinds": dict(Counter(r.kind.value for r in self.records)),
            "roles": dict(Counter(r.role.value for r in self.records)),
            "capture_failures": dict(self.failures),
        }

    def report(self, format: str = "text") -> str:
        return _report.render(self, format)

    def to_dict(self) -> dict:
        return json.loads(_report.render(self, "json"))


def trace(
    model: torch.nn.Module,
    *example_args,
    base: Optional[torch.nn.Module] = None,
    delta: Optional[torch.nn.Module] = None,
    strict: bool = False,
    width_overrides: Optional[Mapping[str, Sequence[int]]] = None,
    routes: Sequence[str] = ("export", "eager"),
    **example_kwargs,
) -> Trace:
    """Trace ``model`` on the example inputs and classify every parameter from the graph.

    ``base``: a narrower model of the same architecture; dims whose size differs are width.
    ``delta``: with ``base``, a model of another width (its shapes only: meta is enough); dims
    whose size differs between base and delta are width too, so that the model at the base width
    itself is classified like every other width (mup's delta model).
    ``width_overrides``: ``{parameter name: width axes}`` replaces the decision for a parameter.
    ``strict``: raise ``SptraceError`` when a parameter cannot be classified.
    """
    if not isinstance(model, torch.nn.Module):
        raise SptraceError(f"sptrace.trace expects a torch.nn.Module, got {type(model).__name__}")
    _check_materialised(model, "model")
    if isinstance(base, torch.nn.Module):
        _check_materialised(base, "base")
    names_by_tensor = _aliases(model)
    if not names_by_tensor:
        return Trace([], "none", {}, [f"{type(model).__name__} has no parameters: nothing to classify"], [], "automatic", None)
    _check_keywords(model, example_kwargs)
    runs = _shortcut_runs(model, example_args, example_kwargs, base, delta, width_overrides, routes)
    result = None
    if runs:
        try:
            with truncated(runs, model, base, delta):
                cut = _traced(model, example_args, example_kwargs, base, delta, width_overrides, routes=("export",))
            result = _expanded(cut, runs, model)
        except SptraceError:
            result = None  # the cut model does not export: the full capture decides, by every route
    if result is None:
        result = _traced(model, example_args, example_kwargs, base, delta, width_overrides, routes)
    result = _with_the_other_mode(result, model, lambda: _traced(model, example_args, example_kwargs, base, delta,
                                                                  width_overrides, routes))
    result = _with_identical_siblings(result, model)
    if strict and result.unclassified:
        lines = "\n".join(f"  {r.name}: {r.problem}" for r in result.unclassified)
        raise SptraceError(f"{len(result.unclassified)} parameter(s) could not be classified:\n{lines}\n"
                           "Pass width_overrides, rewrite the use with a supported op, or call with strict=False.")
    return result


def _traced(model, example_args, example_kwargs, base, delta, width_overrides, routes) -> Trace:
    """capture → uses → axes → classify → attention on ``model`` as it is now (cut or whole)."""
    names_by_tensor = _aliases(model)
    captured = capture(model, example_args, example_kwargs, routes=routes)
    shapes = Shapes(captured.graph)
    norms = self_normalisers(captured, shapes)
    captured = replace(captured, state_buffers=norms.state_buffers, normaliser_nodes=norms.regions)
    uses = analyse_uses(captured, shapes)
    labels = label_axes(captured, shapes, uses.op_axes, _dense_fan_in(uses))
    assume_fixed_head_dims(captured, shapes, uses.op_axes, labels, uses.uses)
    nodes_of = _param_nodes_by_tensor(model, captured)
    facts = _facts(model, captured, uses, names_by_tensor, nodes_of, forward_constants(captured, shapes, uses, labels))
    warnings = [f"capture route {r!r} failed, used {captured.route!r}: {msg}" for r, msg in captured.failures.items()]
    warnings += unknown_constants(captured, uses)
    base_shapes = _read_base(base, model) if base is not None else None
    shapes_in_delta = delta_shapes(delta, base_shapes)
    decide_for = deciders(facts, nodes_of, labels, base_shapes, shapes_in_delta, warnings)
    records = []
    for fact in facts:
        decide = decide_for(fact)
        if width_overrides and (set(fact.aliases) & set(width_overrides)):
            decide = override(fact, width_overrides, decide)
        base_shape, base_groups = (base_shapes or {}).get(fact.name, (None, None))
        records.append(_with_base_groups(classify(fact, decide, base_shape, base_groups)))
    check_overrides(width_overrides, records)
    records = mark_self_normalised(norms, captured, mark_weight_norms(captured, mark_selection(captured, records)))
    records = mark_products(captured, records)  # W = carrier * factor: which one carries W's rule
    records = mark_l2_normalised(captured, uses, labels, records, model.get_parameter, base_shapes)
    records = mark_column_blocks(captured, labels, records, model, base_shapes, shapes_in_delta)
    warnings += _record_warnings(records)
    warnings += _constant_row_norm_caps(captured, records)
    attention = find_attention(captured, shapes, uses.op_axes, labels, base_shapes)
    if base is not None:
        attention = _base_attention(attention, base, delta, example_args, example_kwargs, routes)
    return Trace(records, captured.route, captured.failures, warnings, attention,
                 "base" if base is not None else "automatic", captured)


def _with_the_other_mode(result: Trace, model: torch.nn.Module, trace_again: Callable[[], Trace]) -> Trace:
    """Parameters the forward does not reach in the model's mode, classified from a capture in the other
    mode (train <-> eval). A forward can differ by mode in which parameters it reaches: LayerDrop skips
    whole layers at random in training (wav2vec2: layerdrop 0.1 by default), an auxiliary classifier runs
    only in training (torchvision's Inception); the parameters are the same and are trained in either
    case. Their records, and the attention sites of modules this capture did not reach, come from the
    other capture; a warning names them. The model's modes are restored."""
    missing = [r.name for r in result.records if r.problem == NEVER_USED]
    if not missing:
        return result
    other_mode = "eval" if model.training else "train"
    with _in_the_other_mode(model):
        try:
            other = trace_again()
        except SptraceError:
            return result
    found = {r.name: r for r in other.records if r.name in missing and r.problem != NEVER_USED}
    if not found:
        return result
    records = [found.get(r.name, r) for r in result.records]
    sites = {site.module for site in result.attention}
    attention = result.attention + [site for site in other.attention if site.module not in sites]
    return _reclassified(result, records, attention,
                         f"{len(found)} parameters the forward reaches only in {other_mode} mode are classified "
                         f"from a capture in {other_mode} mode: {_listed(list(found))}")


def _with_identical_siblings(result: Trace, model: torch.nn.Module) -> Trace:
    """Parameters the inputs never reach, classified as the same parameters of an identical sibling
    they do reach (graph/siblings.py: experts a router sent no token to); a warning names them."""
    copied = from_identical_siblings(model, result.records, result.attention)
    if copied is None:
        return result
    pairs = [f"{child} as {sibling}" for child, sibling in copied.sources.items()]
    return _reclassified(result, copied.records, copied.attention,
                         f"{len(pairs)} modules the forward does not reach on these inputs are classified as an "
                         f"identical sibling it reaches (a router that sent them no token, docs/parametrize.md "
                         f"\"Parameters the inputs never reach\"): {_listed(pairs)}")


def _reclassified(result: Trace, records: list[ParamRecord], attention: list[AttentionSite], line: str) -> Trace:
    """``result`` with some never-reached parameters classified after all: the never-used warning
    names those still unreached, and ``line`` says how the others were classified."""
    unreached = _never_used_warning([r.name for r in result.records if r.problem == NEVER_USED])
    warnings = [w for w in result.warnings if w not in unreached]
    warnings += _never_used_warning([r.name for r in records if r.problem == NEVER_USED])
    return replace(result, records=records, attention=attention, warnings=[*warnings, line])


@contextmanager
def modes_restored(model: torch.nn.Module) -> Iterator[None]:
    """Every module's own train/eval mode back after the block, whatever the block set."""
    modes = {module: module.training for module in model.modules()}
    try:
        yield
    finally:
        for module, training in modes.items():
            module.training = training


@contextmanager
def _in_the_other_mode(model: torch.nn.Module) -> Iterator[None]:
    """``model.train(not model.training)``, then every module's own mode back."""
    with modes_restored(model):
        model.train(not model.training)
        yield


def _shortcut_runs(model, args, kwargs, base, delta, width_overrides, routes) -> list[Run]:
    """The runs of identical blocks whose middle children need not be captured (graph/repeats.py):
    only on the export route, without width overrides (they name single parameters), and where the
    base and the delta have the same containers with the same children."""
    if "export" not in routes or width_overrides:
        return []
    runs = repeated_runs(model, args, kwargs)
    for other in (base, delta):
        if other is not None and runs:
            runs = [r for r in runs if _same_container(other, r)]
    return runs


def _same_container(other: torch.nn.Module, run: Run) -> bool:
    try:
        container = other.get_submodule(run.container) if run.container else other
    except AttributeError:
        return False
    return tuple(container._modules) == run.keys


def _expanded(cut: Trace, runs: list[Run], model) -> Trace:
    """The trace of the cut model with the records and attention sites of every elided child:
    the middle kept child's, renamed; records in the model's parameter order, warnings re-derived."""
    by_name = {r.name: r for r in cut.records}
    elided = {}  # module path of an elided child -> (the kept child it copies, whether the container is the root)
    for run in runs:
        for key in run.elided:
            elided[run.path(key)] = (run.path(run.keys[1]), not run.container)
    records = []
    for names in _aliases(model).values():
        owner = next((path for path in elided if names[0].startswith(path + ".")), None)
        if owner is None:
            records.append(by_name[names[0]])
            continue
        kept, root = elided[owner]
        records.append(renamed(by_name[kept + names[0][len(owner):]], kept, owner, root))
    attention = []
    for site in cut.attention:
        attention.append(site)
        for run in runs:
            kept = run.path(run.keys[1])
            if within(site.module, kept):
                attention += [renamed(site, kept, run.path(k), not run.container) for k in run.elided]
    never = _never_used_warning([r.name for r in cut.records if r.problem == NEVER_USED])
    warnings = []
    for line in cut.warnings:
        if line in never:
            warnings += _never_used_warning([r.name for r in records if r.problem == NEVER_USED])
            continue
        warnings.append(line)
        for owner, (kept, root) in elided.items():
            if renamed(line, kept, owner, root) != line:
                warnings.append(renamed(line, kept, owner, root))
    return replace(cut, records=records, attention=attention, warnings=warnings, repeats=list(runs))


def forward_signature(model: torch.nn.Module) -> str:
    """``Name.forward(x, mask=None)``: what the model's forward takes, for error messages."""
    try:
        return f"{type(model).__name__}.forward{inspect.signature(model.forward)}"
    except (TypeError, ValueError):
        return f"{type(model).__name__}.forward(...)"


def forward_parameters(model: torch.nn.Module) -> Optional[list[inspect.Parameter]]:
    """The parameters of the model's forward (None where Python cannot read its signature)."""
    return signature_parameters(model.forward)


def signature_parameters(function: Callable) -> Optional[list[inspect.Parameter]]:
    """The parameters of ``function`` (None where Python cannot read its signature)."""
    try:
        return list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return None


def _check_keywords(model, kwargs) -> None:
    """Example inputs given by name must be names the forward takes (or it takes ``**kwargs``)."""
    params = forward_parameters(model)
    if not kwargs or params is None:
        return
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    named = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    unknown = [k for k in kwargs if k not in named]
    if unknown:
        raise SptraceError(
            f"example input(s) {', '.join(map(repr, unknown))} given by keyword, but {forward_signature(model)} "
            "takes no argument of that name: a dict of example inputs is passed as model(**inputs). Use the "
            "forward's own names, or pass the inputs positionally: example_inputs=(x,) to parametrize / "
            "param_groups, sptrace.trace(model, x) (docs/parametrize.md, \"Example inputs\")")


def _aliases(model) -> dict[int, list[str]]:
    names: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(name)
    return names


def _dense_fan_in(uses: UseAnalysis) -> set:
    refs = set()
    for param, found in uses.uses.items():
        for use in found:
            if use.input_space is Space.DENSE and (use.op in CONTRACTIONS or use.op.startswith("conv")):
                refs |= {(param, a) for a in use.fan_in_axes}
    return refs


def _param_nodes_by_tensor(model, captured: CapturedGraph) -> dict[int, list[str]]:
    """Export may lift one tied tensor as several placeholders: group them by identity."""
    nodes: dict[int, list[str]] = {}
    for node_name, pname in captured.param_nodes.items():
        nodes.setdefault(id(model.get_parameter(pname)), []).append(node_name)
    return nodes


def _facts(model, captured: CapturedGraph, uses: UseAnalysis, names_by_tensor, nodes_of, constants) -> list[ParamFacts]:
    order = {n.name: i for i, n in enumerate(captured.graph.nodes)}
    facts = []
    for tensor_id, names in names_by_tensor.items():
        tensor = model.get_parameter(names[0])
        nodes = nodes_of.get(tensor_id, [])
        found = sorted((u for n in nodes for u in uses.uses.get(n, [])), key=lambda u: order.get(u.node, 0))
        problem = next((uses.problems[n] for n in nodes if n in uses.problems), None)
        if not (tensor.dtype.is_floating_point or tensor.dtype.is_complex):
            problem = f"parameter of dtype {tensor.dtype} is not a float tensor: it cannot be trained"
        elif not nodes:
            problem = "not seen in the captured graph"
        if problem is not None:
            problem += _reparametrization_hint(model, names[0])
        per_use = {use: c for n in nodes for use, c in constants.get(n, {}).items()}  # graph/constants.py
        found = [replace(u, constant=per_use[u.node]) if u.node in per_use else u for u in found]
        facts.append(ParamFacts(names[0], tuple(names), tensor, found, problem))
    return facts


def _reparametrization_hint(model, name: str) -> str:
    """What to do when an unclassified parameter feeds a weight reparametrization (weight_norm,
    spectral_norm, orthogonal): the spectral condition is stated for the weight the layer uses,
    not for the tensors it is computed from."""
    from torch.nn.utils import parametrize
    from torch.nn.utils.weight_norm import WeightNorm

    owner_path, _, leaf = name.rpartition(".")
    owner = model.get_submodule(owner_path) if owner_path else model
    if isinstance(owner, parametrize.ParametrizationList):
        layer, _, tensor_name = owner_path.rpartition(".parametrizations.")
        return (f". It is an input of the torch.nn.utils.parametrize parametrization of {layer}.{tensor_name}; "
                "sptrace's rules are for the weight a layer uses, not for the tensors it is computed from: remove "
                f"it first (torch.nn.utils.parametrize.remove_parametrizations(model.{layer}, {tensor_name!r}))")
    if any(isinstance(h, WeightNorm) and leaf in (f"{h.name}_g", f"{h.name}_v") for h in owner._forward_pre_hooks.values()):
        return (f". It is half of the weight normalization of {owner_path or 'the model'}; sptrace's rules are "
                "for the weight a layer uses, not for its (g, v) factors: remove it first "
                f"(torch.nn.utils.remove_weight_norm(model.{owner_path}))")
    return ""


def _read_base(base, model) -> dict[str, tuple[tuple[int, ...], None]]:
    """{name: (base shape, None)}, read from the base's parameters (no capture: the base's graph
    is the model's, only its sizes differ, as mup's ``set_base_shapes``); checks the base fits.
    The base's group counts follow from its shapes once the width dims are known (:func:`_with_base_groups`)."""
    if not isinstance(base, torch.nn.Module):
        raise SptraceError(f"base must be a torch.nn.Module of the same architecture, got {type(base).__name__}")
    shapes = {n: tuple(p.shape) for n, p in base.named_parameters(remove_duplicate=False)}
    base_shapes = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        if name not in shapes:
            raise SptraceError(f"parameter {name!r} has no counterpart in the base model; base must have the same architecture")
        b_shape = shapes[name]
        if len(b_shape) != p.dim():
            raise SptraceError(f"parameter {name!r} has shape {tuple(p.shape)} but {b_shape} in the base model: ranks differ")
        for axis, (bs, s) in enumerate(zip(b_shape, p.shape)):
            if bs > s:
                raise SptraceError(
                    f"base model is not narrower: {name!r} axis {axis} is {bs} in the base and {s} in the model; "
                    "pass the narrower model as base"
                )
        base_shapes[name] = (b_shape, None)
    extra = [n for n in shapes if n not in base_shapes]
    if extra:
        raise SptraceError(f"base model has parameters the model lacks: {', '.join(extra)}")
    return base_shapes


def _with_base_groups(record: ParamRecord) -> ParamRecord:
    """The base's group count from its shapes, where the groups grow with the channels
    (:attr:`ParamRecord.groups_grow`)."""
    if record.base_shape is None:
        return record
    groups = record.groups * record.base_shape[0] // record.shape[0] if record.groups_grow else record.groups
    return replace(record, base_groups=groups)


class _HeadDims(TorchFunctionMode):
    """Records the head_dim (q's last size) of every scaled_dot_product_attention call."""

    def __init__(self):
        super().__init__()
        self.head_dims: list[int] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is F.scaled_dot_product_attention:
            self.head_dims.append(int(args[0].shape[-1]))
        return func(*args, **(kwargs or {}))


def _sized_like(sites: list[AttentionSite], other: Optional[torch.nn.Module], args, kwargs) -> Optional[list[AttentionSite]]:
    """``sites`` with the head dims of another width's model (the base or the delta), read from one
    forward of it that records its attention calls (no capture). ``None`` where that model does not
    run on the inputs or its calls do not match the sites one to one (hand-written attention)."""
    if other is None or not sites or any(s.kind != "sdpa" for s in sites):
        return None
    recorder = _HeadDims()
    try:
        with torch.no_grad(), recorder, MetaScalars():
            other(*_on_device(args, other), **_on_device(kwargs, other))
    except Exception:  # noqa: BLE001 - a base that cannot run on the inputs (a width-sized input) has no attention to read
        return None
    if len(recorder.head_dims) != len(sites):
        return None
    return [replace(s, head_dim=d) for s, d in zip(sites, recorder.head_dims)]


def _base_attention(sites, base, delta, args, kwargs, routes) -> list[AttentionSite]:
    """Base mode: whether each site's head_dim grows. SDPA sites read the base's (and the delta's)
    head dims from one forward each; hand-written attention, which only the graph shows, needs the
    base's capture (and the delta's)."""
    base_sites = _sized_like(sites, base, args, kwargs)
    if base_sites is None:
        base_sites = _captured_attention(base, args, kwargs, routes)
        delta_sites = _captured_attention(delta, args, kwargs, routes) if delta is not None else None
    else:
        delta_sites = _sized_like(sites, delta, args, kwargs)
    return sites if base_sites is None else with_base(sites, base_sites, delta_sites)


def _captured_attention(other, args, kwargs, routes) -> Optional[list[AttentionSite]]:
    try:
        return trace(other, *_on_device(args, other), routes=routes, **_on_device(kwargs, other)).attention
    except SptraceError:
        return None


def _on_device(values, module):
    """Base models often live on meta: give them inputs on their device."""
    device = next((p.device for p in module.parameters()), None)
    if device is None:
        return values
    move = lambda t: t.to(device) if isinstance(t, torch.Tensor) else t  # noqa: E731
    from torch.utils import _pytree as pytree

    return pytree.tree_map(move, values)


def _record_warnings(records: list[ParamRecord]) -> list[str]:
    out = _never_used_warning([r.name for r in records if r.problem == NEVER_USED])
    for r in records:
        if r.kind is Kind.UNCLASSIFIED and r.problem != NEVER_USED:
            out.append(f"{r.name}: unclassified: {r.problem}")
        if r.secondary_uses:
            where = ", ".join(f"{u.module or MODEL_ROOT} ({u.op}, {u.role.value}"
                              + (f"; {u.constant.text}" if u.constant is not None else "") + ")" for u in r.secondary_uses)
            out.append(f"{r.name}: tied parameter also used as {where}; that use needs a forward multiplier")
        if not r.requires_grad:
            out.append(f"{r.name}: frozen (requires_grad=False): classified, but left out of optimizer groups")
        if _fan_in_outgrows_fan_out(r):
            out.append(f"{r.name}: its fan-in has more width axes than its fan-out (in {r.fan_in_axes}, out "
                       f"{r.fan_out_axes}, width {r.width_dims}): Condition 2 holds for its updates, but at init it "
                       "reads a generic input as a readout does, so its output shrinks like width^-1/2 there, and a "
                       "norm after it scales its SGD gradient up as much (docs/rules.md, 'nn.Bilinear')")
    return out


def _fan_in_outgrows_fan_out(record: ParamRecord) -> bool:
    """A matrix whose fan-in / fan-out ratio grows with width (nn.Bilinear(n, n, n): fan-in n², fan-out n),
    not a readout (fixed fan-out), whose shrinking init output is μP's own choice."""
    if record.kind is not Kind.MATRIX:
        return False
    if record.base_shape is not None:  # how much each fan grew from the base
        growth = [math.prod(s / b for s, b in ((record.shape[a], record.base_shape[a]) for a in axes))
                  for axes in (record.fan_in_axes, record.fan_out_axes)]
        return growth[0] > growth[1] * 1.01 and growth[1] > 1
    width_in, width_out = (sum(a in record.width_dims for a in axes)
                           for axes in (record.fan_in_axes, record.fan_out_axes))
    return width_in > width_out >= 1  # automatic mode: each width axis grows like the width


def _never_used_warning(names: list[str]) -> list[str]:
    """One line for every parameter the inputs did not reach (a vision tower traced on text, a
    cross-attention traced without encoder states): up to 8 by name, then by owning module."""
    if not names:
        return []
    return [f"{len(names)} parameters never used by the forward pass on these inputs: {_listed(names)}. They keep "
            "their init and get the plain lr; pass example_inputs that reach them to plan them"]


def _listed(names: list[str]) -> str:
    """Up to 8 names, else by owning module with counts."""
    if len(names) <= 8:
        return ", ".join(names)
    owners = Counter(".".join(n.split(".")[:-1][:2]) or n for n in names)
    return ", ".join(f"{owner}.* ({count})" for owner, count in owners.most_common())


def _check_materialised(module: torch.nn.Module, which: str) -> None:
    lazy = [n for n, p in module.named_parameters() if isinstance(p, torch.nn.parameter.UninitializedParameter)]
    if lazy:
        raise SptraceError(
            f"{which} has parameters that lazy modules have not created yet: {', '.join(lazy)}. Run it once on "
            f"the example inputs ({which}(*example_inputs)) so they get their shapes, then call sptrace.")


def _constant_row_norm_caps(captured: CapturedGraph, records: list[ParamRecord]) -> list[str]:
    """nn.Embedding(max_norm=c) rescales each looked-up row to l2 norm <= c in place: with a width
    fan-out that is an RMS of c / sqrt(width), whatever init and lr sptrace gives the table."""
    by_name = {a: r for r in records for a in r.aliases}
    out = []
    for node in captured.graph.nodes:
        if node.op != "call_function" or op_name(node) != "embedding_renorm" or len(node.args) < 3:
            continue
        table = node.args[0]
        while getattr(table, "op", None) == "call_function" and op_name(table) in ("detach", "alias"):
            table = table.args[0]  # F.embedding renorms weight.detach()
        record = by_name.get(captured.param_nodes.get(getattr(table, "name", None)))
        if record is not None and record.fan_out_is_width:
            out.append(f"{record.name}: nn.Embedding(max_norm={node.args[2]}) caps each looked-up row's l2 norm at a "
                       "constant, so its RMS shrinks like 1/sqrt(width) whatever the init: scale max_norm with "
                       "sqrt(width) (the width-stable form) or drop it")
    return out


__all__ = ["Trace", "forward_signature", "trace"]
