"""SpectralSGD (Eq. 17): measured update norms, Newton–Schulz accuracy, training, state_dict."""
import copy
import io
import math

import pytest
import torch
import torch.nn as nn

from sptrace.planning.layout import block_spectral_norms, to_blocks
from sptrace.optim import SpectralSGD, newton_schulz, orthogonalize, power_normalize
from sptrace.planning.plan import group, plan
from sptrace.types import DimDecision, Kind, Layout, ParamRecord, ParamUse, Role, Space, SptraceError



pytestmark = pytest.mark.usefixtures("one_thread")

def rec(name, shape, fan_in_axes, fan_out_axes, width_axes, role, space=Space.DENSE, groups=1):
    dims = tuple(DimDecision(a, s, a in width_axes, "test") for a, s in enumerate(shape))
    fiw = any(a in width_axes for a in fan_in_axes)
    fow = any(a in width_axes for a in fan_out_axes)
    use = ParamUse("node", "op", "weight", "", tuple(fan_in_axes), tuple(fan_out_axes), (), groups, space, role)
    return ParamRecord(
        name, (name,), tuple(shape), "float32", True, (use,), [Kind.SCALAR, Kind.VECTOR, Kind.MATRIX][fiw + fow],
        role, space, Space.DENSE, tuple(fan_in_axes), tuple(fan_out_axes), groups, dims,
    )


def svdvals(x):
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # threaded LAPACK stalls on shared CPUs (see sptrace.apply.init)
    try:
        return torch.linalg.svdvals(x.float())
    finally:
        torch.set_num_threads(before)


