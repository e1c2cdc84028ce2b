"""Tests for sptrace.spectral: power iteration, spectral norms, the natural spectral norm, matrix
statistics (stable rank, alignment, relative change), and the errors a caller can trigger."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from sptrace import SptraceError
from sptrace.spectral import alignment, as_matrix, natural_spectral_norm, power_iteration, relative_change, spectral_norm, stable_rank


pytestmark = pytest.mark.usefixtures("one_thread")


def exact(A: torch.Tensor) -> torch.Tensor:
    return torch.linalg.matrix_norm(A.double(), ord=2)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a.double() - b.double()).abs() / b.double().abs()).max())


# ------------------------------------------------------------------ power iteration


def test_power_iteration_random_matrices():
    g = torch.Generator().manual_seed(0)
    for m, n in [(64, 64), (200, 100), (100, 300)]:
        A = torch.randn(m, n, generator=g) / math.sqrt(n)
        r = power_iteration(A, 400)
        assert rel_err(r.sigma, exact(A)) < 1e-3, (m, n)
        assert r.v.shape == (n,) and r.u.shape == (m,)
        assert float(r.v.norm()) == pytest.approx(1.0, abs=1e-5)


def test_power_iteration_low_rank_converges_fast():
    g = torch.Generator().manual_seed(1)
    U = torch.randn(300, 3, generator=g)
    V = torch.randn(3, 500, generator=g)
    A = U @ torch.diag(torch.tensor([5.0, 2.0, 1.0])) @ V
    r = power_iteration(A, 15)
    assert rel_err(r.sigma, exact(A)) < 1e-4


def test_power_iteration_batched_and_tolerance():
    g = torch.Generator().manual_seed(2)
    A = torch.randn(4, 3, 80, 60, generator=g)
    r = power_iteration(A, tol=1e-7, iters=2000)
    assert r.sigma.shape == (4, 3)
    assert r.v.shape == (4, 3, 60)
    assert r.converged is True and r.iters < 2000
    assert rel_err(r.sigma, exact(A)) < 1e-3
    # fixed iterations: the estimate is a lower bound of the true value
    r5 = power_iteration(A, 5)
    assert r5.converged is None and r5.iters == 5
    assert bool((r5.sigma <= exact(A).float() * (1 + 1e-5)).all())


def test_power_iteration_warm_start_needs_fewer_iterations():
    g = torch.Generator().manual_seed(3)
    A = torch.randn(256, 256, generator=g) / 16
    cold = power_iteration(A, tol=1e-6, iters=5000)
    B = A + 1e-3 * torch.randn(256, 256, generator=g) / 16  # one small "training step" later
    cold_b = power_iteration(B, tol=1e-6, iters=5000)
    warm_b = power_iteration(B, tol=1e-6, iters=5000, v0=cold.v)
    assert cold_b.converged and warm_b.converged
    assert warm_b.iters < cold_b.iters / 2
    assert rel_err(warm_b.sigma, exact(B)) < 1e-3


def test_power_iteration_dtypes_zero_and_determinism():
    A = torch.randn(50, 40, generator=torch.Generator().manual_seed(4))
    r16 = power_iteration(A.to(torch.bfloat16), 200)
    assert r16.sigma.dtype == torch.float32
    assert rel_err(r16.sigma, exact(A.to(torch.bfloat16).float())) < 1e-3
    r64 = power_iteration(A.double(), 300)
    assert r64.sigma.dtype == torch.float64
    z = power_iteration(torch.zeros(3, 5, 4), 10)
    assert torch.equal(z.sigma, torch.zeros(3)) and torch.isfinite(z.v).all()
    # own generator: same answer twice, global RNG untouched
    state = torch.random.get_rng_state()
    a, b = power_iteration(A, 3).sigma, power_iteration(A, 3).sigma
    assert torch.equal(a, b)
    assert torch.equal(state, torch.random.get_rng_state())


def test_spectral_norm_methods_agree():
    A = torch.randn(2, 30, 20, generator=torch.Generator().manual_seed(5))
    ex = spectral_norm(A, "exact")
    pw = spectral_norm(A, "power", tol=1e-8, iters=3000)
    assert rel_err(pw, ex) < 1e-3
    assert torch.allclose(spectral_norm(A), ex)  # auto -> exact for small matrices
    with pytest.raises(ValueError):
        spectral_norm(A, "svd")
    with pytest.raises(ValueError):
        spectral_norm(torch.ones(3))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_power_iteration_cuda():
    A = torch.randn(8, 128, 96, device="cuda")
    r = power_iteration(A, tol=1e-7, iters=3000)
    assert r.sigma.device.type == "cuda"
    assert rel_err(r.sigma.cpu(), exact(A.cpu())) < 1e-3


# ------------------------------------------------------------------ natural norm


def test_natural_norm_identity_and_gaussian():
    assert float(natural_spectral_norm(torch.eye(64))) == pytest.approx(1.0, abs=1e-5)
    n = 1024
    W = torch.randn(n, n, generator=torch.Generator().manual_seed(6)) / math.sqrt(n)
    assert float(natural_spectral_norm(W)) == pytest.approx(2.0, abs=0.05)
    # rectangular Gaussian (m x n) at std 1/sqrt(n): sigma ~ (sqrt(m)+sqrt(n))/sqrt(n),
    # natural norm = sqrt(n/m) sigma = 1 + sqrt(n/m)
    m, n = 800, 200
    W = torch.randn(m, n, generator=torch.Generator().manual_seed(7)) / math.sqrt(n)
    assert float(natural_spectral_norm(W)) == pytest.approx(1 + math.sqrt(n / m), rel=0.03)


def test_natural_norm_sparse_spaces_and_vectors():
    # embedding-like (vocab, dim) table: fan_in = vocab axis 0, sparse input -> sigma / sqrt(dim)
    E = torch.randn(50, 16, generator=torch.Generator().manual_seed(8))
    val = natural_spectral_norm(E, fan_in_axes=(0,), fan_out_axes=(1,), input_dense=False)
    assert float(val) == pytest.approx(float(exact(E.T)) / math.sqrt(16), rel=1e-5)
    # bias (default for 1-D): sqrt(1 / n) * |b| = RMS(b)
    b = torch.randn(37)
    assert float(natural_spectral_norm(b)) == pytest.approx(float(b.square().mean().sqrt()), rel=1e-5)
    # sparse output too: plain spectral norm
    A = torch.randn(10, 20)
    val = natural_spectral_norm(A, (1,), (0,), input_dense=False, output_dense=False)
    assert float(val) == pytest.approx(float(exact(A)), rel=1e-5)


def test_natural_norm_conv_groups_and_batch_axes():
    conv = nn.Conv2d(8, 12, 3, bias=False)
    W = conv.weight.detach()
    M = W.reshape(12, 8 * 9)
    expect = math.sqrt(72 / 12) * float(exact(M))
    assert float(natural_spectral_norm(W)) == pytest.approx(expect, rel=1e-5)
    # grouped conv (out=12, in/groups=2, 3, 3) with groups=4: blocks of (3, 18)
    gconv = nn.Conv2d(8, 12, 3, groups=4, bias=False)
    Wg = gconv.weight.detach()
    blocks = as_matrix(Wg, (1, 2, 3), (0,), groups=4)
    assert blocks.shape == (4, 3, 18)
    assert torch.equal(blocks[1], Wg[3:6].reshape(3, 18))
    per = natural_spectral_norm(Wg, (1, 2, 3), (0,), groups=4, reduce=None)
    assert per.shape == (4,)
    assert torch.allclose(per, math.sqrt(18 / 3) * exact(blocks).float(), rtol=1e-5)
    assert float(natural_spectral_norm(Wg, (1, 2, 3), (0,), groups=4)) == pytest.approx(float(per.max()))
    # an axis in neither tuple is a batch axis (heads): (heads, d_in, d_out) used as x @ W[h]
    H = torch.randn(3, 16, 8)
    per = natural_spectral_norm(H, fan_in_axes=(1,), fan_out_axes=(2,), reduce=None)
    assert torch.allclose(per, math.sqrt(16 / 8) * exact(H.transpose(1, 2)).float(), rtol=1e-5)
    with pytest.raises(ValueError):
        natural_spectral_norm(H, (1,), (1,))
    with pytest.raises(ValueError):
        natural_spectral_norm(H, (1,), None)


# ------------------------------------------------------------------ matrix statistics


def test_stable_rank():
    u, v = torch.randn(40), torch.randn(30)
    assert float(stable_rank(torch.outer(u, v))) == pytest.approx(1.0, rel=1e-5)
    assert float(stable_rank(torch.eye(25))) == pytest.approx(25.0, rel=1e-5)
    Q, _ = torch.linalg.qr(torch.randn(50, 20))
    assert float(stable_rank(Q)) == pytest.approx(20.0, rel=1e-4)
    assert float(stable_rank(torch.zeros(5, 5))) == 0.0
    batch = stable_rank(torch.stack([torch.eye(4), torch.outer(torch.ones(4), torch.ones(4))]))
    assert torch.allclose(batch, torch.tensor([4.0, 1.0]))


def test_alignment_rank_one_and_orthogonal():
    g = torch.Generator().manual_seed(9)
    u, h = torch.randn(20, generator=g), torch.randn(30, generator=g)
    dW = torch.outer(u, h)
    assert float(alignment(dW, h)) == pytest.approx(1.0, rel=1e-5)
    assert float(alignment(dW, 3 * h.unsqueeze(0).repeat(4, 1))) == pytest.approx(1.0, rel=1e-5)
    h_perp = torch.randn(30, generator=g)
    h_perp -= (h_perp @ h) / (h @ h) * h
    assert float(alignment(dW, h_perp)) == pytest.approx(0.0, abs=1e-5)
    vals = alignment(dW, torch.stack([h, h_perp, torch.zeros(30)]), reduce="none")
    assert vals.shape == (2,)  # the zero row is left out
    # random matrix, random inputs: alignment ~ |W h| / (|W|_* |h|), well below 1
    W = torch.randn(200, 200, generator=g)
    a = float(alignment(W, torch.randn(16, 200, generator=g)))
    assert 0.3 < a < 0.7


def test_relative_change():
    W0 = torch.eye(10)
    W = W0 + 0.5 * torch.outer(torch.ones(10), torch.ones(10)) / 10
    assert float(relative_change(W, W0)) == pytest.approx(0.5, rel=1e-5)
    assert float(relative_change(W, W0, "fro")) == pytest.approx(0.5 / math.sqrt(10), rel=1e-5)
    with pytest.raises(ValueError):
        relative_change(W, W0, "nuc")


# ------------------------------------------------------------------ errors


def test_errors_name_the_function_the_argument_and_the_fix():
    A = torch.randn(4, 3)
    with pytest.raises(SptraceError, match=r"power_iteration: A has shape \(3,\); pass a \(\.\.\., m, n\)"):
        power_iteration(torch.ones(3))
    with pytest.raises(SptraceError, match="power_iteration: iters=0; pass iters >= 1"):
        power_iteration(A, 0)
    with pytest.raises(SptraceError, match="spectral_norm: unknown method 'svd'; use 'auto', 'exact' or 'power'"):
        spectral_norm(A, "svd")
    with pytest.raises(SptraceError, match="as_matrix: axis 5 is out of range for a 2-d tensor"):
        as_matrix(A, (5,), (0,))
    with pytest.raises(SptraceError, match="does not split into groups=3"):
        as_matrix(torch.ones(4, 2, 3, 3), (1, 2, 3), (0,), groups=3)
    with pytest.raises(SptraceError, match="natural_spectral_norm: unknown reduce 'mean'; use 'max' or None"):
        natural_spectral_norm(A, reduce="mean")
    with pytest.raises(SptraceError, match="alignment: unknown reduce 'max'"):
        alignment(A, torch.ones(3), reduce="max")
    with pytest.raises(ValueError):  # SptraceError is a ValueError: callers catching that keep working
        relative_change(A, A, "nuc")


def test_a_zero_dim_parameter_is_a_one_by_one_matrix():
    """A 0-d trainable scalar (ScaleNorm's g, initialised to sqrt(d)): as_matrix permuted no axes and
    raised, so the coord check could not measure any model holding one (TypeError in permute)."""
    g = torch.tensor(-8.0)
    assert as_matrix(g, (), ()).shape == (1, 1)
    assert float(natural_spectral_norm(g)) == 8.0
    assert float(natural_spectral_norm(g, (), ())) == 8.0
