"""The coordinate check: the same seed and data at every width, every module's output and every
parameter's natural spectral norm recorded (paper Desideratum 1; docs/measurements.md).
:class:`OutputRecorder` hooks every submodule and keeps the RMS (optionally a copy) of its first
tensor output; :func:`coord_check` trains the same seed on the same batches at each width and
returns a :class:`CoordCheck` (per-module RMS at init and of the change, per-parameter natural
spectral norms of W and of the update), with JSON round-tripping, slope fits and a verdict.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

import torch
from torch import Tensor, nn

from ..types import SptraceError
from .jsonio import from_json_float, to_json
from .operators import judge, matrix_dims, paired_specs, parameter_spec
from .precision import exact_gradients, in_dtype, largest_ulps, to_device
from .recorder import ROOT, OutputRecorder, first_tensor, rms
from .seeds import PerSeed, Rows, mean_rows, merge_widths, seed_series

__all__ = ["rms", "first_tensor", "call_model", "OutputRecorder", "CoordCheck", "PerSeed", "coord_check",
           "scaled_outside", "ROOT"]

# the parameter quantities the verdict judges: W at init and its total update after T steps (Condition 2)
PARAM_JUDGED = ("nat@0", "dnat")
# per-parameter values that are not norms but tell when a norm cannot be judged (below)
DIAGNOSTICS = ("grad64", "ulps")
# A float64 gradient RMS below this fraction of the largest at every width: no effect on the loss,
# its float32 update is rounding noise (see _exact_gradients; a gap of about 9 orders of magnitude).
NO_EFFECT_GRADIENT = 1e-12
NO_EFFECT_REASON = "no effect on the loss: its gradient is zero in float64 (e.g. cancelled by a normalisation)"
# An update no entry of which moved more than this many units in the last place (ulps) of its value, at
# every width: each entry's update is a whole number of ulps, so one under half an ulp reads zero and one
# of 1-2 ulps is off by 25-50 %; its natural norm measures the rounding, not the rule (docs/validation.md,
# "Updates below float32 resolution"). The parameter's init (nat@0) is still judged.
RESOLUTION_ULPS = 2.0


@dataclass
class CoordCheck:
    """Result of :func:`coord_check`.

    ``records[module][quantity]`` and ``param_records[param][quantity]`` are lists aligned with
    ``widths``. Module quantities: ``"rms@0"`` (RMS of the output at init), ``"rms@T"`` (after the
    last step), ``"delta_rms@t"`` (RMS of output after t steps minus output at init, same probe
    batch) for each recorded step t. Parameter quantities (natural spectral norms,
    docs/derivations.md §1): ``"nat@0"`` (W at init), ``"dnat"`` (W_T - W_0), ``"dnat_last"``
    (W_T - W_{T-1}); and the :data:`DIAGNOSTICS` ``"ulps"`` (the update's largest entry in ulps of its
    value, :meth:`below_resolution`) and ``"grad64"`` (:meth:`without_effect`). ``losses[i]`` is the
    training loss per step at ``widths[i]``. With ``n_seeds`` init seeds each record is their mean
    (``ulps``: their max), and ``per_seed`` keeps each seed's own values (``None``: not kept, as in a
    CoordCheck built by hand or read from a file written before it was).
    """

    widths: list[int]
    steps: int
    records: dict[str, dict[str, list[float]]]
    param_records: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    losses: list[list[float]] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    per_seed: Optional[PerSeed] = None

    @property
    def modules(self) -> list[str]:
        return list(self.records)

    def slopes(self, quantities: Optional[Iterable[str]] = None, params: bool = False) -> dict[str, dict[str, Any]]:
        """Log-log slope fits ``{name: {quantity: SlopeFit}}`` (see :mod:`sptrace.validation.slopes`) of the
        records; with two seeds or more kept in ``per_seed``, each fit carries the seeds' own slopes
        (``seed_slopes``) and so its standard error (``se``)."""
        from .slopes import fit_slopes

        src = self.param_records if params else self.records
        seeds = None if self.per_seed is None else (self.per_seed.param_records if params else self.per_seed.records)
        return fit_slopes(self.widths, src, quantities=quantities, seed_records=seeds)

    def verdict(self, tol: float = 0.25, quantities: Optional[Iterable[str]] = None, *,
                params: Union[bool, Iterable[str]] = False, param_quantities: Iterable[str] = PARAM_JUDGED,
                **kwargs: Any) -> Any:
        """Width-stability verdict (see :func:`sptrace.validation.slopes.verdict`) on the module records
        and, with ``params`` (``True``: every recorded parameter, or the names to judge), on the
        parameters' natural spectral norms ``param_quantities`` (Condition 2, docs/validation.md): each
        must be flat in width; an exactly-zero series (a zero-initialised readout or bias at init)
        passes as ``"zero"``; ``nat@0`` may shrink only for a parameter with a side that does not grow
        with width (:meth:`fixed_side`), whose init norm approaches its limit from above."""
        from .slopes import verdict

        slopes = dict(self.slopes(quantities))
        names = [n for n in self.param_records if params is True or (params is not False and n in set(params))]
        fits = self.slopes(param_quantities, params=True)
        judged = [n for n in names if n in fits]
        clash = sorted(set(judged) & set(slopes))
        if clash:
            raise SptraceError(f"CoordCheck.verdict: {clash} name both a module and a parameter; pass params= "
                               "without them")
        inert = {n: NO_EFFECT_REASON for n in judged if self.without_effect(n)}
        judged = [n for n in judged if n not in inert]
        unresolved = {n: self._resolution_reason(n) for n in judged if self.below_resolution(n)}
        slopes.update({n: {q: f for q, f in fits[n].items() if not (n in unresolved and q == "dnat")}
                       for n in judged})
        shrink = {n: ["nat@0"] for n in judged if self.fixed_side(n)}
        return verdict(slopes, tol=tol, unmeasured={**self.meta.get("unmeasured", {}), **inert, **unresolved},
                       allow_shrink_for=shrink, params=judged, precision=self.precision, **kwargs)

    def without_effect(self, name: str) -> bool:
        """Whether ``name``'s float64 gradient is below ``NO_EFFECT_GRADIENT`` of the largest, everywhere."""
        grads = [q["grad64"] for q in self.param_records.values() if "grad64" in q]
        mine = self.param_records.get(name, {}).get("grad64")
        largest = [max(g[i] for g in grads) for i in range(len(mine or []))]
        return bool(mine) and all(0 < big and g <= NO_EFFECT_GRADIENT * big for g, big in zip(mine, largest))

    def below_resolution(self, name: str) -> bool:
        """Whether no entry of ``name``'s update moved more than ``RESOLUTION_ULPS`` ulps of its value at
        init, at every width and seed (``ulps``: the largest over entries and seeds)."""
        ulps = self.param_records.get(name, {}).get("ulps")
        return bool(ulps) and all(u <= RESOLUTION_ULPS for u in ulps)

    def _resolution_reason(self, name: str) -> str:
        largest = max(self.param_records[name]["ulps"])
        return (f"update (dnat) not judged: below {self.precision} resolution, no entry moved more than {largest:g} "
                "ulp of its value at any width (its init is judged)")

    @property
    def precision(self) -> str:
        """The dtype the models were trained and measured in (``meta["dtype"]``; float32 when not recorded)."""
        return str(self.meta.get("dtype") or "float32")

    def fixed_side(self, name: str) -> bool:
        """Whether parameter ``name`` has a side (fan-in or fan-out, as a matrix) that does not grow with
        width: an input or output layer, an embedding, a bias. Unknown (no shapes recorded) counts as no."""
        dims = self.meta.get("param_dims", {}).get(name)
        if not dims or len(dims) < 2:
            return False
        return any(dims[0][i] >= dims[-1][i] for i in range(2))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (non-finite values become the strings "nan", "inf", "-inf")."""
        seeds = self.per_seed
        return to_json({
            "widths": list(self.widths),
            "steps": self.steps,
            "records": _each_value(self.records, float),
            "param_records": _each_value(self.param_records, float),
            "losses": _each_value(self.losses, float),
            "meta": self.meta,
            "per_seed": None if seeds is None else {"seeds": list(seeds.seeds), "records": _each_value(seeds.records, float),
                                                    "param_records": _each_value(seeds.param_records, float)},
        })

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "CoordCheck":
        seeds = d.get("per_seed")
        return cls(
            widths=list(d["widths"]),
            steps=int(d["steps"]),
            records=_each_value(d["records"], from_json_float),
            param_records=_each_value(d.get("param_records", {}), from_json_float),
            losses=_each_value(d.get("losses", []), from_json_float),
            meta=dict(d.get("meta", {})),
            per_seed=None if seeds is None else PerSeed(
                [int(x) for x in seeds["seeds"]], _each_value(seeds["records"], from_json_float),
                _each_value(seeds["param_records"], from_json_float)),
        )


def _each_value(x: Any, convert: Callable[[Any], float]) -> Any:
    """``x`` (mappings and lists of numbers, any depth) with ``convert`` applied to every number."""
    if isinstance(x, Mapping):
        return {k: _each_value(v, convert) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_each_value(v, convert) for v in x]
    return convert(x)


def call_model(model: nn.Module, inputs: Any) -> Any:
    """``model(**inputs)`` for a mapping, ``model(*inputs)`` for a tuple or list, else ``model(inputs)``."""
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    return model(inputs)


def scaled_outside(records: Mapping[str, Any], quantities: Iterable[str]) -> dict[str, dict[str, float]]:
    """``{module: {quantity: expected slope}}`` for modules whose output a parent multiplies by a
    constant ``c = n^p`` (n ∝ width; docs/rules.md "Constants in the forward"): sptrace makes ``c W``
    width-stable, so the module's own output scales like ``n^-p`` (Gemma 4's per-layer projection,
    times ``hidden_size^-1/2`` outside its Linear). ``records``: name -> ParamRecord-like."""
    out: dict[str, dict[str, float]] = {}
    for record in records.values():
        for use, found in _scaled_uses(record):
            if use.module and found.module != use.module and not found.module.startswith(use.module + "."):
                out[use.module] = {q: -found.power for q in quantities}
    return out


def _scaled_uses(record: Any) -> list[tuple[Any, Any]]:
    """(use, its constant) for every use of ``record`` the forward scales: the primary use's is the
    record's ``forward_constant``; another use carries its own, counted where its axis grows
    (graph/classify.py; Pegasus scales its shared embedding's lookups by sqrt(d) in the encoder and
    in the decoder)."""
    uses, found = getattr(record, "uses", ()), getattr(record, "forward_constant", None)
    pairs = [(uses[0], found)] if found is not None and uses else []
    others = (*uses[1:], *getattr(record, "secondary_uses", ()))
    return pairs + [(u, u.constant) for u in others if getattr(u, "constant", None) is not None]


@contextmanager
def _forked_rng(device: torch.device) -> Iterator[None]:
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        yield


@dataclass(frozen=True)
class _RunSettings:
    """What every run of one :func:`coord_check` shares (its arguments, checked)."""

    make_model: Callable[[int], nn.Module]
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer]
    batches: Sequence[tuple[Any, Any]]
    loss_fn: Callable[[Any, Any], Tensor]
    steps: int
    record_steps: tuple[int, ...]
    probe: Any
    param_axes: Optional[Mapping[str, Any]]
    params: bool
    names: Optional[tuple[str, ...]]
    leaves_only: bool
    device: Optional[Union[str, torch.device]]
    spectral_method: str
    forward: Callable[[nn.Module, Any], Any]
    dtype: Optional[torch.dtype]


class _Probe:
    """The probe pass: the model's outputs on the probe inputs, recorded without gradients.

    Every pass starts from the RNG state of the first (dropout masks match) and leaves the caller's
    RNG state and the model's buffers (BatchNorm running statistics) as it found them."""

    def __init__(self, model: nn.Module, inputs: Any, device: torch.device, settings: _RunSettings) -> None:
        self.model, self.inputs, self.device, self.settings = model, inputs, device, settings
        self.rng = torch.random.get_rng_state()
        self.rng_cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    def __call__(self) -> OutputRecorder:
        buffers = {k: b.detach().clone() for k, b in self.model.named_buffers()}
        rng = torch.random.get_rng_state()
        rng_cuda = torch.cuda.get_rng_state(self.device) if self.rng_cuda is not None else None
        torch.random.set_rng_state(self.rng)
        if self.rng_cuda is not None:
            torch.cuda.set_rng_state(self.rng_cuda, self.device)
        try:
            with torch.no_grad(), OutputRecorder(self.model, keep_outputs=True, names=self.settings.names,
                                                 leaves_only=self.settings.leaves_only) as rec:
                self.settings.forward(self.model, self.inputs)
        finally:
            torch.random.set_rng_state(rng)
            if rng_cuda is not None:
                torch.cuda.set_rng_state(rng_cuda, self.device)
            with torch.no_grad():
                for k, b in self.model.named_buffers():
                    if k in buffers:
                        b.copy_(buffers[k])
        return rec