def grad_like(m, n, rank=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(m, rank, generator=g) @ torch.randn(rank, n, generator=g) + 0.01 * torch.randn(m, n, generator=g)


# ---------------------------------------------------------------- Newton–Schulz accuracy (measured)
@pytest.mark.parametrize("shape", [(256, 256), (96, 400), (400, 96)])
@pytest.mark.parametrize("kind", ["gaussian", "low_rank"])
def test_newton_schulz_top_singular_values(shape, kind):
    torch.manual_seed(0)
    g = torch.randn(shape) if kind == "gaussian" else grad_like(*shape)
    s = svdvals(newton_schulz(g[None])[0])
    # measured: with 5 Muon steps + 2 polishing steps the top singular values are within 0.1% of 1
    assert s.max().item() == pytest.approx(1.0, abs=0.005)
    top = s[:8] if kind == "low_rank" else s[: min(shape) // 2]
    assert top.min().item() > 0.99
    # Muon's coefficients alone leave the top singular value anywhere in about [0.68, 1.21]
    s_muon = svdvals(newton_schulz(g[None], steps=5, polish_steps=0)[0])
    assert 0.6 < s_muon.max().item() < 1.25
    # bf16 iteration: within 1.5%
    s16 = svdvals(newton_schulz(g[None], dtype=torch.bfloat16)[0])
    assert s16.max().item() == pytest.approx(1.0, abs=0.015)


def test_orthogonalize_vectors_exact_and_zero_safe():
    g = torch.randn(1, 50, 1)
    o = orthogonalize(g)
    assert o.norm().item() == pytest.approx(1.0, rel=1e-6)
    assert torch.allclose(o, g / g.norm())
    assert not newton_schulz(torch.zeros(1, 4, 6)).any()


def test_power_normalize_close_and_warm_start_improves():
    g = grad_like(128, 300)[None]
    o, v = power_normalize(g, None, iters=3)
    cold = svdvals(o[0]).max().item()
    o2, _ = power_normalize(g, v, iters=3)
    warm = svdvals(o2[0]).max().item()
    assert cold >= 1.0 - 1e-5 and warm >= 1.0 - 1e-5  # power iteration underestimates ||g||
    assert warm <= cold and warm == pytest.approx(1.0, abs=0.01)


# ---------------------------------------------------------------- one step: ||ΔW||_* = lr * scale
def one_step(p, grad, **kw):
    opt = SpectralSGD([p], momentum=0.0, **kw)
    before = p.detach().clone()
    p.grad = grad
    opt.step()
    return p.detach() - before


@pytest.mark.parametrize("shape", [(128, 128), (64, 300), (300, 64)])
@pytest.mark.parametrize("method", ["newton_schulz", "power"])
def test_update_spectral_norm_is_lr_times_scale(shape, method):
    torch.manual_seed(0)
    p = nn.Parameter(torch.randn(shape))
    lr, scale = 0.03, math.sqrt(shape[0] / shape[1])
    d = one_step(p, grad_like(*shape), lr=lr, spectral_scale=scale, method=method, power_iters=20)
    measured = block_spectral_norms(d).item()
    tol = 0.01 if method == "newton_schulz" else 0.02
    assert measured == pytest.approx(lr * scale, rel=tol)


def test_grouped_conv_update_per_block():
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 32, 3, groups=4)
    layout = Layout((0,), (1, 2, 3), (), 4)
    g = torch.randn_like(conv.weight)
    d = one_step(conv.weight, g, lr=0.1, spectral_scale=0.5, sptrace_layout=layout.to_dict())
    norms = block_spectral_norms(d, layout)
    assert norms.shape == (4,)
    assert torch.allclose(norms, torch.full((4,), 0.05), rtol=0.01)
    # the blocks are orthogonalised separately: each block's update is orthogonal on its own
    for blk in to_blocks(d, layout):
        s = svdvals(blk / 0.05)
        assert s.min() > 0.95


def test_bias_update_is_grad_over_rms():
    """A bias is an n x 1 operator from the constant-1 space: its polar factor is g/||g||_2, and
    with scale sqrt(n) the update is lr * g / RMS(g) (entries of RMS lr), exactly."""
    n = 200
    p = nn.Parameter(torch.zeros(n))
    g = torch.randn(n)
    d = one_step(p, g.clone(), lr=0.01, spectral_scale=math.sqrt(n))
    assert torch.allclose(d, -0.01 * g / g.pow(2).mean().sqrt(), rtol=1e-5, atol=1e-8)
    assert d.norm().item() == pytest.approx(0.01 * math.sqrt(n), rel=1e-5)


def test_embedding_layout_orthogonalises_the_table_as_n_by_vocab():
    torch.manual_seed(0)
    emb = nn.Embedding(40, 96)
    layout = Layout((1,), (0,))
    g = torch.zeros(40, 96)
    g[[3, 7, 11]] = torch.randn(3, 96)  # only the looked-up rows get gradient
    d = one_step(emb.weight, g, lr=0.02, spectral_scale=math.sqrt(96), sptrace_layout=layout.to_dict())
    assert not d[[0, 1, 2]].any()
    rows = d[[3, 7, 11]]
    # three active tokens in general position: each looked-up vector moves by RMS ≈ lr
    assert torch.allclose(rows.pow(2).mean(dim=1).sqrt(), torch.full((3,), 0.02), rtol=0.02)


def test_column_update_moves_every_seen_input_by_lr_whatever_the_rank():
    """Sparse-input tables (docs/rules.md §3): 40 positions seen, width 16 < 40, so the gradient
    has rank <= 16. The column update moves each seen position by RMS lr exactly; the polar factor
    would spread rank 16 over 40 columns (RMS about lr * sqrt(16/40)) — a width-dependent step
    while the width is below the table's fixed size."""
    torch.manual_seed(0)
    V, n, lr = 64, 16, 0.02
    layout = Layout((1,), (0,)).to_dict()
    g = torch.zeros(V, n)
    g[:40] = torch.randn(40, n)
    moved = {}
    for update in ("column", "orthogonal"):
        d = one_step(nn.Parameter(torch.zeros(V, n)), g.clone(), lr=lr, spectral_scale=math.sqrt(n),
                     sptrace_update=update, sptrace_layout=layout)
        assert not d[40:].any()
        moved[update] = d[:40].pow(2).mean(dim=1).sqrt()
    assert torch.allclose(moved["column"], torch.full((40,), lr), rtol=1e-5)
    assert moved["orthogonal"].pow(2).mean().sqrt().item() == pytest.approx(lr * math.sqrt(16 / 40), rel=0.02)


def test_sign_update_for_gains_and_scalars():
    gain = nn.Parameter(torch.ones(64))
    g = torch.randn(64)
    d = one_step(gain, g.clone(), lr=0.05, sptrace_update="sign")
    assert torch.allclose(d, -0.05 * g.sign())
    s = nn.Parameter(torch.tensor(2.0))
    d = one_step(s, torch.tensor(-3.0), lr=0.1, spectral_scale=1.0)
    assert d.item() == pytest.approx(0.1)


def test_decoupled_weight_decay_and_zero_grad():
    p = nn.Parameter(torch.randn(8, 8))
    before = p.detach().clone()
    opt = SpectralSGD([p], lr=0.1, weight_decay=0.5, momentum=0.9)
    p.grad = torch.zeros(8, 8)
    opt.step()
    assert torch.allclose(p.detach(), before * (1 - 0.1 * 0.5))


def test_momentum_buffer_and_nesterov():
    torch.manual_seed(0)
    p = nn.Parameter(torch.zeros(16, 24))
    g1, g2 = torch.randn(16, 24), torch.randn(16, 24)
    opt = SpectralSGD([p], lr=1.0, momentum=0.5, nesterov=False)
    p.grad = g1
    opt.step()
    p.grad = g2
    before = p.detach().clone()
    opt.step()
    expected = newton_schulz((0.5 * g1 + g2)[None])[0]
    assert torch.allclose(before - p.detach(), expected, atol=1e-5)


# ---------------------------------------------------------------- training
class Tiny(nn.Module):
    def __init__(self, d_in=20, n=64, d_out=5):
        super().__init__()
        self.fc1, self.fc2, self.norm, self.head = nn.Linear(d_in, n), nn.Linear(n, n), nn.LayerNorm(n), nn.Linear(n, d_out)

    def forward(self, x):
        return self.head(self.norm(torch.tanh(self.fc2(torch.tanh(self.fc1(x))))))


def tiny_records(n=64, d_in=20, d_out=5):
    return [
        rec("fc1.weight", (n, d_in), (1,), (0,), {0}, Role.INPUT),
        rec("fc1.bias", (n,), (), (0,), {0}, Role.BIAS, Space.SPARSE),
        rec("fc2.weight", (n, n), (1,), (0,), {0, 1}, Role.HIDDEN),
        rec("fc2.bias", (n,), (), (0,), {0}, Role.BIAS, Space.SPARSE),
        rec("norm.weight", (n,), (), (0,), {0}, Role.GAIN),
        rec("norm.bias", (n,), (), (0,), {0}, Role.BIAS, Space.SPARSE),
        rec("head.weight", (d_out, n), (1,), (0,), {1}, Role.READOUT),
        rec("head.bias", (d_out,), (), (0,), set(), Role.BIAS, Space.SPARSE),
    ]


def make_opt(model, lr=0.05, **kw):
    plans = plan(tiny_records(), "spectral", lr=lr, **kw)
    return SpectralSGD(group(plans, dict(model.named_parameters())), lr=lr), plans


def test_plan_groups_drive_the_optimizer_and_set_each_update_norm():
    torch.manual_seed(0)
    model = Tiny()
    opt, plans = make_opt(model, lr=0.01)
    x = torch.randn(32, 20)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    model(x).pow(2).mean().backward()
    opt.step()
    for pl in plans:
        p = dict(model.named_parameters())[pl.name]
        d = p.detach() - before[pl.name]
        if pl.update == "sign":
            assert torch.allclose(d.abs(), torch.full_like(d, 0.01), rtol=1e-5), pl.name
        else:
            measured = block_spectral_norms(d, pl.layout).max().item()
            assert measured == pytest.approx(0.01 * pl.spectral_scale, rel=0.01), pl.name


def test_decreases_loss_on_toy_regression():
    torch.manual_seed(0)
    teacher = Tiny()
    model = Tiny()
    opt, _ = make_opt(model, lr=0.02)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1 - t / 150)
    x = torch.randn(256, 20)
    with torch.no_grad():
        y = teacher(x)
    first = None
    for _ in range(150):
        opt.zero_grad()
        loss = (model(x) - y).pow(2).mean()
        first = loss.item() if first is None else first
        loss.backward()
        opt.step()
        sched.step()
    assert loss.item() < 0.1 * first


