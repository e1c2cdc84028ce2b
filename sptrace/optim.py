"""SpectralSGD: steepest descent under the spectral norm (Eq. 17), with per-parameter scale.

Update, per parameter (plain loops, no foreach):

    buf  <- momentum * buf + grad                       (Nesterov: g = grad + momentum * buf)
    W    <- W * (1 - lr * weight_decay)                 (decoupled decay, docs/rules.md)
    W    <- W - lr * spectral_scale * O(g)

``O`` acts block by block on the tensor viewed as ``(blocks, fan_out, fan_in)`` (the group's
``sptrace_layout``: conv groups and einsum batch axes are blocks, the layout's fan axes are the
matrix axes; default: axis 0 = fan-out, the rest fan-in):

* ``"orthogonal"`` (default): the polar factor ``UV^T`` of each block, approximated by a quintic
  Newton–Schulz iteration (``method="newton_schulz"``), or ``g / ||g||_*`` with the spectral norm
  estimated by power iteration (``method="power"``, Eq. 17 literally). A block with a single row
  or column (a bias viewed as ``n_out x 1``) is divided by its l2 norm: that *is* its polar
  factor, exactly. With ``spectral_scale = sqrt(d_out/d_in)`` the update's raw spectral norm is
  ``lr * spectral_scale``: natural spectral norm ``lr`` (Condition 2). For a bias (sparse input,
  d_in = 1, d_out = n) this is ``grad / RMS(grad)``: entries of RMS ``lr``.
* ``"column"``: each column of each block (one fan-in index: one token, position or the bias's
  constant input) divided by its l2 norm, for sparse-input operators; zero columns (inputs not
  seen in the batch) stay zero. With ``spectral_scale = sqrt(d_out)`` every input seen moves by
  RMS ``lr`` (docs/rules.md §3).
* ``"sign"``: ``sign(g)``, for diagonal operators (gains: spectral norm = max |entry|, whose
  steepest-descent direction is the sign) and scalars (a 1x1 polar factor is the sign). The scale
  is then the per-entry step (1 in sptrace's plans).

Newton–Schulz: Frobenius-normalise (all singular values in (0, 1]), then ``ns_steps`` quintic
steps with Muon's coefficients (3.4445, -4.7750, 2.0315), which push every singular value into
about [0.7, 1.2] quickly but do not converge to 1, then ``polish_steps`` steps of the classical
quintic (15/8, -10/8, 3/8), which has 1 as a third-order fixed point and brings the top singular
values to within ~1% of 1 (measured in tests/test_optim.py). Runs in float32 by
default (``ns_dtype``; bf16 is safe — the iteration is normalised — but less accurate).
"""
from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

import torch

from .planning.layout import from_blocks, to_blocks
from .types import Layout, SptraceError

__all__ = ["SpectralSGD", "newton_schulz", "orthogonalize", "power_normalize"]

UPDATES = ("orthogonal", "column", "sign")
METHODS = ("newton_schulz", "power")
MUON_COEFFS = (3.4445, -4.7750, 2.0315)
POLISH_COEFFS = (15 / 8, -10 / 8, 3 / 8)


