"""``sptrace.validation.validate``: the coord check of a model under sptrace and under the baselines.

For each parametrization (sptrace, standard = the library's init with one lr, NTP = Eq. 22) and
each width: same seed, same real data, a few optimizer steps; record every module's output RMS at
init and the RMS of its change, and every parameter's natural spectral norms (docs/derivations.md §7). Fit the
log-log slope of each against width and judge: width-stable means every slope within ±tol
(outputs at init may shrink). sptrace must pass; the baselines are expected to fail.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence, Union

import torch

from ..apply.parametrize import OPTIMIZERS, default_lr
from ..graph.trace import Trace, trace
from ..types import SptraceError
from .coord import CoordCheck, coord_check, scaled_outside
from .jsonio import write_json
from .models import (PARAMETRIZATIONS, ModelSource, check_parametrizations, data_choices, optimizer_for,
                     require_data, source_of)
from .slopes import Verdict

# The base form's lr at the narrowest width (the base), where every parametrization starts from the
# same model. The reference form uses the optimizer's own default, as the one-line call does, but
# for SGD: torch's 1e-3 leaves the first steps' updates of Θ(1) gains below float32 resolution once
# the readout starts at zero (measured on the zoo GPT: ln_f.weight's update exactly zero at width
# 128 only), so nothing can be measured; 0.05 is in SGD's usual range and passes.
DEFAULT_LR = {"adam": 3e-3, "adamw": 3e-3, "sgd": 0.05, "spectral": 0.02}
REFERENCE_LR_OVERRIDES = {"sgd": 0.05}


def validation_lr(optimizer: str, form: str) -> float:
    """The coord check's lr when none is given (see :data:`DEFAULT_LR`)."""
    if form == "reference":
        return REFERENCE_LR_OVERRIDES.get(optimizer, default_lr(optimizer))
    return DEFAULT_LR[optimizer]


@dataclass
class Run:
    parametrization: str
    coord: CoordCheck
    verdict: Verdict

    def to_dict(self) -> dict:
        return {"parametrization": self.parametrization, "verdict": self.verdict.to_dict(), "coord_check": self.coord.to_dict()}


@dataclass
class Validation:
    model: str
    optimizer: str
    widths: list[int]
    steps: int
    lr: float
    runs: dict[str, Run]
    form: str = "reference"
    files: list[str] = field(default_factory=list)
    # the precision the models were trained and measured in (``coord_check(dtype=...)``)
    dtype: str = "float32"
    # parameters that sptrace classified differently at different widths: name -> what changed
    class_changes: dict[str, str] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """sptrace is width-stable and classified every parameter alike at every width (the
        baselines' verdicts are reported, not required)."""
        return self.runs["sptrace"].verdict.passed and not self.class_changes

    def summary(self) -> str:
        lines = [f"{self.model} / {self.optimizer}, {self.form} form, widths {self.widths}, {self.steps} steps, "
                 f"lr {self.lr:g}, {self.dtype}"]
        for name, run in self.runs.items():
            lines.append(f"  {name:8s} {run.verdict.summary(top=3)}")
        if self.class_changes:
            n = len(self.class_changes)
            lines.append(f"  classified differently at different widths ({n} parameter{'s' * (n != 1)}; "
                         "the check compares different plans there):")
            lines += [f"    {name}: {change}" for name, change in list(self.class_changes.items())[:5]]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "model": self.model, "optimizer": self.optimizer, "widths": self.widths, "steps": self.steps,
            "lr": self.lr, "form": self.form, "dtype": self.dtype, "passed": self.passed, "runs": {k: r.to_dict() for k, r in self.runs.items()},
            "class_changes": self.class_changes,
        }