def test_state_dict_round_trip():
    torch.manual_seed(0)
    x, y = torch.randn(16, 20), torch.randn(16, 5)
    model_a = Tiny()
    model_b = copy.deepcopy(model_a)
    opt_a, _ = make_opt(model_a, weight_decay=0.1)

    def step(model, opt):
        opt.zero_grad()
        (model(x) - y).pow(2).mean().backward()
        opt.step()

    for _ in range(3):
        step(model_a, opt_a)
    buf = io.BytesIO()
    torch.save({"model": model_a.state_dict(), "opt": opt_a.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)  # plain types only in the groups
    model_b.load_state_dict(saved["model"])
    opt_b, _ = make_opt(model_b, weight_decay=0.1)
    opt_b.load_state_dict(saved["opt"])
    assert opt_b.param_groups[0]["sptrace_layout"] == opt_a.param_groups[0]["sptrace_layout"]
    for _ in range(2):
        step(model_a, opt_a)
        step(model_b, opt_b)
    for (n, a), (_, b) in zip(model_a.named_parameters(), model_b.named_parameters()):
        assert torch.equal(a, b), n


def test_bad_arguments_name_the_option():
    p = nn.Parameter(torch.randn(4, 4))
    with pytest.raises(SptraceError, match="lr must be >= 0, got -1"):
        SpectralSGD([p], lr=-1)
    with pytest.raises(SptraceError, match="sptrace_update must be one of orthogonal, column, sign, got 'adam'"):
        SpectralSGD([p], sptrace_update="adam")
    with pytest.raises(SptraceError, match="method must be one of newton_schulz, power, got 'svd'"):
        SpectralSGD([p], method="svd")
    with pytest.raises(SptraceError, match=r"momentum must be in \[0, 1\), got 1.0"):
        SpectralSGD([p], momentum=1.0)
    with pytest.raises(SptraceError, match="param group 1: weight_decay must be >= 0"):
        SpectralSGD([{"params": [p]}, {"params": [nn.Parameter(torch.randn(2))], "weight_decay": -0.1}])
    with pytest.raises(SptraceError, match="fc.weight: layout"):  # sptrace's groups name their tensors
        SpectralSGD([{"params": [p], "sptrace_names": ["fc.weight"], "sptrace_layout": {"fan_in_axes": (2,)}}])
    with pytest.raises(SptraceError, match="layout must be a Layout"):
        SpectralSGD([p], sptrace_layout="rows")
    with pytest.raises(SptraceError, match="orthogonalize: method must be one of"):
        orthogonalize(torch.randn(1, 3, 3), method="svd")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("ns_dtype", [torch.float32, torch.bfloat16])
def test_cuda_bf16_params(ns_dtype):
    torch.manual_seed(0)
    p = nn.Parameter(torch.randn(512, 1024, device="cuda", dtype=torch.bfloat16))
    g = grad_like(512, 1024).cuda().to(torch.bfloat16)
    before = p.detach().float().clone()
    opt = SpectralSGD([p], lr=0.01, momentum=0.0, spectral_scale=2.0, ns_dtype=ns_dtype)
    p.grad = g
    opt.step()
    d = p.detach().float() - before
    # bf16 parameter storage rounds the update (entries ~1e-4 on weights ~1): a few % on ||ΔW||
    assert block_spectral_norms(d).item() == pytest.approx(0.02, rel=0.1)
