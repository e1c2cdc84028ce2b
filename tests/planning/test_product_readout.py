"""planning/readouts.py ``spared_factors``: a readout computed as the entrywise product of two parameters
(an efficient-KAN layer's ``spline_weight * spline_scaler.unsqueeze(-1)``, then one linear) starts at zero
through one factor only. Zeroing both is a saddle: each factor's gradient is the product's times the
other, zero, so neither ever moves (before: the KAN readout's spline weight and scaler had a gradient of
exactly zero in float64 at every step of the coord check; docs/parametrize.md "Zero readouts")."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sptrace


class ProductHead(nn.Module):
    """Linear(16, d) -> ReLU -> a readout whose weight is ``weight * scaler[..., None]`` summed over a
    fixed basis axis of 4 (KAN-style), beside a plain readout ``base``."""

    def __init__(self, width, einsum=False):
        super().__init__()
        self.inp = nn.Linear(16, width)
        self.base = nn.Parameter(torch.randn(10, width) / width ** 0.5)
        self.weight = nn.Parameter(torch.randn(10, width, 4) / width ** 0.5)
        self.scaler = nn.Parameter(torch.randn(10, width) / width ** 0.5)
        self.einsum = einsum

    def forward(self, x):
        h = F.relu(self.inp(x))
        bases = torch.stack([h, h.sin(), h.cos(), h * h], dim=-1)  # (B, d, 4)
        w = self.weight * self.scaler[..., None]
        if self.einsum:
            spline = torch.einsum("bik,oik->bo", bases, w)
        else:
            spline = F.linear(bases.reshape(x.shape[0], -1), w.reshape(10, -1))
        return F.linear(h, self.base) + spline


X = torch.randn(8, 16, generator=torch.Generator().manual_seed(0))


def _base():
    with torch.device("meta"):
        return ProductHead(32)


@pytest.mark.parametrize("einsum", [False, True])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_one_factor_of_a_product_readout_starts_at_zero_and_both_learn(optimizer, einsum):
    torch.manual_seed(0)
    model = ProductHead(64, einsum)
    opt = sptrace.parametrize(model, optimizer, lr=0.01, example_inputs=(X,), base=_base())
    plans = opt.sptrace
    assert plans["base"].init == "zeros"  # an ordinary readout still starts at zero
    assert plans["weight"].init == "zeros" and plans["scaler"].init != "zeros"  # the larger factor is zeroed
    assert not model.weight.any() and model.scaler.abs().min() > 0
    (model(X) - 1).square().mean().backward()
    assert model.weight.grad.abs().max() > 0  # before: 0 for both factors, at every step
    opt.step()
    opt.zero_grad()
    (model(X) - 1).square().mean().backward()
    assert model.scaler.grad.abs().max() > 0


def test_zero_readout_true_and_false_are_unchanged_where_nothing_is_a_product():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 10))
    opt = sptrace.parametrize(model, "adam", lr=0.01, example_inputs=(X,))
    assert opt.sptrace["2.weight"].init == "zeros"
