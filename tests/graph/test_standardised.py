"""Weight standardisation (timm's StdConv2d / ScaledStdConv2d, NF-Nets and the hybrid ViTs): the
forward standardises each output channel's fan-in with a batch norm over the weight, optionally
times a per-channel gain. The standardised weight has the raw weight's axes and a scale fixed by
construction, so the raw weight is classified as the layer's own weight and the gain as a gain
(docs/rules.md, "Weight standardisation"; measured in tests/validation/test_validate_stdconv.py)."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import sptrace


class StdConv2d(nn.Conv2d):
    """timm's StdConv2d: ``batch_norm`` over ``weight.reshape(1, out, -1)``, no affine."""

    def forward(self, x):
        w = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None, training=True, momentum=0.,
                         eps=1e-6).reshape_as(self.weight)
        return F.conv2d(x, w, self.bias, self.stride, self.padding)


class ScaledStdConv2d(nn.Conv2d):
    """timm's ScaledStdConv2d: the batch norm's weight is a per-channel gain times fan_in^-1/2."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.gain = nn.Parameter(torch.ones(self.out_channels, 1, 1, 1))
        self.scale = self.weight[0].numel() ** -0.5

    def forward(self, x):
        w = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None, weight=(self.gain * self.scale).view(-1),
                         training=True, momentum=0., eps=1e-6).reshape_as(self.weight)
        return F.conv2d(x, w, self.bias, self.stride, self.padding)


class NormFreeNet(nn.Module):
    """A normalizer-free conv net (NF-ResNet style, no activation norms): standardised convs only."""

    def __init__(self, width, conv=ScaledStdConv2d):
        super().__init__()
        self.stem = conv(3, width, 3, stride=2, padding=1)
        self.mid = conv(width, width, 3, stride=2, padding=1)
        self.last = conv(width, width, 3, stride=2, padding=1)
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        h = F.relu(self.stem(x))
        h = F.relu(self.mid(h)) * 1.7  # timm's gamma for ReLU: keeps the activation variance
        return self.head(F.relu(self.last(h)).mean((2, 3)))


@pytest.mark.parametrize("route", ["export", "eager"])
@pytest.mark.parametrize("conv", [StdConv2d, ScaledStdConv2d])
def test_a_standardised_weight_is_its_layers_weight(conv, route):
    traced = sptrace.trace(NormFreeNet(32, conv), torch.randn(2, 3, 16, 16), routes=(route,))
    assert not traced.unclassified, [(r.name, r.problem) for r in traced.unclassified]
    row = lambda r: (r.kind.value, r.role.value, r.fan_in_axes, r.fan_out_axes, r.width_dims)  # noqa: E731
    assert row(traced["stem.weight"]) == ("vector", "input", (1, 2, 3), (0,), (0,))
    assert row(traced["mid.weight"]) == ("matrix", "hidden", (1, 2, 3), (0,), (0, 1))  # the kernel axes stay fixed
    if conv is ScaledStdConv2d:
        assert row(traced["mid.gain"]) == ("vector", "gain", (), (0,), (0,))
