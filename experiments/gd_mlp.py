"""The bias-free MLP of the paper's Fig. 2 (``3072 -> n -> n -> 1``, ReLU) set up through
``sptrace.parametrize`` and trained by full-batch gradient descent with the optimizer it returns;
shared by :mod:`experiments.fig2` and :mod:`experiments.lr_sweep`.

The model is a plain ``nn.Sequential`` with PyTorch's own init; the paper's constants (Appendix A)
are what the library has to produce from it, so nothing here types them in:
tests/experiments/test_gd_mlp.py holds them as the expectation and checks every layer's init std
and learning rate against them.

Speed-up (``project_input=True`` in :func:`parametrized_mlp`, exact): gradient descent only ever
changes ``W1`` inside the row space of the data matrix ``X`` (``dW1 = G X^T``), and
``W1 x = (W1 V)(V^T x)`` for any orthonormal basis ``V`` of that space (:func:`input_basis`).
Training ``W1 V`` (``n x r``) on the coordinates ``V^T x`` with W1's learning rate therefore gives
the same h1, h2, W2, W3 and losses as training ``W1`` on ``x``. The upsampled digits span
``r <= 65`` of the 3072 dimensions, so the first layer costs ``r / 3072`` of its nominal price.
``W1`` itself is the one ``parametrize`` drew at ``n0 = 3072`` (a model built ``r`` wide would be
parametrized for the wrong fan-in). tests/experiments/test_gd_mlp.py checks the equivalence."""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

import sptrace
from sptrace.types import SptraceError

__all__ = ["PARAMETRIZATIONS", "check_parametrization", "fig2_mlp", "parametrized_mlp", "input_basis",
           "project_first_layer", "layer_weights", "mlp_forward", "half_mse", "train_full_batch"]

# "sptrace": the paper's spectral parametrization (its muP), which sptrace implements; "ntp":
# Appendix A's baseline; "sp": the lr sweep's baseline (He init, one lr).
PARAMETRIZATIONS = ("sptrace", "ntp", "sp")
_RELU_GAIN = math.sqrt(2.0)  # Appendix A's sqrt(2) in every sigma: He init for ReLU


def check_parametrization(param: str) -> None:
    if param not in PARAMETRIZATIONS:
        raise SptraceError(f"unknown parametrization {param!r}: use one of {', '.join(PARAMETRIZATIONS)}")


def fig2_mlp(n0: int, width: int) -> nn.Sequential:
    """``n0 -> width -> width -> 1``, ReLU, no biases (Appendix A), with PyTorch's default init."""
    return nn.Sequential(nn.Linear(n0, width, bias=False), nn.ReLU(), nn.Linear(width, width, bias=False),
                         nn.ReLU(), nn.Linear(width, 1, bias=False))


def layer_weights(mlp: nn.Sequential) -> list[Tensor]:
    """``[W1, W2, W3]``, the weights of the Linear layers in order."""
    return [m.weight for m in mlp if isinstance(m, nn.Linear)]


def _he_init_(mlp: nn.Sequential) -> None:
    """SP keeps the model's own init, so the SP baseline brings Appendix A's sigma_l = sqrt(2/n_{l-1})
    (PyTorch's He init) itself: the lr sweep compares it with NTP at the same init, one lr."""
    for W in layer_weights(mlp):
        nn.init.kaiming_normal_(W, nonlinearity="relu")


