"""Tests for sptrace.spectral (spectral norms, matrix statistics, output recording, coord check)
and sptrace.validation.slopes (slope fits, verdicts)."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from sptrace.spectral import alignment, as_matrix, natural_spectral_norm, power_iteration, relative_change, spectral_norm, stable_rank
from sptrace.validation.coord import ROOT, CoordCheck, OutputRecorder, coord_check, first_tensor, rms
from sptrace.validation.slopes import SlopeFit, fit_slope, fit_slopes, verdict


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
    assert float(natural_spectral_norm(b)) == pytest.approx(rms(b), rel=1e-5)
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


# ------------------------------------------------------------------ output recording


class _Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 3)
        self.act = nn.ReLU()

    def forward(self, x):
        h = self.act(self.fc1(x))
        return {"logits": self.act(self.fc2(h)), "hidden": h}


def test_output_recorder_names_repeats_and_structures():
    m = _Twice()
    x = torch.randn(5, 4)
    with OutputRecorder(m, keep_outputs=True) as rec:
        out = m(x)
    assert set(rec.rms) == {ROOT, "fc1", "fc2", "act", "act#1"}
    assert rec.rms["act#1"] == pytest.approx(rms(out["logits"]))
    assert rec.rms[ROOT] == pytest.approx(rms(out["logits"]))  # first tensor of the dict
    assert torch.equal(rec.outputs["fc1"], m.fc1(x).detach())
    # a second forward starts a fresh record; hooks are removed on exit
    with OutputRecorder(m, names=["fc2"]) as rec2:
        m(x)
        m(x)
    assert set(rec2.rms) == {"fc2"}
    assert not m._forward_hooks and not m.fc1._forward_hooks
    with OutputRecorder(m, leaves_only=True, include_root=False) as rec3:
        m(x)
    assert ROOT not in rec3.rms and "fc1" in rec3.rms
    assert first_tensor((None, [torch.arange(3), torch.ones(2)])) is not None
    assert first_tensor({"a": 1}) is None


# ------------------------------------------------------------------ coord check


def _data(n: int = 64, steps: int = 3):
    """Real data: the digits at 8x8 (64 features), each feature centred, scaled to std 1; 10 classes.
    (Uncentred digits share one large mean direction, which hides width effects at these widths.)"""
    from experiments.paper import load_digits

    images, target = load_digits()
    x = images[: n * steps].reshape(-1, 64).float() / 16
    x = (x - x.mean(0)) / x.std()
    return [(x[i * n:(i + 1) * n], target[i * n:(i + 1) * n]) for i in range(steps)]


class MLP(nn.Module):
    def __init__(self, width, n0=64, n_out=10):
        super().__init__()
        self.fc1 = nn.Linear(n0, width, bias=False)
        self.act1 = nn.ReLU()
        self.fc2 = nn.Linear(width, width, bias=False)
        self.act2 = nn.ReLU()
        self.readout = nn.Linear(width, n_out, bias=False)

    def forward(self, x):
        return self.readout(self.act2(self.fc2(self.act1(self.fc1(x)))))


def make_sp(width):
    m = MLP(width)
    for lin in (m.fc1, m.fc2, m.readout):
        nn.init.normal_(lin.weight, std=math.sqrt(2 / lin.in_features))
    return m


def make_mup(width):
    """Hand muP init (paper Appendix A): readout std sqrt(2)/width."""
    m = MLP(width)
    nn.init.normal_(m.fc1.weight, std=math.sqrt(2 / 64))
    nn.init.normal_(m.fc2.weight, std=math.sqrt(2 / width))
    nn.init.normal_(m.readout.weight, std=math.sqrt(2) / width)
    return m


def adam_sp(model, lr=1e-2):
    return torch.optim.Adam(model.parameters(), lr=lr)


def adam_mup(model, lr=1e-2):
    """Adam under muP (NOTES §2): lr ~ 1/fan_in for hidden and readout, Theta(1) for the input layer."""
    w = model.fc2.in_features
    return torch.optim.Adam([
        {"params": [model.fc1.weight], "lr": lr},
        {"params": [model.fc2.weight], "lr": lr * 32 / w},
        {"params": [model.readout.weight], "lr": lr * 32 / w},
    ])


def sgd_sp(model, lr=0.05):
    return torch.optim.SGD(model.parameters(), lr=lr)


def sgd_mup(model, lr=0.05):
    """SGD under muP (Appendix A): lr ~ fan_out / fan_in."""
    w = model.fc2.in_features
    return torch.optim.SGD([
        {"params": [model.fc1.weight], "lr": lr * w / 64},
        {"params": [model.fc2.weight], "lr": lr},
        {"params": [model.readout.weight], "lr": lr / w},
    ])


WIDTHS = [32, 64, 128, 256]


def test_coord_check_sp_grows_mup_flat():
    batches = _data()
    kw = dict(batches=batches, loss_fn=F.cross_entropy, widths=WIDTHS, steps=3, seed=0)
    sp = coord_check(make_sp, adam_sp, **kw)
    mup = coord_check(make_mup, adam_mup, **kw)
    assert sp.widths == WIDTHS and sp.steps == 3
    assert set(sp.modules) == {ROOT, "fc1", "act1", "fc2", "act2", "readout"}
    assert set(sp.records["fc2"]) == {"rms@0", "rms@T", "delta_rms@1", "delta_rms@2", "delta_rms@3"}
    assert set(sp.param_records["fc2.weight"]) == {"nat@0", "dnat", "dnat_last"}
    assert len(sp.losses) == 4 and len(sp.losses[0]) == 3
    s_sp = sp.slopes()
    # SP with one Adam lr: updates of entry size ~lr make hidden and output changes grow with width
    assert s_sp["fc2"]["delta_rms@3"].slope > 0.3
    assert s_sp["readout"]["delta_rms@3"].slope > 0.5
    v_sp = sp.verdict(quantities=["delta_rms@3"])
    assert not v_sp.passed and v_sp.worst[0].module in ("readout", ROOT)
    # hand muP: every output's change is flat; outputs at init too, except the readout's, which
    # muP shrinks on purpose (init std ~ 1/width): allowed when asked
    v = mup.verdict(allow_shrink=["rms@*"])
    assert v.passed, v.summary()
    for name in ("fc1", "fc2", "readout"):
        assert abs(mup.slopes()[name]["delta_rms@3"].slope) < 0.2
    # muP's W and updates have Theta(1) natural spectral norm; SP's hidden and readout updates grow
    p_mup = mup.slopes(params=True)
    p_sp = sp.slopes(params=True)
    for name in ("fc1.weight", "fc2.weight", "readout.weight"):
        assert abs(p_mup[name]["dnat"].slope) < 0.2, (name, p_mup[name]["dnat"].slope)
        assert abs(p_mup[name]["nat@0"].slope) < 0.25
    assert p_sp["fc2.weight"]["dnat"].slope > 0.5
    assert p_sp["readout.weight"]["dnat"].slope > 0.5
    # SGD under muP (Appendix A constants) is flat too
    sgd = coord_check(make_mup, sgd_mup, **kw)
    assert sgd.verdict(allow_shrink=["rms@*"]).passed, sgd.verdict(allow_shrink=["rms@*"]).summary()
    # JSON round trip
    d = json.loads(json.dumps(mup.to_dict()))
    back = CoordCheck.from_dict(d)
    assert back.records == mup.records and back.widths == mup.widths


def test_coord_check_param_axes_rng_and_nonfinite():
    batches = _data(steps=2)
    state = torch.random.get_rng_state()
    # axes given explicitly as tuple or dict; None skips a parameter
    from enum import Enum
    from types import SimpleNamespace

    class Space(str, Enum):  # like sptrace.types.Space
        DENSE = "dense"
        SPARSE = "sparse"

    record = SimpleNamespace(fan_in_axes=(1,), fan_out_axes=(0,), groups=1, input_space=Space.SPARSE,
                             output_space=Space.DENSE)  # a ParamRecord-like object
    axes = {"fc1.weight": record, "readout.weight": {"fan_in_axes": (1,), "fan_out_axes": (0,)},
            "fc2.weight": None}
    cc = coord_check(make_mup, adam_mup, batches, F.cross_entropy, [32, 64], steps=2, param_axes=axes,
                     record_steps=[2], names=["fc2", "readout"])
    assert torch.equal(state, torch.random.get_rng_state())
    assert set(cc.param_records) == {"fc1.weight", "readout.weight"}
    assert set(cc.records) == {"fc2", "readout"}
    assert set(cc.records["fc2"]) == {"rms@0", "rms@T", "delta_rms@2"}
    # fc1 measured with a sparse input space: sigma / sqrt(fan_out), not sqrt(64 / fan_out) sigma
    torch.manual_seed(0)
    w0 = make_mup(32).fc1.weight.detach()
    assert cc.param_records["fc1.weight"]["nat@0"][0] == pytest.approx(
        float(torch.linalg.matrix_norm(w0, ord=2)) / math.sqrt(32), rel=1e-4)
    # same seed -> identical records
    cc2 = coord_check(make_mup, adam_mup, batches, F.cross_entropy, [32, 64], steps=2, param_axes=axes,
                      record_steps=[2], names=["fc2", "readout"])
    assert cc.records == cc2.records
    # a diverging run is reported as invalid, not silently fitted
    bad = coord_check(make_sp, lambda m: sgd_sp(m, lr=1e6), batches, F.cross_entropy, [32, 64], steps=2,
                      params=False)
    v = bad.verdict()
    assert not v.passed
    assert v.worst[0].status == "invalid"
    assert "nan" in v.summary() or "inf" in v.summary()
    json.dumps(bad.to_dict())  # non-finite values serialise as strings


class Routed(nn.Module):
    """The muP MLP plus side branches whose work depends on the call, as routing makes an expert's:
    ``varying`` sees one more row each call, ``late`` runs from the second call on, ``early`` only
    on the first. Their outputs feed nothing, so the MLP's own checks are unchanged."""

    def __init__(self, width):
        super().__init__()
        self.mlp = make_mup(width)
        self.varying, self.late, self.early = nn.Linear(64, 4), nn.Linear(64, 4), nn.Linear(64, 4)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        self.varying(x[: min(self.calls, len(x))])
        (self.late if self.calls > 1 else self.early)(x)
        return self.mlp(x)


