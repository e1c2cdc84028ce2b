"""Stage-by-stage tests of the tracer on small hand-written models (expectations derived by hand)."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import sptrace
from sptrace.graph.ops import _reshape_groups

ROUTES = [("export",), ("eager",)]


def expect(t, name, kind, role, space, fan_in, fan_out, width_dims):
    r = t[name]
    got = (r.kind.value, r.role.value, r.input_space.value, r.fan_in, r.fan_out, r.width_dims)
    assert got == (kind, role, space, fan_in, fan_out, tuple(width_dims)), f"{name}: {got}"


class PaperMLP(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(3072, n, False), nn.Linear(n, n, False), nn.Linear(n, 10, False)

    def forward(self, x):
        return self.fc3(F.relu(self.fc2(F.relu(self.fc1(x.flatten(1))))))


@pytest.mark.parametrize("routes", ROUTES)
@pytest.mark.parametrize("n", [64, 3072])  # 3072 = the input size: decided by structure, not size
def test_paper_mlp(routes, n):
    t = sptrace.trace(PaperMLP(n), torch.randn(2, 3, 32, 32), routes=routes)
    assert t.route == routes[0]
    expect(t, "fc1.weight", "vector", "input", "dense", 3072, n, [0])
    expect(t, "fc2.weight", "matrix", "hidden", "dense", n, n, [0, 1])
    expect(t, "fc3.weight", "vector", "readout", "dense", n, 10, [1])


class TinyGPT(nn.Module):
    def __init__(self, d, vocab=50, block=16, tied=True):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(block, d)
        self.ln = nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.head = nn.Linear(d, vocab, bias=False)
        if tied:
            self.head.weight = self.wte.weight
        self.h = 4

    def forward(self, ids):
        B, T = ids.shape
        x = self.wte(ids) + self.wpe(torch.arange(T, device=ids.device))
        q, k, v = self.qkv(self.ln(x)).split(x.shape[-1], dim=2)
        q, k, v = (z.view(B, T, self.h, -1).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, -1)
        return self.head(x + self.proj(y))


@pytest.mark.parametrize("routes", ROUTES)
def test_tied_gpt(routes):
    t = sptrace.trace(TinyGPT(32), torch.randint(0, 50, (2, 16)), routes=routes)
    r = t["head.weight"]
    assert r is t["wte.weight"] and r.aliases == ("wte.weight", "head.weight")
    expect(t, "wte.weight", "vector", "embedding", "sparse", 50, 32, [1])
    assert [u.role.value for u in r.secondary_uses] == ["readout"]
    assert r.secondary_uses[0].module == "head"
    expect(t, "wpe.weight", "vector", "embedding", "sparse", 16, 32, [1])
    expect(t, "qkv.weight", "matrix", "hidden", "dense", 32, 96, [0, 1])
    expect(t, "qkv.bias", "vector", "bias", "sparse", 1, 96, [0])
    expect(t, "ln.weight", "vector", "gain", "dense", 1, 32, [0])
    expect(t, "ln.bias", "vector", "bias", "sparse", 1, 32, [0])
    [site] = t.attention
    assert site.kind == "sdpa" and site.head_dim == 8 and site.head_dim_is_width is None


def test_base_mode_decides_head_dim_and_widths():
    model, base = TinyGPT(64, tied=False), TinyGPT(32, tied=False)
    t = sptrace.trace(model, torch.randint(0, 50, (2, 16)), base=base)
    assert t.width_mode == "base"
    assert t["qkv.weight"].width_dims == (0, 1) and t["qkv.weight"].base_shape == (96, 32)
    assert t["head.weight"].width_dims == (1,) and t["head.weight"].role.value == "readout"
    assert t.attention[0].head_dim_is_width is True  # 4 heads at both widths: head_dim 8 -> 16


def test_delta_decides_width_dims_at_the_base_width():
    x = torch.randint(0, 50, (2, 16))
    at_base = sptrace.trace(TinyGPT(32, tied=False), x, base=TinyGPT(32, tied=False), delta=TinyGPT(64, tied=False))
    assert at_base.width_mode == "base" and not at_base.warnings
    assert at_base["head.weight"].width_dims == (1,) and at_base["head.weight"].role.value == "readout"
    assert at_base["qkv.weight"].width_dims == (0, 1)
    assert at_base.attention[0].head_dim_is_width is True  # 4 heads at both widths: head_dim grows
    alone = sptrace.trace(TinyGPT(32, tied=False), x, base=TinyGPT(32, tied=False))
    assert any("pass delta=" in w for w in alone.warnings)
    with pytest.raises(sptrace.SptraceError, match="pass base= as well"):
        sptrace.trace(TinyGPT(32, tied=False), x, delta=TinyGPT(64, tied=False))
    with pytest.raises(sptrace.SptraceError, match="no counterpart in the delta model"):
        sptrace.trace(TinyGPT(32, tied=False), x, base=TinyGPT(32, tied=False), delta=nn.Linear(3, 3))


class ConvNet(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False)
        self.grouped = nn.Conv2d(c, 2 * c, 1, groups=4, bias=False)
        self.up = nn.ConvTranspose2d(2 * c, c, 2, stride=2, groups=2)
        self.gn = nn.GroupNorm(4, c)
        self.gamma = nn.Parameter(torch.ones(c, 1, 1))
        self.fc = nn.Linear(c, 10)

    def forward(self, x):
        x = F.relu(self.bn(self.stem(x)))
        x = self.gamma * self.gn(self.up(self.grouped(self.dw(x))))
        return self.fc(x.mean((2, 3)))


@pytest.mark.parametrize("routes", ROUTES)
def test_convnet(routes):
    c = 16
    t = sptrace.trace(ConvNet(c), torch.randn(2, 3, 8, 8), routes=routes)
    expect(t, "stem.weight", "vector", "input", "dense", 3 * 9, c, [0])
    expect(t, "stem.bias", "vector", "bias", "sparse", 1, c, [0])
    expect(t, "bn.weight", "vector", "gain", "dense", 1, c, [0])
    expect(t, "dw.weight", "vector", "input", "dense", 9, 1, [0])  # depthwise: width lives in the groups
    assert t["dw.weight"].groups == c
    expect(t, "grouped.weight", "matrix", "hidden", "dense", c // 4, 2 * c // 4, [0, 1])
    expect(t, "up.weight", "matrix", "hidden", "dense", (2 * c // 2) * 4, c // 2, [0, 1])
    expect(t, "gn.weight", "vector", "gain", "dense", 1, c, [0])
    expect(t, "gamma", "vector", "gain", "dense", 1, c, [0])
    expect(t, "fc.weight", "vector", "readout", "dense", c, 10, [1])


class Mixer(nn.Module):
    """Token mixing maps the fixed patch count to a width dim and back (docs/derivations.md §3)."""

    def __init__(self, d):
        super().__init__()
        self.patch = nn.Conv2d(3, d, 4, stride=4)
        self.cls = nn.Parameter(torch.zeros(1, 1, d))
        self.pos = nn.Parameter(torch.zeros(1, 17, d))
        self.tok1, self.tok2 = nn.Linear(16, d), nn.Linear(d, 16)
        self.scale = nn.Parameter(torch.tensor(1.0))
        self.head = nn.Linear(d, 10)

    def forward(self, x):
        p = self.patch(x).flatten(2).transpose(1, 2)  # (B, 16, d)
        p = p + self.tok2(F.gelu(self.tok1(p.transpose(1, 2)))).transpose(1, 2)
        z = torch.cat([self.cls.expand(x.shape[0], -1, -1), p], dim=1) + self.pos
        return self.head(z[:, 0] * self.scale)


@pytest.mark.parametrize("routes", ROUTES)
def test_mixer_cls_pos_scalar(routes):
    d = 32
    t = sptrace.trace(Mixer(d), torch.randn(2, 3, 16, 16), routes=routes)
    expect(t, "patch.weight", "vector", "input", "dense", 48, d, [0])
    expect(t, "tok1.weight", "vector", "input", "dense", 16, d, [0])
    expect(t, "tok2.weight", "vector", "readout", "dense", d, 16, [1])
    expect(t, "tok2.bias", "scalar", "bias", "sparse", 1, 16, [])
    expect(t, "cls", "vector", "embedding", "sparse", 1, d, [2])
    expect(t, "pos", "vector", "embedding", "sparse", 17, d, [2])
    assert t["pos"].fan_in_axes == (1,) and t["pos"].fan_out_axes == (2,)
    expect(t, "scale", "scalar", "scalar", "dense", 1, 1, [])


class HeadlessEncoder(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.emb, self.fc, self.pool = nn.Embedding(20, d), nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, ids):
        h = self.fc(self.emb(ids))
        return h, torch.tanh(self.pool(h[:, 0]))


def test_headless_outputs_stay_width():
    t = sptrace.trace(HeadlessEncoder(24), torch.randint(0, 20, (2, 5)))
    expect(t, "fc.weight", "matrix", "hidden", "dense", 24, 24, [0, 1])
    expect(t, "pool.weight", "matrix", "hidden", "dense", 24, 24, [0, 1])


class VAE(nn.Module):
    """Returns its latent's mean and log-variance (size z), which the decoder also reads."""

    def __init__(self, d, z=6):
        super().__init__()
        self.enc, self.mu, self.logvar = nn.Linear(30, d), nn.Linear(d, z), nn.Linear(d, z)
        self.dec1, self.dec2 = nn.Linear(z, d), nn.Linear(d, 30)

    def forward(self, x):
        h = torch.relu(self.enc(x))
        mu, logvar = self.mu(h), self.logvar(h)
        sample = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.dec2(torch.relu(self.dec1(sample))), mu, logvar


