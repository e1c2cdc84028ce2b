"""Constants in the forward (graph/constants.py, docs/rules.md "Constants in the forward"): a
parameter's use output multiplied by ``n ** p`` of a width dim (Gemma's ``embed * sqrt(hidden)``)
is part of the operator, so the rules apply to ``c * W``; a width-free constant changes nothing.
The coord checks are in tests/validation/test_validate_forward_constants.py."""
import math

import pytest
import torch
from torch import nn

import sptrace
from sptrace.planning.plan import plan
from sptrace.planning.rules import forward_multiplier
from tests.external_models import gemma

VOCAB = 77


class ScaledEmbedding(nn.Embedding):
    """An embedding whose forward multiplies its output by ``c`` (Gemma's ScaledWordEmbedding).
    ``how``: ``c`` as a 0-d buffer (Gemma's), a Python number, a tensor made in the forward, or a
    division by ``1/c``; ``"none"``: no constant."""

    def __init__(self, vocab, width, how, c):
        super().__init__(vocab, width)
        self.how, self.c = how, c
        self.register_buffer("scale", torch.tensor(c), persistent=False)

    def forward(self, ids):
        e = super().forward(ids)
        if self.how == "buffer":
            return e * self.scale.to(e.dtype)
        if self.how == "number":
            return e * self.c
        if self.how == "tensor":
            return e * torch.tensor(self.c, dtype=e.dtype)
        return e / (1.0 / self.c) if self.how == "divide" else e


class ScaledEmbeddingLM(nn.Module):
    """A token embedding times ``scale(width)``, an MLP, a readout (optionally tied)."""

    def __init__(self, width, how="buffer", scale=lambda w: w ** 0.5, tied=False):
        super().__init__()
        self.emb = ScaledEmbedding(VOCAB, width, how, scale(width))
        self.fc = nn.Linear(width, width)
        self.head = nn.Linear(width, VOCAB, bias=False)
        if tied:
            self.head.weight = self.emb.weight

    def forward(self, ids):
        return self.head(torch.relu(self.fc(self.emb(ids))))


def ids():
    return torch.randint(0, VOCAB, (2, 6))


@pytest.mark.parametrize("how", ["buffer", "number", "tensor", "divide"])
@pytest.mark.parametrize("route", ["export", "eager"])
def test_a_power_of_the_width_on_an_embedding_output_is_found(how, route, one_thread):
    traced = sptrace.trace(ScaledEmbeddingLM(64, how), ids(), routes=(route,))
    found = traced["emb.weight"].forward_constant
    assert found is not None and (found.power, found.axis, found.split, found.size) == (0.5, 1, 1, 64)
    assert found.value == pytest.approx(8.0)
    assert all(r.forward_constant is None for r in traced if r.name != "emb.weight")
    assert "forward constant x8 = n^1/2" in traced.report()


@pytest.mark.parametrize("power", [-1.0, -0.5, 1.0])
def test_every_power_is_read(power, one_thread):
    traced = sptrace.trace(ScaledEmbeddingLM(64, "number", scale=lambda w: w ** power), ids())
    assert traced["emb.weight"].forward_constant.power == power


class HeadScaledQuery(nn.Module):
    """q = q_proj(x) * head_dim**-0.5 before the split into heads (BART's attention): with
    head_dim 16 and 16 heads (width 256) the constant is also 1/sqrt(heads)."""

    def __init__(self, width, head_dim=16):
        super().__init__()
        self.head_dim = head_dim
        self.emb, self.q, self.k = nn.Embedding(VOCAB, width), nn.Linear(width, width), nn.Linear(width, width)
        self.head = nn.Linear(width, VOCAB)

    def forward(self, ids):
        x = self.emb(ids)
        B, T, C = x.shape
        q = (self.q(x) * self.head_dim ** -0.5).view(B, T, -1, self.head_dim).transpose(1, 2)
        k = self.k(x).view(B, T, -1, self.head_dim).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)).softmax(-1)
        return self.head(x + (att @ k).transpose(1, 2).reshape(B, T, C))


