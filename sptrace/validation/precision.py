"""The coord check's precision: batches moved to a device and a dtype, a model run in another dtype
(:func:`in_dtype`, the ``dtype=`` of :func:`sptrace.validation.coord.coord_check`), an update measured in
ulps of its weights (:func:`largest_ulps`), and each parameter's gradient in float64
(:func:`exact_gradients`); docs/validation.md, "Updates below float32 resolution".
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Mapping, Optional, Sequence

import torch
from torch import Tensor, nn
from torch.utils import _pytree as pytree

from ..types import SptraceError
from .recorder import rms


def to_device(x: Any, device: torch.device, dtype: Optional[torch.dtype] = None) -> Any:
    """``x`` (tensors in mappings, tuples and lists) on ``device``, its floating tensors in ``dtype`` if given."""
    if isinstance(x, Tensor):
        return x.to(device, dtype) if dtype is not None and x.is_floating_point() else x.to(device)
    if isinstance(x, Mapping):
        moved = {k: to_device(v, device, dtype) for k, v in x.items()}
        try:
            return type(x)(moved)
        except Exception:  # mappings whose constructor takes something else
            return moved
    if isinstance(x, tuple):
        return tuple(to_device(v, device, dtype) for v in x)
    if isinstance(x, list):
        return [to_device(v, device, dtype) for v in x]
    return x


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _floating(t: Any) -> bool:
    return isinstance(t, Tensor) and t.is_floating_point()


@contextmanager
def in_dtype(model: nn.Module, opt: torch.optim.Optimizer, dtype: Optional[torch.dtype]) -> Iterator[str]:
    """Run ``model``, built and given its optimizer as usual, in ``dtype`` (None: as built): its floating
    parameters (in place, so the optimizer's references hold), buffers and any optimizer state converted,
    and the default dtype set, so tensors the forward makes match (the batches are converted by the
    caller, :func:`to_device`); yields the dtype trained in. The default dtype and the model's dtypes are
    restored afterwards, also when a step fails; a failing step is re-raised as an :class:`SptraceError`
    that names the dtype (a forward that makes float32 tensors of its own cannot run in float64)."""
    if dtype is None:
        yield dtype_name(next((p.dtype for p in model.parameters()), torch.get_default_dtype()))
        return
    params = [(p, p.dtype) for p in model.parameters() if _floating(p)]
    buffers = [(m, k, b.dtype) for m in model.modules() for k, b in m._buffers.items() if _floating(b)]
    default = torch.get_default_dtype()
    try:
        torch.set_default_dtype(dtype)
        _cast(params, buffers, lambda was: dtype)
        for state in opt.state.values():
            state.update({k: v.to(dtype) for k, v in state.items() if _floating(v)})
        yield dtype_name(dtype)
    except RuntimeError as error:
        raise SptraceError(f"coord_check(dtype={dtype_name(dtype)}): a step failed with the model in "
                           f"{dtype_name(dtype)}: {error}. A forward that makes tensors of a fixed dtype (not the "
                           "default dtype, not its input's) cannot run in another; pass dtype=None to measure "
                           "in the model's own dtype") from error
    finally:
        torch.set_default_dtype(default)
        _cast(params, buffers, lambda was: was)


def _cast(params: Sequence[tuple[nn.Parameter, torch.dtype]], buffers: Sequence[tuple[nn.Module, str, torch.dtype]],
          to: Callable[[torch.dtype], torch.dtype]) -> None:
    """Each parameter (in place) and buffer, noted with its dtype ``was``, converted to ``to(was)``."""
    for p, was in params:
        p.data = p.data.to(to(was))
    for m, k, was in buffers:
        m._buffers[k] = m._buffers[k].to(to(was))


def largest_ulps(before: Tensor, after: Tensor) -> float:
    """The largest ``|after - before|`` over entries, in units of the spacing of ``before``'s dtype at each
    entry's value (its ulp)."""
    if not before.is_floating_point() or before.numel() == 0:
        return math.inf
    magnitude = before.abs()
    ulp = torch.nextafter(magnitude, torch.full_like(magnitude, math.inf)) - magnitude
    return float(((after - before).abs() / ulp).max())


def exact_gradients(model: nn.Module, tracked: Sequence[tuple[str, nn.Parameter]], batch: tuple[Any, Any],
                    forward: Callable[[nn.Module, Any], Any], loss_fn: Callable[[Any, Any], Tensor],
                    device: torch.device) -> dict[str, float]:
    """RMS of each tracked parameter's gradient in float64 on ``batch`` at the current weights.
    A parameter that cannot change the loss (a bias feeding a training-mode BatchNorm, a per-token
    constant before a LayerNorm over channels) has gradient zero in exact arithmetic: float32 leaves
    rounding noise down to ~1e-9 of the largest, as small as the gradient of a slowly learning layer,
    float64 leaves ~1e-18. Tensors the forward makes with the default dtype are float64 too (XGLM's
    ``torch.full((), finfo(logits.dtype).min)`` overflows float32 otherwise). Empty when the model does
    not run in float64; the model and the default dtype are restored."""
    params = [(p, p.data) for p in model.parameters()]
    buffers = [(m, k, b) for m in model.modules() for k, b in m._buffers.items() if b is not None]
    as64 = lambda v: v.double() if _floating(v) else v  # noqa: E731
    x, y = batch
    default = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float64)
        model.double()
        for _, p in tracked:
            p.grad = None
        loss_fn(forward(model, pytree.tree_map(as64, to_device(x, device))),
                pytree.tree_map(as64, to_device(y, device))).backward()
        return {n: rms(p.grad) if p.grad is not None else 0.0 for n, p in tracked}
    except Exception:  # a model pinned to float32 inside: no exemption, everything is judged
        return {}
    finally:
        torch.set_default_dtype(default)
        for p, data in params:
            p.data, p.grad = data, None
        for m, k, b in buffers:
            m._buffers[k] = b
