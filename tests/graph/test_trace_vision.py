"""Patterns of timm / torchvision vision models, rewritten in plain torch so that they run where
neither library installs (tests/validation/test_validate_vision_external.py runs the libraries' own models).

* ConvNeXt-V2's GlobalResponseNorm (timm ``GlobalResponseNorm``, channels last):
  ``x + torch.addcmul(bias, weight, x * nx)``: ``addcmul(self, tensor1, tensor2)`` adds ``self``
  (a bias) to ``tensor1 * tensor2`` (a gain times an activation). Before sptrace knew addcmul,
  both parameters were unclassified.
* ``addcdiv`` the same way, and an ``addcmul`` whose two factors are both parameters (their
  product is added to the activation: bias-like).

Expectations come from the vocabulary of docs/classification.md (row builders of
tests/graph/test_trace_external.py), never from sptrace's output.
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.graph.test_trace_external import (MODES, ROUTES, assert_table, bias, fixed_bias, gain, hidden_linear, images,
                                 input_conv, readout_linear, run_trace, seeded)


class GlobalResponseNorm(nn.Module):
    """timm.layers.GlobalResponseNorm (channels last), as timm writes it."""

    def __init__(self, dim, eps=1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.zeros(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x):  # (B, H, W, C)
        x_g = x.norm(p=2, dim=(1, 2), keepdim=True)
        x_n = x_g / (x_g.mean(dim=-1, keepdim=True) + self.eps)
        return x + torch.addcmul(self.bias.view(1, 1, 1, -1), self.weight.view(1, 1, 1, -1), x * x_n)


class ConvNeXtV2Block(nn.Module):
    """Patch stem, one ConvNeXt-V2 block (depthwise 7x7, LayerNorm, MLP with GRN), mean pool, head."""

    def __init__(self, c=16, n_cls=5):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 4, stride=4)
        self.dw = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c)
        self.fc1 = nn.Linear(c, 4 * c)
        self.grn = GlobalResponseNorm(4 * c)
        self.fc2 = nn.Linear(4 * c, c)
        self.head = nn.Linear(c, n_cls)

    def forward(self, x):
        h = self.stem(x)
        y = self.norm(self.dw(h).permute(0, 2, 3, 1))
        y = self.fc2(self.grn(F.gelu(self.fc1(y))))
        h = h + y.permute(0, 3, 1, 2)
        return self.head(h.mean((2, 3)))


def convnext_v2_table(c=16):
    return {
        "stem.weight": input_conv(c, 3, 4), "stem.bias": bias(c),
        # depthwise (c, 1, 7, 7), groups c: fan_in 49 fixed, fan_out 1, width in the group count
        "dw.weight": ("vector", "input", "dense", 49, 1, (0,), (1, 2, 3), (0,)), "dw.bias": bias(c),
        "norm.weight": gain(c), "norm.bias": bias(c),
        "fc1.weight": hidden_linear(4 * c, c), "fc1.bias": bias(4 * c),
        "grn.weight": gain(4 * c),  # addcmul(tensor1): multiplied elementwise with an activation
        "grn.bias": bias(4 * c),  # addcmul(self): added
        "fc2.weight": hidden_linear(c, 4 * c), "fc2.bias": bias(c),
        "head.weight": readout_linear(5, c), "head.bias": fixed_bias(5),
    }


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("route", ROUTES)
def test_convnext_v2_global_response_norm(route, mode):
    model, base = seeded(ConvNeXtV2Block), seeded(ConvNeXtV2Block, c=8)
    tr = run_trace(model, base, mode, route, images())
    assert_table(tr, model, convnext_v2_table())
    assert (tr["grn.weight"].uses[0].op, tr["grn.weight"].uses[0].arg) == ("addcmul", "tensor1")
    assert (tr["grn.bias"].uses[0].op, tr["grn.bias"].uses[0].arg) == ("addcmul", "self")


class AddcOps(nn.Module):
    """addcdiv with a parameter as ``self`` and as ``tensor1``; addcmul of two parameters."""

    def __init__(self, w=32, d_in=5, n_out=3):
        super().__init__()
        self.fc = nn.Linear(d_in, w)
        self.shift = nn.Parameter(torch.zeros(w))
        self.scale = nn.Parameter(torch.ones(w))
        self.a = nn.Parameter(torch.full((w,), 0.5))
        self.b = nn.Parameter(torch.full((w,), 0.5))
        self.head = nn.Linear(w, n_out)

    def forward(self, x):
        h = F.relu(self.fc(x))
        h = h + torch.addcdiv(self.shift, self.scale, h.abs() + 1.0)  # h + shift + scale / (|h| + 1)
        h = torch.addcmul(h, self.a, self.b, value=0.5)  # h + 0.5 * a * b: a product of parameters, added
        return self.head(h)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("route", ROUTES)
def test_addcdiv_and_addcmul_of_parameters(route, mode):
    model, base = seeded(AddcOps), seeded(AddcOps, w=16)
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(6))
    tr = run_trace(model, base, mode, route, x)
    assert_table(tr, model, {
        "fc.weight": ("vector", "input", "dense", 5, 32, (0,), (1,), (0,)), "fc.bias": bias(32),
        "shift": bias(32),  # addcdiv(self): added
        "scale": gain(32),  # addcdiv(tensor1): multiplied elementwise with the activation 1 / (|h| + 1)
        "a": bias(32), "b": bias(32),  # a * b added to the activation
        "head.weight": readout_linear(3, 32), "head.bias": fixed_bias(3),
    })
