"""graph/products.py: a weight made as the entrywise product of two parameters, ``W = carrier * factor``
(efficient-KAN's ``spline_weight * spline_scaler.unsqueeze(-1)``, used as one matrix over fan-in
``in * basis``), names the pair on both records: the carrier is the factor with every entry of W, the
other a gain of W's entries repeated over the axes it lacks (docs/rules.md "Products of parameters").
Before, nothing marked the pair and the plan gave each factor W's whole rule."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sptrace

K = 4  # the basis axis: fixed, as a KAN's grid


class KANLike(nn.Module):
    """``in_f -> out_f``: a plain matrix beside ``weight * scaler[..., None]`` over ``in_f * K`` features."""

    def __init__(self, in_f, out_f, einsum=False, expand=False):
        super().__init__()
        self.base = nn.Parameter(torch.randn(out_f, in_f) / in_f ** 0.5)
        self.weight = nn.Parameter(torch.randn(out_f, in_f, K) * 0.1 / in_f ** 0.5)
        self.scaler = nn.Parameter(torch.randn(out_f, in_f) / in_f ** 0.5)
        self.einsum, self.expand = einsum, expand

    def forward(self, x):
        bases = torch.stack([x, x.sin(), x.cos(), x * x], dim=-1)  # (B, in, K)
        scaler = self.scaler.unsqueeze(-1)
        w = self.weight * (scaler.expand_as(self.weight) if self.expand else scaler)
        spline = torch.einsum("bik,oik->bo", bases, w) if self.einsum else F.linear(bases.flatten(1), w.flatten(1))
        return F.linear(F.silu(x), self.base) + spline


class KANNet(nn.Module):
    def __init__(self, width, **kw):
        super().__init__()
        self.layers = nn.ModuleList([KANLike(12, width, **kw), KANLike(width, width, **kw), KANLike(width, 3, **kw)])

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        return x


X = torch.randn(4, 12, generator=torch.Generator().manual_seed(0))


def _base(**kw):
    with torch.device("meta"):
        return KANNet(16, **kw)


@pytest.mark.parametrize("route", ["export", "eager"])
@pytest.mark.parametrize("kw", [{}, {"einsum": True}, {"expand": True}], ids=["linear", "einsum", "expand"])
def test_the_larger_factor_carries_and_the_other_is_a_gain_repeated_over_the_basis(kw, route):
    traced = sptrace.trace(KANNet(32, **kw), X, base=_base(**kw), routes=(route,))
    for i, role in enumerate(("input", "hidden", "readout")):
        weight, scaler = traced[f"layers.{i}.weight"], traced[f"layers.{i}.scaler"]
        assert weight.product is not None and weight.product == scaler.product, (i, weight.product, scaler.product)
        site = weight.product
        assert (site.carrier, site.factor, site.axes, site.broadcast) == (weight.name, scaler.name, (0, 1), (2,))
        assert weight.role.value == role  # the carrier's record is W's; the classification is unchanged
        assert traced[f"layers.{i}.base"].product is None
    report = traced.report()
    assert "W = this * layers.1.scaler: carries W's rule" in report
    assert "W = layers.1.weight * this (repeated over W's axes (2)): a width-free gain" in report


class NotProducts(nn.Module):
    """Products that are no weight of two parameters: an outer product of two vectors (no factor has every
    entry), a transposed factor, a parameter times an activation, a weight times a fixed mask, and
    DiffLlama's ``exp(sum(lambda_q * lambda_k))`` (reduced after the mul: no operand is the product)."""

    def __init__(self, d=8):
        super().__init__()
        self.a, self.b = nn.Parameter(torch.randn(d)), nn.Parameter(torch.randn(12))
        self.w, self.s = nn.Parameter(torch.randn(d, d)), nn.Parameter(torch.randn(d, d))
        self.g = nn.Parameter(torch.randn(d))
        self.lq, self.lk = nn.Parameter(torch.randn(d)), nn.Parameter(torch.randn(d))
        self.register_buffer("mask", torch.ones(d, d).tril())

    def forward(self, x):
        h = F.linear(x, self.a[:, None] * self.b[None, :])  # outer product
        h = F.linear(h, self.w * self.s.t())  # transposed factor
        return F.linear(h * self.g, self.w * self.mask) * torch.exp((self.lq * self.lk).sum(-1))


def test_outer_products_transposes_activations_and_masks_are_not_marked():
    traced = sptrace.trace(NotProducts(), X)
    assert all(r.product is None for r in traced), [(r.name, r.product) for r in traced if r.product]
