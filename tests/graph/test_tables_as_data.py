"""A learned table a layer reads as its data (docs/classification.md, "Tables read as data"):
Perceiver's latents and DETR's object queries fed to the attention's query projection, DeBERTa's
relative-position embeddings normalised by a LayerNorm and projected by the attention's own
``query_proj`` / ``key_proj``, StyleGAN's constant input read by a conv. The table's rows are inputs
of the network, as an embedding's looked-up rows are: it is an embedding (rows a fixed count,
features width), a norm on the way gives a gain and a bias, and the layer's weight is classified as
on any input (hidden, one record with its use on the hidden states).

Before, the layer's weight and the table met "before any activation" and every parameter involved
was unclassified (left at the library's init and the plain lr): in HF DeBERTa-v2 11 of 44
parameters at width 64 (each layer's ``query_proj`` / ``key_proj`` weight and bias,
``rel_embeddings``, ``encoder.LayerNorm``).
"""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import sptrace


def _row(record):
    return (record.kind.value, record.role.value, record.fan_in_axes, record.fan_out_axes, record.width_dims)


class Latents(nn.Module):
    """Learned queries (Perceiver's latents, DETR's object queries) attend to the data."""

    def __init__(self, n, norm=False, latents=6):
        super().__init__()
        self.inp, self.head = nn.Linear(10, n), nn.Linear(n, 3)
        self.lat = nn.Parameter(torch.randn(latents, n))
        self.ln = nn.LayerNorm(n) if norm else nn.Identity()
        self.q, self.k, self.v = nn.Linear(n, n), nn.Linear(n, n), nn.Linear(n, n)

    def forward(self, x):
        h = self.inp(x)
        lat = self.ln(self.lat).unsqueeze(0).expand(x.shape[0], -1, -1)
        a = torch.softmax(self.q(lat) @ self.k(h).transpose(1, 2) / 4, -1) @ self.v(h)
        return self.head(a + lat)


class RelativeTable(nn.Module):
    """DeBERTa's disentangled attention in miniature: a table of 2k - 1 relative positions,
    LayerNorm'd, projected by the same key projection as the tokens, its scores against the queries
    gathered at each pair's relative position."""

    def __init__(self, n, k=5):
        super().__init__()
        self.k_span = k
        self.inp, self.head = nn.Linear(10, n), nn.Linear(n, 3)
        self.rel = nn.Parameter(torch.randn(2 * k - 1, n))
        self.ln = nn.LayerNorm(n)
        self.q, self.k = nn.Linear(n, n), nn.Linear(n, n)

    def forward(self, x):
        h = self.inp(x)
        T = x.shape[1]
        q, k, r = self.q(h), self.k(h), self.k(self.ln(self.rel))
        pos = (torch.arange(T)[:, None] - torch.arange(T)[None, :]).clamp(1 - self.k_span, self.k_span - 1) + self.k_span - 1
        c2p = torch.gather(q @ r.T, -1, pos.expand(x.shape[0], T, T))
        return self.head(torch.softmax(q @ k.transpose(1, 2) + c2p, -1) @ h)


class ConstantInput(nn.Module):
    """StyleGAN's synthesis network starts from a learned (1, C, 4, 4) map, read by a conv."""

    def __init__(self, n):
        super().__init__()
        self.const = nn.Parameter(torch.randn(1, n, 4, 4))
        self.style = nn.Linear(8, n)
        self.conv = nn.Conv2d(n, n, 3, padding=1)
        self.rgb = nn.Conv2d(n, 3, 1)

    def forward(self, z):
        h = self.conv(self.const.expand(z.shape[0], -1, -1, -1))
        return self.rgb(h * self.style(z)[:, :, None, None])


@pytest.mark.parametrize("norm", [False, True])
def test_learned_queries_are_an_embedding_read_by_a_hidden_layer(norm):
    traced = sptrace.trace(Latents(64, norm), torch.randn(2, 5, 10))
    assert not traced.unclassified, [(r.name, r.problem) for r in traced.unclassified]
    assert _row(traced["lat"]) == ("vector", "embedding", (0,), (1,), (1,))
    assert _row(traced["q.weight"]) == ("matrix", "hidden", (1,), (0,), (0, 1))
    assert _row(traced["q.bias"]) == ("vector", "bias", (), (0,), (0,))
    if norm:
        assert _row(traced["ln.weight"]) == ("vector", "gain", (), (0,), (0,))
        assert _row(traced["ln.bias"]) == ("vector", "bias", (), (0,), (0,))


def test_the_latent_count_is_fixed_where_nothing_else_says_so():
    """The rows are a count (as a vocabulary), even at a count equal to the width and where no
    output axis carries them: here they are averaged away before the head."""

    class Pooled(Latents):
        def forward(self, x):
            h = self.inp(x)
            lat = self.lat.unsqueeze(0).expand(x.shape[0], -1, -1)
            a = torch.softmax(self.q(lat) @ self.k(h).transpose(1, 2) / 4, -1) @ self.v(h)
            return self.head(a.mean(1))

    traced = sptrace.trace(Pooled(64, latents=64), torch.randn(2, 5, 10))
    assert _row(traced["lat"]) == ("vector", "embedding", (0,), (1,), (1,))
    assert "table" in traced["lat"].dims[0].reason