def validate(
    model: Union[str, ModelSource, Callable[[int], torch.nn.Module]],
    widths: Optional[Sequence[int]] = None,
    optimizer: str = "adam",
    steps: int = 4,
    *,
    lr: Optional[float] = None,
    batch_size: int = 32,
    parametrizations: Optional[Sequence[str]] = None,
    device: str = "cpu",
    out: Optional[str] = None,
    seed: int = 0,
    n_seeds: int = 3,
    source: str = "real",
    tol: float = 0.25,
    progress: bool = False,
    build_options: Optional[dict] = None,
    spectral: bool = True,
    form: str = "reference",
    dtype: Optional[Union[str, torch.dtype]] = None,
    attention_fix: bool = False,
    data: Optional[str] = None,
) -> Validation:
    """Coord-check ``model`` (a zoo name, ``hf:``/``timm:`` name, ``module:factory``, a function
    ``width -> nn.Module`` or a :class:`ModelSource`).

    ``data`` (a zoo name): train on that zoo model's batches and loss, as a model of your own is
    validated (docs/validation.md, "Your own model"); ``build_options`` are a factory's kwargs.

    ``spectral=True`` (the default) records every classified parameter's natural spectral norms and
    judges ``nat@0`` and ``dnat`` next to the module outputs (Condition 2, docs/validation.md);
    ``spectral=False`` judges the module outputs only.
    sptrace runs :func:`sptrace.parametrize` with its own defaults (readouts zero where
    ``zero_readout="auto"`` says, the optimizer's weight decay), in ``form`` ``"reference"`` (no
    base: lr is the lr at the reference width, the one-line call) or ``"base"`` (base= the narrowest
    width, delta= the next). ``n_seeds`` init seeds per width are averaged
    (:func:`sptrace.validation.coord.coord_check`): one seed's RMS values scatter enough at CPU widths to
    tilt a slope by ±0.3 (docs/validation.md).
    ``dtype`` (``"float64"`` or a torch dtype; default: as built, float32) trains and measures every
    model in that precision: an update far below a float32 ulp of its weights (a block behind a 1e-6
    layer scale under SGD) is rounded away in float32 whatever the parametrization, and float64 measures
    it (docs/validation.md, "Updates below float32 resolution"). The summary names the precision.
    ``attention_fix=True`` validates what ``parametrize(..., attention_fix=True)`` gives: the μP scale
    1/head_dim where head_dim grows (docs/parametrize.md "Attention"; the base form says where it grows).
    """
    src = source_of(model, data)
    zoo = require_data(src, "validate")
    widths = sorted(widths or zoo.coord_widths)
    parametrizations = _checked(widths, optimizer, parametrizations, form)
    lr = validation_lr(optimizer, form) if lr is None else lr
    precision = _dtype(dtype)
    options = build_options or {}
    batches = _batches(zoo, batch_size, steps, seed, source, device)
    args, kwargs = zoo.example_inputs(device=device)
    records = _param_axes(zoo, widths[0], (args, kwargs), options, data)
    axes = records if spectral else None
    quantities = ["rms@0", f"delta_rms@{steps}"]
    runs, class_changes = {}, {}
    for name in parametrizations:
        make_model, make_optimizer, traced_at = _factories(name, zoo, optimizer, lr, widths, (args, kwargs), device,
                                                           options, form, attention_fix)
        cc = coord_check(
            make_model, make_optimizer, batches, zoo.loss, widths, steps=steps, seed=seed, n_seeds=n_seeds,
            device=device, progress=progress, param_axes=axes, params=spectral, dtype=precision,
        )
        verdict = cc.verdict(tol=tol, quantities=quantities, allow_shrink=["rms@0"],
                             params=list(axes) if spectral else False, expected_for=scaled_outside(records, quantities))
        runs[name] = Run(name, cc, verdict)
        if name == "sptrace":
            class_changes = classification_changes(traced_at)
    result = Validation(src.name, optimizer, list(widths), steps, lr, runs, form, class_changes=class_changes,
                        dtype=runs[parametrizations[0]].coord.precision)
    if out:
        result.files = _write(result, out)
    return result


def _checked(widths, optimizer: str, parametrizations, form: str) -> Sequence[str]:
    """The parametrizations to run (by default every one the optimizer has), once the arguments are valid."""
    if len(widths) < 2:
        raise SptraceError("validate needs at least two widths")
    if optimizer not in OPTIMIZERS:
        raise SptraceError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    if parametrizations is None:  # NTP (Eq. 22) has no spectral-optimizer form
        parametrizations = ("sptrace", "sp") if optimizer == "spectral" else PARAMETRIZATIONS
    check_parametrizations(parametrizations, "validate")
    if form not in ("reference", "base"):
        raise SptraceError(f"validate(form=...) is 'reference' (parametrize's default without a base) or 'base' "
                           f"(base= the narrowest width), got {form!r}")
    return parametrizations


def _dtype(dtype: Optional[Union[str, torch.dtype]]) -> Optional[torch.dtype]:
    """``dtype`` as a torch floating dtype (a name such as ``"float64"`` or a dtype), or None."""
    if dtype is None or isinstance(dtype, torch.dtype) and dtype.is_floating_point:
        return dtype
    found = getattr(torch, str(dtype), None)
    if not isinstance(found, torch.dtype) or not found.is_floating_point:
        raise SptraceError(f"validate(dtype={dtype!r}): not a torch floating dtype; pass e.g. 'float64' or "
                           "torch.float64 (None: the models' own, float32)")
    return found


def _batches(zoo, batch_size, steps, seed, source, device) -> list:
    stream = zoo.batches(batch_size, seed=seed, source=source, device=device)
    return [next(stream) for _ in range(steps)]


