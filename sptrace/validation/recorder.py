"""Recording every module's output during a forward pass: the RMS (and optionally a copy) of each
submodule's first tensor output, what the coord check compares across widths."""
from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Optional

from torch import Tensor, nn
from torch.nn.utils.parametrize import ParametrizationList

from ..spectral import accumulation_dtype

__all__ = ["rms", "first_tensor", "OutputRecorder", "ROOT"]

ROOT = "<model>"  # record name used for the root module's output


def rms(x: Tensor) -> float:
    """Root mean square of all entries, computed in float32 (float64 stays float64)."""
    x = x.detach()
    return float(x.to(accumulation_dtype(x)).square().mean().sqrt()) if x.numel() else float("nan")


def first_tensor(out: Any) -> Optional[Tensor]:
    """The first floating-point tensor in a module output (tensor, tuple/list, dict, HF ModelOutput)."""
    if isinstance(out, Tensor):
        return out if (out.is_floating_point() or out.is_complex()) else None
    if isinstance(out, Mapping):
        items: Iterable[Any] = out.values()
    elif isinstance(out, (tuple, list)):
        items = out
    else:
        return None
    for item in items:
        t = first_tensor(item)
        if t is not None:
            return t
    return None


class OutputRecorder:
    """Context manager recording each submodule's first tensor output during forward passes.

    >>> with OutputRecorder(model) as rec:
    ...     model(x)
    >>> rec.rms  # {"<model>": ..., "fc1": ..., "act": ..., "act#1": ...}

    Names are ``named_modules()`` names, the root is ``ROOT`` (``"<model>"``). A module called more
    than once in one forward (a shared activation) records ``name``, ``name#1``, ``name#2``, ...
    Each forward pass (each call of the root module) starts a fresh record. ``keep_outputs=True``
    also keeps a detached float32 copy of every output in ``outputs`` (needed for differences).
    ``names`` restricts recording to those modules; ``leaves_only`` to modules without children. The
    modules of a ``torch.nn.utils.parametrize`` parametrization (weight_norm's, spectral_norm's) compute a
    weight, not an activation: they are not recorded (their output is judged as the parameter's).
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        keep_outputs: bool = False,
        names: Optional[Iterable[str]] = None,
        leaves_only: bool = False,
        include_root: bool = True,
    ) -> None:
        self.model = model
        self.keep_outputs = keep_outputs
        self.names = None if names is None else set(names)
        self.leaves_only = leaves_only
        self.include_root = include_root
        self.rms: dict[str, float] = {}
        self.outputs: dict[str, Tensor] = {}
        self._counts: dict[str, int] = {}
        self._handles: list[Any] = []
        self._depth = 0

    def _pre(self, module: nn.Module, args: Any) -> None:
        if module is self.model:
            if self._depth == 0:
                self.rms, self.outputs, self._counts = {}, {}, {}
            self._depth += 1

    def _make_hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: Any, out: Any) -> None:
            t = first_tensor(out)
            if t is None:
                return
            k = self._counts.get(name, 0)
            self._counts[name] = k + 1
            key = name if k == 0 else f"{name}#{k}"
            t = t.detach()
            if t.is_complex():
                t = t.abs()
            self.rms[key] = rms(t)
            if self.keep_outputs:
                self.outputs[key] = t.to(accumulation_dtype(t)).clone()

        return hook

    def _post(self, module: nn.Module, args: Any, out: Any) -> None:
        self._depth = max(0, self._depth - 1)

    def __enter__(self) -> "OutputRecorder":
        self._depth = 0
        self._handles.append(self.model.register_forward_pre_hook(self._pre))
        weights = {id(m) for p in self.model.modules() if isinstance(p, ParametrizationList) for m in p.modules()}
        for name, mod in self.model.named_modules():
            if id(mod) in weights:
                continue
            is_root = mod is self.model
            key = ROOT if is_root else name
            if is_root and not self.include_root:
                continue
            if self.names is not None and key not in self.names and name not in self.names:
                continue
            if self.leaves_only and not is_root and next(mod.children(), None) is not None:
                continue
            self._handles.append(mod.register_forward_hook(self._make_hook(key)))
        # registered last so that it runs after the root's recording hook
        self._handles.append(self.model.register_forward_hook(self._post, always_call=True))
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