def test_a_latent_the_outputs_expose_needs_base_to_be_fixed():
    """The latent is read by the decoder as dense features, as a headless encoder's hidden state is by
    its next layer, so automatic mode takes it as width (a latent of fixed size 6 and the last stage of
    a headless CNN, below, have the same graph properties); ``base=`` decides it from the sizes."""
    x = torch.randn(2, 30)
    expect(sptrace.trace(VAE(24), x), "dec1.weight", "matrix", "hidden", "dense", 6, 24, [0, 1])
    t = sptrace.trace(VAE(48), x, base=VAE(24))
    expect(t, "mu.weight", "vector", "readout", "dense", 48, 6, [1])
    expect(t, "logvar.weight", "vector", "readout", "dense", 48, 6, [1])
    expect(t, "dec1.weight", "vector", "input", "dense", 6, 48, [0])


class HeadlessStages(nn.Module):
    """A headless two-stage CNN: the second stage is twice as wide, its bottleneck block half as wide,
    and the pooled second-stage features are the output."""

    def __init__(self, d):
        super().__init__()
        self.stem, self.mix = nn.Conv2d(3, d, 3), nn.Conv2d(d, d, 1)
        self.down, self.squeeze, self.expand = nn.Conv2d(d, 2 * d, 1), nn.Conv2d(2 * d, d // 2, 1), nn.Conv2d(d // 2, 2 * d, 1)

    def forward(self, x):
        h = torch.relu(self.stem(x))
        h = self.down(h + self.mix(h))
        return (h + self.expand(torch.relu(self.squeeze(h)))).mean((2, 3))


def test_a_headless_last_stage_of_its_own_size_stays_width():
    """The output's channels (2d) are of no other stage's size, yet width: why a size test cannot tell
    a VAE's latent from them."""
    t = sptrace.trace(HeadlessStages(32), torch.randn(2, 3, 8, 8))
    for name in ("down.weight", "squeeze.weight", "expand.weight"):
        assert t[name].kind.value == "matrix" and t[name].width_dims[:2] == (0, 1), name


class AutoEncoder(nn.Module):
    """One hidden layer whose code the model returns: the only hidden axis there is, so width."""

    def __init__(self, d):
        super().__init__()
        self.enc, self.dec = nn.Linear(30, d), nn.Linear(d, 30)

    def forward(self, x):
        code = torch.relu(self.enc(x))
        return self.dec(code), code


def test_a_code_that_is_the_only_hidden_axis_stays_width():
    t = sptrace.trace(AutoEncoder(24), torch.randn(2, 30))
    expect(t, "enc.weight", "vector", "input", "dense", 30, 24, [0])
    expect(t, "dec.weight", "vector", "readout", "dense", 24, 30, [1])


class SqueezeExcitationClassifier(nn.Module):
    """An EfficientNet-style block: a squeeze-excitation whose squeeze has ``n // 4`` channels, and a
    classifier over ``classes``. At n = 40 the squeeze has 10 channels, as many as the classes."""

    def __init__(self, n, classes=10):
        super().__init__()
        self.stem = nn.Conv2d(3, n, 3, padding=1)
        self.se1, self.se2 = nn.Conv2d(n, n // 4, 1), nn.Conv2d(n // 4, n, 1)
        self.head = nn.Linear(n, classes)

    def forward(self, x):
        h = F.silu(self.stem(x))
        h = h * torch.sigmoid(self.se2(F.silu(self.se1(h.mean((2, 3), keepdim=True)))))
        return self.head(h.mean((2, 3)))


@pytest.mark.parametrize("routes", ROUTES)
@pytest.mark.parametrize("n", [48, 40])  # at 40 the squeeze's 10 channels are the class count's size
def test_class_count_of_a_hidden_size_is_still_a_count(routes, n):
    # the output axis is a seed unless a parameter reads it or a weight reading a hidden axis makes it
    # at that axis's own size (graph/axes.py): a size shared with some other hidden axis is no reason
    t = sptrace.trace(SqueezeExcitationClassifier(n), torch.randn(2, 3, 8, 8), routes=routes)
    expect(t, "head.weight", "vector", "readout", "dense", n, 10, [1])
    expect(t, "se1.weight", "matrix", "hidden", "dense", n, n // 4, [0, 1])


class StackedFeatures(nn.Module):
    """Statistics of a hidden layer stacked along a new axis (``stack(dim=-1)``, as lags are in a time
    series transformer) and read by a linear: the stack's axis counts the statistics, not width."""

    def __init__(self, n, dim=-1):
        super().__init__()
        self.inp, self.mix, self.out, self.dim = nn.Linear(4, n), nn.Linear(3, n), nn.Linear(n, 5), dim

    def forward(self, x):
        h = torch.relu(self.inp(x))  # (B, T, n)
        stats = torch.stack([h.mean(-1), h.amax(-1), h.amin(-1)], dim=self.dim)  # (B, T, 3) or (B, 3, T)
        if self.dim != -1:
            stats = stats.transpose(1, 2)
        return self.out(h + self.mix(stats))


@pytest.mark.parametrize("routes", ROUTES)
@pytest.mark.parametrize("dim", [-1, 1, -2])
def test_a_stack_axis_is_a_count(routes, dim):
    t = sptrace.trace(StackedFeatures(32, dim), torch.randn(2, 6, 4), routes=routes)
    expect(t, "mix.weight", "vector", "input", "dense", 3, 32, [0])
    expect(t, "inp.weight", "vector", "input", "dense", 4, 32, [0])


class RawParams(nn.Module):
    def __init__(self, d, heads=4):
        super().__init__()
        self.w_in = nn.Parameter(torch.randn(8, d))  # x @ w_in
        self.w_heads = nn.Parameter(torch.randn(heads, d // heads, d // heads))  # per-head weights
        self.w_out = nn.Parameter(torch.randn(d, 5))
        self.heads = heads

    def forward(self, x):
        h = x @ self.w_in
        h = torch.einsum("bhd,hde->bhe", h.view(x.shape[0], self.heads, -1), self.w_heads).flatten(1)
        return F.linear(h, self.w_out.t())


@pytest.mark.parametrize("routes", ROUTES)
def test_raw_parameters_matmul_einsum(routes):
    d = 16
    t = sptrace.trace(RawParams(d), torch.randn(3, 8), routes=routes)
    expect(t, "w_in", "vector", "input", "dense", 8, d, [1])
    assert t["w_in"].fan_in_axes == (0,) and t["w_in"].fan_out_axes == (1,)
    r = t["w_heads"]
    assert (r.fan_in_axes, r.fan_out_axes, r.uses[0].group_axes) == ((1,), (2,), (0,))
    # applied per head: the block is taken as fixed, the heads as growing (graph/attention.py)
    assert r.width_dims == (0,) and r.role.value == "fixed"
    expect(t, "w_out", "vector", "readout", "dense", d, 5, [0])


def test_reshape_groups():
    assert _reshape_groups((2, 3, 4), (6, 4)) == [((0, 1), (0,)), ((2,), (1,))]
    assert _reshape_groups((2, 12), (2, 3, 4)) == [((0,), (0,)), ((1,), (1, 2))]
    assert _reshape_groups((1, 5, 1), (5,)) == [((1,), (0,))]


def test_report_formats_and_lookup():
    t = sptrace.trace(PaperMLP(32), torch.randn(2, 3072))
    text = t.report()
    assert "fc2.weight" in text and "hidden" in text
    assert t.report("markdown").startswith("# sptrace")
    assert t.to_dict()["parameters"][0]["name"] == "fc1.weight"
    with pytest.raises(ValueError, match="unknown report format"):
        t.report("html")
    with pytest.raises(KeyError, match="no parameter named"):
        t["fc9.weight"]
    assert len(t) == 3 and [r.name for r in t] == ["fc1.weight", "fc2.weight", "fc3.weight"]


def test_width_overrides():
    t = sptrace.trace(PaperMLP(32), torch.randn(2, 3072), width_overrides={"fc1.weight": (0, 1)})
    assert t["fc1.weight"].width_dims == (0, 1) and t["fc1.weight"].dims[1].reason == "user override"
    with pytest.raises(sptrace.SptraceError, match="unknown parameters"):
        sptrace.trace(PaperMLP(32), torch.randn(2, 3072), width_overrides={"nope": (0,)})


class FourierLayer(nn.Module):
    """A Fourier neural operator's layer: rfft over the grid, the lowest ``modes`` frequencies mixed
    channel to channel by one complex (in, out) matrix per mode (``einsum("bix,iox->box")``), irfft."""

    def __init__(self, n, modes=5):
        super().__init__()
        self.lift, self.proj, self.modes = nn.Linear(2, n), nn.Linear(n, 1), modes
        self.w = nn.Parameter(torch.randn(n, n, modes, dtype=torch.cfloat) / n)

    def forward(self, x):  # (B, grid, 2)
        h = self.lift(x).transpose(1, 2)
        xf = torch.fft.rfft(h)
        out = torch.zeros(h.shape[0], self.w.shape[1], xf.shape[-1], dtype=torch.cfloat)
        out[:, :, :self.modes] = torch.einsum("bix,iox->box", xf[:, :, :self.modes], self.w)
        return self.proj(F.gelu(torch.fft.irfft(out, n=h.shape[-1]) + h).transpose(1, 2))


@pytest.mark.parametrize("routes", ROUTES)
def test_fourier_modes_are_frequencies_of_the_grid(routes):
    # the modes are cut from the rfft of the fixed grid axis: fixed, one (in, out) block per mode
    # (graph/ops.py FOURIER); without the transforms in the op table they were a dim of their own, width
    t = sptrace.trace(FourierLayer(24), torch.randn(2, 16, 2), routes=routes)
    r = t["w"]
    assert (r.kind.value, r.role.value, r.fan_in_axes, r.fan_out_axes, r.width_dims) == ("matrix", "hidden", (0,), (1,), (0, 1))


class BiasTableByOffsets(nn.Module):
    """LeViT's attention biases: a (heads, offsets) table read as ``table[:, idx]`` with a constant
    (T, T) buffer of offset ids, added to the logits. The offsets are looked up: fixed, as in
    ``table[idx]``; before, an index after a full slice tied nothing and both axes were width."""

    def __init__(self, n, leading):
        super().__init__()
        self.heads, self.leading = n // 16, leading
        self.q, self.k, self.o = nn.Linear(8, n), nn.Linear(8, n), nn.Linear(n, 3)
        self.bias = nn.Parameter(torch.zeros(7, self.heads) if leading else torch.zeros(self.heads, 7))
        self.register_buffer("idx", torch.arange(4)[:, None] - torch.arange(4)[None] + 3)

    def forward(self, x):  # (B, 4, 8)
        B, T, _ = x.shape
        q = self.q(x).view(B, T, self.heads, 16).transpose(1, 2)
        k = self.k(x).view(B, T, self.heads, 16).transpose(1, 2)
        b = self.bias[self.idx].permute(2, 0, 1) if self.leading else self.bias[:, self.idx]
        a = (q @ k.transpose(-1, -2) / 4 + b).softmax(-1)
        return self.o((a @ k).transpose(1, 2).reshape(B, T, -1))


@pytest.mark.parametrize("routes", ROUTES)
@pytest.mark.parametrize("leading", [True, False])
def test_a_table_indexed_after_a_full_slice_is_looked_up(routes, leading):
    t = sptrace.trace(BiasTableByOffsets(64, leading), torch.randn(2, 4, 8), routes=routes)
    heads = 1 if leading else 0
    assert t["bias"].role.value == "embedding" and t["bias"].width_dims == (heads,)


class BilinearJoin(nn.Module):
    """Two branches joined by nn.Bilinear(n, m, n): y_k = x1_i W_kij x2_j + b_k."""

    def __init__(self, n, m=12):
        super().__init__()
        self.a, self.b = nn.Linear(8, n), nn.Linear(8, m)
        self.join = nn.Bilinear(n, m, n)
        self.head = nn.Linear(n, 3)

    def forward(self, x):
        return self.head(F.relu(self.join(F.relu(self.a(x)), F.relu(self.b(x)))))


@pytest.mark.parametrize("routes", ROUTES)
def test_bilinear_weight_is_a_matrix_whose_fan_in_is_both_inputs(routes):
    """nn.Bilinear's (out, in1, in2) weight contracts both inputs' last axes (the einsum
    '...i,kij,...j->...k'; aten.bilinear on export, aten._trilinear on the eager route): fan-in
    in1 x in2; with a base, only the input that grows is a width dim. Its bias is a bias."""
    t = sptrace.trace(BilinearJoin(64), torch.randn(5, 8), routes=routes, base=BilinearJoin(32))
    assert (t["join.weight"].fan_in_axes, t["join.weight"].fan_out_axes) == ((1, 2), (0,))
    expect(t, "join.weight", "matrix", "hidden", "dense", 64 * 12, 64, [0, 1])
    expect(t, "join.bias", "vector", "bias", "sparse", 1, 64, [0])
    expect(t, "b.weight", "scalar", "fixed", "dense", 8, 12, [])  # no dim grows
