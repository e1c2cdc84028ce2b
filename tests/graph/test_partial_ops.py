"""Ops that touch only some of a parameter's axes, and parameters that meet constants: each rule
is a graph property (docs/classification.md), checked on a hand-written module that has it, on both
capture routes, against the classification derived by hand.

* ``expand_as`` / ``view_as`` / ``type_as``: the second tensor only lends its shape or dtype (none of
  its axes is tied to the output's).
* resampling (bicubic / bilinear interpolation) of a position table over its spatial axes: the
  channel (width) axis passes through.
* softmax over one axis of a parameter: the other axes pass through; the softmax axis must be a
  fixed count (over a width axis the values' scale depends on width: reported).
* a constant buffer contracted with parameters (an MLP on a coordinate table): the buffer is data,
  its contracted axis a data axis, the weights ordinary layers reading it. A buffer multiplied into
  a weight (a mask) is not data: the weight keeps its layer's classification.
"""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import sptrace
from tests.external_models import catalog_trace

ROUTES = ("export", "eager")


def _row(record):
    return (record.kind.value, record.role.value, record.fan_in_axes, record.fan_out_axes, record.width_dims)


class ExpandedBias(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.inp, self.head = nn.Linear(16, n), nn.Linear(n, 10)
        self.shift = nn.Parameter(torch.zeros(n))

    def forward(self, x):
        h = self.inp(x)
        return self.head(torch.relu(h + self.shift.expand_as(h).type_as(h)))


@pytest.mark.parametrize("route", ROUTES)
def test_expand_as_bias_is_a_bias(route):
    traced = sptrace.trace(ExpandedBias(64), torch.randn(3, 5, 16), routes=(route,))
    assert _row(traced["shift"]) == ("vector", "bias", (), (0,), (0,))


class KeyBiasZeroed(nn.Module):
    """torchvision's Swin V2 attention: the packed qkv bias cloned, its key third zeroed in place
    (``b[n:2n].zero_()``), then used by the projection. Before, ``zero`` was an unknown op, the bias
    was reported as mixed by it, and left unclassified (swin_v2_t: 12 biases)."""

    def __init__(self, n):
        super().__init__()
        self.inp, self.qkv, self.head = nn.Linear(16, n), nn.Linear(n, 3 * n), nn.Linear(3 * n, 10)

    def forward(self, x):
        bias = self.qkv.bias.clone()
        bias[bias.numel() // 3: 2 * bias.numel() // 3].zero_()
        return self.head(torch.relu(F.linear(self.inp(x), self.qkv.weight, bias)))


@pytest.mark.parametrize("route", ROUTES)
def test_a_bias_with_a_slice_zeroed_in_place_is_a_bias(route):
    traced = sptrace.trace(KeyBiasZeroed(64), torch.randn(3, 16), routes=(route,))
    assert not traced.unclassified
    assert _row(traced["qkv.bias"]) == ("vector", "bias", (), (0,), (0,))


class MaskCastLikeHidden(nn.Module):
    """A padding mask cast to the hidden states' dtype (``mask.type_as(h)``, Funnel Transformer's
    encoder) and applied to them. ``type_as`` reads only ``h``'s dtype, so none of ``h``'s axes is
    the mask's. Before, its second tensor was broadcast against the output like an operand: with as
    many tokens as hidden units the mask's token axis was tied to the hidden axis, a data axis, and
    every width axis of the model was fixed (HF Funnel at width 64 on 64 tokens: every matrix an
    input or readout layer, every gain a scalar)."""

    def __init__(self, n):
        super().__init__()
        self.emb, self.lin, self.head = nn.Embedding(50, n), nn.Linear(n, n), nn.Linear(n, 3)

    def forward(self, ids, mask):
        h = self.emb(ids)
        return self.head(self.lin(h) * mask.type_as(h)[..., None])


@pytest.mark.parametrize("route", ROUTES)
def test_type_as_lends_only_its_dtype(route):
    traced = sptrace.trace(MaskCastLikeHidden(16), torch.randint(0, 50, (2, 16)), torch.ones(2, 16, dtype=torch.long),
                           routes=(route,))
    assert _row(traced["lin.weight"]) == ("matrix", "hidden", (1,), (0,), (0, 1))
    assert traced["emb.weight"].width_dims == (1,)


class ResampledPositions(nn.Module):
    """A (1, n, 4, 4) position table resized to the feature map's grid, as SAM's ViT does."""

    def __init__(self, n, mode):
        super().__init__()
        self.mode = mode
        self.patch = nn.Conv2d(3, n, 4, 4)
        self.pos = nn.Parameter(torch.randn(1, n, 4, 4))
        self.head = nn.Linear(n, 10)

    def forward(self, x):
        h = self.patch(x)
        pos = F.interpolate(self.pos, size=h.shape[-2:], mode=self.mode, align_corners=False)
        return self.head((h + pos).flatten(2).mean(-1))


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("mode", ["bicubic", "bilinear"])
def test_a_resampled_position_table_is_an_embedding_over_its_positions(mode, route):
    traced = sptrace.trace(ResampledPositions(64, mode), torch.randn(2, 3, 24, 24), routes=(route,))
    assert _row(traced["pos"]) == ("vector", "embedding", (2, 3), (1,), (1,))


class SoftmaxMix(nn.Module):
    """Every feature a convex combination of the k inputs: softmax(P) over P's input axis (fixed);
    ``dim=1`` normalises over the width axis instead."""

    def __init__(self, n, dim=0, k=5):
        super().__init__()
        self.dim = dim
        self.mix = nn.Parameter(torch.randn(k, n))
        self.hidden, self.head = nn.Linear(n, n), nn.Linear(n, 10)

    def forward(self, x):
        return self.head(torch.relu(self.hidden(x @ self.mix.softmax(self.dim))))


@pytest.mark.parametrize("route", ROUTES)
def test_softmax_over_a_fixed_axis_keeps_the_width_axis(route):
    traced = sptrace.trace(SoftmaxMix(64), torch.randn(2, 5), routes=(route,))
    assert _row(traced["mix"]) == ("vector", "input", (0,), (1,), (1,))


@pytest.mark.parametrize("route", ROUTES)
def test_softmax_over_a_width_axis_is_reported(route):
    traced = sptrace.trace(SoftmaxMix(64, dim=1), torch.randn(2, 5), routes=(route,))
    record = traced["mix"]
    assert not record.classified
    assert "softmax" in record.problem and "axis 1" in record.problem and "grows with width" in record.problem
    assert all(r.classified for r in traced if r.name != "mix")


class CoordinateMLP(nn.Module):
    """Swin V2's continuous position bias: a small MLP on a constant (2T-1, 2) coordinate buffer,
    gathered by a relative-position index buffer into per-head attention biases."""

    def __init__(self, n, heads=4, tokens=7, hidden=32):
        super().__init__()
        self.heads = heads
        self.inp, self.qk, self.head = nn.Linear(16, n), nn.Linear(n, n), nn.Linear(n, 10)
        self.register_buffer("coords", torch.randn(2 * tokens - 1, 2))
        self.register_buffer("index", torch.randint(0, 2 * tokens - 1, (tokens, tokens)))
        self.mlp = nn.Sequential(nn.Linear(2, hidden), nn.ReLU(), nn.Linear(hidden, heads, bias=False))

    def forward(self, x):
        h = self.inp(x)
        batch, tokens, n = h.shape
        q = self.qk(h).view(batch, tokens, self.heads, n // self.heads).transpose(1, 2)
        bias = self.mlp(self.coords)[self.index].permute(2, 0, 1)
        scores = q @ q.transpose(-1, -2) / (n // self.heads) + 16 * torch.sigmoid(bias)
        return self.head((scores.softmax(-1) @ q).transpose(1, 2).reshape(batch, tokens, n).mean(1))


@pytest.mark.parametrize("route", ROUTES)
def test_an_mlp_on_a_constant_buffer_reads_it_as_data(route):
    traced = sptrace.trace(CoordinateMLP(64), torch.randn(2, 7, 16), routes=(route,))
    assert not traced.unclassified, [(r.name, r.problem) for r in traced.unclassified]
    first = traced["mlp.0.weight"]
    assert (first.fan_in_axes, first.fan_out_axes, first.input_space.value) == ((1,), (0,), "dense")
    assert not first.dims[1].width and "buffer" in first.dims[1].reason  # the coordinate axis is data
    assert traced["mlp.0.bias"].role.value == "bias"
    assert (traced["mlp.2.weight"].fan_in_axes, traced["mlp.2.weight"].fan_out_axes) == ((1,), (0,))


@pytest.mark.parametrize("route", ROUTES)
def test_the_inner_size_of_an_mlp_on_a_constant_buffer_is_fixed(route):
    """No value computed from the inputs carries the MLP's hidden axis (32): it is the size of a
    small network on constants, taken as fixed in automatic mode, so the first layer is a fixed
    matrix and the second an input layer whose fan-out is the heads (which grow with width: head
    size fixed). Without it the hidden axis was width, the second layer a hidden matrix whose lr
    and init shrank with the model's width although its fan-in stays 32 (Swin V2's cpb_mlp.2:
    update slope -1.5 in the coord check, docs/coverage.md)."""
    traced = sptrace.trace(CoordinateMLP(64), torch.randn(2, 7, 16), routes=(route,))
    first, bias, second = traced["mlp.0.weight"], traced["mlp.0.bias"], traced["mlp.2.weight"]
    assert _row(first) == ("scalar", "fixed", (1,), (0,), ())
    assert "constant buffer no input reaches" in first.dims[0].reason
    assert _row(bias) == ("scalar", "bias", (), (0,), ())
    assert _row(second) == ("vector", "input", (1,), (0,), (0,))
    # the plan follows: the input layer's Adam lr does not shrink with width, the fixed layer's neither
    plan = sptrace.plan(CoordinateMLP(256), "adam", example_inputs=(torch.randn(2, 7, 16),), reference_width=64)
    assert plan["mlp.2.weight"].lr_multiplier == pytest.approx(1.0)
    assert plan["mlp.0.weight"].lr_multiplier == pytest.approx(1.0)
    assert plan["qk.weight"].lr_multiplier == pytest.approx(0.25)
    # base= still decides: an inner size that grows with the model is width there
    wide = sptrace.trace(CoordinateMLP(128, heads=8, hidden=64), torch.randn(2, 7, 16),
                         base=CoordinateMLP(64, heads=4, hidden=32))
    assert wide["mlp.2.weight"].role.value == "hidden" and wide["mlp.2.weight"].width_dims == (0, 1)


class CoordinateFeatures(nn.Module):
    """Features of a constant coordinate table added to the activations (a learned position
    encoding from coordinates): the layer's fan-out meets the data, so it stays width."""

    def __init__(self, n, tokens=7):
        super().__init__()
        self.inp, self.pos, self.head = nn.Linear(16, n), nn.Linear(2, n), nn.Linear(n, 10)
        self.register_buffer("coords", torch.randn(tokens, 2))

    def forward(self, x):
        return self.head(torch.relu(self.inp(x) + self.pos(self.coords)).mean(1))


@pytest.mark.parametrize("route", ROUTES)
def test_a_constant_buffers_features_added_to_the_data_stay_width(route):
    traced = sptrace.trace(CoordinateFeatures(64), torch.randn(2, 7, 16), routes=(route,))
    assert _row(traced["pos.weight"]) == ("vector", "input", (1,), (0,), (0,))
    assert _row(traced["pos.bias"]) == ("vector", "bias", (), (0,), (0,))


class MaskedLinear(nn.Module):
    """A weight multiplied by a constant mask buffer before the layer uses it (MADE)."""

    def __init__(self, n):
        super().__init__()
        self.inp, self.head = nn.Linear(16, n), nn.Linear(n, 10)
        self.weight = nn.Parameter(torch.randn(n, n) / n ** 0.5)
        self.register_buffer("mask", torch.tril(torch.ones(n, n)))

    def forward(self, x):
        return self.head(torch.relu(F.linear(torch.relu(self.inp(x)), self.weight * self.mask)))


@pytest.mark.parametrize("route", ROUTES)
def test_a_masked_weight_is_still_its_layers_matrix(route):
    traced = sptrace.trace(MaskedLinear(64), torch.randn(3, 16), routes=(route,))
    assert _row(traced["weight"]) == ("matrix", "hidden", (1,), (0,), (0, 1))


def test_gpt_neox_japanese_expanded_attention_bias():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPTNeoXJapaneseConfig(hidden_size=64, num_attention_heads=4, intermediate_multiple_size=2,
                                             num_hidden_layers=1, vocab_size=77, max_position_embeddings=64,
                                             hidden_dropout=0.0, attention_dropout=0.0, bos_token_id=0, eos_token_id=0)
    traced = sptrace.trace(transformers.GPTNeoXJapaneseForCausalLM(cfg), torch.randint(0, 77, (2, 8)))
    assert not traced.unclassified, [(r.name, r.problem) for r in traced.unclassified]
    assert _row(traced["gpt_neox_japanese.layers.0.attention.dense_bias"]) == ("vector", "bias", (), (0,), (0,))


class LatentAndRotary(nn.Module):
    """DeepSeek's multi-head latent attention in miniature: a projection's output is split into a
    latent of rank ``r`` (read by the next layer) and a fixed-size rotary part (combined with a
    position input of 16 features)."""

    def __init__(self, n, r):
        super().__init__()
        self.r = r
        self.inp, self.down, self.up, self.head = nn.Linear(8, n), nn.Linear(n, r + 16), nn.Linear(r, n), nn.Linear(n, 3)

    def forward(self, x, pos):
        latent, rotary = self.down(torch.relu(self.inp(x))).split([self.r, 16], dim=-1)
        return self.head(torch.relu(self.up(latent) + (rotary * pos).sum(-1, keepdim=True)))


class ConcatWithFeatures(nn.Module):
    """Hidden states concatenated with 16 input features before the next layer."""

    def __init__(self, n):
        super().__init__()
        self.inp, self.mix, self.head = nn.Linear(8, n), nn.Linear(n + 16, n), nn.Linear(n, 3)

    def forward(self, x, features):
        return self.head(torch.relu(self.mix(torch.cat([torch.relu(self.inp(x)), features], dim=-1))))


class SplitInput(nn.Module):
    """An input's 24 features split 16 + 8, each part read by its own layer."""

    def __init__(self, n):
        super().__init__()
        self.a, self.b, self.head = nn.Linear(16, n), nn.Linear(8, n), nn.Linear(n, 3)

    def forward(self, x):
        left, right = x.split([16, 8], dim=-1)
        return self.head(torch.relu(self.a(left) + self.b(right)))


@pytest.mark.parametrize("route", ROUTES)
def test_split_parts_are_dims_of_their_own(route):
    """A split's parts are separate dims, the whole their sum: the latent rank is width although the
    rotary part beside it is fixed by the data (before, all three were one dim, fixed: ``down`` a
    readout and ``up`` an input layer)."""
    traced = sptrace.trace(LatentAndRotary(64, 32), torch.randn(2, 8), torch.randn(2, 16), routes=(route,))
    assert _row(traced["down.weight"]) == ("matrix", "hidden", (1,), (0,), (0, 1))  # r + 16: a part grows
    assert _row(traced["up.weight"]) == ("matrix", "hidden", (1,), (0,), (0, 1))


@pytest.mark.parametrize("route", ROUTES)
def test_concatenated_features_leave_the_width_alone(route):
    """Hidden states concatenated with data features: the hidden part stays width (before, the
    concatenation tied it to the feature axis and every layer's width axis became fixed)."""
    traced = sptrace.trace(ConcatWithFeatures(64), torch.randn(2, 8), torch.randn(2, 16), routes=(route,))
    assert _row(traced["inp.weight"]) == ("vector", "input", (1,), (0,), (0,))
    assert _row(traced["mix.weight"]) == ("matrix", "hidden", (1,), (0,), (0, 1))
    assert _row(traced["head.weight"]) == ("vector", "readout", (1,), (0,), (1,))


@pytest.mark.parametrize("route", ROUTES)
def test_parts_of_a_fixed_whole_are_fixed(route):
    """The other direction of the sum: a whole the data fixes (an input's features) fixes its parts."""
    traced = sptrace.trace(SplitInput(64), torch.randn(2, 24), routes=(route,))
    assert _row(traced["a.weight"]) == ("vector", "input", (1,), (0,), (0,))
    assert _row(traced["b.weight"]) == ("vector", "input", (1,), (0,), (0,))


@pytest.mark.slow  # 5-15 s: the catalog build and export
def test_deepseek_latent_rank_is_width_in_the_catalog_model():
    """The catalog model that showed it (hf:axk2, DeepSeek-style attention): ``kv_b_proj`` reads the
    latent rank, which the catalog build scales with width; it was an input layer (fan-in fixed),
    whose updates grew +1.05 in validate."""
    record = catalog_trace("axk2")["model.layers.0.self_attn.kv_b_proj.weight"]
    assert record.role.value == "hidden" and record.width_dims == (0, 1)


class PartialRotary(nn.Module):
    """Attention with a per-head ``q_norm`` and rotary embeddings on the first 8 of each head's 16
    coordinates (``cat(rot * cos, rest)``, as GLM, Qwen3-Next and Laguna do): the rotary half is
    fixed by the ``cos`` input, the rest by nothing but the head_dim it is a part of."""

    def __init__(self, n, head_dim=16, rotary=8):
        super().__init__()
        self.head_dim, self.rotary = head_dim, rotary
        self.emb, self.head = nn.Embedding(50, n), nn.Linear(n, 50)
        self.q, self.k, self.v, self.o = (nn.Linear(n, n) for _ in range(4))
        self.q_norm = nn.Parameter(torch.ones(head_dim))

    def forward(self, ids, cos):
        x = self.emb(ids)
        b, s, n = x.shape
        heads = lambda t: t.view(b, s, n // self.head_dim, self.head_dim)  # noqa: E731

        def rope(t):
            rot, rest = t.split([self.rotary, self.head_dim - self.rotary], dim=-1)
            return torch.cat([rot * cos[:, None, :], rest], dim=-1).transpose(1, 2)

        q, k = rope(heads(self.q(x)) * self.q_norm), rope(heads(self.k(x)))
        a = F.scaled_dot_product_attention(q, k, heads(self.v(x)).transpose(1, 2))
        return self.head(self.o(a.transpose(1, 2).reshape(b, s, n)))


@pytest.mark.parametrize("route", ROUTES)
def test_rotary_half_rejoined_is_the_head_dim(route):
    """The concatenation that puts the rotary half back together is the head_dim the split took
    apart, so automatic mode's fixed head_dim reaches ``q_norm`` (a fixed vector shared by the heads)
    and ``k``'s fan-out is heads x head_dim, which grows (before: the SDPA's head_dim was a separate
    dim, no head_dim was assumed, and ``q_norm`` became a width gain)."""
    traced = sptrace.trace(PartialRotary(64), torch.randint(0, 50, (2, 6)), torch.randn(6, 8), routes=(route,))
    assert traced["q_norm"].width_dims == ()
    assert _row(traced["k.weight"]) == ("matrix", "hidden", (1,), (0,), (0, 1))


class RegisterTokens(nn.Module):
    """A ViT's token sequence: patch embeddings of the image, then 4 learned register tokens
    concatenated along the token axis."""

    def __init__(self, n):
        super().__init__()
        self.patch, self.head = nn.Conv2d(3, n, 4, stride=4), nn.Linear(n, 10)
        self.registers = nn.Parameter(torch.zeros(1, 4, n))

    def forward(self, x):
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.registers.expand(x.shape[0], -1, -1), tokens], dim=1)
        return self.head(tokens.mean(1))


@pytest.mark.parametrize("route", ROUTES)
def test_register_tokens_are_a_count(route):
    """A parameter's own entries concatenated with the data's along its token axis are a count of
    that axis, fixed (with parts of a concatenation as a sum, the registers' 4 was undecided and
    taken for width); the channel axis stays width."""
    traced = sptrace.trace(RegisterTokens(32), torch.randn(2, 3, 16, 16), routes=(route,))
    assert traced["registers"].width_dims == (2,)


class FusedMultiQuery(nn.Module):
    """Multi-query attention whose q, k and v come from one fused projection cut by indexing, as
    Phi-3 does (``qkv[..., :n]``, ``qkv[..., n:n + hd]``, ``qkv[..., n + hd:]``): one key/value head
    of a fixed head_dim, so the k and v parts are fixed by the attention, the q part grows. A
    position table cut to the sequence length (``pos[:s]``) is added to the embeddings."""

    def __init__(self, n, head_dim=16, positions=32):
        super().__init__()
        self.hd = head_dim
        self.emb, self.head = nn.Embedding(50, n), nn.Linear(n, 50)
        self.pos = nn.Parameter(torch.zeros(positions, n))
        self.qkv_proj, self.o_proj = nn.Linear(n, n + 2 * head_dim), nn.Linear(n, n)

    def forward(self, ids):
        x = self.emb(ids)
        b, s, n = x.shape
        x = x + self.pos[:s]
        qkv = self.qkv_proj(x)
        q, k, v = qkv[..., :n], qkv[..., n:n + self.hd], qkv[..., n + self.hd:]
        q = q.view(b, s, n // self.hd, self.hd).transpose(1, 2)
        k, v = (t.view(b, s, 1, self.hd).transpose(1, 2).expand_as(q) for t in (k, v))
        a = F.scaled_dot_product_attention(q, k, v)
        return self.head(self.o_proj(a.transpose(1, 2).reshape(b, s, n)))


@pytest.mark.parametrize("route", ROUTES)
def test_slices_that_tile_an_axis_are_its_parts(route):
    """Slices of one value that cover its axis once are a split of it: the fused projection's
    output is the sum q + k + v, and grows with the q part (before, each slice was tied to the
    whole, the fixed k part fixed it, and ``qkv_proj`` was a readout, started at zero)."""
    traced = sptrace.trace(FusedMultiQuery(64), torch.randint(0, 50, (2, 6)), routes=(route,))
    assert _row(traced["qkv_proj.weight"]) == ("matrix", "hidden", (1,), (0,), (0, 1))
    assert _row(traced["o_proj.weight"]) == ("matrix", "hidden", (1,), (0,), (0, 1))


@pytest.mark.parametrize("route", ROUTES)
def test_a_lone_slice_stays_the_wholes_dim(route):
    """A slice without its complement is not a part of a sum: the position table cut to the
    sequence keeps its position axis, fixed by the input's."""
    traced = sptrace.trace(FusedMultiQuery(64), torch.randint(0, 50, (2, 6)), routes=(route,))
    assert traced["pos"].role.value == "embedding" and traced["pos"].width_dims == (1,)


def _rotate_half(t):
    half = t.shape[-1] // 2
    return torch.cat([-t[..., half:], t[..., :half]], dim=-1)


class SlicedPartialRotary(PartialRotary):
    """:class:`PartialRotary` with the rotary half cut by indexing (``t[..., :r]``, ``t[..., r:]``)
    and rotated by ``rotate_half``, as Phi and StableLM write it."""

    def forward(self, ids, cos):
        x = self.emb(ids)
        b, s, n = x.shape
        heads = lambda t: t.view(b, s, n // self.head_dim, self.head_dim)  # noqa: E731

        def rope(t):
            rot, rest = t[..., :self.rotary], t[..., self.rotary:]
            rot = rot * cos[:, None, :] + _rotate_half(rot) * cos[:, None, :]
            return torch.cat([rot, rest], dim=-1).transpose(1, 2)

        q, k = rope(heads(self.q(x)) * self.q_norm), rope(heads(self.k(x)))
        a = F.scaled_dot_product_attention(q, k, heads(self.v(x)).transpose(1, 2))
        return self.head(self.o(a.transpose(1, 2).reshape(b, s, n)))


@pytest.mark.parametrize("route", ROUTES)
def test_sliced_rotary_half_rejoined_is_the_head_dim(route):
    """Slices that tile the head_dim and are concatenated back in order give back the head_dim, as
    a split does (without it, the slices' sum would leave the SDPA's head_dim a separate dim and
    ``q_norm`` a width gain)."""
    traced = sptrace.trace(SlicedPartialRotary(64), torch.randint(0, 50, (2, 6)), torch.randn(6, 8), routes=(route,))
    assert traced["q_norm"].width_dims == ()
    assert _row(traced["k.weight"]) == ("matrix", "hidden", (1,), (0,), (0, 1))


class SegmentScores(nn.Module):
    """Funnel Transformer's segment bias in miniature: the queries scored against one learned vector
    per case ("same segment", "different segment"), the (..., 2) scores cut into their two entries
    (``split(1)`` or ``unbind``) and chosen by a mask. The 2 is a count of cases: ``seg`` is a readout
    over them. Before, a split into parts of one entry each recorded no sum (``unbind`` none either),
    so the 2 was taken for width and ``seg`` planned as a hidden matrix (HF Funnel's
    ``seg_embed`` (2, heads, head_dim): width dims (0, 1) against the base's (1,))."""

    def __init__(self, n, cut):
        super().__init__()
        self.cut = cut
        self.inp, self.q, self.head = nn.Linear(10, n), nn.Linear(n, n), nn.Linear(n, 3)
        self.seg = nn.Parameter(torch.randn(2, n))

    def forward(self, x, same):
        h = self.inp(x)
        scores = torch.einsum("bid,sd->bis", self.q(h), self.seg)
        if self.cut == "split":
            diff, eq = torch.split(scores, 1, dim=-1)
        else:
            diff, eq = (s[..., None] for s in scores.unbind(-1))
        bias = torch.where(same, eq, diff)
        return self.head(torch.softmax(h @ h.transpose(1, 2) + bias, -1) @ h)


@pytest.mark.parametrize("cut", ["split", "unbind"])
@pytest.mark.parametrize("route", ROUTES)
def test_a_whole_cut_into_single_entries_is_their_count(cut, route):
    traced = sptrace.trace(SegmentScores(64, cut), torch.randn(2, 5, 10), torch.rand(2, 5, 5) > 0.5, routes=(route,))
    assert _row(traced["seg"]) == ("vector", "readout", (1,), (0,), (1,))


class MaskToken(nn.Module):
    """A learned mask token written into the masked positions (``h[mask] = token``: wav2vec2's,
    HuBERT's and data2vec-audio's ``masked_spec_embed`` under SpecAugment), by a bool mask or by
    positions. It is placed into the data as ``where``'s operands are: an embedding of width n.
    Before, ``index_put`` was not in the op table and the token was unclassified."""

    def __init__(self, n, by):
        super().__init__()
        self.by = by
        self.inp, self.head = nn.Linear(10, n), nn.Linear(n, 3)
        self.token = nn.Parameter(torch.randn(n))

    def forward(self, x, where):
        h = self.inp(x).clone()
        if self.by == "mask":
            h[where] = self.token
        else:
            h[:, where] = self.token
        return self.head(torch.relu(h))


@pytest.mark.parametrize("by", ["mask", "positions"])
@pytest.mark.parametrize("route", ROUTES)
def test_a_mask_token_written_by_index_put_is_an_embedding(by, route):
    where = torch.rand(2, 5) > 0.5 if by == "mask" else torch.tensor([1, 3])
    traced = sptrace.trace(MaskToken(64, by), torch.randn(2, 5, 10), where, routes=(route,))
    assert _row(traced["token"]) == ("vector", "embedding", (), (0,), (0,))
    assert _row(traced["inp.weight"]) == ("vector", "input", (1,), (0,), (0,))