def parametrized_mlp(x: Tensor, width: int, param: str, eta: float, seed: int, *, project_input: bool = True,
                     dtype: torch.dtype = torch.float32) -> tuple[nn.Sequential, torch.optim.Optimizer, Tensor]:
    """The MLP at ``width`` under ``param``, re-initialised by ``sptrace.parametrize``, and its SGD.

    Returns ``(mlp, opt, inputs)``: ``inputs`` is what ``mlp`` is trained on (``x``, or its
    row-space coordinates with ``project_input``). Every random number comes from torch's CPU
    generator seeded with ``seed`` (the caller's global generator is left as it was), so the run
    is the same on every device: move ``mlp`` and ``inputs`` afterwards."""
    check_parametrization(param)
    x = x.to(torch.float32)  # the init is drawn in float32 whatever the dtype (sptrace.apply.init)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mlp = fig2_mlp(x.shape[1], width)
        if param == "sp":
            _he_init_(mlp)
        # Absolute form: eta is Appendix A's global lr, each layer's lr its width-scaled multiple;
        # its readout init is a Gaussian sqrt(2)/d, not the zero readout the library starts muP with.
        opt = sptrace.parametrize(mlp, "sgd", lr=eta, form="absolute", init_gain=_RELU_GAIN, zero_readout=False,
                                  parametrization=param, example_inputs=(x,))
    mlp.to(dtype)  # in place: the optimizer keeps holding the same parameters
    x = x.to(dtype)
    if not project_input:
        return mlp, opt, x
    xin, V = input_basis(x)
    project_first_layer(mlp, opt, V)
    return mlp, opt, xin


def input_basis(X: Tensor, rtol: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Orthonormal basis ``V`` (``(n0, r)``) of the row space of ``X`` (``(B, n0)``) and the
    coordinates ``X V`` (``(B, r)``); singular values below ``rtol * max`` are dropped."""
    _, S, Vh = torch.linalg.svd(X.to(torch.float64), full_matrices=False)
    r = int((S > S[0] * rtol).sum())
    V = Vh[:r].T.to(X.dtype)
    return X @ V, V


@torch.no_grad()
def project_first_layer(mlp: nn.Sequential, opt: torch.optim.Optimizer, V: Tensor) -> None:
    """Replace the first layer ``W1`` (``n x n0``) by ``W1 V`` (``n x r``), in ``mlp`` and in the
    optimizer group that held ``W1`` (so it trains with the lr ``parametrize`` gave ``W1``).
    Swapping the tensor is safe for plain SGD, which keeps no per-parameter state."""
    W1 = mlp[0].weight
    # skip_init: its own init would be overwritten, and drawing it would move the caller's generator
    projected = nn.utils.skip_init(nn.Linear, V.shape[1], W1.shape[0], bias=False, dtype=W1.dtype)
    projected.weight.copy_(W1 @ V)
    holders = [g for g in opt.param_groups if any(p is W1 for p in g["params"])]
    if len(holders) != 1 or opt.state:
        raise SptraceError("project_first_layer needs a stateless optimizer with W1 in exactly one group")
    holders[0]["params"] = [projected.weight if p is W1 else p for p in holders[0]["params"]]
    mlp[0] = projected


def mlp_forward(x: Tensor, weights: Sequence[Tensor], act: Callable[[Tensor], Tensor] = F.relu) -> list[Tensor]:
    """Pre-activations ``[h1, ..., hL]`` of a bias-free MLP given its weights; ``hL`` is the output.
    Measurements (Eq. 23) need h2 under the initial weights as well as the trained ones."""
    hs = []
    h = x
    for k, W in enumerate(weights):
        z = h @ W.T
        hs.append(z)
        h = act(z) if k < len(weights) - 1 else z
    return hs


def half_mse(output: Tensor, target: Tensor) -> Tensor:
    """The Fig. 2 loss ``0.5 * mean((f - y)^2)``."""
    return 0.5 * (output - target.reshape(output.shape)).square().mean()


def train_full_batch(mlp: nn.Module, opt: torch.optim.Optimizer, x: Tensor, y: Tensor, steps: int, *,
                     record_every: int = 0) -> list[float]:
    """``steps`` full-batch gradient-descent steps of ``opt`` on :func:`half_mse`. Returns the loss
    every ``record_every`` steps (before that step's update) and always the final loss."""
    hist: list[float] = []
    for t in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = half_mse(mlp(x), y)
        if record_every and t % record_every == 0:
            hist.append(float(loss.detach()))
        loss.backward()
        opt.step()
    with torch.no_grad():
        hist.append(float(half_mse(mlp(x), y)))
    return hist