def _record_change(row: Rows, rec: OutputRecorder, out0: Mapping[str, Tensor], t: int, s: _RunSettings,
                   unmeasured: dict[str, str]) -> None:
    """Add step ``t``'s output changes (and, after the last step, the output RMS) to ``row``; name
    in ``unmeasured`` every module whose change has no meaning, with the reason."""
    for k in out0.keys() - rec.outputs.keys():
        unmeasured.setdefault(k, f"not called on the probe batch after step {t}")
    for k, o in rec.outputs.items():
        if k not in out0:
            unmeasured.setdefault(k, "not called on the probe batch at init")
            continue
        if o.shape != out0[k].shape:  # data-dependent work, e.g. tokens routed to an expert
            unmeasured.setdefault(k, f"output shape {tuple(out0[k].shape)} at init, {tuple(o.shape)} after step {t}")
            continue
        if t in s.record_steps:
            row.setdefault(k, {})[f"delta_rms@{t}"] = rms(o - out0[k])
        if t == s.steps:
            row.setdefault(k, {})["rms@T"] = rec.rms[k]


def _train_and_record(s: _RunSettings, model: nn.Module, opt: torch.optim.Optimizer, device: torch.device,
                      probe: _Probe, tracked: Sequence[tuple[str, nn.Parameter]],
                      unmeasured: dict[str, str]) -> tuple[Rows, dict[str, Tensor], list[float]]:
    """The step loop: (module rows, tracked parameters before the last step, loss per step)."""
    rec0 = probe()
    row: Rows = {k: {"rms@0": v} for k, v in rec0.rms.items()}
    before_last: dict[str, Tensor] = {}
    losses: list[float] = []
    for t in range(1, s.steps + 1):
        x, y = s.batches[(t - 1) % len(s.batches)]
        x, y = to_device(x, device, s.dtype), to_device(y, device, s.dtype)
        opt.zero_grad(set_to_none=True)
        loss = s.loss_fn(s.forward(model, x), y)
        loss.backward()
        if t == s.steps:
            before_last = {n: p.detach().clone() for n, p in tracked}
        opt.step()
        losses.append(float(loss.detach()))
        if t in s.record_steps or t == s.steps:
            _record_change(row, probe(), rec0.outputs, t, s, unmeasured)
    if s.steps == 0:
        for k, v in rec0.rms.items():
            row[k]["rms@T"] = v
    return row, before_last, losses


