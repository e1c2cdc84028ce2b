"""The bias-free MLP of the paper's Fig. 2 (``3072 -> n -> n -> 1``, ReLU) trained by full-batch
gradient descent under the constants of Appendix A, shared by :mod:`experiments.fig2` and
:mod:`experiments.lr_sweep`.

Speed-up (``project_input=True`` in :func:`experiments.fig2.fig2_run`, exact): gradient descent
only ever changes ``W1`` inside the row space of the data matrix ``X`` (``dW1 = G X^T``), and
``W1 x = (W1 V)(V^T x)`` for any orthonormal basis ``V`` of that space (:func:`input_basis`).
Training ``W1 V`` (``n x r``) on the coordinates ``V^T x`` therefore gives the same h1, h2, W2, W3
and losses as training ``W1`` on ``x``, and ``W1 V`` has the same i.i.d. Gaussian law as ``W1``.
The upsampled digits span ``r <= 65`` of the 3072 dimensions, so the first layer costs ``r / 3072``
of its nominal price. tests/experiments/test_gd_mlp.py checks the equivalence against the
unprojected model."""
from __future__ import annotations

import math
from typing import Callable, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from sptrace.types import SptraceError

__all__ = ["PARAMETRIZATIONS", "fig2_constants", "input_basis", "init_weights", "mlp_forward", "train_mlp_gd"]

# "sptrace": the paper's spectral parametrization (its muP), which sptrace implements.
PARAMETRIZATIONS = ("sptrace", "ntp", "sp")


def fig2_constants(param: str, n0: int, width: int, eta: float = 0.1) -> tuple[list[float], list[float]]:
    """Init stds and learning rates ``([s1, s2, s3], [lr1, lr2, lr3])`` of Appendix A.

    sptrace (the paper's muP): ``s = (sqrt(2/n0), sqrt(2/d), sqrt(2)/d)``, ``lr = (eta d/n0, eta, eta/d)``;
    NTP: ``s_l = sqrt(2/n_{l-1})``, ``lr_l = eta/n_{l-1}``;
    SP (for lr sweeps): NTP's init with ``lr_l = eta`` at every layer.
    """
    d = width
    if param == "sptrace":
        return [math.sqrt(2 / n0), math.sqrt(2 / d), math.sqrt(2) / d], [eta * d / n0, eta, eta / d]
    if param == "ntp":
        return [math.sqrt(2 / n0), math.sqrt(2 / d), math.sqrt(2 / d)], [eta / n0, eta / d, eta / d]
    if param == "sp":
        return [math.sqrt(2 / n0), math.sqrt(2 / d), math.sqrt(2 / d)], [eta, eta, eta]
    raise SptraceError(f"unknown parametrization {param!r}: use one of {', '.join(PARAMETRIZATIONS)}")


def input_basis(X: Tensor, rtol: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Orthonormal basis ``V`` (``(n0, r)``) of the row space of ``X`` (``(B, n0)``) and the
    coordinates ``X V`` (``(B, r)``); singular values below ``rtol * max`` are dropped."""
    _, S, Vh = torch.linalg.svd(X.to(torch.float64), full_matrices=False)
    r = int((S > S[0] * rtol).sum())
    V = Vh[:r].T.to(X.dtype)
    return X @ V, V


def init_weights(width: int, n_in: int, stds: Sequence[float], seed: int, *, dtype: torch.dtype = torch.float32,
                 device: Union[str, torch.device] = "cpu") -> list[Tensor]:
    """Gaussian ``[W1 (width, n_in), W2 (width, width), W3 (1, width)]`` with the given stds, drawn
    on the CPU from ``seed`` (the same numbers on every device) and then moved to ``device``."""
    g = torch.Generator().manual_seed(seed)
    shapes = ((width, n_in), (width, width), (1, width))
    return [(torch.randn(*shape, generator=g, dtype=dtype) * s).to(device) for shape, s in zip(shapes, stds)]


def mlp_forward(x: Tensor, weights: Sequence[Tensor], act: Callable[[Tensor], Tensor]) -> list[Tensor]:
    """Pre-activations ``[h1, ..., hL]`` of a bias-free MLP; ``hL`` is the output."""
    hs = []
    h = x
    for k, W in enumerate(weights):
        z = h @ W.T
        hs.append(z)
        h = act(z) if k < len(weights) - 1 else z
    return hs


def train_mlp_gd(
    x: Tensor,
    y: Tensor,
    weights: Sequence[Tensor],
    lrs: Sequence[float],
    steps: int,
    *,
    act: Callable[[Tensor], Tensor] = F.relu,
    record_every: int = 0,
) -> tuple[list[Tensor], list[float]]:
    """Full-batch gradient descent on ``0.5 * mean((f(x) - y)^2)`` for a bias-free MLP with
    per-layer learning rates. Returns the trained weights (new tensors) and the loss history
    (every ``record_every`` steps, and always the final loss)."""
    Ws = [W.detach().clone().requires_grad_(True) for W in weights]
    y = y.reshape(-1, 1) if y.dim() == 1 else y
    hist: list[float] = []
    for t in range(steps):
        f = mlp_forward(x, Ws, act)[-1]
        loss = 0.5 * (f - y).square().mean()
        grads = torch.autograd.grad(loss, Ws)
        if record_every and t % record_every == 0:
            hist.append(float(loss.detach()))
        with torch.no_grad():
            for W, g, lr in zip(Ws, grads, lrs):
                W.sub_(lr * g)
    with torch.no_grad():
        f = mlp_forward(x, Ws, act)[-1]
        hist.append(float(0.5 * (f - y).square().mean()))
    return [W.detach() for W in Ws], hist
