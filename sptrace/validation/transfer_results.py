"""The results of a learning-rate sweep (:mod:`sptrace.validation.transfer`): the loss grids of one
sweep (:class:`SweepResult`), how far the best lr moves with width (:class:`Drift`), and one sweep
per parametrization (:class:`Comparison`), each with JSON round-tripping and plots.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Sequence, Union

from ..types import SptraceError
from .jsonio import from_json_float, read_json, to_json, write_json

__all__ = ["SweepResult", "Drift", "Comparison", "METRICS"]

METRICS = ("train", "val")


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
        return to_json(d)

    def summary(self) -> str:
        s = (f"best-lr shift {self.end_to_end:+g} (log2, narrowest→widest; interpolated "
             f"{self.end_to_end_interp:+.2f}), max consecutive {self.max_consecutive:g}, spread {self.spread:g}")
        if self.at_edge:
            s += f"; on the grid edge at widths {self.at_edge} (a lower bound)"
        if self.undefined:
            s += f"; every run diverged at widths {self.undefined}"
        return s


class _SavedAsJson:
    """``save(path)`` and ``load(path)`` of a result that has ``to_dict`` and ``from_dict``."""

    def save(self, path: Union[str, "os.PathLike[str]"]) -> str:
        """Write :meth:`to_dict` as JSON (``inf`` / ``nan`` as strings) and return the path."""
        return write_json(self.to_dict(), path)  # type: ignore[attr-defined]

    @classmethod
    def load(cls, path: Union[str, "os.PathLike[str]"]) -> Any:
        return cls.from_dict(read_json(path))  # type: ignore[attr-defined]


@dataclass
class SweepResult(_SavedAsJson):
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
        return to_json(d)

    @classmethod
    def from_dict(cls, d: dict) -> "SweepResult":
        names = set(cls.__dataclass_fields__)
        kw = {k: v for k, v in d.items() if k in names}
        for key in ("train_loss", "val_loss", "initial_loss"):
            kw[key] = [[from_json_float(v) for v in row] for row in kw[key]]
        kw["widths"] = [int(w) for w in kw["widths"]]
        kw["lrs"] = [float(v) for v in kw["lrs"]]
        return cls(**kw)

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
class Comparison(_SavedAsJson):
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

    def plot(self, directory: Union[str, "os.PathLike[str]"], stem: Optional[str] = None,
             metric: Optional[str] = None, **kwargs: Any) -> list[str]:
        """One PNG per parametrization, ``{stem}-{parametrization}.png``, on a shared y range."""
        first = next(iter(self.results.values()))
        stem = stem or f"{first.model}-{first.optimizer}-lr-transfer"
        if "ylim" not in kwargs:
            kwargs["ylim"] = _shared_ylim([r._grid(metric) for r in self.results.values()])
        return [r.plot(os.path.join(os.fspath(directory), f"{stem}-{name}.png"), metric=metric, **kwargs)
                for name, r in self.results.items()]


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