def _param_rows(s: _RunSettings, tracked: Sequence[tuple[str, nn.Parameter]], specs: Mapping[str, Mapping],
                W0: Mapping[str, Tensor], before_last: Mapping[str, Tensor], grads64: Mapping[str, float]) -> Rows:
    """Natural spectral norms of each tracked W at init, of its total update and of its last update,
    the largest entry of the update in ulps of its value at init (``ulps``), and the RMS of its float64
    gradient at the end (``grad64``, when the model runs in float64)."""
    rows: Rows = {}
    now = {n: p.detach() for n, p in tracked}
    for n, p in tracked:
        W, spec = p.detach(), specs[n]
        judged = judge(n, spec, W0, now, s.spectral_method)
        q = {"nat@0": judged(W0[n], True)}
        if s.steps > 0:
            q["dnat"] = judged(W - W0[n], False)
            q["dnat_last"] = judged(W - before_last[n], False)
            q["ulps"] = largest_ulps(W0[n], W)
            if n in grads64:
                q["grad64"] = grads64[n]
        rows[n] = q
    return rows


def _one_run(s: _RunSettings, width: int, seed: int, unmeasured: dict[str, str],
             dims: dict[str, dict[int, list[int]]], exact: bool) -> tuple[Rows, Rows, list[float], str]:
    """One width and one init seed of :func:`coord_check`: (module rows, parameter rows, losses, the dtype
    trained in); ``exact``: also each parameter's float64 gradient (one seed per width is enough to tell a
    parameter without effect, which is without effect at every seed)."""
    requested = torch.device(s.device) if s.device is not None else torch.device("cpu")
    with _forked_rng(requested):
        torch.manual_seed(seed)
        model = s.make_model(width)
        if s.device is not None:
            model = model.to(s.device)
        device = next((p.device for p in model.parameters()), requested)
        with _forked_rng(device):
            torch.manual_seed(seed)
            opt = s.make_optimizer(model)
            with in_dtype(model, opt, s.dtype) as trained_in:
                inputs = s.probe if s.probe is not None else s.batches[0][0]
                probe = _Probe(model, to_device(inputs, device, s.dtype), device, s)
                tracked = [(n, p) for n, p in model.named_parameters() if p.requires_grad] if s.params else []
                specs = paired_specs({n: parameter_spec(n, p, s.param_axes) for n, p in tracked}, s.param_axes)
                tracked = [(n, p) for n, p in tracked if specs[n] is not None]
                shown = dict(tracked)  # a weight norm's g (a product's factor) is judged on v's (the carrier's) shape
                for n, p in tracked:
                    dims.setdefault(n, {})[width] = matrix_dims(
                        shown[(specs[n].get("weight_norm") or specs[n].get("product") or (n,))[0]], specs[n])
                W0 = {n: p.detach().clone() for n, p in tracked}
                row, before_last, losses = _train_and_record(s, model, opt, device, probe, tracked, unmeasured)
                grads64 = exact_gradients(model, tracked, s.batches[(s.steps - 1) % len(s.batches)], s.forward,
                                          s.loss_fn, device) if exact and tracked and s.steps > 0 else {}
                return row, _param_rows(s, tracked, specs, W0, before_last, grads64), losses, trained_in