def test_coord_check_names_modules_it_cannot_measure():
    """An output that changes shape (or a module not called at init, or not after a step) has no
    output change to fit: it is named with the reason, never fitted as NaN, and the rest is judged."""
    batches = _data(steps=2)
    cc = coord_check(Routed, lambda m: adam_mup(m.mlp), batches, F.cross_entropy, [32, 64, 128], steps=2,
                     params=False)
    why = cc.meta["unmeasured"]
    assert why["varying"].startswith("output shape (1, 4) at init, (") and "after step 1" in why["varying"]
    assert why["late"] == "not called on the probe batch at init"
    assert why["early"] == "not called on the probe batch after step 1"
    assert "delta_rms@2" not in cc.records["varying"] and "delta_rms@2" in cc.records["mlp.fc2"]
    v = cc.verdict(quantities=["rms@0", "delta_rms@2"], allow_shrink=["rms@0"])
    assert v.passed, v.summary()
    assert v.unmeasured == why and "Output change not measured for 3 modules: early (not called" in v.summary()
    assert json.loads(json.dumps(v.to_dict()))["unmeasured"] == why


def test_coord_check_averages_init_seeds():
    """n_seeds=2 records, per width, the mean of the runs with seeds 0 and 1 (same data)."""
    batches = _data(steps=2)
    kw = dict(batches=batches, loss_fn=F.cross_entropy, widths=[32, 64], steps=2, params=True)
    runs = [coord_check(make_mup, adam_mup, seed=s, **kw) for s in (0, 1)]
    mean = coord_check(make_mup, adam_mup, seed=0, n_seeds=2, **kw)
    assert mean.meta["n_seeds"] == 2
    for src in ("records", "param_records"):
        for name, quantities in getattr(mean, src).items():
            for q, values in quantities.items():
                expected = [(a + b) / 2 for a, b in zip(*(getattr(r, src)[name][q] for r in runs))]
                assert values == pytest.approx(expected, rel=1e-6), (name, q)
    assert mean.losses[0] == pytest.approx([(a + b) / 2 for a, b in zip(runs[0].losses[0], runs[1].losses[0])])
    with pytest.raises(ValueError, match="n_seeds"):
        coord_check(make_mup, adam_mup, n_seeds=0, **kw)


