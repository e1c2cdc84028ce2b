"""Learning-rate sweep of the Fig. 2 MLP: final training loss against the global learning rate,
per width, for an lr-transfer plot (docs/measurements.md "Coord check and learning-rate transfer")."""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from sptrace.validation.jsonio import write_json
from sptrace.validation.plots import plot_lr_transfer

from .digits import binary_digits
from .gd_mlp import fig2_constants, init_weights, input_basis, train_mlp_gd
from .results import PathLike

__all__ = ["LRSweepResult", "run_lr_sweep"]


@dataclass
class LRSweepResult:
    """Final training loss of the Fig. 2 MLP per width and global learning rate (mean over seeds;
    NaN where a run diverged)."""

    param: str
    widths: list[int]
    lrs: list[float]
    steps: int
    seeds: list[int]
    losses: dict[int, list[float]]
    seconds: float

    def best_lr(self) -> dict[int, float]:
        """Per width, the lr of the lowest finite loss (NaN where every run diverged)."""
        out = {}
        for w, ls in self.losses.items():
            finite = [(lr, v) for lr, v in zip(self.lrs, ls) if math.isfinite(v)]
            out[w] = min(finite, key=lambda p: p[1])[0] if finite else float("nan")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"experiment": "lr_sweep", "param": self.param, "widths": self.widths, "lrs": self.lrs,
                "steps": self.steps, "seeds": self.seeds, "losses": self.losses, "best_lr": self.best_lr(),
                "seconds": self.seconds}

    def write(self, out_dir: PathLike, name: Optional[str] = None, plot: bool = True) -> dict[str, str]:
        """Write ``{name}.json`` (default ``lr_{param}``) and, with ``plot``, ``{name}.png``."""
        name = name or f"lr_{self.param}"
        paths = {"json": write_json(self.to_dict(), os.path.join(out_dir, f"{name}.json"))}
        if plot:
            paths["png"] = plot_lr_transfer(
                self.lrs, {w: self.losses[w] for w in self.widths}, os.path.join(out_dir, f"{name}.png"),
                title=f"{self.param}: training loss after {self.steps} GD steps (★ best lr per width)")
        return paths


def run_lr_sweep(
    widths: Sequence[int] = (64, 256, 1024),
    lrs: Sequence[float] = tuple(2.0 ** k for k in range(-6, 5)),
    *,
    param: str = "sptrace",
    steps: int = 100,
    seeds: Sequence[int] = (0,),
    n_samples: int = 200,
    classes: tuple[int, int] = (0, 1),
    data_path: Optional[PathLike] = None,
    out_dir: Optional[PathLike] = None,
) -> LRSweepResult:
    """Train the Fig. 2 MLP (``param`` in sptrace / ntp / sp) for ``steps`` steps at each global lr
    and width; record the final training loss (diverged runs: NaN)."""
    t0 = time.perf_counter()
    fig2_constants(param, 1, 1)  # an unknown parametrization fails before any training
    losses: dict[int, list[float]] = {}
    data = [binary_digits(n_samples, classes, seed=s, path=data_path) for s in seeds]
    for w in widths:
        row = []
        for lr in lrs:
            vals = []
            for s, (x, y) in zip(seeds, data):
                sig, lrs_l = fig2_constants(param, x.shape[1], w, lr)
                xin = input_basis(x)[0]
                _, hist = train_mlp_gd(xin, y, init_weights(w, xin.shape[1], sig, 10_000 + s), lrs_l, steps)
                vals.append(hist[-1] if math.isfinite(hist[-1]) and hist[-1] < 1e6 else float("nan"))
            row.append(sum(vals) / len(vals))
        losses[int(w)] = row
    res = LRSweepResult(param=param, widths=[int(w) for w in widths], lrs=[float(v) for v in lrs], steps=steps,
                        seeds=list(seeds), losses=losses, seconds=time.perf_counter() - t0)
    if out_dir is not None:
        res.write(out_dir)
    return res