def _checked_record_steps(steps: int, n_seeds: int, batches: Sequence,
                          record_steps: Optional[Iterable[int]]) -> tuple[int, ...]:
    """The arguments a user can get wrong, checked; the steps recorded, sorted."""
    if steps < 0:
        raise SptraceError(f"coord_check: steps={steps} is negative; pass steps >= 0 (0 records the init only)")
    if n_seeds < 1:
        raise SptraceError(f"coord_check: n_seeds={n_seeds}; pass n_seeds >= 1 (init seeds averaged per width)")
    if not batches and steps > 0:
        raise SptraceError(f"coord_check: batches is empty but steps={steps}; pass at least one (inputs, target) "
                           "batch, or steps=0")
    chosen = sorted(set(range(1, steps + 1) if record_steps is None else (int(t) for t in record_steps)))
    outside = [t for t in chosen if t < 1 or t > steps]
    if outside:
        raise SptraceError(f"coord_check: record_steps {outside} lie outside 1..{steps}; record only steps that run")
    return tuple(chosen)


def _runs_by_width(s: _RunSettings, widths: Sequence[int], seeds: range, progress: bool, unmeasured: dict[str, str],
                   dims: dict[str, dict[int, list[int]]]) -> dict[int, list[tuple[Rows, Rows, list[float], str]]]:
    runs: Iterable[tuple[int, int]] = [(w, seed) for w in widths for seed in seeds]
    if progress:
        try:
            from tqdm import tqdm

            runs = tqdm(runs, desc="coord check")
        except ImportError:  # pragma: no cover
            pass
    by_width: dict[int, list[tuple[Rows, Rows, list[float], str]]] = {}
    for width, seed in runs:
        by_width.setdefault(width, []).append(_one_run(s, width, seed, unmeasured, dims, exact=seed == seeds[0]))
    return by_width


