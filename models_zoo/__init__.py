"""models_zoo: small width-parametrised models to run sptrace on, with their data.

    import models_zoo
    spec = models_zoo.get("gpt")
    model = spec.build(256, tied=True)            # width is the one knob
    args, kwargs = spec.example_inputs()           # for tracing
    for (inputs, target) in spec.batches(32, seed=0, steps=4):
        loss = spec.loss(model(*inputs), target)

Every model: PyTorch-default init, deterministic under ``torch.manual_seed``, builds on any
device (``with torch.device("meta"): spec.build(4096)``). Data ships in ``models_zoo/data/``.
See docs/zoo.md.
"""
from __future__ import annotations

import difflib
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import cnn, data, gpt, mixer, mlp, vit

__all__ = ["ZOO", "ZooSpec", "UnknownModelError", "get", "names", "data"]

TASKS = ("classification", "language-modelling", "regression")


class UnknownModelError(KeyError):
    """A zoo name that does not exist (a KeyError whose message reads cleanly)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class ZooSpec:
    name: str
    description: str
    default_width: int
    coord_widths: tuple[int, ...]
    task: str
    builder: Callable[..., nn.Module] = field(repr=False, compare=False)
    batches_fn: Callable[..., Iterator] = field(repr=False, compare=False)
    options: Mapping[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"{self.name}: task must be one of {TASKS}, got {self.task!r}")

    def build(self, width: int, **options: Any) -> nn.Module:
        """The model at ``width`` (every hidden dim scales with it; inputs/outputs are fixed).
        Parameters are created on the current default device (``with torch.device("meta"):``)."""
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ValueError(f"{self.name}: width must be a positive int, got {width!r}")
        parameters = inspect.signature(self.builder).parameters
        accepted = set(parameters) - {"width"}
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())  # it checks them
        unknown = [] if takes_any else sorted(set(options) - accepted)
        if unknown:
            raise TypeError(f"{self.name}.build: unknown option(s) {', '.join(unknown)}; "
                            f"options are: {', '.join(sorted(accepted)) or 'none'}")
        return self.builder(width, **options)

    def batches(self, batch_size: int, *, seed: int = 0, device="cpu", source: str = "real",
                split: str = "train", steps: Optional[int] = None) -> Iterator[tuple[tuple, torch.Tensor]]:
        """Endless (or ``steps`` long) seeded stream of ``(inputs_tuple, target)``.
        ``source="real"``: the shipped data; ``"synthetic"``: random data of the same shapes from
        a fixed random teacher. ``split``: "train" or "val" (real data only)."""
        return self.batches_fn(batch_size, seed=seed, device=device, source=source, split=split, steps=steps)

    def example_inputs(self, batch_size: int = 2, device="cpu") -> tuple[tuple, dict]:
        """``(args, kwargs)`` for tracing: a fixed synthetic batch (no file is read)."""
        inputs, _ = next(iter(self.batches(batch_size, seed=0, device=device, source="synthetic", steps=1)))
        return tuple(inputs), {}

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy (over tokens for language modelling), MSE for regression."""
        if self.task == "language-modelling":
            return F.cross_entropy(output.reshape(-1, output.shape[-1]), target.reshape(-1))
        if self.task == "regression":
            return F.mse_loss(output, target)
        return F.cross_entropy(output, target)


def _images(flatten: bool = False):
    def batches(batch_size, **kw):
        return data.image_batches(batch_size, flatten=flatten, **kw)
    return batches


def _text(batch_size, **kw):
    return data.text_batches(batch_size, block_size=gpt.BLOCK_SIZE, **kw)


_COORD = (64, 128, 256, 512)
_HEADS = {"head_dim": "fixed head size (default 16); n_head = width // head_dim grows with width",
          "n_head": "fix the number of heads instead (head_dim = width // n_head grows)"}

ZOO: dict[str, ZooSpec] = {s.name: s for s in [
    ZooSpec("mlp", "the paper's MLP 3072 -> width -> width -> 10, ReLU, no biases, on flattened 3x32x32 digits",
            default_width=128, coord_widths=_COORD, task="classification",
            builder=mlp.build, batches_fn=_images(flatten=True),
            options={"out_features": "output size (default 10; the batches' labels are 10 classes)"}),
    ZooSpec("cnn", "ResNet-style CNN on 3x32x32 digits: stem conv, 2 residual blocks with depthwise and "
                   "grouped (4 groups) convs, BatchNorm, a stride-2 stage doubling channels, GAP, linear",
            default_width=128, coord_widths=_COORD, task="classification",
            builder=cnn.build, batches_fn=_images()),
    ZooSpec("gpt", "nanoGPT-style character-level decoder on Shakespeare: 77-char vocab, block 64, "
                   "2 pre-LN blocks, fused QKV, causal SDPA, GELU MLP 4*width",
            default_width=128, coord_widths=_COORD, task="language-modelling",
            builder=gpt.build, batches_fn=_text,
            options={"tied": "lm_head.weight is transformer.wte.weight (default False)",
                     "n_layer": "number of blocks (default 2)", **_HEADS,
                     "bias": "biases in the block linears (default True)",
                     "attn_scale": "attention logit scale (default 1/sqrt(head_dim))"}),
    ZooSpec("vit", "ViT on 3x32x32 digits: patch-4 conv (64 patches), class token, learned position "
                   "embedding, 2 pre-LN blocks with nn.MultiheadAttention, GELU MLP 4*width, linear head",
            default_width=128, coord_widths=_COORD, task="classification",
            builder=vit.build, batches_fn=_images(),
            options={"depth": "number of blocks (default 2)", **_HEADS}),
    ZooSpec("mixer", "MLP-Mixer on 3x32x32 digits: patch-4 conv (64 patches), 2 blocks of token-mixing "
                     "MLP 64 -> width//2 -> 64 and channel-mixing MLP width -> 4*width -> width, GAP, linear",
            default_width=128, coord_widths=_COORD, task="classification",
            builder=mixer.build, batches_fn=_images(),
            options={"depth": "number of blocks (default 2)",
                     "token_ratio": "token-mixing hidden = int(width * token_ratio) (default 0.5)"}),
]}


def names() -> list[str]:
    return list(ZOO)


def get(name: str) -> ZooSpec:
    try:
        return ZOO[name]
    except (KeyError, TypeError):
        close = difflib.get_close_matches(str(name), ZOO, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UnknownModelError(f"unknown zoo model {name!r}{hint}; available: {', '.join(ZOO)}") from None
