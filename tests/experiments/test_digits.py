"""Tests for experiments.digits (the digits as the stand-in for CIFAR-10) and the one raw loader."""
from __future__ import annotations

import pytest
import torch

from experiments.digits import binary_digits, digit_batches
from experiments.gd_mlp import input_basis
from models_zoo.data import DIGITS_PATH, digits_raw
from sptrace.types import SptraceError

pytestmark = pytest.mark.usefixtures("one_thread")


def test_digits_raw():
    images, target = digits_raw()
    assert images.shape == (1797, 8, 8) and images.dtype == torch.uint8
    assert target.shape == (1797,) and target.dtype == torch.int64 and set(target.tolist()) == set(range(10))
    images[0] += 1  # fresh tensors: changing one leaves the next call alone
    again, _ = digits_raw(DIGITS_PATH)
    assert not torch.equal(again[0], images[0])
    with pytest.raises(FileNotFoundError, match="pass path="):
        digits_raw("/nonexistent/digits.npz")


def test_binary_digits():
    x, y = binary_digits(200, (0, 1), seed=0)
    assert x.shape == (200, 3072) and x.dtype == torch.float32
    assert set(y.tolist()) == {-1.0, 1.0}
    assert 60 < int((y > 0).sum()) < 140
    assert float(x.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(x.std()) == pytest.approx(1.0, abs=1e-4)
    x2, y2 = binary_digits(200, (0, 1), seed=0)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(binary_digits(200, (0, 1), seed=1)[0], x)
    # upsampled 8x8 images repeated over 3 channels span at most 65 dimensions
    xp, V = input_basis(x)
    assert xp.shape[1] <= 65
    assert torch.allclose(xp @ V.T, x, atol=1e-4)
    with pytest.raises(SptraceError, match="n=1000: only 360 samples"):
        binary_digits(1000)
    # a side may be a group of digits; the default pair is unchanged by that option
    xg, yg = binary_digits(200, ((0, 1, 2, 3, 4), (5, 6, 7, 8, 9)), seed=0)
    assert xg.shape == (200, 3072) and 60 < int((yg > 0).sum()) < 140
    x3, y3 = binary_digits(200, ((0,), [1]), seed=0)
    assert torch.equal(x3, x) and torch.equal(y3, y)
    with pytest.raises(SptraceError, match="overlap"):
        binary_digits(100, ((0, 1), (1, 2)))


def test_digit_batches():
    batches = digit_batches(64, 3)
    assert len(batches) == 3 and all(x.shape == (64, 64) and y.shape == (64,) for x, y in batches)
    x = torch.cat([b[0] for b in batches])
    assert float(x.mean(0).abs().max()) < 1e-5  # each feature centred over the batches
    assert torch.equal(torch.cat([b[1] for b in batches]), digits_raw()[1][:192])