@pytest.mark.parametrize("width", [64, 256])
def test_width_free_constants_change_nothing(width, one_thread):
    """0.5 on an output, and 1/sqrt(head_dim) with head_dim fixed (at width 256 there are 16 heads
    of 16, so the constant is as much a power of the head count): no constant, the same plan."""
    plain = sptrace.trace(ScaledEmbeddingLM(width, "none"), ids())
    for model in (ScaledEmbeddingLM(width, "number", scale=lambda w: 0.5), HeadScaledQuery(width)):
        traced = sptrace.trace(model, ids())
        assert all(r.forward_constant is None for r in traced), traced.report()
    halved = sptrace.trace(ScaledEmbeddingLM(width, "number", scale=lambda w: 0.5), ids())
    for family in ("adam", "sgd", "spectral"):
        for form in ("absolute", "reference"):
            assert _numbers(plan(halved.records, family, lr=1.0, form=form)) == \
                _numbers(plan(plain.records, family, lr=1.0, form=form))


class WidthScaledQuery(nn.Module):
    """One head over the whole width, q = q_proj(x) / sqrt(width): the logits' scale, which the
    attention policy owns (docs/parametrize.md "Attention"), not part of q_proj's operator."""

    def __init__(self, width):
        super().__init__()
        self.emb, self.q, self.k = nn.Embedding(VOCAB, width), nn.Linear(width, width), nn.Linear(width, width)
        self.head = nn.Linear(width, VOCAB)

    def forward(self, ids):
        x = self.emb(ids)
        q = self.q(x) * x.shape[-1] ** -0.5
        att = (q @ self.k(x).transpose(-2, -1)).softmax(-1)
        return self.head(att @ x)


def test_a_query_scale_is_left_to_the_attention_policy(one_thread):
    traced = sptrace.trace(WidthScaledQuery(64), ids())
    assert all(r.forward_constant is None for r in traced), traced.report()


class HeadWeightedScores(nn.Module):
    """DeepSeek-V4's indexer scores: per-head scores summed over the heads with weights
    ``weights_proj(x) * heads^-1/2`` (heads = width / 16 grow); ``pool`` also returns an embedding
    times sqrt(width), masked and summed over the tokens (a fixed axis)."""

    def __init__(self, width):
        super().__init__()
        self.heads, self.width = width // 16, width
        self.emb = nn.Embedding(77, width)
        self.q, self.k = nn.Linear(width, width), nn.Linear(width, 16)
        self.weights_proj = nn.Linear(width, self.heads, bias=False)
        self.pool = nn.Embedding(77, width)
        self.out = nn.Linear(width, 77)

    def forward(self, ids):
        x = self.emb(ids)
        b, s, _ = x.shape
        scores = torch.relu(self.q(x).view(b, s, self.heads, 16) @ self.k(x).transpose(-1, -2).unsqueeze(1))
        weights = self.weights_proj(x) * self.heads ** -0.5
        mixed = (scores * weights.unsqueeze(-1)).sum(dim=2)  # (b, s, s)
        pooled = (self.pool(ids) * self.width ** 0.5 * (ids > 0).unsqueeze(-1)).sum(1, keepdim=True)
        return self.out(mixed @ x + pooled)


def test_a_constant_on_a_summed_product_is_the_sums_scale(one_thread):
    """A constant on a value multiplied by another activation and summed over a width axis (the
    heads) normalises that sum: it is not part of weights_proj (read as one, the plan grew DeepSeek-V4's
    indexer scores: output at init slope +0.51). A sum over the tokens (fixed) leaves it alone."""
    traced = sptrace.trace(HeadWeightedScores(64), ids())
    assert traced["weights_proj.weight"].forward_constant is None
    pooled = traced["pool.weight"].forward_constant
    assert pooled is not None and pooled.power == 0.5 and pooled.size == 64


def _numbers(plans):
    return {p.name: (p.init, p.init_std, p.init_scale, p.lr_multiplier, p.spectral_scale) for p in plans}


