"""Learning-rate sweep of the Fig. 2 MLP: training loss against the global learning rate ``eta``
of Appendix A, per width, for an lr-transfer plot (docs/measurements.md "Coord check and
learning-rate transfer").

The sweep is :func:`sptrace.validation.transfer.lr_sweep` (one loop over widths and lrs, one
divergence rule) given the MLP as a builder, the 200 samples as one full batch (so every step is
full-batch gradient descent) and plain SGD with the per-layer learning rates ``sptrace.parametrize``
gives the MLP (:func:`experiments.gd_mlp.parametrized_mlp`; linear in ``eta``). Each seed (its data
subset and init) is one sweep; the result is their mean."""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, replace
from typing import Any, Optional, Sequence

import torch
from torch import Tensor, nn

from sptrace.validation.jsonio import write_json
from sptrace.validation.plots import plot_lr_transfer
from sptrace.validation.transfer import SweepData, SweepResult, lr_sweep

from .digits import binary_digits
from .gd_mlp import check_parametrization, half_mse, input_basis, parametrized_mlp
from .results import PathLike

__all__ = ["LRSweepResult", "run_lr_sweep"]


def _seed_sweep(widths: Sequence[int], lrs: Sequence[float], param: str, steps: int, seed: int,
                x: Tensor, y: Tensor) -> SweepResult:
    """One seed's sweep: data subset ``seed``, init seed ``10_000 + seed`` (as :func:`experiments.fig2.run_fig2`)."""
    unit_groups: dict[int, list[dict]] = {}  # id(model) -> its optimizer's groups at eta = 1

    def fig2_mlp(width: int) -> nn.Module:
        mlp, opt, _ = parametrized_mlp(x, width, param, 1.0, 10_000 + seed)
        unit_groups[id(mlp)] = opt.param_groups
        return mlp

    def sgd(model: nn.Module, eta: float) -> torch.optim.Optimizer:
        # The absolute form's lrs are eta times a per-group multiplier, which each group records
        # (sptrace_lr_multiplier), so one parametrize per width serves every eta of the grid.
        groups = [{"params": g["params"], "lr": eta * g["sptrace_lr_multiplier"]} for g in unit_groups[id(model)]]
        return torch.optim.SGD(groups, lr=eta)

    xin = input_basis(x)[0]  # what parametrized_mlp's projected model reads (experiments.gd_mlp's docstring)
    # abort_factor=inf: large-lr GD may spike first and come back down (a catapult); the experiment
    # reads where the loss ends, so only a non-finite loss or one ending above its start is divergence.
    sweep = lr_sweep(fig2_mlp, widths, lrs, "sgd", data=SweepData([(xin, y.reshape(-1, 1))], [], half_mse),
                     make_optimizer=sgd, parametrization=param, steps=steps, tail=1, eval_batches=0, seed=seed,
                     abort_factor=math.inf)
    return replace(sweep, base_width=None)  # eta is Appendix A's global lr at every width, not a base width's lr


@dataclass
class LRSweepResult:
    """Per seed, the sweep (:class:`sptrace.validation.transfer.SweepResult`: the training loss at
    the last of ``steps`` steps per width and lr, ``inf`` where a run diverged); ``losses``: their
    mean per width, aligned with ``lrs``."""

    param: str
    seeds: list[int]
    sweeps: list[SweepResult]
    seconds: float

    @property
    def widths(self) -> list[int]:
        return self.sweeps[0].widths

    @property
    def lrs(self) -> list[float]:
        return self.sweeps[0].lrs

    @property
    def steps(self) -> int:
        return self.sweeps[0].steps

    @property
    def losses(self) -> dict[int, list[float]]:
        grids = [s.losses("train") for s in self.sweeps]
        return {w: [sum(g[w][i] for g in grids) / len(grids) for i in range(len(self.lrs))] for w in self.widths}

    def best_lr(self) -> dict[int, float]:
        """Per width, the lr of the lowest finite mean loss (NaN where every lr diverged)."""
        out = {}
        for w, ls in self.losses.items():
            finite = [(lr, v) for lr, v in zip(self.lrs, ls) if math.isfinite(v)]
            out[w] = min(finite, key=lambda p: p[1])[0] if finite else float("nan")
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"experiment": "lr_sweep", "param": self.param, "widths": self.widths, "lrs": self.lrs,
                "steps": self.steps, "seeds": self.seeds, "losses": self.losses, "best_lr": self.best_lr(),
                "sweeps": [s.to_dict() for s in self.sweeps], "seconds": self.seconds}

    def write(self, out_dir: PathLike, name: Optional[str] = None, plot: bool = True) -> dict[str, str]:
        """Write ``{name}.json`` (default ``lr_{param}``) and, with ``plot``, ``{name}.png``."""
        name = name or f"lr_{self.param}"
        paths = {"json": write_json(self.to_dict(), os.path.join(out_dir, f"{name}.json"))}
        if plot:
            paths["png"] = plot_lr_transfer(
                self.lrs, self.losses, os.path.join(out_dir, f"{name}.png"),
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
    """Train the Fig. 2 MLP (``param`` in sptrace / ntp / sp) by full-batch gradient descent for
    ``steps`` steps at each global lr and width, once per seed; record the training loss."""
    t0 = time.perf_counter()
    check_parametrization(param)  # an unknown one fails before any training
    sweeps = [_seed_sweep(widths, lrs, param, steps, s, *binary_digits(n_samples, classes, seed=s, path=data_path))
              for s in seeds]
    res = LRSweepResult(param=param, seeds=list(seeds), sweeps=sweeps, seconds=time.perf_counter() - t0)
    if out_dir is not None:
        res.write(out_dir)
    return res