class _Drop(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.fc = nn.Linear(64, width)
        self.bn = nn.BatchNorm1d(width)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(width, 10)

    def forward(self, x):
        return self.out(self.drop(self.bn(self.fc(x))))


def test_coord_check_dropout_batchnorm_probe_is_deterministic():
    batches = _data(steps=1)
    cc = coord_check(_Drop, lambda m: torch.optim.SGD(m.parameters(), lr=0.0), batches, F.cross_entropy,
                     [16, 32], steps=1)
    # lr 0: nothing changes, and the probe passes use the same dropout masks and BN statistics
    for name, rec in cc.records.items():
        assert rec["delta_rms@1"] == [0.0, 0.0], name
    # the bias (1-D) is measured as a sparse-input vector: natural norm = RMS
    assert cc.param_records["fc.bias"]["nat@0"][0] > 0


# ------------------------------------------------------------------ slopes and verdicts


def test_fit_slope_power_laws():
    ws = [16, 32, 64, 128, 256]
    for s in (-1.0, -0.5, 0.0, 0.5, 2.0):
        f = fit_slope(ws, [3.0 * w ** s for w in ws])
        assert isinstance(f, SlopeFit)
        assert f.ok and f.slope == pytest.approx(s, abs=1e-9)
        assert f.r2 == pytest.approx(1.0) or s == 0.0
        assert f.intercept == pytest.approx(math.log(3.0), abs=1e-9)
    g = torch.Generator().manual_seed(0)
    noisy = [w ** 0.5 * math.exp(0.05 * float(torch.randn(1, generator=g))) for w in ws]
    f = fit_slope(ws, noisy)
    assert f.slope == pytest.approx(0.5, abs=0.1) and f.r2 > 0.95


def test_fit_slope_degenerate_values():
    ws = [1, 2, 4]
    assert fit_slope(ws, [1.0, float("nan"), 2.0]).status == "nonfinite"
    f = fit_slope(ws, [1.0, 2.0, float("inf")])
    assert not f.ok and "inf" in f.message and "4" in f.message
    assert fit_slope(ws, [1.0, -2.0, 3.0]).status == "negative"
    z = fit_slope(ws, [0.0, 0.0, 0.0])
    assert z.ok and z.status == "zero" and z.slope == 0.0
    pz = fit_slope(ws, [0.0, 1.0, 2.0])
    assert not pz.ok and pz.status == "partial-zero"
    with pytest.raises(ValueError):
        fit_slope([8, 8], [1.0, 2.0])
    with pytest.raises(ValueError):
        fit_slope([1, 2], [1.0])
    json.dumps(f.to_dict())


def test_verdict():
    ws = [32, 64, 128, 256]
    records = {
        "fc1": {"rms@0": [1.0] * 4, "delta_rms@1": [w ** 0.05 for w in ws]},
        "fc2": {"rms@0": [w ** -0.5 for w in ws], "delta_rms@1": [w ** 0.6 for w in ws]},
        "out": {"rms@0": [1.0] * 4, "delta_rms@1": [w ** 1.1 for w in ws]},
        "dead": {"rms@0": [1.0, 1.0, float("nan"), 1.0], "delta_rms@1": [0.0] * 4},
    }
    v = verdict(fit_slopes(ws, records), tol=0.25)
    assert not v.passed
    assert v.modules["fc1"].passed
    assert not v.modules["fc2"].passed
    assert v.modules["fc2"].checks["rms@0"].status == "shrinks"
    assert v.modules["fc2"].checks["delta_rms@1"].status == "grows"
    assert v.modules["dead"].checks["delta_rms@1"].status == "pass"  # identically zero
    # worst first: invalid, then the steepest growth
    assert [(c.module, c.quantity) for c in v.worst[:2]] == [("dead", "rms@0"), ("out", "delta_rms@1")]
    s = v.summary()
    assert s.startswith("FAIL") and "out" in s and "dead" in s
    # shrinking outputs at init allowed when asked
    v2 = verdict(fit_slopes(ws, {k: records[k] for k in ("fc1", "fc2")}), allow_shrink=["rms@*"])
    assert v2.modules["fc2"].checks["rms@0"].status == "shrinks-allowed"
    assert v2.modules["fc2"].checks["rms@0"].passed
    # expected slopes per quantity and plain float inputs
    v3 = verdict({"m": {"a": -0.45, "b": 0.1}}, expected={"a": -0.5}, tol=0.1)
    assert v3.passed
    assert verdict({"m": {"a": float("nan")}}).worst[0].status == "invalid"
    assert verdict({"m": {"a": 0.0}}).summary().startswith("PASS")
    json.dumps(v.to_dict())
