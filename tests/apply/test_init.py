"""In-place init: measured spectral norms against targets, determinism, identity, block layouts."""
import math

import pytest
import torch
import torch.nn.functional as F

from sptrace.planning.layout import block_spectral_norms, from_blocks, to_blocks
from sptrace.apply.init import apply_init, gaussian_, ones_, orthogonal_, scale_, spectral_, zeros_
from sptrace.threads import cpu_threads
from sptrace.planning.rules import rule_for
from sptrace.types import DimDecision, Kind, Layout, ParamRecord, ParamUse, Role, Space, SptraceError



pytestmark = pytest.mark.usefixtures("one_thread")

def rec(name, shape, fan_in_axes, fan_out_axes, width_axes, role, space=Space.DENSE, groups=1, group_axes=()):
    dims = tuple(DimDecision(a, s, a in width_axes, "test") for a, s in enumerate(shape))
    fiw = any(a in width_axes for a in fan_in_axes)
    fow = any(a in width_axes for a in fan_out_axes)
    use = ParamUse("node", "op", "weight", "", tuple(fan_in_axes), tuple(fan_out_axes), tuple(group_axes), groups, space, role)
    return ParamRecord(
        name, (name,), tuple(shape), "float32", True, (use,), [Kind.SCALAR, Kind.VECTOR, Kind.MATRIX][fiw + fow],
        role, space, Space.DENSE, tuple(fan_in_axes), tuple(fan_out_axes), groups, dims,
    )


