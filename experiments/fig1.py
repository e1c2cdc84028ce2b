"""The paper's Fig. 1 (and the stable ranks of its Fig. 3) on the digits: one gradient update of a
hidden layer has low stable rank and stays aligned with the batch's inputs.

MLP ``3072 -> 300 -> 300 -> 10`` (ReLU and tanh), one gradient step on a batch of size B; stable
rank of Delta W2 and its alignment with the batch's inputs, against B. docs/measurements.md
"Fig. 1" has the documented run."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from models_zoo.data import digits_raw
from sptrace.types import SptraceError
from sptrace.spectral import alignment, stable_rank

from .digits import digits_features
from .plots import plot_fig1
from .results import PathLike, mean_std, write_result

__all__ = ["Fig1Result", "run_fig1"]

# Activation and the init gain that keeps its pre-activations at unit scale.
_ACTS: dict[str, tuple[Callable[[Tensor], Tensor], float]] = {
    "relu": (F.relu, math.sqrt(2.0)),
    "tanh": (torch.tanh, 1.0),
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
            "loss": "cross-entropy over the 10 digit classes, batch mean",
            "raw": self.raw, "mean": self.mean, "std": self.std, "seconds": self.seconds,
        }

    def write(self, out_dir: PathLike, name: str = "fig1", plot: bool = True) -> dict[str, str]:
        """Write ``{name}.json`` (and ``{name}.png`` when ``plot``) into ``out_dir``; returns the paths."""
        return write_result(self, out_dir, name, plot_fig1 if plot else None)


def _one_trial(X: Tensor, target: Tensor, act: str, width: int, n_out: int, batch_sizes: Sequence[int],
               g: torch.Generator) -> dict[str, list[float]]:
    """One fresh init; per batch size, one fresh batch and the measures of its gradient update of W2."""
    fn, gain = _ACTS[act]
    n0 = X.shape[1]
    W1 = torch.randn(width, n0, generator=g) * (gain / math.sqrt(n0))
    W2 = (torch.randn(width, width, generator=g) * (gain / math.sqrt(width))).requires_grad_(True)
    W3 = torch.randn(n_out, width, generator=g) * (1 / math.sqrt(width))
    row: dict[str, list[float]] = {q: [] for q in _QUANTITIES}
    for B in batch_sizes:
        idx = torch.randperm(X.shape[0], generator=g)[:B]
        h1p = fn(X[idx] @ W1.T)
        h2 = h1p @ W2.T
        loss = F.cross_entropy(fn(h2) @ W3.T, target[idx])
        gW2, g2 = torch.autograd.grad(loss, [W2, h2])
        dW = -gW2.detach()
        row["stable_rank"].append(float(stable_rank(dW)))
        row["alignment"].append(float(alignment(dW, h1p.detach())))
        # Fig. 3: H'_1 (width x B) and G_2 (width x B); a single column has stable rank 1.
        row["input_stable_rank"].append(float(stable_rank(h1p.detach().T)))
        row["grad_stable_rank"].append(float(stable_rank(g2.detach().T)))
    return row


def run_fig1(
    batch_sizes: Sequence[int] = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
    *,
    width: int = 300,
    activations: Sequence[str] = ("relu", "tanh"),
    trials: int = 10,
    seed: int = 0,
    data_path: Optional[PathLike] = None,
    out_dir: Optional[PathLike] = None,
) -> Fig1Result:
    """Reproduce Fig. 1: a randomly initialised MLP ``3072 -> width -> width -> 10`` (no biases,
    init std ``gain / sqrt(fan_in)``, gain sqrt(2) for ReLU and 1 for tanh), one gradient of the
    batch-mean cross-entropy on a random batch of B digits (all 10 classes), and the stable rank of
    ``Delta W2`` and its mean alignment ``|Delta W2 h'_1(x)| / (|Delta W2|_* |h'_1(x)|)`` over the batch.
    Each trial draws a fresh init and batch."""
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
            row = _one_trial(X, target, a, width, n_out, batch_sizes,
                             torch.Generator().manual_seed(seed * 1_000_003 + trial))
            for q in _QUANTITIES:
                raw[a][q].append(row[q])
    mean: dict[str, dict[str, list[float]]] = {a: {} for a in activations}
    std: dict[str, dict[str, list[float]]] = {a: {} for a in activations}
    for a in activations:
        for q in _QUANTITIES:
            mean[a][q], std[a][q] = mean_std(raw[a][q])
    res = Fig1Result(batch_sizes=list(batch_sizes), activations=list(activations), width=width, n0=n0,
                     n_out=n_out, trials=trials, raw=raw, mean=mean, std=std, seconds=time.perf_counter() - t0)
    if out_dir is not None:
        res.write(out_dir)
    return res
