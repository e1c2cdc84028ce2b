"""A kernel built from parameters alone and then applied to the data (an S4D layer: a diagonal
state-space model whose depthwise long-convolution kernel ``K (d, L)`` is computed from ``dt``, ``A``,
``B``, ``C`` and the positions ``arange(L)``, then applied through the FFT).

Every parameter there is per channel: the width axis passes through entry by entry and the state
axis (N) is summed inside the kernel, a fixed count. They are gains of the channels (init kept, Adam
lr 1, SGD lr ∝ width), with one use each: the kernel's product with the data's transform.

Before (docs/classification.md, "Parameters combined into a kernel"): ``aten.complex`` was missing
from the op table, so ``A``, ``B`` and ``C`` were unclassified ("mixes its entries"), and the
``arange`` of positions was taken for data, so ``dt`` had a gain use on it and a second, contracted
use in the einsum: a tie, with a forward multiplier √(256/d) installed on it (init RMS −0.5/octave).
"""
import math

import pytest
import torch
import torch.nn as nn

import sptrace


class S4DLayer(nn.Module):
    """One S4D layer on (batch, d, L): its kernel K (d, L) from its parameters, applied through the FFT."""

    def __init__(self, d=32, n=8):
        super().__init__()
        self.log_dt = nn.Parameter(torch.rand(d) * math.log(100) + math.log(1e-3))
        self.log_A_real = nn.Parameter(torch.log(0.5 * torch.ones(d, n)))
        self.A_imag = nn.Parameter(math.pi * torch.arange(n).float().repeat(d, 1))
        self.B = nn.Parameter(torch.randn(d, n) * 0.5)
        self.C = nn.Parameter(torch.randn(d, n) * 0.5)
        self.D = nn.Parameter(torch.randn(d))

    def forward(self, u):  # u (batch, d, L)
        L = u.shape[-1]
        A = torch.complex(-self.log_A_real.exp(), self.A_imag)
        dtA = A * self.log_dt.exp()[:, None]
        Bc = torch.complex(self.B, torch.zeros_like(self.B))
        Cc = torch.complex(self.C, torch.zeros_like(self.C)) * Bc * (dtA.exp() - 1.0) / A
        K = 2 * torch.einsum("dn,dnl->dl", Cc, torch.exp(dtA.unsqueeze(-1) * torch.arange(L, device=u.device))).real
        y = torch.fft.irfft(torch.fft.rfft(u, n=2 * L) * torch.fft.rfft(K, n=2 * L), n=2 * L)[..., :L]
        return y + u * self.D[:, None]


class S4DBlock(nn.Module):
    def __init__(self, d=32, n=8):
        super().__init__()
        self.inp, self.out = nn.Linear(5, d), nn.Linear(d, 3)
        self.s4d = S4DLayer(d, n)

    def forward(self, x):  # x (batch, L, 5)
        return self.out(self.s4d(self.inp(x).transpose(1, 2)).transpose(1, 2))


KERNEL = ("log_dt", "log_A_real", "A_imag", "B", "C")


@pytest.mark.parametrize("route", ["export", "eager"])
def test_s4d_kernel_parameters_are_channel_gains(route):
    traced = sptrace.trace(S4DBlock(), torch.randn(2, 12, 5), routes=(route,))
    assert not traced.unclassified, [(r.name, r.problem) for r in traced.unclassified]
    for name in KERNEL + ("D",):
        rec = traced[f"s4d.{name}"]
        assert (rec.kind.value, rec.role.value, rec.width_dims) == ("vector", "gain", (0,)), (name, rec)
        assert not rec.secondary_uses, (name, rec.secondary_uses)  # no tie: one use, on the data
    for name in KERNEL[1:]:  # the state axis is summed inside the kernel: a count
        assert not traced[f"s4d.{name}"].dims[1].width, traced[f"s4d.{name}"].dims[1]
    assert not [w for w in traced.warnings if "tied" in w or "multiplier" in w], traced.warnings
    assert traced["inp.weight"].role.value == "input" and traced["out.weight"].role.value == "readout"


def test_s4d_one_line_call_installs_no_multiplier():
    torch.manual_seed(0)
    model = S4DBlock()
    opt = sptrace.parametrize(model, optimizer="adam", example_inputs=(torch.randn(2, 12, 5),))
    assert not opt.sptrace.plan.multipliers, opt.sptrace.plan.multipliers


