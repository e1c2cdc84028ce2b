"""Tests for experiments.gd_mlp: what ``sptrace.parametrize`` makes of the Fig. 2 MLP is Appendix A,
and the input projection is exact."""
from __future__ import annotations

import math

import pytest
import torch

from experiments.digits import binary_digits
from experiments.fig2 import fig2_measure
from experiments.gd_mlp import input_basis, layer_weights, parametrized_mlp, train_full_batch
from sptrace.types import SptraceError

pytestmark = pytest.mark.usefixtures("one_thread")

N0 = 3072
NAMES = ("0.weight", "2.weight", "4.weight")


def appendix_a(param: str, n0: int, d: int, eta: float) -> tuple[list[float], list[float]]:
    """The paper's constants, typed in from Appendix A: init stds ``[s1, s2, s3]`` and lrs ``[lr1, lr2, lr3]``.

    muP: ``s = (sqrt(2/n0), sqrt(2/d), sqrt(2)/d)``, ``lr = (eta d/n0, eta, eta/d)``;
    NTP: ``s_l = sqrt(2/n_{l-1})``, ``lr_l = eta/n_{l-1}``."""
    if param == "sptrace":
        return [math.sqrt(2 / n0), math.sqrt(2 / d), math.sqrt(2) / d], [eta * d / n0, eta, eta / d]
    assert param == "ntp"
    return [math.sqrt(2 / n0), math.sqrt(2 / d), math.sqrt(2 / d)], [eta / n0, eta / d, eta / d]


def _group_lrs(opt) -> dict[str, float]:
    return {name: g["lr"] for g in opt.param_groups for name in g["sptrace_names"]}


def _assert_gaussian_std(W: torch.Tensor, std: float, what) -> None:
    """Mean and std of i.i.d. N(0, std^2) entries, within five standard errors."""
    n = W.numel()
    assert abs(float(W.mean())) <= 5 * std / math.sqrt(n), what
    assert float(W.std()) == pytest.approx(std, rel=5 / math.sqrt(2 * n)), what


def test_appendix_a_agrees_at_width_one():
    """The paper's remark: the two parametrizations coincide at d = 1."""
    (s_mup, lr_mup), (s_ntp, lr_ntp) = appendix_a("sptrace", N0, 1, 0.1), appendix_a("ntp", N0, 1, 0.1)
    assert s_mup == pytest.approx(s_ntp) and lr_mup == pytest.approx(lr_ntp)


@pytest.mark.parametrize("param", ["sptrace", "ntp"])
@pytest.mark.parametrize("width", [16, 100, 1024])
def test_parametrize_gives_appendix_a(param, width):
    """The init std of every layer (planned and measured on the tensor) and every group's lr that
    ``sptrace.parametrize`` gives the plain MLP are Appendix A's, to float precision."""
    x = torch.randn(200, N0, generator=torch.Generator().manual_seed(1))
    eta = 0.1
    mlp, opt, _ = parametrized_mlp(x, width, param, eta, seed=width, project_input=False)
    stds, lrs = appendix_a(param, N0, width, eta)
    planned = [opt.sptrace[name].init_std for name in NAMES]
    assert planned == pytest.approx(stds, rel=1e-6, abs=0)
    assert [_group_lrs(opt)[name] for name in NAMES] == pytest.approx(lrs, rel=1e-6, abs=0)
    for name, W, std in zip(NAMES, layer_weights(mlp), stds):
        _assert_gaussian_std(W.detach(), std, (param, width, name))
    assert opt.sptrace.multipliers == []  # the init and the lrs carry everything: no forward hooks
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["momentum"] == 0  # plain GD


def test_sp_baseline_keeps_he_init_and_one_lr():
    x = torch.randn(200, N0, generator=torch.Generator().manual_seed(1))
    mlp, opt, _ = parametrized_mlp(x, 256, "sp", 0.5, seed=0, project_input=False)
    assert set(_group_lrs(opt).values()) == {0.5}
    assert [opt.sptrace[name].init_std for name in NAMES] == [None] * 3  # SP keeps the model's init
    for name, W, fan_in in zip(NAMES, layer_weights(mlp), (N0, 256, 256)):
        _assert_gaussian_std(W.detach(), math.sqrt(2 / fan_in), name)


def test_seeded_and_leaves_the_global_generator_alone():
    x = torch.randn(200, N0, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    a = layer_weights(parametrized_mlp(x, 32, "sptrace", 0.1, seed=7)[0])
    assert torch.equal(torch.rand(3), expected)
    b = layer_weights(parametrized_mlp(x, 32, "sptrace", 0.1, seed=7)[0])
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    with pytest.raises(SptraceError, match="unknown parametrization 'mup': use one of sptrace, ntp, sp"):
        parametrized_mlp(x, 32, "mup", 0.1, seed=7)


def test_input_projection_is_exact():
    """Training W1 V on V^T x with W1's lr gives the same network as training W1 on x
    (experiments.gd_mlp's docstring): the same seed through both routes, in float64."""
    x, y = binary_digits(200, seed=3)
    full, opt_full, x_full = parametrized_mlp(x, 32, "sptrace", 0.1, seed=0, project_input=False, dtype=torch.float64)
    proj, opt_proj, x_proj = parametrized_mlp(x, 32, "sptrace", 0.1, seed=0, dtype=torch.float64)
    V = input_basis(x_full)[1]  # the basis the projection used
    W0_full = [W.detach().clone() for W in layer_weights(full)]
    W0_proj = [W.detach().clone() for W in layer_weights(proj)]
    assert torch.allclose(W0_full[0] @ V, W0_proj[0], rtol=1e-6, atol=1e-9)
    assert [g["lr"] for g in opt_full.param_groups] == [g["lr"] for g in opt_proj.param_groups]
    y = y.double()
    hist_full = train_full_batch(full, opt_full, x_full, y, 50, record_every=10)
    hist_proj = train_full_batch(proj, opt_proj, x_proj, y, 50, record_every=10)
    assert hist_full == pytest.approx(hist_proj, rel=1e-6)
    assert hist_full[-1] < hist_full[0]
    W_full = [W.detach() for W in layer_weights(full)]
    W_proj = [W.detach() for W in layer_weights(proj)]
    assert torch.allclose(W_full[0] @ V, W_proj[0], rtol=1e-6, atol=1e-9)
    for k in (1, 2):
        assert torch.allclose(W_full[k], W_proj[k], rtol=1e-6, atol=1e-9)
    m_full = fig2_measure(x_full, W0_full, W_full)
    m_proj = fig2_measure(x_proj, W0_proj, W_proj)
    for q in m_full:
        assert m_full[q] == pytest.approx(m_proj[q], rel=1e-6), q
