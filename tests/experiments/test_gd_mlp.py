"""Tests for experiments.gd_mlp: Appendix A's constants and the exact input projection."""
from __future__ import annotations

import math

import pytest
import torch

from experiments.digits import binary_digits
from experiments.fig2 import fig2_measure
from experiments.gd_mlp import fig2_constants, init_weights, input_basis, train_mlp_gd
from sptrace.types import SptraceError

pytestmark = pytest.mark.usefixtures("one_thread")


def test_fig2_constants_agree_at_width_one():
    sp = fig2_constants("sptrace", 3072, 1)
    nt = fig2_constants("ntp", 3072, 1)
    assert sp[0] == pytest.approx(nt[0]) and sp[1] == pytest.approx(nt[1])
    s, lr = fig2_constants("sptrace", 3072, 256, eta=0.1)
    assert s == pytest.approx([math.sqrt(2 / 3072), math.sqrt(2 / 256), math.sqrt(2) / 256])
    assert lr == pytest.approx([0.1 * 256 / 3072, 0.1, 0.1 / 256])
    assert fig2_constants("sp", 3072, 256, eta=0.1) == (fig2_constants("ntp", 3072, 256)[0], [0.1] * 3)
    with pytest.raises(SptraceError, match="unknown parametrization 'mup': use one of sptrace, ntp, sp"):
        fig2_constants("mup", 10, 10)


def test_init_weights_is_seeded_and_scaled():
    a = init_weights(64, 30, [0.5, 0.25, 0.125], seed=7)
    b = init_weights(64, 30, [0.5, 0.25, 0.125], seed=7)
    assert [w.shape for w in a] == [(64, 30), (64, 64), (1, 64)]
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert float(a[1].std()) == pytest.approx(0.25, rel=0.05)


def test_input_projection_is_exact():
    """Training W1 V on V^T x gives the same network as training W1 on x (experiments.gd_mlp's docstring)."""
    x, y = binary_digits(200, seed=3)
    x, y = x.double(), y.double()
    xp, V = input_basis(x)
    g = torch.Generator().manual_seed(0)
    sig, lrs = fig2_constants("sptrace", 3072, 32, eta=0.1)
    W0 = [torch.randn(32, 3072, generator=g, dtype=torch.float64) * sig[0],
          torch.randn(32, 32, generator=g, dtype=torch.float64) * sig[1],
          torch.randn(1, 32, generator=g, dtype=torch.float64) * sig[2]]
    W_full, hist_full = train_mlp_gd(x, y, W0, lrs, 50, record_every=10)
    W0p = [W0[0] @ V, W0[1], W0[2]]
    W_proj, hist_proj = train_mlp_gd(xp, y, W0p, lrs, 50, record_every=10)
    assert hist_full == pytest.approx(hist_proj, rel=1e-6)
    assert hist_full[-1] < hist_full[0]
    assert torch.allclose(W_full[1], W_proj[1], rtol=1e-6, atol=1e-9)
    assert torch.allclose(W_full[2], W_proj[2], rtol=1e-6, atol=1e-9)
    assert torch.allclose(W_full[0] @ V, W_proj[0], rtol=1e-6, atol=1e-9)
    m_full = fig2_measure(x, W0, W_full)
    m_proj = fig2_measure(xp, W0p, W_proj)
    for q in m_full:
        assert m_full[q] == pytest.approx(m_proj[q], rel=1e-6), q