class ComplexGain(nn.Module):
    """``torch.complex(re, im)`` of two parameters, its modulus a per-channel gain."""

    def __init__(self, d=16):
        super().__init__()
        self.inp, self.out = nn.Linear(4, d), nn.Linear(d, 2)
        self.re, self.im = nn.Parameter(torch.ones(d)), nn.Parameter(torch.zeros(d))

    def forward(self, x):
        return self.out(self.inp(x) * torch.view_as_real(torch.complex(self.re, self.im)).square().sum(-1))


@pytest.mark.parametrize("route", ["export", "eager"])
def test_complex_combines_its_parts_entry_by_entry(route):
    traced = sptrace.trace(ComplexGain(), torch.randn(3, 4), routes=(route,))
    assert not traced.unclassified, [(r.name, r.problem) for r in traced.unclassified]
    for name in ("re", "im"):
        assert (traced[name].role.value, traced[name].width_dims) == ("gain", (0,))


class LongConv(nn.Module):
    """A long-convolution filter over the positions applied through the FFT (Hyena-style, depthwise)."""

    def __init__(self, d=16, length=12):
        super().__init__()
        self.fc, self.out = nn.Linear(6, d), nn.Linear(d, 3)
        self.kernel = nn.Parameter(torch.randn(d, length) * 0.1)

    def forward(self, x):  # x (B, L, 6)
        h = self.fc(x).transpose(1, 2)
        n = 2 * h.shape[-1]
        y = torch.fft.irfft(torch.fft.rfft(h, n=n) * torch.fft.rfft(self.kernel, n=n), n=n)[..., : h.shape[-1]]
        return self.out(y.transpose(1, 2))


@pytest.mark.parametrize("route", ["export", "eager"])
def test_fourier_transform_over_positions_keeps_the_channels(route):
    traced = sptrace.trace(LongConv(), torch.randn(2, 12, 6), routes=(route,))
    rec = traced["kernel"]
    assert (rec.kind.value, rec.role.value, rec.width_dims) == ("vector", "gain", (0,)), rec
    assert rec.uses[0].mixed_axes and rec.uses[0].mixed_axes[0][0] == 1


class Factored(nn.Module):
    """``x @ (A @ B)``: a product of two matrices, each output axis from one of them: still reported."""

    def __init__(self, d=16):
        super().__init__()
        self.fc, self.out = nn.Linear(6, d), nn.Linear(d, 3)
        self.A, self.B = nn.Parameter(torch.randn(d, 4)), nn.Parameter(torch.randn(4, d))

    def forward(self, x):
        return self.out(self.fc(x) @ (self.A @ self.B))


def test_product_of_parameter_matrices_stays_reported():
    traced = sptrace.trace(Factored(), torch.randn(2, 6))
    assert {r.name for r in traced.unclassified} == {"A", "B"}


class RealKernel(nn.Module):
    """A real diagonal state-space kernel, ``K = einsum("dn,dnl->dl", C, exp(-exp(log_A) * arange(L)))``:
    nothing broadcasts the channels over the states, so only the states' being summed inside a computation
    on parameters says they are a count (graph/axes.py ``_combined_inside_parameters``)."""

    def __init__(self, d=32, n=8):
        super().__init__()
        self.fc, self.out = nn.Linear(5, d), nn.Linear(d, 3)
        self.log_A = nn.Parameter(torch.randn(d, n))
        self.C = nn.Parameter(torch.randn(d, n))

    def forward(self, x):
        u = self.fc(x).transpose(1, 2)
        L = u.shape[-1]
        K = torch.einsum("dn,dnl->dl", self.C, torch.exp(-self.log_A.exp().unsqueeze(-1) * torch.arange(L)))
        y = torch.fft.irfft(torch.fft.rfft(u, n=2 * L) * torch.fft.rfft(K, n=2 * L), n=2 * L)[..., :L]
        return self.out(y.transpose(1, 2))


def test_states_summed_inside_a_kernel_are_a_count():
    traced = sptrace.trace(RealKernel(), torch.randn(2, 12, 5))
    for name in ("log_A", "C"):
        rec = traced[name]
        assert (rec.role.value, rec.width_dims) == ("gain", (0,)), (name, rec.problem)
        assert "combined inside a computation on parameters" in rec.dims[1].reason, rec.dims[1]
