"""The paper's Fig. 1 (and the stable ranks of its Fig. 3) on the digits: one gradient update of a
hidden layer has low stable rank and stays aligned with the batch's inputs.

MLP ``3072 -> 300 -> 300 -> 10`` (ReLU and tanh) initialised by ``sptrace.parametrize``, one step
of the optimizer it returns on a batch of size B; stable rank of Delta W2 and its alignment with
the batch's inputs, against B. docs/measurements.md "Fig. 1" has the documented run."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import sptrace
from models_zoo.data import digits_raw
from sptrace.types import SptraceError
from sptrace.spectral import alignment, stable_rank

from .digits import digits_features
from .plots import plot_fig1
from .results import PathLike, mean_std, write_result

__all__ = ["Fig1Result", "run_fig1"]

# Activation and the init gain that keeps its pre-activations at unit scale.
_ACTS: dict[str, tuple[Callable[[], nn.Module], float]] = {
    "relu": (nn.ReLU, math.sqrt(2.0)),
    "tanh": (nn.Tanh, 1.0),
}
_QUANTITIES = ("stable_rank", "alignment", "input_stable_rank", "grad_stable_rank")


@dataclass
class Fig1Result:
    """Result of :func:`run_fig1`. ``raw[act][quantity][trial][batch_index]``; quantities:
    ``stable_rank`` and ``alignment`` of Delta W2 (Fig. 1), ``input_stable_rank`` (H'_1) and
    ``grad_stable_rank`` (G_2) of Fig. 3."""

    batch_sizes: list[int]
    activations: list[str]
    width: int
    n0: int
    n_out: int
    trials: int
    raw: dict[str, dict[str, list[list[float]]]]
    mean: dict[str, dict[str, list[float]]]
    std: dict[str, dict[str, list[float]]]
    seconds: float
    parametrization: str = "ntp"

    def table(self) -> str:
        head = "| B | " + " | ".join(f"{a} stable rank | {a} alignment" for a in self.activations) + " |"
        lines = [head, "|---|" + "---|---|" * len(self.activations)]
        for i, b in enumerate(self.batch_sizes):
            cells = []
            for a in self.activations:
                cells.append(f"{self.mean[a]['stable_rank'][i]:.2f} ± {self.std[a]['stable_rank'][i]:.2f}")
                cells.append(f"{self.mean[a]['alignment'][i]:.3f} ± {self.std[a]['alignment'][i]:.3f}")
            lines.append(f"| {b} | " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment": "fig1", "batch_sizes": self.batch_sizes, "activations": self.activations,
            "width": self.width, "n0": self.n0, "n_out": self.n_out, "trials": self.trials,
            "parametrization": self.parametrization, "init": "sptrace.parametrize (form='absolute')",
            "loss": "cross-entropy over the 10 digit classes, batch mean",
            "raw": self.raw, "mean": self.mean, "std": self.std, "seconds": self.seconds,
        }

    def write(self, out_dir: PathLike, name: str = "fig1", plot: bool = True) -> dict[str, str]:
        """Write ``{name}.json`` (and ``{name}.png`` when ``plot``) into ``out_dir``; returns the paths."""
        return write_result(self, out_dir, name, plot_fig1 if plot else None)


def _fig1_mlp(n0: int, width: int, n_out: int, act: str) -> nn.Sequential:
    """``n0 -> width -> width -> n_out``, no biases (Appendix A), with PyTorch's default init."""
    make = _ACTS[act][0]
    return nn.Sequential(nn.Linear(n0, width, bias=False), make(), nn.Linear(width, width, bias=False), make(),
                         nn.Linear(width, n_out, bias=False))


def _parametrized(X: Tensor, act: str, width: int, n_out: int, param: str,
                  seed: int) -> tuple[nn.Sequential, torch.optim.Optimizer]:
    """The MLP re-initialised by ``sptrace.parametrize`` (init drawn from ``seed``), in float64."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mlp = _fig1_mlp(X.shape[1], width, n_out, act)
        # The lr is arbitrary (Appendix A): stable rank and alignment do not see the step's size. The
        # readout must not start at zero: G2 = W3^T dL/df would vanish and with it the update of W2.
        opt = sptrace.parametrize(mlp, "sgd", lr=1.0, form="absolute", init_gain=_ACTS[act][1], zero_readout=False,
                                  parametrization=param, example_inputs=(X[:8],))
    # Float64: the update is read as W2 after the step minus W2 before, which in float32 would
    # carry rounding noise of full rank into a stable rank asserted to be 1 at B = 1.
    return mlp.double(), opt


def _one_update(mlp: nn.Sequential, opt: torch.optim.Optimizer, xb: Tensor, target: Tensor) -> dict[str, float]:
    """One optimizer step on the batch; the measures of the update of W2 it made. The weights are
    restored afterwards, so every batch size is measured at the same init."""
    before = [p.detach().clone() for p in mlp.parameters()]
    h1p = mlp[:2](xb)
    h2 = mlp[2](h1p)
    h2.retain_grad()
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(mlp[3:](h2), target).backward()
    opt.step()
    with torch.no_grad():
        dW = mlp[2].weight - before[1]
        for p, b in zip(mlp.parameters(), before):
            p.copy_(b)
    h1p = h1p.detach()
    # Fig. 3: H'_1 (width x B) and G_2 (width x B); a single column has stable rank 1.
    return {"stable_rank": float(stable_rank(dW)), "alignment": float(alignment(dW, h1p)),
            "input_stable_rank": float(stable_rank(h1p.T)), "grad_stable_rank": float(stable_rank(h2.grad.T))}


def _one_trial(X: Tensor, target: Tensor, act: str, width: int, n_out: int, batch_sizes: Sequence[int],
               param: str, seed: int) -> dict[str, list[float]]:
    """One fresh init; per batch size, one fresh batch and the measures of its update of W2."""
    mlp, opt = _parametrized(X, act, width, n_out, param, seed)
    g = torch.Generator().manual_seed(seed)
    row: dict[str, list[float]] = {q: [] for q in _QUANTITIES}
    for B in batch_sizes:
        idx = torch.randperm(X.shape[0], generator=g)[:B]
        for q, v in _one_update(mlp, opt, X[idx].double(), target[idx]).items():
            row[q].append(v)
    return row


def run_fig1(
    batch_sizes: Sequence[int] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
    *,
    width: int = 300,
    activations: Sequence[str] = ("relu", "tanh"),
    trials: int = 10,
    seed: int = 0,
    parametrization: str = "ntp",
    data_path: Optional[PathLike] = None,
    out_dir: Optional[PathLike] = None,
) -> Fig1Result:
    """Reproduce Fig. 1: a randomly initialised MLP ``3072 -> width -> width -> 10`` (no biases),
    one SGD step of the batch-mean cross-entropy on a random batch of B digits (all 10 classes),
    and the stable rank of ``Delta W2`` and its mean alignment
    ``|Delta W2 h'_1(x)| / (|Delta W2|_* |h'_1(x)|)`` over the batch. Each trial draws a fresh init
    and batch.

    The init and the optimizer come from ``sptrace.parametrize(parametrization=...)``: the default
    ``"ntp"`` gives every layer std ``gain / sqrt(fan_in)`` (Appendix A's NTP sigma; gain sqrt(2)
    for ReLU, 1 for tanh), the paper's "randomly initialized MLP"; ``"sptrace"`` (muP) differs only
    in the readout's std, ``gain sqrt(n_out) / width`` (Parametrization 1)."""
    t0 = time.perf_counter()
    images, target = digits_raw(data_path)
    X = digits_features(images)
    N, n0 = X.shape
    n_out = int(target.max()) + 1
    if max(batch_sizes) > N:
        raise SptraceError(f"batch size {max(batch_sizes)} exceeds the {N} samples: pass batch sizes up to {N}")
    unknown = sorted(set(activations) - set(_ACTS))
    if unknown:
        raise SptraceError(f"activations {unknown} unknown: use {', '.join(_ACTS)}")
    raw: dict[str, dict[str, list[list[float]]]] = {a: {q: [] for q in _QUANTITIES} for a in activations}
    for a in activations:
        for trial in range(trials):
            row = _one_trial(X, target, a, width, n_out, batch_sizes, parametrization, seed * 1_000_003 + trial)
            for q in _QUANTITIES:
                raw[a][q].append(row[q])
    mean: dict[str, dict[str, list[float]]] = {a: {} for a in activations}
    std: dict[str, dict[str, list[float]]] = {a: {} for a in activations}
    for a in activations:
        for q in _QUANTITIES:
            mean[a][q], std[a][q] = mean_std(raw[a][q])
    res = Fig1Result(batch_sizes=list(batch_sizes), activations=list(activations), width=width, n0=n0,
                     n_out=n_out, trials=trials, raw=raw, mean=mean, std=std, seconds=time.perf_counter() - t0,
                     parametrization=parametrization)
    if out_dir is not None:
        res.write(out_dir)
    return res
