"""Plots for coord checks and learning-rate transfer, and the helpers every plot shares.

matplotlib is imported lazily (Agg backend) inside each function, so the rest of sptrace works
without it (``pip install sptrace[plots]``). Every function writes a PNG to ``path`` and returns
the path.
"""
from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Optional, Sequence, Union

from ..types import SptraceError
from .coord import DIAGNOSTICS, ROOT

if TYPE_CHECKING:  # pragma: no cover
    from .coord import CoordCheck

__all__ = ["plot_coord_check", "plot_lr_transfer", "pyplot", "save_figure", "log2_ticks", "label_minor_log", "positive"]

PathLike = Union[str, "os.PathLike[str]"]


def pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as e:  # pragma: no cover
        raise ImportError("sptrace plots need matplotlib: pip install 'sptrace[plots]'") from e
    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "ps", "cairo"):
        matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: PathLike) -> str:
    path = os.fspath(path)
    d = os.path.dirname(path)
    if d:
        os.makedirs(d, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def log2_ticks(ax: Any, xs: Sequence[float], axis: str = "x") -> None:
    xs = sorted(set(float(x) for x in xs if x > 0))
    if not xs:
        return
    if axis == "x":
        ax.set_xscale("log", base=2)
        ax.set_xticks(xs)
        ax.set_xticklabels([f"{int(x)}" if float(x).is_integer() else f"{x:g}" for x in xs])
        from matplotlib.ticker import NullLocator

        ax.xaxis.set_minor_locator(NullLocator())


_MARKERS = ["o", "s", "^", "v", "D", "P", "X", "<", ">", "*"]


def label_minor_log(ax: Any) -> None:
    """Label the 2x and 5x minor ticks of a log y axis that spans only a few decades."""
    from matplotlib.ticker import LogFormatterSciNotation

    ax.yaxis.set_minor_formatter(LogFormatterSciNotation(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    ax.tick_params(axis="y", which="minor", labelsize=7)


def positive(vals: Sequence[float]) -> list[float]:
    return [v if (v is not None and math.isfinite(v) and v > 0) else float("nan") for v in vals]


def _quantity_label(q: str) -> str:
    if q == "rms@0":
        return "output RMS at init"
    if q == "rms@T":
        return "output RMS after the last step"
    if q.startswith("delta_rms@"):
        t = q.split("@", 1)[1]
        return f"RMS of output change, step {t}"
    return {"nat@0": "natural spectral norm of W at init",
            "dnat": "natural spectral norm of W_T - W_0",
            "dnat_last": "natural spectral norm of the last update"}.get(q, q)


def _default_quantities(src: Mapping[str, Mapping[str, Any]], params: bool) -> list[str]:
    """Every parameter norm, or the module quantities ``rms@0`` and every ``delta_rms@t``."""
    qs: list[str] = []
    for rec in src.values():
        for q in rec:
            if q not in qs and (q not in DIAGNOSTICS if params else q == "rms@0" or q.startswith("delta_rms@")):
                qs.append(q)
    return qs


def _panel_title(q: str, fits: Sequence[tuple[str, Any]], tol: Optional[float],
                 allow_shrink: Union[bool, Iterable[str]]) -> str:
    """The quantity, and with ``tol`` the steepest slope and whether it passes."""
    from .slopes import matches

    head = _quantity_label(q)
    if tol is None or not fits:
        return head
    bad = [n for n, f in fits if not f.ok]
    valid = [(n, f) for n, f in fits if f.ok]
    if bad:
        return head + f"\n{len(bad)} invalid (nan/inf/zero)"
    if not valid:
        return head
    _, f = max(valid, key=lambda nf: abs(nf[1].slope))
    if abs(f.slope) <= tol:
        mark = "ok"
    elif f.slope < 0 and matches(q, allow_shrink):
        mark = "shrinks: allowed"
    else:
        mark = "FAIL"
    return head + f"\nsteepest slope {f.slope:+.2f} ({mark}, ±{tol:g})"


def _plot_panel(ax: Any, cc: "CoordCheck", src: Mapping[str, Mapping[str, Any]], names: Sequence[str], q: str,
                cmap: Any, many: bool) -> list[tuple[str, Any]]:
    """One line per module that recorded ``q``; returns each line's slope fit."""
    from .slopes import fit_slope

    fits = []
    for j, name in enumerate(names):
        vals = src[name].get(q)
        if vals is None:
            continue
        fits.append((name, fit_slope(cc.widths, vals)))
        color = cmap(j / max(1, len(names) - 1)) if many else cmap(j % 10)
        style = dict(marker=_MARKERS[j % len(_MARKERS)], ms=3.5, lw=1.2, color=color)
        if name == ROOT:  # usually equal to the last module's output: dashed so both show
            style.update(color="k", ls="--", marker="x", lw=1.0)
        ax.plot(cc.widths, positive(vals), label=name, **style)
    ax.set_yscale("log")
    label_minor_log(ax)
    log2_ticks(ax, cc.widths)
    ax.set_xlabel("width")
    ax.grid(True, which="major", alpha=0.3)
    return fits


def _panel_legend(ax: Any, fits: Sequence[tuple[str, Any]], n_names: int, max_legend: int, first: bool) -> None:
    """Every module in the first panel's legend, or, with more than ``max_legend``, the steepest."""
    if n_names <= max_legend:
        if first:
            ax.legend(fontsize=7, loc="best")
        return
    valid = [(n, f) for n, f in fits if f.ok]
    if valid:
        steep = {n for n, _ in sorted(valid, key=lambda nf: -abs(nf[1].slope))[:max_legend]}
        handles = [ln for ln in ax.get_lines() if ln.get_label() in steep]
        ax.legend(handles=handles, fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  title=f"{len(handles)} steepest of {n_names}", title_fontsize=6)


def plot_coord_check(
    cc: "CoordCheck",
    path: PathLike,
    *,
    quantities: Optional[Iterable[str]] = None,
    modules: Optional[Iterable[str]] = None,
    params: bool = False,
    title: Optional[str] = None,
    max_legend: int = 12,
    tol: Optional[float] = 0.25,
    allow_shrink: Union[bool, Iterable[str]] = (),
) -> str:
    """Coord-check curves in the style of the muP papers: value vs width (log-log), one line per
    module, one panel per quantity (default: ``rms@0`` and every ``delta_rms@t``).

    With more than ``max_legend`` modules the lines are coloured by depth (order of first call) and
    only the ``max_legend`` steepest are named in the legend. With ``tol`` the panel title shows the
    steepest slope and whether it lies within ±tol (``allow_shrink``: quantities whose shrinking is
    accepted, as in :func:`sptrace.validation.slopes.verdict`).
    """
    plt = pyplot()
    src = cc.param_records if params else cc.records
    names = list(src) if modules is None else [m for m in modules if m in src]
    qs = _default_quantities(src, params) if quantities is None else list(quantities)
    if not names or not any(q in src[n] for q in qs for n in names):
        raise SptraceError(f"plot_coord_check: no {'parameter' if params else 'module'} recorded any of the "
                           f"quantities {qs}; pick quantities and modules from the CoordCheck's records")
    ncol = min(len(qs), 4)
    nrow = math.ceil(len(qs) / ncol)
    many = len(names) > max_legend
    fig, axes = plt.subplots(nrow, ncol, figsize=((5.6 if many else 4.2) * ncol, 3.6 * nrow), squeeze=False)
    cmap = plt.get_cmap("viridis" if many else "tab10")
    for i, q in enumerate(qs):
        ax = axes[i // ncol][i % ncol]
        fits = _plot_panel(ax, cc, src, names, q, cmap, many)
        ax.set_title(_panel_title(q, fits, tol, allow_shrink), fontsize=9)
        _panel_legend(ax, fits, len(names), max_legend, first=i == 0)
    for k in range(len(qs), nrow * ncol):
        axes[k // ncol][k % ncol].axis("off")
    what = "parameters" if params else "module outputs"
    fig.suptitle(title or f"coord check ({what}, {cc.steps} step{'s' if cc.steps != 1 else ''})", fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_lr_transfer(
    lrs: Sequence[float],
    losses: Mapping[Any, Sequence[float]],
    path: PathLike,
    *,
    title: Optional[str] = None,
    ylabel: str = "training loss",
    log_y: bool = True,
    ylim: Optional[tuple[float, float]] = None,
) -> str:
    """Learning-rate transfer: loss against log2(lr), one curve per width (``losses[width]`` aligned
    with ``lrs``; NaN / inf for diverged runs are left as gaps). The best lr of each width is marked."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 4.0))
    keys = list(losses)
    cmap = plt.get_cmap("viridis")
    x = [math.log2(lr) for lr in lrs]
    for j, w in enumerate(keys):
        ys = [float(v) if v is not None and math.isfinite(float(v)) else float("nan") for v in losses[w]]
        color = cmap(j / max(1, len(keys) - 1))
        ax.plot(x, ys, marker="o", ms=3, color=color, label=f"width {w}")
        finite = [(xi, yi) for xi, yi in zip(x, ys) if math.isfinite(yi)]
        if finite:
            xb, yb = min(finite, key=lambda p: p[1])
            ax.plot([xb], [yb], marker="*", ms=10, color=color, markeredgecolor="k", lw=0)
    if log_y:
        ax.set_yscale("log")
        label_minor_log(ax)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel("log2 learning rate")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or "learning-rate transfer (★ best lr per width)", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)