def coord_check(
    make_model: Callable[[int], nn.Module],
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    batches: Sequence[tuple[Any, Any]],
    loss_fn: Callable[[Any, Any], Tensor],
    widths: Sequence[int],
    steps: int = 4,
    *,
    seed: int = 0,
    n_seeds: int = 1,
    probe: Any = None,
    record_steps: Optional[Iterable[int]] = None,
    param_axes: Optional[Mapping[str, Any]] = None,
    params: bool = True,
    names: Optional[Iterable[str]] = None,
    leaves_only: bool = False,
    device: Optional[Union[str, torch.device]] = None,
    spectral_method: str = "auto",
    forward: Optional[Callable[[nn.Module, Any], Any]] = None,
    progress: bool = False,
    dtype: Optional[torch.dtype] = None,
) -> CoordCheck:
    """Coordinate check (docs/derivations.md §7, Desideratum 1 and 2): the same seed and data at
    every width.

    For each width: seed the RNG with ``seed``, build ``make_model(width)`` (already parametrized by
    the caller) and ``make_optimizer(model)``, record every module's output on the ``probe`` inputs
    (default: the first batch's inputs), run ``steps`` optimizer steps on ``batches[t % len]``
    (each ``(inputs, target)``; inputs may be a tensor, a tuple of positional args or a dict of
    keyword args; ``loss_fn(output, target)`` returns a scalar), and after each step in
    ``record_steps`` (default: every step) record the RMS of (probe output now - probe output at
    init), per module. The probe passes run under ``no_grad`` with the model in its own mode and the
    same RNG state each time (dropout masks match); BatchNorm running statistics are restored
    after each probe pass.

    ``n_seeds > 1`` repeats every width with the init seeds ``seed, seed + 1, ...`` (same data) and
    records the mean over seeds of every quantity, as mup's coord check does: at small widths and
    a few steps one init's RMS values scatter by tens of percent, enough to tilt a slope by ±0.3
    (docs/validation.md). Each seed's own values are kept in ``per_seed``; the verdict shows each
    slope ± its standard error over the seeds.

    With ``params=True`` also the natural spectral norm of every trainable parameter at init, of its
    total update and of the last step's update; ``param_axes`` maps parameter names to
    ``(fan_in_axes, fan_out_axes, input_dense[, output_dense[, groups]])`` (or a dict / a
    ParamRecord-like object, or None to skip); parameters not named use :func:`sptrace.spectral.default_param_axes`.

    Runs under a forked RNG, so the caller's RNG state is unchanged. Modules that appear at some
    widths only are dropped (their names are listed in ``meta["dropped"]``). A module whose output
    change has no meaning at some width and seed (its output changed shape, as an expert's does
    when routing moves tokens, or it was not called at init or after a step) keeps only what was
    measured everywhere and is named with the reason in ``meta["unmeasured"]``; the verdict lists it.

    ``dtype`` (e.g. ``torch.float64``; default: as built) trains each model in that precision
    (:func:`sptrace.validation.precision.in_dtype`): float32 rounds away updates far below an ulp of their
    weights, whatever the parametrization (docs/validation.md, "Updates below float32 resolution").
    ``meta["dtype"]`` names the precision measured in, and the verdict says it.
    """
    settings = _RunSettings(
        make_model=make_model, make_optimizer=make_optimizer, batches=batches, loss_fn=loss_fn, steps=steps,
        record_steps=_checked_record_steps(steps, n_seeds, batches, record_steps), probe=probe,
        param_axes=param_axes, params=params, names=None if names is None else tuple(names),
        leaves_only=leaves_only, device=device, spectral_method=spectral_method, forward=forward or call_model,
        dtype=dtype)
    widths = [int(w) for w in widths]
    unmeasured: dict[str, str] = {}
    dims: dict[str, dict[int, list[int]]] = {}
    seeds = range(seed, seed + n_seeds)
    by_width = _runs_by_width(settings, widths, seeds, progress, unmeasured, dims)
    module_rows, param_rows, _, _ = zip(*(zip(*by_width[width]) for width in widths))  # [width][seed]
    losses = [[sum(v) / len(v) for v in zip(*(run[2] for run in by_width[width]))] for width in widths]
    records, dropped = merge_widths([mean_rows(rows) for rows in module_rows])
    param_records, dropped_params = merge_widths([mean_rows(rows) for rows in param_rows])
    per_seed = PerSeed(list(seeds), seed_series(records, module_rows), seed_series(param_records, param_rows))
    meta = {"seed": seed, "n_seeds": n_seeds, "record_steps": list(settings.record_steps), "dropped": dropped,
            "dropped_params": dropped_params, "unmeasured": dict(sorted(unmeasured.items())),
            "param_dims": {n: [d[w] for w in widths] for n, d in dims.items() if n in param_records},
            "dtype": ", ".join(sorted({run[3] for runs in by_width.values() for run in runs}))}
    return CoordCheck(widths=widths, steps=steps, records=records, param_records=param_records, losses=losses,
                      meta=meta, per_seed=per_seed)
