"""``sptrace.validation.transfer``: learning-rate transfer sweeps (the μTransfer experiment).

For every width × learning rate: build the zoo model at that width (same seed every time),
parametrize it, train ``steps`` steps on the real training data (the same batches for every run),
and record the final training loss (mean over the last ``tail`` steps) and a validation loss on
held-out batches. Width-stable training means the best lr does not move with width.

* ``parametrization="sptrace"``: :func:`sptrace.parametrize` anchored at the narrowest width
  (``base`` = that model built on ``torch.device("meta")``), so the lr on the grid is "the lr
  tuned at the base width" and the base-width column is exactly standard practice.
* ``parametrization="sp"``: the library-default model and the plain optimizer with one global lr.

At the narrowest width the two are the same run (same init, same per-parameter lrs), so their
losses there agree; how far apart the best lrs of the wider models land is the experiment.

A run *diverges* when a loss becomes NaN/inf, or when its final training loss ends above the
initial loss by more than ``divergence_margin`` (relative); it then counts as a failure with loss
``+inf``. A run whose loss exceeds ``abort_factor`` × the initial loss is stopped early (diverged).

``python -m sptrace transfer mlp --widths 64 256 1024 --log2-lrs -14 -4 --out docs/img`` runs
:func:`compare` from the command line (``--help`` for the options).

The sweep trains any model: a zoo name brings its data and loss; a builder ``width -> nn.Module``
(or a ``module:factory`` source) trains on the :class:`SweepData` given, and ``make_optimizer``
replaces the three parametrizations by the caller's own (a hand-written μP, say).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, fields, replace
from typing import Any, Callable, Optional, Sequence, Union

import torch

from ..apply.parametrize import OPTIMIZERS
from ..planning.plan import GROUP_BASE_LR, GROUP_LR_MULT
from ..threads import cpu_threads
from ..types import SptraceError
from .coord import call_model
from .models import PARAMETRIZATIONS, ModelSource, check_parametrizations, optimizer_for, resolve
from .transfer_results import METRICS, Comparison, Drift, SweepResult

__all__ = ["SweepResult", "SweepConfig", "SweepData", "Drift", "Comparison", "lr_sweep", "compare", "log2_grid",
           "PARAMETRIZATIONS", "METRICS"]


def log2_grid(lo: float, hi: float) -> list[float]:
    """The factor-2 grid ``2**lo, 2**(lo+1), ..., 2**hi`` (integer exponents)."""
    lo_i, hi_i = int(math.floor(lo)), int(math.ceil(hi))
    if hi_i < lo_i:
        raise SptraceError(f"log2_grid: empty lr grid 2**{lo} .. 2**{hi}; pass lo <= hi")
    return [2.0 ** k for k in range(lo_i, hi_i + 1)]


# ---------------------------------------------------------------------------------------- sweep


@dataclass(frozen=True)
class SweepConfig:
    """How every run of a sweep trains and is judged; :func:`lr_sweep` takes these as keywords.

    ``parametrization``: one of :data:`PARAMETRIZATIONS` (any label when ``lr_sweep`` gets a
    ``make_optimizer``). ``steps`` optimizer steps of ``batch_size`` on the training split (the same
    batches for every run), then the validation loss on ``eval_batches`` batches of the held-out
    split. ``tail``: how many final steps the training loss averages (default
    ``max(1, steps // 10)``). ``divergence_margin`` and ``abort_factor``: see the module docstring.
    ``threads``: run with ``torch.set_num_threads(threads)`` (on a busy CPU, 1 is often several
    times faster than the default). ``zero_readout`` goes to :func:`sptrace.parametrize` (default
    False: the base column stays standard practice). ``source``: the zoo's ``"real"`` or synthetic data.
    """

    steps: int = 100
    batch_size: int = 32
    parametrization: str = "sptrace"
    seed: int = 0
    device: str = "cpu"
    eval_batches: int = 8
    progress: bool = False
    build_options: dict = field(default_factory=dict)
    tail: Optional[int] = None
    divergence_margin: float = 0.1
    abort_factor: float = 3.0
    metric: str = "train"
    zero_readout: bool = False
    threads: Optional[int] = None
    source: str = "real"

    def __post_init__(self) -> None:
        object.__setattr__(self, "build_options", dict(self.build_options or {}))  # None means none

    @classmethod
    def of(cls, config: Optional["SweepConfig"], settings: dict[str, Any], where: str) -> "SweepConfig":
        """``config`` (default: the defaults) with ``settings`` replaced; unknown names are errors."""
        unknown = sorted(set(settings) - {f.name for f in fields(cls)})
        if unknown:
            raise SptraceError(f"{where}: unknown setting(s) {unknown}; the settings are the fields of "
                               f"SweepConfig: {', '.join(f.name for f in fields(cls))}")
        return replace(config or cls(), **settings)

    def tail_steps(self) -> int:
        return max(1, self.steps // 10) if self.tail is None else max(1, min(int(self.tail), self.steps))


@dataclass
class SweepData:
    """The batches every run of a sweep sees, and the loss: ``train`` and ``val`` are lists of
    ``(inputs, target)`` (``inputs``: a tensor, a tuple of positional args or a dict of keyword
    args, on the sweep's device); ``loss(output, target)`` returns a scalar. Run ``t`` trains on
    ``train[t % len(train)]``, so one full batch gives full-batch training."""

    train: list
    val: list
    loss: Callable[[Any, Any], torch.Tensor]


@dataclass
class _Subject:
    """What a sweep trains: a builder ``width -> model``, the example inputs parametrize traces
    with, and the data."""

    name: str
    build: Callable[[int], torch.nn.Module]
    example_inputs: Any
    data: SweepData


def _zoo_data(zoo: Any, config: SweepConfig) -> SweepData:
    """The zoo model's training batches and held-out batches (a different seed stands in for
    synthetic data, which has no held-out split)."""
    train = list(zoo.batches(config.batch_size, seed=config.seed, source=config.source, split="train",
                             steps=config.steps, device=config.device))
    val: list = []
    if config.eval_batches > 0:
        split = "val" if config.source == "real" else "train"
        val = list(zoo.batches(config.batch_size, seed=config.seed + 1, source=config.source, split=split,
                               steps=config.eval_batches, device=config.device))
    return SweepData(train, val, zoo.loss)


def _subject(model: Any, config: SweepConfig, data: Optional[SweepData], where: str) -> _Subject:
    """Resolve ``model`` (a zoo name, a :class:`ModelSource` or a builder ``width -> nn.Module``)."""
    if callable(model) and not isinstance(model, (str, ModelSource)):
        if data is None:
            raise SptraceError(f"{where}: model is a builder function, so there is no zoo data to train on; "
                               "pass data=SweepData(train, val, loss)")
        name = getattr(model, "__name__", type(model).__name__)
        return _Subject(name, lambda w: model(w, **config.build_options), data.train[0][0], data)
    src = resolve(model) if isinstance(model, str) else model
    zoo = src.zoo
    if zoo is None:
        if data is None:
            raise SptraceError(f"{where}: {src.name} is not a zoo model, so it has no data or loss; "
                               "pass data=SweepData(train, val, loss)")
        return _Subject(src.name, lambda w: src.build(w)[0], data.train[0][0], data)
    return _Subject(src.name, lambda w: zoo.build(w, **config.build_options), zoo.example_inputs(device=config.device),
                    data if data is not None else _zoo_data(zoo, config))


def _checked(widths: Sequence[int], lrs: Sequence[float], optimizer: str, config: SweepConfig,
             custom_optimizer: bool) -> tuple[list[int], list[float]]:
    """The sweep's arguments, checked: (widths ascending, lrs ascending)."""
    widths = sorted(int(w) for w in widths)
    if not widths:
        raise SptraceError("lr_sweep: widths is empty; pass at least one width")
    if len(set(widths)) != len(widths):
        raise SptraceError(f"lr_sweep: duplicate widths in {widths}; pass each width once")
    lrs = sorted(float(lr) for lr in lrs)
    if not lrs or any(not (lr > 0 and math.isfinite(lr)) for lr in lrs):
        raise SptraceError(f"lr_sweep: lrs must be positive and finite, got {lrs}; log2_grid(lo, hi) makes a grid")
    if not custom_optimizer:
        check_parametrizations([config.parametrization], "lr_sweep")
        if optimizer not in OPTIMIZERS:
            raise SptraceError(f"lr_sweep: unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)} "
                               "or pass make_optimizer=")
    if config.metric not in METRICS:
        raise SptraceError(f"lr_sweep: unknown metric {config.metric!r}; choose one of {METRICS}")
    if config.steps < 1:
        raise SptraceError(f"lr_sweep: steps={config.steps}; pass steps >= 1")
    return widths, lrs


def lr_sweep(
    model: Union[str, ModelSource, Callable[..., torch.nn.Module]],
    widths: Sequence[int],
    lrs: Sequence[float],
    optimizer: str = "adam",
    config: Optional[SweepConfig] = None,
    *,
    data: Optional[SweepData] = None,
    make_optimizer: Optional[Callable[[torch.nn.Module, float], torch.optim.Optimizer]] = None,
    **settings: Any,
) -> SweepResult:
    """Train ``model`` at every width × lr and record the losses (see the module docstring).

    ``model``: a zoo name, a :class:`ModelSource`, or a builder ``model(width, **build_options)``
    returning an ``nn.Module`` (built after ``torch.manual_seed(seed)``; it also has to build on
    ``torch.device("meta")`` for ``"sptrace"`` and ``"ntp"``, whose base is the narrowest width).
    ``data``: a :class:`SweepData` (needed unless ``model`` is a zoo model). ``lrs``: the grid; with
    ``"sptrace"`` each value is the lr at the base (narrowest) width, which sptrace transfers to the
    others; with ``"sp"`` it is the one global lr of the plain optimizer. ``make_optimizer(model, lr)``
    replaces the parametrization's optimizer (the model is trained as built; ``parametrization``
    is then only the result's label). ``config`` and ``settings``: :class:`SweepConfig`'s fields.
    """
    config = SweepConfig.of(config, settings, "lr_sweep")
    widths, lrs = _checked(widths, lrs, optimizer, config, make_optimizer is not None)
    started = time.time()
    with cpu_threads(config.threads):
        subject = _subject(model, config, data, "lr_sweep")
        grids = _grids(subject, widths, lrs, optimizer, config, make_optimizer)
    return SweepResult(
        model=subject.name, parametrization=config.parametrization, optimizer=optimizer, widths=widths, lrs=lrs,
        train_loss=grids["train"], val_loss=grids["val"], initial_loss=grids["init"], diverged=grids["div"],
        steps=config.steps, batch_size=config.batch_size, seed=config.seed,
        base_width=widths[0] if config.parametrization == "sptrace" else None,
        tail=config.tail_steps(), eval_batches=config.eval_batches, build_options=dict(config.build_options),
        device=str(config.device), seconds=time.time() - started, metric=config.metric,
    )


def compare(
    model: Union[str, ModelSource, Callable[..., torch.nn.Module]],
    widths: Sequence[int],
    lrs: Sequence[float],
    optimizer: str = "adam",
    parametrizations: Sequence[str] = ("sptrace", "sp"),
    *,
    data: Optional[SweepData] = None,
    **settings: Any,
) -> Comparison:
    """:func:`lr_sweep` under each parametrization (default sptrace and SP) on the same grid, seed
    and batches; ``settings`` are :class:`SweepConfig`'s fields (or ``config=``)."""
    config = SweepConfig.of(settings.pop("config", None), settings, "compare")
    check_parametrizations(parametrizations, "compare")
    with cpu_threads(config.threads):
        data = _subject(model, config, data, "compare").data  # drawn once, shared by every sweep
    results = {name: lr_sweep(model, widths, lrs, optimizer, replace(config, parametrization=name), data=data)
               for name in parametrizations}
    return Comparison(results)


def _grids(subject: _Subject, widths: list[int], lrs: list[float], optimizer: str, config: SweepConfig,
           make_optimizer: Optional[Callable]) -> dict[str, list[list[Any]]]:
    """Every run of the sweep: ``{"train" | "val" | "init" | "div": [row per width]}``."""
    bar = _progress(len(widths) * len(lrs), f"{subject.name} {config.parametrization}") if config.progress else None
    grids: dict[str, list[list[Any]]] = {k: [] for k in ("train", "val", "init", "div")}
    try:
        for width in widths:
            runs = _width_runs(subject, width, widths[0], optimizer, config, make_optimizer)
            rows: dict[str, list[Any]] = {k: [] for k in grids}
            for lr in lrs:
                out = _train(*runs(lr), subject.data, config)
                for key, value in zip(("train", "val", "init", "div"), out):
                    rows[key].append(value)
                if bar is not None:
                    bar.set_postfix_str(f"w={width} lr=2^{math.log2(lr):g} loss={out[0]:.3g}")
                    bar.update(1)
            for k in grids:
                grids[k].append(rows[k])
            del runs
    finally:
        if bar is not None:
            bar.close()
    return grids


# -------------------------------------------------------------------------------------- helpers


def _scaled_groups(opt: torch.optim.Optimizer) -> Callable[[float], list[dict]]:
    """``groups(lr)``: ``opt``'s param groups with each lr scaled to ``lr`` (a group without an
    sptrace lr multiplier, a plain optimizer's, gets ``lr`` itself)."""
    groups = [dict(g) for g in opt.param_groups]

    def at(lr: float) -> list[dict]:
        fresh = []
        for g in groups:
            g2 = dict(g, params=list(g["params"]), lr=lr * g.get(GROUP_LR_MULT, 1.0))
            if GROUP_BASE_LR in g2:
                g2[GROUP_BASE_LR] = lr
            fresh.append(g2)
        return fresh

    return at


def _width_runs(subject: _Subject, width: int, base_width: int, optimizer: str, config: SweepConfig,
                make_optimizer: Optional[Callable]) -> Callable[[float], tuple[torch.nn.Module, Any]]:
    """Build and parametrize the model at ``width`` once; return ``run(lr) -> (model, optimizer)``
    that restores the initial weights and builds a fresh optimizer for ``lr`` (parametrizing traces
    the model, which is slow; its groups are linear in the lr)."""
    torch.manual_seed(config.seed)
    model = subject.build(width).to(config.device)
    if make_optimizer is None:
        with torch.device("meta"):  # only its shapes matter
            base = subject.build(base_width) if config.parametrization != "sp" else None
        opt = optimizer_for(model, config.parametrization, optimizer, 1.0, subject.example_inputs, base,
                            zero_readout=config.zero_readout)
        groups, defaults = _scaled_groups(opt), {k: v for k, v in opt.defaults.items() if k != "lr"}
        del opt
    init = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def run(lr: float):
        with torch.no_grad():
            model.load_state_dict(init)
        if make_optimizer is not None:
            return model, make_optimizer(model, lr)
        return model, OPTIMIZERS[optimizer](groups(lr), lr=lr, **defaults)

    return run


def _train(model, opt, data: SweepData, config: SweepConfig) -> tuple[float, float, float, bool]:
    """(final train loss, val loss, initial loss, diverged) of one run."""
    model.train()
    history: list[float] = []
    initial = float("nan")
    diverged = False
    for step in range(config.steps):
        inputs, target = data.train[step % len(data.train)]
        loss = data.loss(call_model(model, inputs), target)
        value = float(loss.detach())
        if step == 0:
            initial = value
        if not math.isfinite(value) or (math.isfinite(initial) and value > config.abort_factor * max(initial, 1e-12)):
            diverged = True
            break
        history.append(value)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    tail = history[-config.tail_steps():]
    final = sum(tail) / len(tail) if tail and not diverged else float("inf")
    if not math.isfinite(initial) or (not diverged and final > initial * (1.0 + config.divergence_margin)):
        diverged = True
    if diverged:
        return float("inf"), float("inf"), initial, True
    return final, _val_loss(model, data), initial, False


def _val_loss(model, data: SweepData) -> float:
    """Mean loss over the held-out batches in ``eval()`` mode (``nan`` without any, ``inf`` if not finite)."""
    if not data.val:
        return float("nan")
    model.eval()
    with torch.no_grad():
        total = sum(float(data.loss(call_model(model, inputs), target)) for inputs, target in data.val)
    model.train()
    val_loss = total / len(data.val)
    return val_loss if math.isfinite(val_loss) else float("inf")


def _progress(total: int, desc: str):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total, desc=desc, leave=False)