@pytest.mark.parametrize("width", [64, 1024])
def test_the_rules_apply_to_c_times_w(width, one_thread):
    """Embedding times c = sqrt(n): c W must look up vectors of RMS 1 and move like the rule's
    embedding, so W's std is 1/c, its Adam lr / c, SGD lr / c^2, spectral scale / c (absolute
    form); in the reference form (256) the same ratios to width 256, so at 256 nothing changes."""
    traced = sptrace.trace(ScaledEmbeddingLM(width), ids())
    plain = sptrace.trace(ScaledEmbeddingLM(width, "none"), ids())
    c, ratio = math.sqrt(width), math.sqrt(width / 256)

    def emb(records, family, form):
        return next(p for p in plan(records, family, lr=1.0, form=form) if p.name == "emb.weight")

    for family, lr_power in (("adam", 1), ("sgd", 2), ("spectral", 0)):
        ours, theirs = emb(traced.records, family, "absolute"), emb(plain.records, family, "absolute")
        assert ours.init_std == pytest.approx(theirs.init_std / c)
        assert ours.lr_multiplier == pytest.approx(theirs.lr_multiplier / c ** lr_power)
        assert ours.spectral_scale == pytest.approx(theirs.spectral_scale / (c if family == "spectral" else 1.0))
        assert "forward constant" in ours.citation
        ours, theirs = emb(traced.records, family, "reference"), emb(plain.records, family, "reference")
        assert ours.init_scale == pytest.approx(theirs.init_scale / ratio)
        assert ours.lr_multiplier == pytest.approx(theirs.lr_multiplier / ratio ** lr_power)
    model = ScaledEmbeddingLM(width)
    sptrace.parametrize(model, "adam", lr=1e-3, example_inputs=(ids(),), init="gaussian")
    with torch.no_grad():
        looked_up = model.emb(ids())
    assert looked_up.pow(2).mean().sqrt().item() == pytest.approx(1.0, rel=0.2)


def test_a_tied_readout_reads_w_not_c_times_w(one_thread):
    """The tied readout use gets the usual 1/n times c: its effective weight keeps μP's 1/n entries."""
    width = 128
    record = sptrace.trace(ScaledEmbeddingLM(width, tied=True), ids())["emb.weight"]
    [readout] = record.secondary_uses
    assert forward_multiplier(record, readout) == pytest.approx(math.sqrt(width) / width)


@pytest.mark.parametrize("model_type", ["gemma", "gemma2", "gemma3_text"])
def test_hugging_face_gemma_embedding_scale_is_found(model_type, one_thread):
    """Gemma's ScaledWordEmbedding: ``embedding * embed_scale`` with a 0-d buffer sqrt(hidden_size);
    tied to the LM head, whose multiplier then carries c too."""
    pytest.importorskip("transformers")
    width = 64
    traced = sptrace.trace(gemma(width, model_type), ids())
    assert not traced.unclassified
    [scaled] = [r for r in traced if r.forward_constant is not None]
    assert scaled.name == "model.embed_tokens.weight"
    assert (scaled.forward_constant.power, scaled.forward_constant.size) == (0.5, width)
    adam = {p.name: p for p in plan(traced.records, "adam", lr=1.0, form="reference")}
    assert adam["model.embed_tokens.weight"].lr_multiplier == pytest.approx(math.sqrt(256 / width))


def test_a_constant_buffer_on_meta_is_reported_not_ignored(one_thread):
    """On meta, Gemma's embed_scale buffer has no value: the constant cannot be read, and the trace
    says so by name instead of planning the embedding as if it were unscaled."""
    pytest.importorskip("transformers")
    with torch.device("meta"):
        on_meta = gemma(64)
    traced = sptrace.trace(on_meta, torch.randint(0, 77, (2, 8), device="meta"))
    [warning] = [w for w in traced.warnings if "one-element buffer with no value" in w]
    assert "lm_head.weight" in warning or "model.embed_tokens.weight" in warning
    assert not [w for w in sptrace.trace(gemma(64), ids()).warnings if "no value" in w]