def sv(t, layout=None):
    """All singular values per block, float32 (single-threaded LAPACK: see sptrace.threads.cpu_threads)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return torch.linalg.svdvals(to_blocks(t.detach().float(), layout))
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------- gaussian
@pytest.mark.parametrize("n,m", [(256, 256), (128, 512), (768, 96)])
def test_gaussian_spectral_norm_matches_random_matrix_theory(n, m):
    torch.manual_seed(0)
    std = 0.037
    w = torch.nn.Parameter(torch.empty(n, m))
    gaussian_(w, std)
    measured = block_spectral_norms(w).item()
    predicted = std * (math.sqrt(n) + math.sqrt(m))  # Rudelson & Vershynin (paper §3.1, §4)
    assert measured == pytest.approx(predicted, rel=0.05)
    assert w.detach().std().item() == pytest.approx(std, rel=0.02)


# ---------------------------------------------------------------- identity, determinism, dtype
KINDS = [
    ("gaussian", dict(std=0.1)), ("orthogonal", dict(target=2.0)), ("spectral", dict(target=0.5)),
    ("zeros", {}), ("ones", {}), ("scale", dict(scale=0.5)), ("keep", {}),
]


@pytest.mark.parametrize("kind,kw", KINDS)
def test_same_parameter_object_and_storage(kind, kw):
    lin = torch.nn.Linear(24, 40)
    p = lin.weight
    ptr, pid = p.data_ptr(), id(p)
    out = apply_init(p, kind, **kw)
    assert out is p and id(lin.weight) == pid and lin.weight.data_ptr() == ptr
    assert p.requires_grad and isinstance(p, torch.nn.Parameter)


@pytest.mark.parametrize("kind,kw", KINDS[:3])
def test_deterministic_under_manual_seed(kind, kw):
    a, b, c = (torch.nn.Parameter(torch.empty(16, 3, 3, 3)) for _ in range(3))
    torch.manual_seed(123)
    apply_init(a, kind, **kw)
    torch.manual_seed(123)
    apply_init(b, kind, **kw)
    torch.manual_seed(124)
    apply_init(c, kind, **kw)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_explicit_generator():
    a, b = torch.empty(8, 8), torch.empty(8, 8)
    gaussian_(a, 1.0, generator=torch.Generator().manual_seed(5))
    gaussian_(b, 1.0, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


@pytest.mark.parametrize("kind,kw", KINDS[:3])
def test_bf16_gets_the_float32_values_rounded(kind, kw):
    p32 = torch.nn.Parameter(torch.empty(32, 48))
    p16 = torch.nn.Parameter(torch.empty(32, 48, dtype=torch.bfloat16))
    torch.manual_seed(7)
    apply_init(p32, kind, **kw)
    torch.manual_seed(7)
    apply_init(p16, kind, **kw)
    assert p16.dtype is torch.bfloat16
    assert torch.equal(p16.detach(), p32.detach().to(torch.bfloat16))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind,kw", KINDS[:3])
def test_cuda_bf16_in_place_and_deterministic(kind, kw):
    p = torch.nn.Parameter(torch.empty(64, 96, device="cuda", dtype=torch.bfloat16))
    ptr = p.data_ptr()
    torch.manual_seed(3)
    apply_init(p, kind, **kw)
    first = p.detach().clone()
    torch.manual_seed(3)
    apply_init(p, kind, **kw)
    assert p.data_ptr() == ptr and torch.equal(first, p.detach())
    if kind != "gaussian":
        assert block_spectral_norms(p).item() == pytest.approx(kw["target"], rel=0.02)  # bf16 rounding


# ---------------------------------------------------------------- orthogonal / spectral targets
@pytest.mark.parametrize("shape", [(64, 64), (32, 100), (100, 32), (7,), (1, 50)])
def test_orthogonal_all_singular_values_equal_target(shape):
    torch.manual_seed(0)
    p = torch.empty(shape)
    orthogonal_(p, 1.7)
    s = sv(p)
    assert torch.allclose(s, torch.full_like(s, 1.7), rtol=1e-4)


@pytest.mark.parametrize("shape", [(64, 64), (32, 100), (100, 32), (9,)])
def test_spectral_eq16_exact_target(shape):
    torch.manual_seed(0)
    p = torch.empty(shape)
    spectral_(p, 0.3)
    assert block_spectral_norms(p).item() == pytest.approx(0.3, rel=1e-5)
    s = sv(p)
    assert s.min() < 0.5 * s.max() or min(p.reshape(p.shape[0], -1).shape) == 1  # a Gaussian's spectrum, not flat


def test_grouped_conv_blocks_each_at_target():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(32, 64, 3, groups=4)
    layout = Layout((0,), (1, 2, 3), (), 4)
    assert layout.block_shape(conv.weight.shape) == (4, 16, 8 * 9)
    orthogonal_(conv.weight, 0.8, layout)
    s = sv(conv.weight, layout)
    assert s.shape == (4, 16) and torch.allclose(s, torch.full_like(s, 0.8), rtol=1e-4)
    spectral_(conv.weight, 1.3, layout)
    assert torch.allclose(block_spectral_norms(conv.weight, layout), torch.full((4,), 1.3), rtol=1e-5)


# ---------------------------------------------------------------- zeros / ones / scale
def test_zeros_ones_scale():
    p = torch.nn.Parameter(torch.randn(5, 6))
    before = p.detach().clone()
    scale_(p, 1.0)
    assert torch.equal(p, before)  # factor 1.0: bit-identical (base form at the base shapes)
    scale_(p, 0.25)
    assert torch.equal(p.detach(), before * 0.25)
    zeros_(p)
    assert not p.detach().any()
    ones_(p)
    assert torch.equal(p.detach(), torch.ones(5, 6))


def test_apply_init_errors_name_the_parameter_and_leave_it_untouched():
    p = torch.ones(3, 3)
    with pytest.raises(SptraceError, match="fc.weight: init 'gaussian' needs std="):
        apply_init(p, "gaussian", name="fc.weight")
    with pytest.raises(SptraceError, match="fc.weight: init 'orthogonal' needs target="):
        apply_init(p, "orthogonal", name="fc.weight")
    with pytest.raises(SptraceError, match="fc.weight: unknown init kind 'xavier'; known: gaussian"):
        apply_init(p, "xavier", std=1.0, name="fc.weight")
    with pytest.raises(SptraceError, match="fc.weight: std must be a finite number >= 0, got -0.1"):
        apply_init(p, "gaussian", std=-0.1, name="fc.weight")
    with pytest.raises(SptraceError, match="fc.weight: layout"):
        apply_init(p, "spectral", target=1.0, layout=Layout((0,), (2,)), name="fc.weight")
    with pytest.raises(SptraceError, match="fc.weight: scale must be a finite number"):
        apply_init(p, "scale", scale=float("inf"), name="fc.weight")
    assert torch.equal(p, torch.ones(3, 3))
    with pytest.raises(SptraceError, match="std of the gaussian init must be a finite number >= 0, got nan"):
        gaussian_(p, float("nan"))
    with pytest.raises(SptraceError, match="param must be the tensor"):
        apply_init([1.0], "zeros")


# ---------------------------------------------------------------- block views
def test_blocks_linear_is_the_matrix():
    w = torch.randn(6, 4)
    assert torch.equal(to_blocks(w)[0], w)
    assert torch.equal(from_blocks(to_blocks(w), None, w.shape), w)


def test_blocks_hf_conv1d_layout_is_transposed():
    w = torch.randn(4, 6)  # HF Conv1D: (in, out)
    layout = Layout((1,), (0,))
    assert torch.equal(to_blocks(w, layout)[0], w.T)


def test_blocks_grouped_conv():
    w = torch.randn(12, 2, 3, 3)  # Conv2d(6, 12, 3, groups=3)
    layout = Layout((0,), (1, 2, 3), (), 3)
    b = to_blocks(w, layout)
    assert b.shape == (3, 4, 18)
    for i in range(3):
        assert torch.equal(b[i], w[4 * i:4 * (i + 1)].reshape(4, 18))
    assert torch.equal(from_blocks(b, layout, w.shape), w)


def test_blocks_grouped_conv_transpose():
    w = torch.randn(6, 4, 3, 3)  # ConvTranspose2d(6, 12, 3, groups=3): (in, out/g, k, k)
    layout = Layout((1,), (0, 2, 3), (), 3)
    b = to_blocks(w, layout)
    assert b.shape == (3, 4, 2 * 9)
    for i in range(3):
        assert torch.equal(b[i], w[2 * i:2 * (i + 1)].permute(1, 0, 2, 3).reshape(4, 18))
    assert torch.equal(from_blocks(b, layout, w.shape), w)


def test_blocks_per_head_and_leftover_axes():
    w = torch.randn(4, 8, 2)  # (heads, d_in_head, d_out_head), einsum batch axis 0
    layout = Layout((2,), (1,), (0,))
    b = to_blocks(w, layout)
    assert b.shape == (4, 2, 8) and torch.equal(b[1], w[1].T)
    pos = torch.randn(1, 16, 8)  # position table: fan-in = position axis, fan-out = width axis
    lp = Layout((2,), (1,))
    assert to_blocks(pos, lp).shape == (1, 8, 16)
    assert torch.equal(from_blocks(to_blocks(pos, lp), lp, pos.shape), pos)


def test_layout_from_record_and_errors():
    r = rec("conv", (12, 2, 3, 3), (1, 2, 3), (0,), {0, 1}, Role.HIDDEN, groups=3)
    assert Layout.from_record(r) == Layout((0,), (1, 2, 3), (), 3)
    assert Layout.coerce(Layout.from_record(r).to_dict(), r.shape) == Layout.from_record(r)
    assert Layout.default(()) == Layout((), ())
    with pytest.raises(SptraceError):
        Layout((0,), (1,), (), 5).check((12, 3))
    with pytest.raises(SptraceError):
        Layout((0,), (3,)).check((12, 3))


# ---------------------------------------------------------------- rule targets produce width-stable features
@pytest.mark.parametrize("kind", ["gaussian", "orthogonal", "spectral"])
def test_input_layer_init_keeps_feature_rms_flat_in_width(kind):
    """docs/derivations.md §3: fixed fan-in 3072, width fan-out n < 3072. A literal sqrt(n/3072)
    target would make RMS(W x) grow like sqrt(n); the rule's limit form keeps it flat."""
    torch.manual_seed(0)
    x = torch.randn(3072, 8)
    rms = []
    for n in (32, 128, 512):
        r = rec("fc1", (n, 3072), (1,), (0,), {0}, Role.INPUT)
        rule = rule_for(r, "adam", init=kind)
        w = torch.empty(n, 3072)
        apply_init(w, rule.init_kind, std=rule.init_std, target=rule.init_target)
        rms.append((w @ x).pow(2).mean().sqrt().item())
    slope = math.log(rms[-1] / rms[0]) / math.log(512 / 32)
    assert abs(slope) < 0.1, rms
    literal = [math.sqrt(n / 3072) for n in (32, 128, 512)]  # what Eq. 16 read literally would give
    w = torch.empty(32, 3072)
    orthogonal_(w, literal[0])
    assert (w @ x).pow(2).mean().sqrt().item() < 0.2  # ... shrinks at small n (grows with n)


