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

``python -m sptrace.validation.transfer mlp --widths 64 256 1024 --log2-lrs -14 -4 --out docs/img`` runs
:func:`compare` from the command line (``--help`` for the options).
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Sequence, Union

import torch

from ..apply.parametrize import OPTIMIZERS, parametrize
from ..planning.plan import GROUP_BASE_LR, GROUP_LR_MULT
from ..threads import cpu_threads
from ..types import SptraceError
from .models import ModelSource, resolve

__all__ = ["SweepResult", "Drift", "Comparison", "lr_sweep", "compare", "log2_grid", "PARAMETRIZATIONS"]

PARAMETRIZATIONS = ("sptrace", "sp")
METRICS = ("train", "val")


def log2_grid(lo: float, hi: float) -> list[float]:
    """The factor-2 grid ``2**lo, 2**(lo+1), ..., 2**hi`` (integer exponents)."""
    lo_i, hi_i = int(math.floor(lo)), int(math.ceil(hi))
    if hi_i < lo_i:
        raise SptraceError(f"empty lr grid: 2**{lo} .. 2**{hi}")
    return [2.0 ** k for k in range(lo_i, hi_i + 1)]


# --------------------------------------------------------------------------------------- results


@dataclass
class Drift:
    """How far the best lr moves with width, in log2 units (= grid steps on a factor-2 grid).

    ``end_to_end``: signed ``log2(best_lr[widest] / best_lr[narrowest])`` (negative: wider models
    want a smaller lr). ``max_consecutive``: the largest ``|log2|`` ratio between consecutive
    widths. ``spread``: ``log2(max / min)`` of the best lrs over all widths. ``at_edge``: widths
    whose best lr sits on the grid's first or last point (the true optimum may lie outside, so a
    drift involving them is only a lower bound). ``undefined``: widths where every run diverged.
    ``end_to_end_interp``: the same shift from a parabola fitted to loss vs log2 lr around each
    minimum (sub-grid; ``nan`` when a minimum is on the edge or has a diverged neighbour).
    """

    best_lr: dict[int, float]
    end_to_end: float
    max_consecutive: float
    spread: float
    at_edge: list[int] = field(default_factory=list)
    undefined: list[int] = field(default_factory=list)
    end_to_end_interp: float = float("nan")

    @property
    def grid_steps(self) -> float:
        """``|end_to_end|``: how many factor-2 steps the best lr moves from narrowest to widest."""
        return abs(self.end_to_end)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["best_lr"] = {str(k): v for k, v in self.best_lr.items()}
        d["grid_steps"] = self.grid_steps
        return _jsonable(d)

    def summary(self) -> str:
        s = (f"best-lr shift {self.end_to_end:+g} (log2, narrowest→widest; interpolated "
             f"{self.end_to_end_interp:+.2f}), max consecutive {self.max_consecutive:g}, spread {self.spread:g}")
        if self.at_edge:
            s += f"; on the grid edge at widths {self.at_edge} (a lower bound)"
        if self.undefined:
            s += f"; every run diverged at widths {self.undefined}"
        return s


