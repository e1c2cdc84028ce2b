"""The experiments' data: scikit-learn's handwritten digits (1797 images of 8x8, shipped with the
zoo and read by :func:`models_zoo.data.digits_raw`) as the paper's stand-in for CIFAR-10.

Fig. 1 and Fig. 2 upsample them bilinearly to 32x32 and repeat them over 3 channels: ``n0 = 3072``
input features, standardised (global mean 0, std 1 over the chosen samples, so
``|x|_2 ~ sqrt(n0)``). The coord-check demonstration uses them at 8x8 (64 features)."""
from __future__ import annotations

import operator
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from models_zoo.data import digits_raw
from sptrace.types import SptraceError

from .results import PathLike

__all__ = ["ClassSpec", "class_group", "digits_features", "binary_digits", "digit_batches"]

ClassSpec = Union[int, Sequence[int]]


def digits_features(images: Tensor, size: int = 32, channels: int = 3) -> Tensor:
    """Upsample ``(N, 8, 8)`` images bilinearly to ``size x size``, repeat over ``channels`` and
    flatten: ``(N, channels * size * size)`` float32, standardised over the whole set (mean 0, std 1)."""
    x = images.to(torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = x.repeat(1, channels, 1, 1).reshape(x.shape[0], -1)
    return (x - x.mean()) / x.std()


def class_group(c: ClassSpec) -> tuple[int, ...]:
    """One class (any integer, NumPy's too) or a group of classes, as a tuple of ints."""
    if hasattr(c, "__index__") and not hasattr(c, "__len__"):
        return (operator.index(c),)
    return tuple(operator.index(v) for v in c)


def binary_digits(
    n: int = 200,
    classes: tuple[ClassSpec, ClassSpec] = (0, 1),
    seed: int = 0,
    *,
    size: int = 32,
    channels: int = 3,
    path: Optional[PathLike] = None,
) -> tuple[Tensor, Tensor]:
    """``n`` random samples (seeded) of two digit classes: features ``(n, 3072)``, targets -1 / +1
    (first class -1). The stand-in for the paper's 200 CIFAR-10 airplanes and automobiles (CIFAR's
    classes 0 and 1; the default takes the digits' classes 0 and 1). Each side of ``classes`` may
    also be a group of digits, e.g. ``((0, 1, 2, 3, 4), (5, 6, 7, 8, 9))``. ``path``: another
    digits ``.npz`` (default: the shipped one)."""
    images, target = digits_raw(path)
    neg, pos = class_group(classes[0]), class_group(classes[1])
    if set(neg) & set(pos):
        raise SptraceError(f"classes {classes} overlap: pass two disjoint classes (or groups of classes)")
    is_neg = torch.isin(target, torch.tensor(neg, dtype=target.dtype))
    is_pos = torch.isin(target, torch.tensor(pos, dtype=target.dtype))
    idx = torch.nonzero(is_neg | is_pos).squeeze(1)
    if n > len(idx):
        raise SptraceError(f"n={n}: only {len(idx)} samples of classes {classes}; ask for at most {len(idx)}")
    g = torch.Generator().manual_seed(seed)
    idx = idx[torch.randperm(len(idx), generator=g)[:n]]
    x = digits_features(images[idx], size, channels)
    y = torch.where(is_neg[idx], -1.0, 1.0)
    return x, y


def digit_batches(n: int, steps: int, path: Optional[PathLike] = None) -> list[tuple[Tensor, Tensor]]:
    """``steps`` consecutive batches of ``n`` 8x8 digits (64 features, each centred, global std 1)
    with their 10-class labels. Centred per feature: uncentred digits share one large mean
    direction, which hides width effects at a coord check's widths."""
    images, target = digits_raw(path)
    x = images[: n * steps].reshape(-1, 64).to(torch.float32) / 16
    x = (x - x.mean(0)) / x.std()
    return [(x[i * n:(i + 1) * n], target[i * n:(i + 1) * n]) for i in range(steps)]