@pytest.mark.parametrize("kind", ["gaussian", "orthogonal", "spectral"])
def test_embedding_init_looked_up_rms_flat_in_width(kind):
    torch.manual_seed(0)
    rms = []
    for n in (32, 128, 512):
        r = rec("wte", (1000, n), (0,), (1,), {1}, Role.EMBEDDING, Space.SPARSE)
        rule = rule_for(r, "adam", init=kind)
        w = torch.empty(1000, n)
        apply_init(w, rule.init_kind, std=rule.init_std, target=rule.init_target, layout=Layout.from_record(r))
        rms.append(w[:50].pow(2).mean().sqrt().item())
    if kind == "spectral":
        # Eq. 16 rescales a Gaussian to sqrt(max(n, V)): the looked-up RMS is
        # sqrt(max(n, V)) / (sqrt(n) + sqrt(V)), bounded in [0.5, 1] at every width (-> 1 as n -> inf)
        assert all(0.45 < x < 1.05 for x in rms), rms
    else:
        assert max(rms) / min(rms) < 1.3, rms
        assert 0.8 < rms[0] < 1.2


@pytest.mark.parametrize("kind", ["gaussian", "orthogonal", "spectral"])
def test_hidden_conv_init_keeps_rms_through_a_layer(kind):
    """Width-only min(): a 3x3 hidden conv keeps the RMS of a generic input (Kaiming-like)."""
    torch.manual_seed(0)
    for n in (32, 128):
        r = rec("conv", (n, n, 3, 3), (1, 2, 3), (0,), {0, 1}, Role.HIDDEN)
        rule = rule_for(r, "sgd", init=kind)
        w = torch.empty(n, n, 3, 3)
        apply_init(w, rule.init_kind, std=rule.init_std, target=rule.init_target, layout=Layout.from_record(r))
        x = torch.randn(4, n, 16, 16)
        ratio = F.conv2d(x, w, padding=1)[..., 1:-1, 1:-1].pow(2).mean().sqrt().item()
        assert 0.7 < ratio < 1.4, (n, ratio)


def test_cpu_threads_restores_the_thread_count():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with pytest.raises(RuntimeError, match="inside"):
            with cpu_threads(1):
                assert torch.get_num_threads() == 1
                raise RuntimeError("inside")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
