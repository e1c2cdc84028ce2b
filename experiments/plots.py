"""Plots of the paper's Fig. 1 and Fig. 2 (matplotlib, imported lazily by the shared helpers).

The result modules (:mod:`experiments.fig1`, :mod:`experiments.fig2`) import this one to draw
themselves, so the plots take their result as ``Any`` instead of importing its class (a cycle)."""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

from sptrace.validation.plots import PathLike, label_minor_log, log2_ticks, positive, pyplot, save_figure

__all__ = ["plot_fig1", "plot_fig2"]


_FIG2_PANELS = [
    ("feature_change", "A. relative change of features h2"),
    ("spectral_change", "B. relative change of W2, spectral norm"),
    ("alignment", "C. final-layer alignment (Eq. 24)"),
    ("frobenius_change", "D. relative change of W2, Frobenius norm"),
]
# Display labels: sptrace's parametrization is the paper's μP.
_PARAM_STYLE = {"sptrace": ("tab:blue", "μP"), "ntp": ("tab:red", "NTP")}


def _slope_triangle(ax: Any, xs: Sequence[float], ys: Sequence[float], slope: float, color: str, where: str) -> None:
    """A reference line of the predicted slope anchored at the curve's geometric middle."""
    pts = [(x, y) for x, y in zip(xs, ys) if y is not None and math.isfinite(y) and y > 0]
    if len(pts) < 2:
        return
    lx = [math.log(x) for x, _ in pts]
    ly = [math.log(y) for _, y in pts]
    x0 = math.exp(sum(lx) / len(lx))
    y0 = math.exp(sum(ly) / len(ly)) * (1.6 if where == "above" else 1 / 1.6)
    xa, xb = min(x for x, _ in pts), max(x for x, _ in pts)
    ya = y0 * (xa / x0) ** slope
    yb = y0 * (xb / x0) ** slope
    ax.plot([xa, xb], [ya, yb], ls="--", lw=1, color=color, alpha=0.8)
    ax.annotate(f"{slope:+.2g}", (xb, yb), fontsize=7, color=color, xytext=(3, 0), textcoords="offset points",
                va="center")


def _seed_label(result: Any) -> str:
    counts = result.seed_counts or [len(result.seeds)] * len(result.widths)
    if len(set(counts)) == 1:
        return f"{counts[0]} seeds"
    return "seeds per width " + ", ".join(f"{w}: {k}" for w, k in zip(result.widths, counts))


def plot_fig2(result: Any, path: PathLike, *, title: Optional[str] = None) -> str:
    """The paper's Fig. 2 from an :class:`experiments.fig2.Fig2Result`: four panels (feature change,
    spectral change, alignment, Frobenius change) against width for each parametrization, mean ±
    one std over seeds, with dashed reference lines of the predicted slopes and the measured slopes
    in the legend."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for ax, (q, head) in zip(axes.flat, _FIG2_PANELS):
        for k, param in enumerate(result.params):
            color, label = _PARAM_STYLE.get(param, (f"C{k}", param))
            mean = result.mean[param][q]
            std = result.std[param][q]
            lo = [max(m - s, m * 0.05) for m, s in zip(mean, std)]
            hi = [m + s for m, s in zip(mean, std)]
            fit = result.slopes[param][q]
            ax.plot(result.widths, positive(mean), marker="o", ms=3.5, color=color,
                    label=f"{label}: slope {fit.slope:+.2f} (pred {result.predicted[param][q]:+.1f})")
            ax.fill_between(result.widths, positive(lo), positive(hi), color=color, alpha=0.18, lw=0)
            _slope_triangle(ax, result.widths, mean, result.predicted[param][q], color,
                            "above" if k == 0 else "below")
        ax.set_yscale("log")
        label_minor_log(ax)
        log2_ticks(ax, result.widths)
        ax.set_xlabel("width n")
        ax.set_title(head, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    fw = result.fit_widths
    fit_note = "" if list(fw) == list(result.widths) else f", slopes fitted on widths {fw[0]}–{fw[-1]}"
    fig.suptitle(title or (f"MLP {result.n0}→n→n→1 on digits, full-batch GD, {result.steps} steps, "
                           f"{_seed_label(result)}\n(mean ± std over seeds; dashed: predicted slopes{fit_note})"),
                 fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_fig1(result: Any, path: PathLike, *, title: Optional[str] = None) -> str:
    """The paper's Fig. 1 from an :class:`experiments.fig1.Fig1Result`: stable rank and alignment of
    one gradient update of W2 against batch size, per activation, mean ± one std over trials; dashed
    lines mark the width."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.9))
    bs = result.batch_sizes
    for k, act in enumerate(result.activations):
        color = f"C{k}"
        for ax, q in zip(axes, ("stable_rank", "alignment")):
            mean = result.mean[act][q]
            std = result.std[act][q]
            ax.plot(bs, mean, marker="o", ms=3.5, color=color, label=act)
            ax.fill_between(bs, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                            color=color, alpha=0.18, lw=0)
    for ax, q in zip(axes, ("stable_rank", "alignment")):
        ax.set_xscale("log", base=2)
        ax.axvline(result.width, ls="--", color="gray", lw=1)
        ax.set_xlabel("batch size B")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_yscale("log")
    label_minor_log(axes[0])
    axes[0].axhline(result.width, ls="--", color="gray", lw=1)
    axes[0].set_ylabel("stable rank of ΔW2")
    axes[0].set_title(f"stable rank (max possible {result.width})", fontsize=10)
    axes[1].set_ylim(0, 1.05)
    axes[1].set_ylabel("alignment ⟨|ΔW2 h| / (|ΔW2|* |h|)⟩")
    axes[1].set_title("alignment with the batch's inputs", fontsize=10)
    shape = f"{result.n0}→{result.width}→{result.width}→{result.n_out}"
    fig.suptitle(title or (f"one gradient step on digits, MLP {shape}, "
                           f"{result.trials} trials"), fontsize=11)
    fig.tight_layout()
    return save_figure(fig, path)