class ScaledReadoutLM(nn.Module):
    """T5's LM head: the readout reads ``h * width**-0.5`` (tied to the embedding, or not)."""

    def __init__(self, width, tied=True):
        super().__init__()
        self.emb, self.fc = nn.Embedding(VOCAB, width), nn.Linear(width, width)
        self.head = nn.Linear(width, VOCAB, bias=False)
        if tied:
            self.head.weight = self.emb.weight
        self.c = width ** -0.5

    def forward(self, ids):
        return self.head(torch.relu(self.fc(self.emb(ids))) * self.c)


@pytest.mark.parametrize("route", ["export", "eager"])
def test_a_constant_on_a_tied_readout_input_belongs_to_that_use(route, one_thread):
    """``W (c h) = (c W) h``: the tied readout use carries its own constant, so its multiplier is the
    usual 1/n over c (the effective readout keeps μP's 1/n); the embedding, its primary use, has none."""
    width = 128
    record = sptrace.trace(ScaledReadoutLM(width), ids(), routes=(route,))["emb.weight"]
    assert record.forward_constant is None
    [readout] = record.secondary_uses
    assert (readout.constant.power, readout.constant.size, readout.constant.module) == (-0.5, width, "head")
    assert forward_multiplier(record, readout) == pytest.approx((1 / width) / width ** -0.5)
    anchored = next(r for r in sptrace.trace(ScaledReadoutLM(2 * width), ids(),
                                             base=ScaledReadoutLM(width)).records if r.name == "emb.weight")
    assert forward_multiplier(anchored, anchored.secondary_uses[0], form="base") == pytest.approx(0.5 / 2 ** -0.5)


def test_a_constant_on_an_untied_readout_input_is_its_operator(one_thread):
    traced = sptrace.trace(ScaledReadoutLM(64, tied=False), ids())
    found = traced["head.weight"].forward_constant
    assert (found.power, found.size, found.module) == (-0.5, 64, "head")
    assert all(r.forward_constant is None for r in traced if r.name != "head.weight")
    assert "forward constant x0.125 = n^-1/2" in traced.report()


def _t5(width, tied):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.T5Config(d_model=width, d_ff=4 * width, d_kv=16, num_heads=width // 16, num_layers=1,
                                vocab_size=VOCAB, dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0,
                                tie_word_embeddings=tied)
    return transformers.T5ForConditionalGeneration(cfg)


@pytest.mark.parametrize("tied", [True, False])
def test_hugging_face_t5_lm_head_scale_is_found(tied, one_thread):
    """T5 scales the decoder output by ``d_model**-0.5`` before a tied LM head (only then)."""
    x = ids()
    traced = sptrace.trace(_t5(64, tied), input_ids=x, decoder_input_ids=x)
    assert not traced.unclassified
    assert all(r.forward_constant is None for r in traced)
    constants = [u.constant for r in traced for u in r.secondary_uses if u.constant is not None]
    assert [(c.power, c.size) for c in constants] == ([(-0.5, 64)] if tied else [])


class NormedScaledHead(nn.Module):
    """A block ending in a LayerNorm, and the parent scaling its output before the head reads it
    (LongT5 and Switch Transformers: the decoder's final norm, then ``* d_model**-0.5`` before the
    tied LM head, with no dropout op between)."""

    def __init__(self, width):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, width)
        self.body = nn.Sequential(nn.Linear(width, width), nn.LayerNorm(width))
        self.head = nn.Linear(width, VOCAB, bias=False)
        self.c = width ** -0.5

    def forward(self, ids):
        return self.head(self.body(self.emb(ids)) * self.c)


def test_a_parent_scaling_what_a_layer_reads_scales_the_reader(one_thread):
    """The constant is the head's (its input), not the norm gain's: a gain taking it would start at
    sqrt(n) and the block's output would grow like sqrt(n) up to the constant."""
    traced = sptrace.trace(NormedScaledHead(64), ids())
    assert traced["body.1.weight"].forward_constant is None
    assert (traced["head.weight"].forward_constant.power, traced["head.weight"].forward_constant.module) == (-0.5, "head")