def _factories(name, zoo, optimizer, lr, widths, example, device, options, form, attention_fix=False):
    """make_model(width) / make_optimizer(model) for one parametrization; in the base form anchored
    at widths[0], with the delta model (widths[1]) so that the base width itself is classified like
    the others."""
    optimizers: dict[int, torch.optim.Optimizer] = {}
    traces: dict = {}  # one capture per width, shared by its seeds
    traced_at: dict[int, Trace] = {}

    def make_model(width):
        model = zoo.build(width, **options).to(device)
        base = delta = None
        if form == "base":
            with torch.device("meta"):  # only their shapes matter
                base, delta = zoo.build(widths[0], **options), zoo.build(widths[1], **options)
        built = optimizer_for(model, name, optimizer, lr, example, base, delta, traces=traces,
                              attention_fix=attention_fix)
        optimizers[id(model)] = built
        if hasattr(built, "sptrace"):
            traced_at.setdefault(width, built.sptrace.trace)
        return model

    return make_model, lambda model: optimizers.pop(id(model)), traced_at


def classification_changes(traced_at: dict[int, Trace]) -> dict[str, str]:
    """The parameters whose class (kind, role, width axes) differs between the widths' traces,
    each with the class at each width and the reasons of the axes that flip. Automatic mode decides
    a parameter's dims from one graph, and a size that coincides with another at one width (a
    grouped block as large as one head) can tie axes there only (docs/validation.md); a coord check
    across such widths compares different plans, so validate names them instead of judging them."""
    changes = {}
    by_width = {width: {r.name: r for r in traced} for width, traced in sorted(traced_at.items())}
    names = set.intersection(*(set(named) for named in by_width.values())) if by_width else set()
    for name in sorted(names):
        records = {width: named[name] for width, named in by_width.items()}
        classes = {width: (r.kind, r.role, r.width_dims) for width, r in records.items()}
        if len(set(classes.values())) == 1:
            continue
        parts = []
        for cls in dict.fromkeys(classes.values()):
            at = [w for w, c in classes.items() if c == cls]
            record = records[at[0]]
            flips = [d.reason for d in record.dims
                     if len({d.axis in c[2] for c in classes.values()}) > 1]
            why = f" ({'; '.join(dict.fromkeys(flips))})" if flips else ""
            parts.append(f"{record.role.value}, width axes {list(record.width_dims)} at "
                         f"{', '.join(map(str, at))}{why}")
        changes[name] = "; ".join(parts)
    return changes


def _check_takes(zoo, model, width, data: str) -> None:
    """A model put on a zoo model's data (``data=``) takes its inputs and gives what its loss reads;
    else one error that says what each zoo model's batches hold."""
    device = next((p.device for p in model.parameters()), "cpu")
    (inputs, target), = zoo.batches(2, seed=0, source="synthetic", steps=1, device=device)
    try:
        with torch.no_grad():
            zoo.loss(model(*inputs), target)
    except Exception as exc:  # noqa: BLE001 - whatever fails, the cure is the same: another data=
        raise SptraceError(f"{zoo.name} (width {width}) does not train on data={data!r}: {type(exc).__name__}: "
                           f"{exc}\npass data= the zoo model whose batches it takes:\n{data_choices()}") from exc


def _param_axes(zoo, width, example, options, data=None) -> dict:
    """Each parameter's fan-in / fan-out axes and spaces, for the natural spectral norms, and the
    constant its output is multiplied by (a one-element buffer has its value on the CPU, not on meta);
    with ``data`` (validate's), first whether the model takes that zoo model's batches."""
    args, kwargs = example
    tensors = [t for t in torch.utils._pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
    model = zoo.build(width, **options).to(tensors[0].device if tensors else "cpu")
    if data is not None:
        _check_takes(zoo, model, width, data)
    return {alias: r for r in trace(model, *args, **kwargs) for alias in r.aliases if r.classified}


def _write(result: Validation, out: str) -> list[str]:
    from . import plots

    os.makedirs(out, exist_ok=True)
    stem = f"{result.model}-{result.optimizer}"
    files = [write_json(result.to_dict(), os.path.join(out, f"{stem}.json"))]
    for name, run in result.runs.items():
        files.append(plots.plot_coord_check(run.coord, os.path.join(out, f"{stem}-{name}-coord.png"),
                                            title=f"{result.model} {result.optimizer}: {name}", allow_shrink=["rms@0"]))
        if run.coord.param_records:
            files.append(plots.plot_coord_check(
                run.coord, os.path.join(out, f"{stem}-{name}-spectral.png"), params=True,
                quantities=["nat@0", "dnat", "dnat_last"],
                title=f"{result.model} {result.optimizer}: {name}, natural spectral norms"))
    return files