def newton_schulz(
    g: torch.Tensor, steps: int = 5, polish_steps: int = 2, eps: float = 1e-7,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Approximate polar factor ``UV^T`` of each matrix in a ``(..., m, n)`` batch.

    Works on the smaller Gram matrix (transposes tall blocks). Returns float32.
    """
    x = g.to(dtype)
    transposed = x.shape[-2] > x.shape[-1]
    if transposed:
        x = x.transpose(-2, -1)
    x = x / (x.norm(dim=(-2, -1), keepdim=True) + eps)
    for i in range(steps + polish_steps):
        a, b, c = MUON_COEFFS if i < steps else POLISH_COEFFS
        gram = x @ x.transpose(-2, -1)
        poly = b * gram + c * (gram @ gram)
        x = a * x + poly @ x
    if transposed:
        x = x.transpose(-2, -1)
    return x.float()


def power_normalize(
    g: torch.Tensor, v: Optional[torch.Tensor] = None, iters: int = 10, eps: float = 1e-12,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``g / ||g||_*`` per block with ``||g||_*`` from ``iters`` power iterations (warm start ``v``).

    Returns (normalised blocks, right singular vector estimate for the next call). Power iteration
    underestimates the top singular value, so the result's spectral norm is >= 1 (by < 1% with a
    warm start; measured in the tests).
    """
    g = g.float()
    if v is None or v.shape != g.shape[:-2] + g.shape[-1:]:
        v = torch.ones(g.shape[:-2] + g.shape[-1:], device=g.device, dtype=torch.float32)
    for _ in range(iters):
        u = torch.einsum("bmn,bn->bm", g, v)
        v = torch.einsum("bmn,bm->bn", g, u)
        v = v / (v.norm(dim=-1, keepdim=True) + eps)
    sigma = torch.einsum("bmn,bn->bm", g, v).norm(dim=-1)
    return g / (sigma.view(-1, 1, 1) + eps), v


def orthogonalize(blocks: torch.Tensor, *, method: str = "newton_schulz", **kw) -> torch.Tensor:
    """Polar factor of each ``(fan_out, fan_in)`` block; single-row / single-column blocks exactly."""
    if blocks.shape[-1] == 1 or blocks.shape[-2] == 1:
        b = blocks.float()
        return b / (b.norm(dim=(-2, -1), keepdim=True) + kw.get("eps", 1e-7))
    if method == "newton_schulz":
        return newton_schulz(blocks, **kw)
    if method == "power":
        return power_normalize(blocks, **kw)[0]
    raise SptraceError(f"orthogonalize: method must be one of {', '.join(METHODS)}, got {method!r}")


@torch.library.custom_op("sptrace::column_normalize", mutates_args=())
def column_normalize(blocks: torch.Tensor, eps: float) -> torch.Tensor:
    """Every column of every ``(fan_out, fan_in)`` block divided by its l2 norm (zero columns stay zero).

    An opaque operator under torch.compile: inductor's CPU code generation (torch 2.13 and 2.14)
    fails on this column reduction fused with the momentum buffer's in-place update (an internal
    KeyError in its outer-loop fusion), and nothing here gains from fusing it."""
    return blocks / (blocks.norm(dim=-2, keepdim=True) + eps)


@column_normalize.register_fake
def _column_normalize_shape(blocks: torch.Tensor, eps: float) -> torch.Tensor:
    return torch.empty_like(blocks)


class SpectralSGD(torch.optim.Optimizer):
    """Orthogonalised (spectral steepest-descent) SGD with per-group ``spectral_scale``.

    Args:
        params: tensors or param-group dicts. Group keys beyond torch's: ``spectral_scale``
            (sqrt(d_out/d_in), set by :func:`sptrace.planning.plan.group`), ``sptrace_update``
            (``"orthogonal"`` | ``"column"`` | ``"sign"``), ``sptrace_layout`` (a dict from
            :meth:`sptrace.planning.layout.Layout.to_dict`, or None for the default layout).
        lr: natural-norm step size (the update's natural spectral norm, Condition 2).
        momentum, nesterov: heavy-ball buffer ``buf = momentum * buf + grad``; Nesterov uses
            ``grad + momentum * buf``. The buffer's scale does not matter (O is scale-invariant).
        weight_decay: decoupled: ``W *= 1 - lr * weight_decay`` each step.
        method: ``"newton_schulz"`` or ``"power"`` (Eq. 17 with a power-iteration norm).
        ns_steps, polish_steps, ns_dtype: Newton–Schulz settings (see module docstring).
        power_iters: power iterations per step (warm-started from the previous step).
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 0.02,
        momentum: float = 0.9,
        nesterov: bool = True,
        weight_decay: float = 0.0,
        spectral_scale: float = 1.0,
        sptrace_update: str = "orthogonal",
        sptrace_layout: Optional[dict] = None,
        method: str = "newton_schulz",
        ns_steps: int = 5,
        polish_steps: int = 2,
        ns_dtype: torch.dtype = torch.float32,
        power_iters: int = 10,
    ):
        defaults = dict(
            lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
            spectral_scale=spectral_scale, sptrace_update=sptrace_update, sptrace_layout=sptrace_layout,
            method=method, ns_steps=ns_steps, polish_steps=polish_steps, ns_dtype=ns_dtype,
            power_iters=power_iters,
        )
        _check_options(defaults, "SpectralSGD")
        super().__init__(params, defaults)
        for i, group in enumerate(self.param_groups):
            _check_options(group, f"SpectralSGD param group {i}")
            names = group.get("sptrace_names") or [f"param group {i} tensor {j}" for j in range(len(group["params"]))]
            for name, p in zip(names, group["params"]):
                Layout.coerce(group["sptrace_layout"], p.shape).check(p.shape, name)

    def direction(self, p: torch.Tensor, g: torch.Tensor, group: dict) -> torch.Tensor:
        """The unit-spectral-norm direction O(g) (float32, shape of ``p``)."""
        if group["sptrace_update"] == "sign" or p.numel() == 1:
            return g.float().sign()
        layout = Layout.coerce(group["sptrace_layout"], p.shape)
        blocks = to_blocks(g.float(), layout)
        if group["sptrace_update"] == "column":
            o = column_normalize(blocks, 1e-7)
        elif blocks.shape[-1] == 1 or blocks.shape[-2] == 1:
            o = orthogonalize(blocks)
        elif group["method"] == "power":
            state = self.state[p]
            o, state["power_v"] = power_normalize(blocks, state.get("power_v"), iters=group["power_iters"])
        else:
            o = newton_schulz(
                blocks, steps=group["ns_steps"], polish_steps=group["polish_steps"], dtype=group["ns_dtype"],
            )
        return from_blocks(o, layout, p.shape)

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, mom, wd = group["lr"], group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise SptraceError(f"SpectralSGD: the parameter of shape {tuple(p.shape)} has a sparse gradient, "
                                       "which it cannot orthogonalise: build the embedding with sparse=False")
                g = p.grad
                if mom > 0:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = g.detach().clone()
                    else:
                        buf.mul_(mom).add_(g)
                    g = g.add(buf, alpha=mom) if group["nesterov"] else buf
                if wd != 0:
                    p.mul_(1 - lr * wd)
                u = self.direction(p, g, group)
                p.add_(u.to(p.dtype), alpha=-lr * group["spectral_scale"])
        return loss


def _check_options(options: dict, where: str) -> None:
    """SpectralSGD's own options, each named in the error with what it accepts."""
    if not (options["lr"] >= 0):
        raise SptraceError(f"{where}: lr must be >= 0, got {options['lr']!r}")
    if not 0.0 <= options["momentum"] < 1.0:
        raise SptraceError(f"{where}: momentum must be in [0, 1), got {options['momentum']!r}")
    if not (options["weight_decay"] >= 0):
        raise SptraceError(f"{where}: weight_decay must be >= 0, got {options['weight_decay']!r}")
    if options["method"] not in METHODS:
        raise SptraceError(f"{where}: method must be one of {', '.join(METHODS)}, got {options['method']!r}")
    if options["sptrace_update"] not in UPDATES:
        raise SptraceError(f"{where}: sptrace_update must be one of {', '.join(UPDATES)}, got "
                           f"{options['sptrace_update']!r} (sptrace's param groups set it per parameter)")