@pytest.mark.parametrize("route", ["export", "eager"])
def test_a_normalised_relative_table_projected_by_the_attention_s_own_key(route):
    traced = sptrace.trace(RelativeTable(64), torch.randn(2, 6, 10), routes=(route,))
    assert not traced.unclassified, [(r.name, r.problem) for r in traced.unclassified]
    assert _row(traced["rel"]) == ("vector", "embedding", (0,), (1,), (1,))
    assert _row(traced["k.weight"]) == ("matrix", "hidden", (1,), (0,), (0, 1))
    assert not traced["k.weight"].secondary_uses  # its use on the table reads width features too
    assert _row(traced["ln.weight"]) == ("vector", "gain", (), (0,), (0,))
    assert _row(traced["ln.bias"]) == ("vector", "bias", (), (0,), (0,))


def test_base_mode_agrees_with_the_shapes():
    with torch.device("meta"):
        base = RelativeTable(32)
    traced = sptrace.trace(RelativeTable(64), torch.randn(2, 6, 10), base=base)
    for record in traced:
        differ = tuple(a for a, (n, b) in enumerate(zip(record.shape, record.base_shape)) if n != b)
        assert record.width_dims == differ, record.name


def test_a_constant_input_read_by_a_conv():
    traced = sptrace.trace(ConstantInput(64), torch.randn(2, 8))
    assert not traced.unclassified, [(r.name, r.problem) for r in traced.unclassified]
    assert _row(traced["const"]) == ("vector", "embedding", (2, 3), (1,), (1,))
    assert _row(traced["conv.weight"]) == ("matrix", "hidden", (1, 2, 3), (0,), (0, 1))


class NormedWeight(nn.Module):
    """A LayerNorm with a bias applied to a weight used as a weight: the bias is added to the
    weight's entries, which no rule covers; it stays reported."""

    def __init__(self, n):
        super().__init__()
        self.inp, self.head = nn.Linear(10, n), nn.Linear(n, 3)
        self.w = nn.Parameter(torch.randn(n, n))
        self.ln = nn.LayerNorm(n)

    def forward(self, x):
        return self.head(F.linear(torch.relu(self.inp(x)), self.ln(self.w)))


def test_a_norm_s_bias_on_a_weight_stays_reported():
    traced = sptrace.trace(NormedWeight(64), torch.randn(2, 10))
    assert _row(traced["w"]) == ("matrix", "hidden", (1,), (0,), (0, 1))
    assert traced["ln.bias"].kind.value == "unclassified"
    assert "bias added to a weight's entries" in traced["ln.bias"].problem


def test_a_product_of_two_factors_used_as_a_weight_stays_reported():
    """``A @ B`` has no data operand: it is a weight computed from two parameters, not a table."""

    class Factored(nn.Module):
        def __init__(self, n):
            super().__init__()
            self.inp, self.head = nn.Linear(10, n), nn.Linear(n, 3)
            self.a, self.b = nn.Parameter(torch.randn(n, 8)), nn.Parameter(torch.randn(8, n))

        def forward(self, x):
            return self.head(F.linear(torch.relu(self.inp(x)), self.a @ self.b))

    traced = sptrace.trace(Factored(64), torch.randn(2, 10))
    assert {r.name for r in traced.unclassified} == {"a", "b"}


def test_hugging_face_deberta_v2_is_fully_classified():
    transformers = pytest.importorskip("transformers")

    def build(n):
        config = transformers.DebertaV2Config(
            vocab_size=100, hidden_size=n, num_hidden_layers=2, num_attention_heads=n // 16, intermediate_size=2 * n,
            max_position_embeddings=40, relative_attention=True, position_buckets=8, pos_att_type=["p2c", "c2p"],
            max_relative_positions=16, norm_rel_ebd="layer_norm", share_att_key=True)
        return transformers.DebertaV2ForMaskedLM(config)

    torch.manual_seed(0)
    ids = torch.randint(3, 100, (2, 8))
    traced = sptrace.trace(build(64), input_ids=ids)
    assert not traced.unclassified, [(r.name, r.problem) for r in traced.unclassified]
    layer = "deberta.encoder.layer.0.attention.self."
    assert _row(traced[layer + "query_proj.weight"]) == ("matrix", "hidden", (1,), (0,), (0, 1))
    assert _row(traced[layer + "key_proj.bias"]) == ("vector", "bias", (), (0,), (0,))
    assert _row(traced["deberta.encoder.rel_embeddings.weight"]) == ("vector", "embedding", (0,), (1,), (1,))
    assert _row(traced["deberta.encoder.LayerNorm.bias"]) == ("vector", "bias", (), (0,), (0,))
    with torch.device("meta"):
        base = build(32)
    based = sptrace.trace(build(64), input_ids=ids, base=base)
    for record in based:
        differ = tuple(a for a, (n, b) in enumerate(zip(record.shape, record.base_shape)) if n != b)
        assert record.width_dims == differ, record.name