@dataclass
class SweepResult:
    """The loss grids of one sweep: ``train_loss[i][j]`` is width ``widths[i]`` at lr ``lrs[j]``.

    Diverged runs hold ``+inf`` in ``train_loss`` and ``val_loss`` and ``True`` in ``diverged``;
    ``initial_loss`` is the loss of the first batch before any update. ``metric`` ("train" or
    "val") is the default grid that :meth:`best_lr`, :meth:`drift` and :meth:`plot` use.
    """

    model: str
    parametrization: str
    optimizer: str
    widths: list[int]
    lrs: list[float]
    train_loss: list[list[float]]
    val_loss: list[list[float]]
    initial_loss: list[list[float]]
    diverged: list[list[bool]]
    steps: int
    batch_size: int
    seed: int = 0
    base_width: Optional[int] = None
    tail: int = 1
    eval_batches: int = 0
    build_options: dict = field(default_factory=dict)
    device: str = "cpu"
    seconds: float = 0.0
    metric: str = "train"

    # -- access
    def losses(self, metric: Optional[str] = None) -> dict[int, list[float]]:
        """``{width: [loss per lr]}`` of the ``metric`` grid."""
        grid = self._grid(metric)
        return {w: list(row) for w, row in zip(self.widths, grid)}

    def _grid(self, metric: Optional[str]) -> list[list[float]]:
        metric = metric or self.metric
        if metric not in METRICS:
            raise SptraceError(f"unknown metric {metric!r}; choose one of {METRICS}")
        return self.train_loss if metric == "train" else self.val_loss

    def _row(self, width: int, metric: Optional[str]) -> list[float]:
        if width not in self.widths:
            raise SptraceError(f"width {width} is not in this sweep (widths {self.widths})")
        return self._grid(metric)[self.widths.index(width)]

    def best_index(self, width: int, metric: Optional[str] = None) -> Optional[int]:
        """Index into ``lrs`` of the lowest finite loss at ``width`` (None if every run diverged)."""
        row = self._row(width, metric)
        finite = [(v, j) for j, v in enumerate(row) if math.isfinite(v)]
        return min(finite)[1] if finite else None

    def best_lr(self, width: int, metric: Optional[str] = None, interpolate: bool = False) -> float:
        """The lr with the lowest loss at ``width`` (``nan`` if every run diverged).

        ``interpolate=True`` fits a parabola to loss vs log2 lr through the minimum and its two
        neighbours and returns its vertex (``nan`` when the minimum is on the grid edge, a
        neighbour diverged, or the three points are not convex)."""
        j = self.best_index(width, metric)
        if j is None:
            return float("nan")
        if not interpolate:
            return self.lrs[j]
        row = self._row(width, metric)
        if j == 0 or j == len(row) - 1 or not (math.isfinite(row[j - 1]) and math.isfinite(row[j + 1])):
            return float("nan")
        x = [math.log2(self.lrs[k]) for k in (j - 1, j, j + 1)]
        y = [math.log(row[k]) if row[k] > 0 else row[k] for k in (j - 1, j, j + 1)]
        vertex = _parabola_vertex(x, y)
        return 2.0 ** vertex if vertex is not None else float("nan")

    def drift(self, metric: Optional[str] = None) -> Drift:
        """How far the best lr moves between the narrowest and widest width (see :class:`Drift`)."""
        best = {w: self.best_lr(w, metric) for w in self.widths}
        undefined = [w for w, lr in best.items() if not math.isfinite(lr)]
        edges = [w for w in self.widths
                 if self.best_index(w, metric) in (0, len(self.lrs) - 1) and len(self.lrs) > 1]
        logs = [math.log2(best[w]) if w not in undefined else float("nan") for w in self.widths]
        end = logs[-1] - logs[0]
        consecutive = [abs(b - a) for a, b in zip(logs, logs[1:])]
        fin = [v for v in logs if math.isfinite(v)]
        interp = [self.best_lr(w, metric, interpolate=True) for w in (self.widths[0], self.widths[-1])]
        end_i = (math.log2(interp[1]) - math.log2(interp[0])) if all(math.isfinite(v) for v in interp) else float("nan")
        return Drift(
            best_lr=best,
            end_to_end=end,
            max_consecutive=max(consecutive) if consecutive else 0.0,
            spread=(max(fin) - min(fin)) if len(fin) == len(logs) else float("nan"),
            at_edge=edges,
            undefined=undefined,
            end_to_end_interp=end_i,
        )

    # -- output
    def table(self, metric: Optional[str] = None) -> str:
        """A markdown table of the loss grid (rows: widths, columns: log2 lr; ``div`` = diverged,
        ``**bold**`` = best per width)."""
        grid = self._grid(metric)
        head = "| width | " + " | ".join(f"2^{math.log2(lr):g}" for lr in self.lrs) + " | best lr |"
        sep = "|---:|" + "---:|" * (len(self.lrs) + 1)
        rows = [head, sep]
        for w, row in zip(self.widths, grid):
            j = self.best_index(w, metric)
            cells = []
            for k, v in enumerate(row):
                c = f"{v:.3f}" if math.isfinite(v) else "div"
                cells.append(f"**{c}**" if k == j else c)
            best = f"2^{math.log2(self.lrs[j]):g}" if j is not None else "-"
            rows.append(f"| {w} | " + " | ".join(cells) + f" | {best} |")
        return "\n".join(rows)

    def summary(self, metric: Optional[str] = None) -> str:
        m = metric or self.metric
        return (f"{self.model} / {self.parametrization} / {self.optimizer}, widths {self.widths}, "
                f"{self.steps} steps × batch {self.batch_size}, {m} loss: {self.drift(m).summary()}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["drift"] = {m: self.drift(m).to_dict() for m in METRICS}
        return _jsonable(d)

    @classmethod
    def from_dict(cls, d: dict) -> "SweepResult":
        names = set(cls.__dataclass_fields__)
        kw = {k: v for k, v in d.items() if k in names}
        for key in ("train_loss", "val_loss", "initial_loss"):
            kw[key] = [[_unjson(v) for v in row] for row in kw[key]]
        kw["widths"] = [int(w) for w in kw["widths"]]
        kw["lrs"] = [float(v) for v in kw["lrs"]]
        return cls(**kw)

    def save(self, path: Union[str, "os.PathLike[str]"]) -> str:
        """Write :meth:`to_dict` as JSON (``inf`` / ``nan`` as strings) and return the path."""
        return _save_json(self.to_dict(), path)

    @classmethod
    def load(cls, path: Union[str, "os.PathLike[str]"]) -> "SweepResult":
        return cls.from_dict(_load_json(path))

    def plot(self, path: Union[str, "os.PathLike[str]"], metric: Optional[str] = None,
             title: Optional[str] = None, **kwargs: Any) -> str:
        """Loss vs log2 lr, one curve per width (``sptrace.validation.plots.plot_lr_transfer``)."""
        from .plots import plot_lr_transfer

        m = metric or self.metric
        d = self.drift(m)
        if title is None:
            title = (f"{self.model} {self.optimizer}, {self.parametrization}: {self.steps} steps, "
                     f"best-lr shift {d.end_to_end:+g} (log2)")
        ylabel = "final training loss" if m == "train" else "validation loss"
        return plot_lr_transfer(self.lrs, {w: row for w, row in zip(self.widths, self._grid(m))}, path,
                                title=title, ylabel=ylabel, **kwargs)


@dataclass
class Comparison:
    """:func:`compare`'s result: one :class:`SweepResult` per parametrization."""

    results: dict[str, SweepResult]

    @property
    def sptrace(self) -> SweepResult:
        return self.results["sptrace"]

    @property
    def sp(self) -> SweepResult:
        return self.results["sp"]

    def drifts(self, metric: Optional[str] = None) -> dict[str, Drift]:
        return {name: r.drift(metric) for name, r in self.results.items()}

    def summary(self, metric: Optional[str] = None) -> str:
        return "\n".join(r.summary(metric) for r in self.results.values())

    def to_dict(self) -> dict:
        return {"results": {k: r.to_dict() for k, r in self.results.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "Comparison":
        return cls({k: SweepResult.from_dict(v) for k, v in d["results"].items()})

    def save(self, path: Union[str, "os.PathLike[str]"]) -> str:
        return _save_json(self.to_dict(), path)

    @classmethod
    def load(cls, path: Union[str, "os.PathLike[str]"]) -> "Comparison":
        return cls.from_dict(_load_json(path))

    def plot(self, directory: Union[str, "os.PathLike[str]"], stem: Optional[str] = None,
             metric: Optional[str] = None, **kwargs: Any) -> list[str]:
        """One PNG per parametrization, ``{stem}-{parametrization}.png``, on a shared y range."""
        first = next(iter(self.results.values()))
        stem = stem or f"{first.model}-{first.optimizer}-lr-transfer"
        if "ylim" not in kwargs:
            kwargs["ylim"] = _shared_ylim([r._grid(metric) for r in self.results.values()])
        return [r.plot(os.path.join(os.fspath(directory), f"{stem}-{name}.png"), metric=metric, **kwargs)
                for name, r in self.results.items()]


# ---------------------------------------------------------------------------------------- sweep


def lr_sweep(
    model: Union[str, ModelSource],
    widths: Sequence[int],
    lrs: Sequence[float],
    optimizer: str = "adam",
    steps: int = 100,
    batch_size: int = 32,
    parametrization: str = "sptrace",
    seed: int = 0,
    device: str = "cpu",
    eval_batches: int = 8,
    progress: bool = False,
    build_options: Optional[dict] = None,
    *,
    tail: Optional[int] = None,
    divergence_margin: float = 0.1,
    abort_factor: float = 3.0,
    metric: str = "train",
    zero_readout: bool = False,
    threads: Optional[int] = None,
    source: str = "real",
    _batches: Optional[tuple[list, list]] = None,
) -> SweepResult:
    """Train ``model`` (a zoo name or a :class:`ModelSource` with a zoo spec) at every width × lr.

    ``lrs``: the grid; with ``parametrization="sptrace"`` each value is the lr at the base
    (narrowest) width, which sptrace transfers to the others; with ``"sp"`` it is the one global
    lr of the plain optimizer. ``steps`` optimizer steps of ``batch_size`` on the training split
    (the same batches for every run), then the validation loss on ``eval_batches`` batches of the
    held-out split. ``tail``: how many final steps the training loss averages (default
    ``max(1, steps // 10)``). ``threads``: run the sweep with ``torch.set_num_threads(threads)``
    (on a busy CPU, 1 is often several times faster than the default). ``zero_readout`` is passed
    to :func:`sptrace.parametrize` (default False: the base column stays standard practice).
    """
    src = resolve(model) if isinstance(model, str) else model
    zoo = src.zoo
    if zoo is None:
        raise SptraceError(f"lr_sweep needs data and a loss: {src.name} is not a zoo model")
    widths = sorted(int(w) for w in widths)
    if not widths:
        raise SptraceError("lr_sweep needs at least one width")
    if len(set(widths)) != len(widths):
        raise SptraceError(f"duplicate widths in {widths}")
    lrs = sorted(float(lr) for lr in lrs)
    if not lrs or any(not (lr > 0 and math.isfinite(lr)) for lr in lrs):
        raise SptraceError(f"lrs must be positive and finite, got {lrs}")
    if parametrization not in PARAMETRIZATIONS:
        raise SptraceError(f"unknown parametrization {parametrization!r}; choose one of {PARAMETRIZATIONS}")
    if optimizer not in OPTIMIZERS:
        raise SptraceError(f"unknown optimizer {optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
    if metric not in METRICS:
        raise SptraceError(f"unknown metric {metric!r}; choose one of {METRICS}")
    if steps < 1:
        raise SptraceError("steps must be >= 1")
    tail = max(1, steps // 10) if tail is None else max(1, min(int(tail), steps))
    options = dict(build_options or {})
    started = time.time()

    with cpu_threads(threads):
        train, val = _batches if _batches is not None else _data(zoo, batch_size, steps, eval_batches, seed, source, device)
        example = zoo.example_inputs(device=device)
        n = len(widths) * len(lrs)
        bar = _progress(n, f"{src.name} {parametrization}") if progress else None
        grids: dict[str, list[list[Any]]] = {k: [] for k in ("train", "val", "init", "div")}
        try:
            for width in widths:
                runs = _width_runs(zoo, width, widths[0], parametrization, optimizer, example, options, seed, device,
                                   zero_readout)
                rows: dict[str, list[Any]] = {k: [] for k in grids}
                for lr in lrs:
                    model_, opt = runs(lr)
                    out = _train(model_, opt, zoo.loss, train, val, tail, divergence_margin, abort_factor)
                    rows["train"].append(out[0])
                    rows["val"].append(out[1])
                    rows["init"].append(out[2])
                    rows["div"].append(out[3])
                    if bar is not None:
                        bar.set_postfix_str(f"w={width} lr=2^{math.log2(lr):g} loss={out[0]:.3g}")
                        bar.update(1)
                for k in grids:
                    grids[k].append(rows[k])
                del runs
        finally:
            if bar is not None:
                bar.close()

    return SweepResult(
        model=src.name, parametrization=parametrization, optimizer=optimizer, widths=widths, lrs=lrs,
        train_loss=grids["train"], val_loss=grids["val"], initial_loss=grids["init"], diverged=grids["div"],
        steps=steps, batch_size=batch_size, seed=seed,
        base_width=widths[0] if parametrization == "sptrace" else None,
        tail=tail, eval_batches=eval_batches, build_options=options, device=str(device),
        seconds=time.time() - started, metric=metric,
    )


def compare(
    model: Union[str, ModelSource],
    widths: Sequence[int],
    lrs: Sequence[float],
    optimizer: str = "adam",
    parametrizations: Sequence[str] = PARAMETRIZATIONS,
    **kwargs: Any,
) -> Comparison:
    """:func:`lr_sweep` under each parametrization (default sptrace and SP) on the same grid, seed
    and batches; ``kwargs`` go to :func:`lr_sweep`."""
    src = resolve(model) if isinstance(model, str) else model
    if src.zoo is None:
        raise SptraceError(f"compare needs data and a loss: {src.name} is not a zoo model")
    unknown = set(parametrizations) - set(PARAMETRIZATIONS)
    if unknown:
        raise SptraceError(f"unknown parametrizations {sorted(unknown)}; choose from {PARAMETRIZATIONS}")
    steps = kwargs.get("steps", 100)
    with cpu_threads(kwargs.get("threads")):
        batches = _data(src.zoo, kwargs.get("batch_size", 32), steps, kwargs.get("eval_batches", 8),
                        kwargs.get("seed", 0), kwargs.get("source", "real"), kwargs.get("device", "cpu"))
    results = {name: lr_sweep(src, widths, lrs, optimizer, parametrization=name, _batches=batches, **kwargs)
               for name in parametrizations}
    return Comparison(results)


# -------------------------------------------------------------------------------------- helpers


def _data(zoo, batch_size: int, steps: int, eval_batches: int, seed: int, source: str, device) -> tuple[list, list]:
    train = list(zoo.batches(batch_size, seed=seed, source=source, split="train", steps=steps, device=device))
    if eval_batches > 0:
        # real data has a held-out split; synthetic data has none, so a different seed stands in
        split = "val" if source == "real" else "train"
        val = list(zoo.batches(batch_size, seed=seed + 1, source=source, split=split, steps=eval_batches, device=device))
    else:
        val = []
    return train, val


def _width_runs(zoo, width, base_width, parametrization, optimizer, example, options, seed, device, zero_readout):
    """Build and parametrize the model at ``width`` once; return ``run(lr) -> (model, optimizer)``
    that restores the initial weights and builds a fresh optimizer with the groups' lrs scaled to
    ``lr`` (parametrizing traces the model, which is slow; its groups are linear in the lr)."""
    torch.manual_seed(seed)
    model = zoo.build(width, **options).to(device)
    cls = OPTIMIZERS[optimizer]
    if parametrization == "sp":
        groups = [{"params": list(model.parameters()), GROUP_LR_MULT: 1.0}]
        defaults: dict = {}
    else:
        with torch.device("meta"):  # only its shapes matter
            base = zoo.build(base_width, **options)
        opt = parametrize(model, optimizer, lr=1.0, example_inputs=example, base=base, zero_readout=zero_readout)
        groups = [dict(g) for g in opt.param_groups]
        defaults = {k: v for k, v in opt.defaults.items() if k != "lr"}
        for g in groups:
            if GROUP_LR_MULT not in g:  # pragma: no cover - every sptrace group carries it
                raise SptraceError("sptrace param group without an lr multiplier")
        del opt
    init = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def run(lr: float):
        with torch.no_grad():
            model.load_state_dict(init)
        fresh = []
        for g in groups:
            g2 = dict(g)
            g2["params"] = list(g["params"])
            g2["lr"] = lr * g[GROUP_LR_MULT]
            if GROUP_BASE_LR in g2:
                g2[GROUP_BASE_LR] = lr
            fresh.append(g2)
        return model, cls(fresh, lr=lr, **defaults)

    return run


def _train(model, opt, loss_fn, train, val, tail, margin, abort_factor) -> tuple[float, float, float, bool]:
    """(final train loss, val loss, initial loss, diverged)."""
    model.train()
    history: list[float] = []
    initial = float("nan")
    diverged = False
    for i, (inputs, target) in enumerate(train):
        loss = loss_fn(model(*inputs), target)
        value = float(loss.detach())
        if i == 0:
            initial = value
        if not math.isfinite(value) or (math.isfinite(initial) and value > abort_factor * max(initial, 1e-12)):
            diverged = True
            break
        history.append(value)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if not math.isfinite(initial):
        diverged = True
    final = sum(history[-tail:]) / len(history[-tail:]) if history and not diverged else float("inf")
    if not diverged and final > initial * (1.0 + margin):
        diverged = True
    if diverged:
        return float("inf"), float("inf"), initial, True
    val_loss = float("nan")
    if val:
        model.eval()
        with torch.no_grad():
            total = sum(float(loss_fn(model(*inputs), target)) for inputs, target in val)
        model.train()
        val_loss = total / len(val)
        if not math.isfinite(val_loss):
            val_loss = float("inf")
    return final, val_loss, initial, False


def _parabola_vertex(x: Sequence[float], y: Sequence[float]) -> Optional[float]:
    (x0, x1, x2), (y0, y1, y2) = x, y
    denom = (x0 - x1) * (x0 - x2) * (x1 - x2)
    if denom == 0:
        return None
    a = (x2 * (y1 - y0) + x1 * (y0 - y2) + x0 * (y2 - y1)) / denom
    b = (x2 ** 2 * (y0 - y1) + x1 ** 2 * (y2 - y0) + x0 ** 2 * (y1 - y2)) / denom
    if not a > 0:
        return None
    return -b / (2 * a)


def _shared_ylim(grids: list[list[list[float]]]) -> Optional[tuple[float, float]]:
    vals = [v for g in grids for row in g for v in row if math.isfinite(v) and v > 0]
    if not vals:
        return None
    return (min(vals) / 1.05, max(vals) * 1.05)


def _jsonable(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    return x


def _unjson(v: Any) -> float:
    return float(v)  # float("inf") / float("nan") parse the strings _jsonable writes


def _progress(total: int, desc: str):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return None
    return tqdm(total=total, desc=desc, leave=False)


# ------------------------------------------------------------------------------------------ CLI


def _parse_option(text: str) -> tuple[str, Any]:
    key, _, value = text.partition("=")
    if not _:
        raise SptraceError(f"--option wants key=value, got {text!r}")
    low = value.lower()
    if low in ("true", "false"):
        return key, low == "true"
    if low == "none":
        return key, None
    for conv in (int, float):
        try:
            return key, conv(value)
        except ValueError:
            pass
    return key, value


def main(argv: Optional[Sequence[str]] = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m sptrace.validation.transfer",
                                description="lr-transfer sweep of a zoo model under sptrace and SP")
    p.add_argument("model")
    p.add_argument("--widths", type=int, nargs="+", required=True)
    p.add_argument("--log2-lrs", type=float, nargs=2, metavar=("LO", "HI"), required=True,
                   help="the factor-2 lr grid 2**LO .. 2**HI")
    p.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZERS))
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--eval-batches", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--metric", default="train", choices=METRICS)
    p.add_argument("--parametrizations", nargs="+", default=list(PARAMETRIZATIONS), choices=PARAMETRIZATIONS)
    p.add_argument("--option", action="append", default=[], help="build option key=value (repeatable)")
    p.add_argument("--out", default=None, help="directory for the JSON and PNGs")
    p.add_argument("--stem", default=None)
    p.add_argument("--progress", action="store_true")
    a = p.parse_args(argv)
    options = dict(_parse_option(o) for o in a.option)
    result = compare(a.model, a.widths, log2_grid(*a.log2_lrs), a.optimizer, parametrizations=a.parametrizations,
                     steps=a.steps, batch_size=a.batch_size, eval_batches=a.eval_batches, seed=a.seed,
                     device=a.device, threads=a.threads, metric=a.metric, build_options=options,
                     progress=a.progress)
    for name, r in result.results.items():
        print(f"## {name} ({r.seconds:.0f} s)\n{r.summary()}\n\n{r.table()}\n")
    if a.out:
        first = next(iter(result.results.values()))
        suffix = "".join(f"-{k}{v}" for k, v in sorted(options.items()))
        stem = a.stem or f"{first.model}{suffix}-{a.optimizer}-lr-transfer"
        print(result.save(os.path.join(a.out, f"{stem}.json")))
        for path in result.plot(a.out, stem=stem):
            print(path)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())


def _save_json(data: dict, path) -> str:
    path = os.fspath(path)
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(data, fh, indent=1)
    return path


def _load_json(path) -> dict:
    with open(path) as fh:
        return json.load(fh)
