"""Full expected classification of every parameter of external and hand-written models.

Every expectation below is derived by hand from the architecture and the rules of
docs/classification.md, never copied from sptrace's output. A table row is

    name -> (kind, role, input_space, fan_in, fan_out, width_dims, fan_in_axes, fan_out_axes)

The row builders (``hidden_linear`` ...) only spell out the rules of the doc's vocabulary table
for the common cases; each is commented with the table line it encodes. Sizes are chosen pairwise
distinct (batch, tokens, vocabulary, width, heads, head_dim) so that no equality of sizes can stand
in for a tie in the graph.

Both capture routes and both width modes are tested. In base mode (``base=`` the same architecture
narrower) the width dims must be exactly the axes whose size differs from the base's; for almost
all models here that gives the same table as automatic mode, which is checked on top.
"""
from __future__ import annotations

import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sptrace

ROUTES = ("export", "eager")
MODES = ("automatic", "base")

# ---------------------------------------------------------------------------------------------
# row builders: one per line of the vocabulary table in docs/classification.md


def hidden_linear(n_out, n_in):
    """`linear(x, W)`, W (out, in): fan_in (1,), fan_out (0,), both width -> matrix / hidden."""
    return ("matrix", "hidden", "dense", n_in, n_out, (0, 1), (1,), (0,))


def hidden_conv1d(n_in, n_out):
    """`addmm(b, x, W)` (HF Conv1D, W stored (in, out)): fan_in (0,), fan_out (1,)."""
    return ("matrix", "hidden", "dense", n_in, n_out, (0, 1), (0,), (1,))


def input_linear(n_out, n_in):
    """`linear(x, W)` with x the data: fixed fan-in, width fan-out -> vector / input."""
    return ("vector", "input", "dense", n_in, n_out, (0,), (1,), (0,))


def readout_linear(n_out, n_in):
    """`linear(h, W)` onto a fixed output (classes, vocabulary): width fan-in -> vector / readout."""
    return ("vector", "readout", "dense", n_in, n_out, (1,), (1,), (0,))


def input_conv(c_out, c_in, k):
    """`conv(x, W)` on image channels: fan_in (1, 2, 3) = c_in*k*k fixed, fan_out (0,) width."""
    return ("vector", "input", "dense", c_in * k * k, c_out, (0,), (1, 2, 3), (0,))


def bias(n):
    """linear/conv/norm bias or a parameter added: sparse (constant 1), fan_in (), fan_out its width axes."""
    return ("vector", "bias", "sparse", 1, n, (0,), (), (0,))


def fixed_bias(n):
    """A bias over a fixed axis (readout bias over classes): no width axis -> kind scalar, but role
    bias: its library init shrinks with the layer's width fan-in, so it takes a bias's rule."""
    return ("scalar", "bias", "sparse", 1, n, (), (), (0,))


def gain(n):
    """norm weight or a parameter multiplied elementwise: gain, dense, fan_in () (diagonal)."""
    return ("vector", "gain", "dense", 1, n, (0,), (), (0,))


def embedding(n_vocab, n):
    """`embedding(ids, W)`: sparse, fan_in (0,) = vocabulary (fixed), fan_out (1,) width."""
    return ("vector", "embedding", "sparse", n_vocab, n, (1,), (0,), (1,))


def scalar():
    """A parameter with one element: scalar everywhere."""
    return ("scalar", "scalar", "dense", 1, 1, (), (), ())


# ---------------------------------------------------------------------------------------------
# checking


def actual(record):
    return (record.kind.value, record.role.value, record.input_space.value, record.fan_in, record.fan_out,
            record.width_dims, record.fan_in_axes, record.fan_out_axes)


def assert_table(tr, model, table, groups=None):
    """Every parameter (aliases included) is in exactly one record, and each record matches."""
    names = [n for n, _ in model.named_parameters(remove_duplicate=False)]
    seen = [a for r in tr for a in r.aliases]
    assert sorted(seen) == sorted(names), "trace does not cover every parameter name exactly once"
    assert {r.name for r in tr} == set(table), (
        f"records vs table: extra {sorted({r.name for r in tr} - set(table))}, "
        f"missing {sorted(set(table) - {r.name for r in tr})}")
    bad = []
    for name, expected in table.items():
        rec = tr[name]
        got = actual(rec)
        if got != expected:
            fields = ("kind", "role", "input_space", "fan_in", "fan_out", "width_dims", "fan_in_axes", "fan_out_axes")
            diff = ", ".join(f"{f}: expected {e!r} got {g!r}" for f, e, g in zip(fields, expected, got) if e != g)
            bad.append(f"{name} {rec.shape}: {diff}" + (f" [problem: {rec.problem}]" if rec.problem else ""))
    for name, g in (groups or {}).items():
        if tr[name].groups != g:
            bad.append(f"{name}: groups expected {g}, got {tr[name].groups}")
    assert not bad, f"route {tr.route}, {tr.width_mode} mode: {len(bad)} mismatch(es):\n" + "\n".join(bad)


def assert_base_dims(tr, model, base):
    """Base mode: width dims are exactly the axes whose size differs from the base's."""
    base_params = dict(base.named_parameters(remove_duplicate=False))
    bad = []
    for r in tr:
        b = tuple(base_params[r.name].shape)
        differs = tuple(a for a in range(len(r.shape)) if r.shape[a] != b[a])
        if r.width_dims != differs or r.base_shape != b:
            bad.append(f"{r.name}: shape {r.shape} base {b}: width_dims {r.width_dims} base_shape {r.base_shape}")
    assert not bad, "\n".join(bad)


def run_trace(model, base, mode, route, *args, **kwargs):
    tr = sptrace.trace(model, *args, base=base if mode == "base" else None, routes=(route,), **kwargs)
    assert tr.route == route
    assert tr.width_mode == mode
    if mode == "base":
        assert_base_dims(tr, model, base)
    return tr


def seeded(build, *a, **k):
    torch.manual_seed(0)
    return build(*a, **k)


# ---------------------------------------------------------------------------------------------
# HF GPT-2

def hf():
    """transformers, or skip the test that needs it (the other tests of this file still run)."""
    return pytest.importorskip("transformers")

V, P, T, B = 97, 40, 7, 2  # vocabulary, positions, tokens, batch: all distinct from the widths


def gpt2(n_embd=48, n_head=4, tied=True, attn="sdpa"):
    cfg = hf().GPT2Config(
        vocab_size=V, n_positions=P, n_embd=n_embd, n_layer=2, n_head=n_head, use_cache=False,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
        tie_word_embeddings=tied,
    )
    cfg._attn_implementation = attn
    return seeded(hf().GPT2LMHeadModel, cfg)


def gpt2_table(E, tied, layers=2):
    t = {
        "transformer.wte.weight": embedding(V, E),  # token table; tied: also lm_head (secondary use)
        "transformer.wpe.weight": embedding(P, E),  # position table looked up by position ids
        "transformer.ln_f.weight": gain(E),
        "transformer.ln_f.bias": bias(E),
    }
    for i in range(layers):
        p = f"transformer.h.{i}."
        t.update({
            p + "ln_1.weight": gain(E), p + "ln_1.bias": bias(E),
            p + "attn.c_attn.weight": hidden_conv1d(E, 3 * E), p + "attn.c_attn.bias": bias(3 * E),
            p + "attn.c_proj.weight": hidden_conv1d(E, E), p + "attn.c_proj.bias": bias(E),
            p + "ln_2.weight": gain(E), p + "ln_2.bias": bias(E),
            p + "mlp.c_fc.weight": hidden_conv1d(E, 4 * E), p + "mlp.c_fc.bias": bias(4 * E),
            p + "mlp.c_proj.weight": hidden_conv1d(4 * E, E), p + "mlp.c_proj.bias": bias(E),
        })
    if not tied:
        t["lm_head.weight"] = readout_linear(V, E)  # linear(h, W) onto the vocabulary
    return t


def gpt2_ids():
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("tied", [True, False], ids=["tied", "untied"])
def test_gpt2(route, mode, tied):
    model, base = gpt2(tied=tied), gpt2(n_embd=24, n_head=2, tied=tied)
    tr = run_trace(model, base, mode, route, gpt2_ids())
    assert_table(tr, model, gpt2_table(48, tied))
    wte = tr["transformer.wte.weight"]
    if tied:
        # one record for the tied tensor: name is the first in module order, aliases both
        assert model.lm_head.weight is model.transformer.wte.weight
        assert wte.name == "transformer.wte.weight"
        assert wte.aliases == ("transformer.wte.weight", "lm_head.weight")
        assert tr["lm_head.weight"] is wte
        assert len(tr) == len(list(model.parameters()))
        # the readout use disagrees with the primary (embedding) use: it is secondary
        assert len(wte.secondary_uses) == 1, wte.secondary_uses
        use = wte.secondary_uses[0]
        assert (use.fan_in_axes, use.fan_out_axes, use.role.value, use.module) == ((1,), (0,), "readout", "lm_head")
        assert any("lm_head" in w and "multiplier" in w for w in tr.warnings), tr.warnings
    else:
        assert wte.aliases == ("transformer.wte.weight",)
        assert wte.secondary_uses == ()
        assert tr["lm_head.weight"].secondary_uses == ()


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("route", ROUTES)
def test_gpt2_attention(route, attn):
    """One site per layer, head_dim = n_embd / n_head, scale 1/sqrt(head_dim)."""
    model = gpt2(attn=attn)
    ids = gpt2_ids()
    auto = sptrace.trace(model, ids, routes=(route,))
    assert len(auto.attention) == 2, auto.attention
    for site in auto.attention:
        assert site.head_dim == 12
        assert site.scale == pytest.approx(12 ** -0.5)
        assert site.kind == ("sdpa" if attn == "sdpa" else "manual")
        assert site.module.startswith("transformer.h."), site.module
        # automatic mode: head_dim is a split of the width dim n_embd, so it cannot tell
        assert site.head_dim_is_width is None
    # base with fewer heads of the same head_dim: head_dim fixed, 1/sqrt(head_dim) is width-stable
    fewer_heads = sptrace.trace(model, ids, base=gpt2(n_embd=24, n_head=2, attn=attn), routes=(route,))
    assert [(s.head_dim, s.head_dim_is_width, s.width_stable) for s in fewer_heads.attention] == [(12, False, True)] * 2
    # base with the same heads and a smaller head_dim: head_dim grows, 1/sqrt(head_dim) is not μP
    smaller_hd = sptrace.trace(model, ids, base=gpt2(n_embd=32, n_head=4, attn=attn), routes=(route,))
    assert [(s.head_dim, s.head_dim_is_width, s.width_stable) for s in smaller_hd.attention] == [(12, True, False)] * 2


# ---------------------------------------------------------------------------------------------
# HF Llama: RMSNorm as `weight * x` (gain via mul), grouped-query k/v


def llama(hidden=64, heads=4, kv_heads=2, inter=96, attn="sdpa", tied=False):
    cfg = hf().LlamaConfig(
        vocab_size=V, hidden_size=hidden, intermediate_size=inter, num_hidden_layers=2,
        num_attention_heads=heads, num_key_value_heads=kv_heads, max_position_embeddings=P,
        use_cache=False, tie_word_embeddings=tied, bos_token_id=0, eos_token_id=0, pad_token_id=0,
    )
    cfg._attn_implementation = attn
    return seeded(hf().LlamaForCausalLM, cfg)


def llama_table(E=64, H=4, KV=2, I=96, layers=2, tied=False):
    hd = E // H
    t = {
        "model.embed_tokens.weight": embedding(V, E),
        "model.norm.weight": gain(E),  # RMSNorm: weight * normalized x -> gain via mul
    }
    if not tied:
        t["lm_head.weight"] = readout_linear(V, E)
    for i in range(layers):
        p = f"model.layers.{i}."
        t.update({
            p + "input_layernorm.weight": gain(E),
            p + "self_attn.q_proj.weight": hidden_linear(H * hd, E),
            p + "self_attn.k_proj.weight": hidden_linear(KV * hd, E),  # GQA: fewer k/v heads, still width
            p + "self_attn.v_proj.weight": hidden_linear(KV * hd, E),
            p + "self_attn.o_proj.weight": hidden_linear(E, H * hd),
            p + "post_attention_layernorm.weight": gain(E),
            p + "mlp.gate_proj.weight": hidden_linear(I, E),
            p + "mlp.up_proj.weight": hidden_linear(I, E),
            p + "mlp.down_proj.weight": hidden_linear(E, I),
        })
    return t


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_llama(route, mode, tied):
    model, base = llama(tied=tied), llama(hidden=32, heads=2, kv_heads=1, inter=48, tied=tied)
    assert model.config.num_key_value_heads < model.config.num_attention_heads
    tr = run_trace(model, base, mode, route, gpt2_ids())
    assert_table(tr, model, llama_table(tied=tied))
    emb = tr["model.embed_tokens.weight"]
    if tied:
        assert emb.aliases == ("model.embed_tokens.weight", "lm_head.weight")
        assert [(u.fan_in_axes, u.fan_out_axes, u.role.value, u.module) for u in emb.secondary_uses] == [
            ((1,), (0,), "readout", "lm_head")]
    else:
        assert emb.secondary_uses == ()
    # RMSNorm gains are used through an elementwise mul, not a norm op
    assert tr["model.norm.weight"].uses[0].op == "mul", tr["model.norm.weight"].uses


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("route", ROUTES)
def test_llama_attention(route, attn):
    model, ids = llama(attn=attn), gpt2_ids()
    auto = sptrace.trace(model, ids, routes=(route,))
    assert [(s.head_dim, s.head_dim_is_width) for s in auto.attention] == [(16, None)] * 2, auto.attention
    for site in auto.attention:
        assert site.scale == pytest.approx(16 ** -0.5)
        assert site.module.startswith("model.layers."), site.module
    fewer_heads = sptrace.trace(model, ids, base=llama(hidden=32, heads=2, kv_heads=1, inter=48, attn=attn), routes=(route,))
    assert [(s.head_dim, s.head_dim_is_width, s.width_stable) for s in fewer_heads.attention] == [(16, False, True)] * 2
    smaller_hd = sptrace.trace(model, ids, base=llama(hidden=32, heads=4, kv_heads=2, inter=48, attn=attn), routes=(route,))
    assert [(s.head_dim, s.head_dim_is_width, s.width_stable) for s in smaller_hd.attention] == [(16, True, False)] * 2


# ---------------------------------------------------------------------------------------------
# HF BERT, headless: the returned hidden states (and pooled projection) stay width


def bert(hidden=32, heads=4, inter=64):
    cfg = hf().BertConfig(
        vocab_size=V, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=heads, intermediate_size=inter,
        max_position_embeddings=P, type_vocab_size=3, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        pad_token_id=0,
    )
    return seeded(hf().BertModel, cfg)


def bert_table(E=32, I=64, layers=2):
    t = {
        "embeddings.word_embeddings.weight": embedding(V, E),
        "embeddings.position_embeddings.weight": embedding(P, E),  # looked up by the position_ids buffer
        "embeddings.token_type_embeddings.weight": embedding(3, E),  # looked up by the token_type_ids buffer
        "embeddings.LayerNorm.weight": gain(E), "embeddings.LayerNorm.bias": bias(E),
        # the pooled output is a hidden (width) feature of a headless encoder (axes.py docstring)
        "pooler.dense.weight": hidden_linear(E, E), "pooler.dense.bias": bias(E),
    }
    for i in range(layers):
        p = f"encoder.layer.{i}."
        for proj in ("query", "key", "value"):
            t[p + f"attention.self.{proj}.weight"] = hidden_linear(E, E)
            t[p + f"attention.self.{proj}.bias"] = bias(E)
        t.update({
            p + "attention.output.dense.weight": hidden_linear(E, E), p + "attention.output.dense.bias": bias(E),
            p + "attention.output.LayerNorm.weight": gain(E), p + "attention.output.LayerNorm.bias": bias(E),
            p + "intermediate.dense.weight": hidden_linear(I, E), p + "intermediate.dense.bias": bias(I),
            p + "output.dense.weight": hidden_linear(E, I), p + "output.dense.bias": bias(E),
            p + "output.LayerNorm.weight": gain(E), p + "output.LayerNorm.bias": bias(E),
        })
    return t


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("route", ROUTES)
def test_bert(route, mode):
    model, base = bert(), bert(hidden=16, heads=2, inter=32)
    tr = run_trace(model, base, mode, route, gpt2_ids())
    assert_table(tr, model, bert_table())


# ---------------------------------------------------------------------------------------------
# HF ViT (class token concatenated, position embeddings added) and HF ConvNeXt


def vit(hidden=32, heads=4, inter=64):
    cfg = hf().ViTConfig(
        image_size=16, patch_size=4, num_channels=3, hidden_size=hidden, num_hidden_layers=2,
        num_attention_heads=heads, intermediate_size=inter, num_labels=5,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    return seeded(hf().ViTForImageClassification, cfg)


def vit_table(E=32, I=64, layers=2):
    n_patches = (16 // 4) ** 2
    t = {
        # class token (1, 1, E), concatenated after expand: embedding, fan_in (), fan_out (2,)
        "vit.embeddings.cls_token": ("vector", "embedding", "sparse", 1, E, (2,), (), (2,)),
        # (1, 1 + patches, E) added: embedding of a one-hot position, fan_in the position axis
        "vit.embeddings.position_embeddings": ("vector", "embedding", "sparse", n_patches + 1, E, (2,), (1,), (2,)),
        "vit.embeddings.patch_embeddings.projection.weight": input_conv(E, 3, 4),
        "vit.embeddings.patch_embeddings.projection.bias": bias(E),
        "vit.layernorm.weight": gain(E), "vit.layernorm.bias": bias(E),
        "classifier.weight": readout_linear(5, E), "classifier.bias": fixed_bias(5),
    }
    for i in range(layers):
        p = f"vit.layers.{i}."  # transformers 5.x layout
        for proj in ("q_proj", "k_proj", "v_proj"):
            t[p + f"attention.{proj}.weight"] = hidden_linear(E, E)
            t[p + f"attention.{proj}.bias"] = bias(E)
        t.update({
            p + "attention.o_proj.weight": hidden_linear(E, E), p + "attention.o_proj.bias": bias(E),
            p + "mlp.fc1.weight": hidden_linear(I, E), p + "mlp.fc1.bias": bias(I),
            p + "mlp.fc2.weight": hidden_linear(E, I), p + "mlp.fc2.bias": bias(E),
            p + "layernorm_before.weight": gain(E), p + "layernorm_before.bias": bias(E),
            p + "layernorm_after.weight": gain(E), p + "layernorm_after.bias": bias(E),
        })
    return t


def images(channels=3, size=16):
    return torch.randn(B, channels, size, size, generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("route", ROUTES)
def test_vit(route, mode):
    model, base = vit(), vit(hidden=16, heads=2, inter=32)
    tr = run_trace(model, base, mode, route, images())
    assert_table(tr, model, vit_table())


def convnext(sizes=(16, 32)):
    cfg = hf().ConvNextConfig(
        num_channels=3, patch_size=4, num_stages=2, hidden_sizes=list(sizes), depths=[1, 1], num_labels=5,
        layer_scale_init_value=1e-6, drop_path_rate=0.0, image_size=16,
    )
    return seeded(hf().ConvNextForImageClassification, cfg)


def convnext_table(C0=16, C1=32):
    def block(p, C):
        return {
            # depthwise 7x7 (C, 1, 7, 7), groups = C: fan_in 49, fan_out C/C = 1, width in the groups
            p + "dwconv.weight": ("vector", "input", "dense", 49, 1, (0,), (1, 2, 3), (0,)),
            p + "dwconv.bias": bias(C),
            p + "layernorm.weight": gain(C), p + "layernorm.bias": bias(C),
            p + "pwconv1.weight": hidden_linear(4 * C, C), p + "pwconv1.bias": bias(4 * C),
            p + "pwconv2.weight": hidden_linear(C, 4 * C), p + "pwconv2.bias": bias(C),
            p + "layer_scale_parameter": gain(C),  # layer scale: elementwise mul with the activation
        }

    t = {
        "convnext.embeddings.patch_embeddings.weight": input_conv(C0, 3, 4),
        "convnext.embeddings.patch_embeddings.bias": bias(C0),
        "convnext.embeddings.layernorm.weight": gain(C0), "convnext.embeddings.layernorm.bias": bias(C0),
        "convnext.encoder.stages.1.downsampling_layer.0.weight": gain(C0),
        "convnext.encoder.stages.1.downsampling_layer.0.bias": bias(C0),
        # 2x2 stride-2 conv C0 -> C1: fan_in C0*4 (1, 2, 3), fan_out C1 (0,)
        "convnext.encoder.stages.1.downsampling_layer.1.weight": ("matrix", "hidden", "dense", C0 * 4, C1, (0, 1), (1, 2, 3), (0,)),
        "convnext.encoder.stages.1.downsampling_layer.1.bias": bias(C1),
        "convnext.layernorm.weight": gain(C1), "convnext.layernorm.bias": bias(C1),
        "classifier.weight": readout_linear(5, C1), "classifier.bias": fixed_bias(5),
    }
    t.update(block("convnext.encoder.stages.0.layers.0.", C0))
    t.update(block("convnext.encoder.stages.1.layers.0.", C1))
    return t


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("route", ROUTES)
def test_convnext(route, mode):
    model, base = convnext(), convnext((8, 16))
    tr = run_trace(model, base, mode, route, images())
    assert_table(tr, model, convnext_table(), groups={
        "convnext.encoder.stages.0.layers.0.dwconv.weight": 16, "convnext.encoder.stages.1.layers.0.dwconv.weight": 32})


# ---------------------------------------------------------------------------------------------
# torch.nn attention: packed in_proj_weight (3E, E)


def mha_table(E):
    return {
        # packed q/k/v projection used through linear: fan_in (1,) = E, fan_out (0,) = 3E
        "in_proj_weight": hidden_linear(3 * E, E), "in_proj_bias": bias(3 * E),
        "out_proj.weight": hidden_linear(E, E), "out_proj.bias": bias(E),
    }


def encoder_layer_table(E, FF, prefix=""):
    t = {prefix + "self_attn." + k: v for k, v in mha_table(E).items()}
    t.update({
        prefix + "linear1.weight": hidden_linear(FF, E), prefix + "linear1.bias": bias(FF),
        prefix + "linear2.weight": hidden_linear(E, FF), prefix + "linear2.bias": bias(E),
        prefix + "norm1.weight": gain(E), prefix + "norm1.bias": bias(E),
        prefix + "norm2.weight": gain(E), prefix + "norm2.bias": bias(E),
    })
    return t


def mha(E, heads=4):
    return seeded(nn.MultiheadAttention, E, heads, batch_first=True)


def hidden_states(E):
    return torch.randn(B, T, E, generator=torch.Generator().manual_seed(3))


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("need_weights", [True, False])
def test_multihead_attention_self_base(route, need_weights):
    """A bare layer fed hidden states: its d_model is tied to the input, so test it in base mode.
    The narrower base cannot consume the model's example input (its d_model is smaller); base mode
    only needs the base's parameter shapes (docs: width exactly when the size differs), so sptrace
    must still work here."""
    model, base = mha(32), mha(16)
    x = hidden_states(32)
    tr = run_trace(model, base, "base", route, x, x, x, need_weights=need_weights)
    assert_table(tr, model, mha_table(32))
    assert tr["in_proj_weight"].fan_out == 96


@pytest.mark.parametrize("route", ROUTES)
def test_multihead_attention_cross_base(route):
    """Query from one tensor, key = value from another: in_proj_weight is split into q and kv rows,
    each used through linear; the axes are still the parameter's own, fan_out 3E."""
    model, base = mha(32), mha(16)
    q, kv = hidden_states(32), torch.randn(B, T + 2, 32)
    tr = run_trace(model, base, "base", route, q, kv, kv)
    assert_table(tr, model, mha_table(32))


@pytest.mark.parametrize("route", ROUTES)
def test_transformer_encoder_layer_base(route):
    def layer(E, FF):
        return seeded(nn.TransformerEncoderLayer, E, 4, dim_feedforward=FF, dropout=0.0, batch_first=True)

    model, base = layer(32, 80), layer(16, 40)
    tr = run_trace(model, base, "base", route, hidden_states(32))
    assert_table(tr, model, encoder_layer_table(32, 80))


@pytest.mark.parametrize("route", ROUTES)
def test_transformer_encoder_layer_bare_automatic_has_fixed_d_model(route):
    """Documented: axes tied to the model's inputs are fixed, so a bare layer's d_model is fixed
    while its feed-forward width (not tied to any data) is width."""
    model = seeded(nn.TransformerEncoderLayer, 32, 4, dim_feedforward=80, dropout=0.0, batch_first=True)
    tr = sptrace.trace(model, hidden_states(32), routes=(route,))
    assert 1 not in tr["self_attn.in_proj_weight"].width_dims  # contracted with the input's d_model
    assert tr["norm1.weight"].width_dims == () and tr["norm1.weight"].kind.value == "scalar"
    assert actual(tr["linear1.weight"]) == input_linear(80, 32)  # fixed d_model -> width FF
    assert actual(tr["linear2.weight"]) == readout_linear(32, 80)  # width FF -> fixed d_model


class EncoderLM(nn.Module):
    """embedding -> TransformerEncoderLayer -> head: d_model is width here."""

    def __init__(self, d=32, ff=80, vocab=V, n_out=11):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.layer = nn.TransformerEncoderLayer(d, 4, dim_feedforward=ff, dropout=0.0, batch_first=True)
        self.head = nn.Linear(d, n_out)

    def forward(self, ids):
        return self.head(self.layer(self.emb(ids)))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("route", ROUTES)
def test_transformer_encoder_layer_in_model(route, mode):
    model, base = seeded(EncoderLM), seeded(EncoderLM, d=16, ff=40)
    tr = run_trace(model, base, mode, route, gpt2_ids())
    table = encoder_layer_table(32, 80, prefix="layer.")
    table.update({"emb.weight": embedding(V, 32), "head.weight": readout_linear(11, 32), "head.bias": fixed_bias(11)})
    assert_table(tr, model, table)


class AttentionLM(nn.Module):
    """embedding -> nn.MultiheadAttention (self or cross) -> head: d_model is width here."""

    def __init__(self, d=32, n_out=11, cross=False, need_weights=True, masked=False):
        super().__init__()
        self.cross, self.need_weights, self.masked = cross, need_weights, masked
        self.emb = nn.Embedding(V, d)
        self.attn = nn.MultiheadAttention(d, 4, batch_first=True)
        self.head = nn.Linear(d, n_out)

    def forward(self, ids):
        h = self.emb(ids)
        kv = h[:, : T - 2] if self.cross else h  # cross: key = value is another tensor than query
        mask = torch.triu(torch.full((T, kv.shape[1]), float("-inf")), 1) if self.masked else None
        out, _ = self.attn(h, kv, kv, need_weights=self.need_weights, attn_mask=mask)
        return self.head(out)


def attention_lm_table(d=32):
    table = {"attn." + k: v for k, v in mha_table(d).items()}
    table.update({"emb.weight": embedding(V, d), "head.weight": readout_linear(11, d), "head.bias": fixed_bias(11)})
    return table


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("variant", ["self-weights", "self-sdpa", "cross"])
def test_multihead_attention_in_model(variant, route, mode):
    kw = dict(cross=variant == "cross", need_weights=variant != "self-sdpa")
    model, base = seeded(AttentionLM, **kw), seeded(AttentionLM, d=16, **kw)
    tr = run_trace(model, base, mode, route, gpt2_ids())
    assert_table(tr, model, attention_lm_table())
    assert tr["attn.in_proj_weight"].fan_out == 96  # 3E: the packed q, k, v rows


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
@pytest.mark.parametrize("need_weights", [True, False], ids=["weights", "sdpa"])
def test_multihead_attention_scale(route, need_weights, masked):
    """nn.MultiheadAttention scales q by 1/sqrt(head_dim) *before* q @ k^T when it returns the
    weights (F.multi_head_attention_forward: q_scaled = q * sqrt(1/E), then bmm, or baddbmm(mask,
    q_scaled, k^T) with a mask); with need_weights=False it calls sdpa with the default scale.
    Either way there is one attention site whose logits' scale is 1/sqrt(head_dim = 8)."""
    model = seeded(AttentionLM, need_weights=need_weights, masked=masked)
    tr = sptrace.trace(model, gpt2_ids(), routes=(route,))
    assert len(tr.attention) == 1, tr.attention
    site = tr.attention[0]
    assert site.head_dim == 8
    assert site.scale == pytest.approx(8 ** -0.5), (site.scale, site.scale_source)


# ---------------------------------------------------------------------------------------------
# raw parameters through F.linear, x @ W, W @ x, einsum, layer scale, scalar temperature


class RawParams(nn.Module):
    def __init__(self, d_in=5, width=32, heads=4, head_dim=8, n_out=3):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        w = heads * head_dim
        self.w_in = nn.Parameter(torch.randn(w, d_in) / d_in ** 0.5)  # F.linear(x, W): (out, in)
        self.b_in = nn.Parameter(torch.zeros(w))  # F.linear bias
        self.w_xw = nn.Parameter(torch.randn(w, 2 * w) / w ** 0.5)  # h @ W: stored (in, out)
        self.w_wx = nn.Parameter(torch.randn(w, 2 * w) / w ** 0.5)  # W @ h^T: stored (out, in)
        self.w_heads = nn.Parameter(torch.randn(heads, head_dim, head_dim) / head_dim ** 0.5)  # per head
        self.gamma = nn.Parameter(torch.full((w,), 0.1))  # layer scale
        self.w_out = nn.Parameter(torch.randn(n_out, w) / w)  # F.linear readout
        self.temperature = nn.Parameter(torch.tensor(2.0))

    def forward(self, x):
        h = F.linear(x, self.w_in, self.b_in)  # (B, w)
        u = torch.relu(h @ self.w_xw)  # (B, 2w)
        h = h + (self.w_wx @ u.t()).t()  # (B, w)
        z = torch.einsum("bhd,hde->bhe", h.view(h.shape[0], self.heads, self.head_dim), self.w_heads)
        h = h + self.gamma * z.reshape(h.shape)
        return F.linear(h, self.w_out) / self.temperature


def raw_table(w=32, head_dim=8, heads_grow=True):
    return {
        "w_in": input_linear(w, 5),
        "b_in": bias(w),
        "w_xw": hidden_conv1d(w, 2 * w),  # x @ W: fan_in (0,), fan_out (1,)
        "w_wx": hidden_linear(w, 2 * w),  # W @ x: fan_in (1,), fan_out (0,)
        # per-head einsum 'bhd,hde->bhe': contracted d (1,), output e (2,), h shared (group axis);
        # automatic mode takes the block as fixed and the heads as growing (graph/attention.py)
        "w_heads": (("scalar", "fixed", "dense", head_dim, head_dim, (0,), (1,), (2,)) if heads_grow else
                    ("matrix", "hidden", "dense", head_dim, head_dim, (1, 2), (1,), (2,))),
        "gamma": gain(w),
        "w_out": readout_linear(3, w),
        "temperature": scalar(),
    }


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("route", ROUTES)
def test_raw_parameters(route, mode):
    model = seeded(RawParams)
    base = seeded(RawParams, heads=4, head_dim=4)  # same heads, narrower head_dim
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(4))
    tr = run_trace(model, base, mode, route, x)
    assert_table(tr, model, raw_table(heads_grow=(mode == "automatic")))
    assert tr["w_heads"].uses[0].group_axes == (0,), tr["w_heads"].uses


class RawLayouts(nn.Module):
    """More ways to write a dense layer with a raw parameter, on (B, T, features) activations."""

    def __init__(self, w=32, d_in=5, n_out=3):
        super().__init__()
        self.w_in = nn.Parameter(torch.randn(w, d_in) / d_in ** 0.5)  # F.linear
        self.w_t = nn.Parameter(torch.randn(2 * w, w) / w ** 0.5)  # h @ W.T: stored (out, in)
        self.w_einsum = nn.Parameter(torch.randn(w, 2 * w) / w ** 0.5)  # einsum 'bti,oi->bto'
        self.w_mm = nn.Parameter(torch.randn(2 * w, w) / w ** 0.5)  # torch.mm(W, x^T): (out, in)
        self.w_bmm = nn.Parameter(torch.randn(2 * w, w) / w ** 0.5)  # W @ x, x batched (B, in, T)
        self.b_addmm = nn.Parameter(torch.zeros(w))
        self.w_addmm = nn.Parameter(torch.randn(2 * w, w) / w ** 0.5)  # addmm(b, x, W): (in, out)
        self.w_out = nn.Parameter(torch.randn(n_out, w) / w)

    def forward(self, x):  # (B, T, d_in)
        h = F.linear(x, self.w_in)  # (B, T, w)
        u = h @ self.w_t.T  # (B, T, 2w)
        h = torch.einsum("bti,oi->bto", u, self.w_einsum)  # (B, T, w)
        flat = h.reshape(-1, h.shape[-1])
        u = torch.mm(self.w_mm, flat.T).T.reshape(h.shape[0], h.shape[1], -1)  # (B, T, 2w)
        u = u + (self.w_bmm @ h.transpose(1, 2)).transpose(1, 2)
        h = torch.addmm(self.b_addmm, u.reshape(-1, u.shape[-1]), self.w_addmm).reshape(h.shape)
        return F.linear(h, self.w_out)


def raw_layouts_table(w=32):
    return {
        "w_in": input_linear(w, 5),
        "w_t": hidden_linear(2 * w, w),  # x @ W.T is linear(x, W): fan_in (1,), fan_out (0,)
        "w_einsum": hidden_linear(w, 2 * w),  # 'bti,oi->bto': i contracted (1,), o output (0,)
        "w_mm": hidden_linear(2 * w, w),  # W @ x: fan_in (1,), fan_out (0,)
        "w_bmm": hidden_linear(2 * w, w),  # W @ x batched: fan_in (1,), fan_out (0,)
        "b_addmm": bias(w),  # the `self` of addmm is its bias
        "w_addmm": hidden_conv1d(2 * w, w),  # addmm(b, x, W): fan_in (0,), fan_out (1,)
        "w_out": readout_linear(3, w),
    }


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("route", ROUTES)
def test_raw_layouts(route, mode):
    model, base = seeded(RawLayouts), seeded(RawLayouts, w=16)
    x = torch.randn(B, T, 5, generator=torch.Generator().manual_seed(5))
    tr = run_trace(model, base, mode, route, x)
    assert_table(tr, model, raw_layouts_table())


# ---------------------------------------------------------------------------------------------
# convolutions of every flavour, BatchNorm, GroupNorm


class ConvNet(nn.Module):
    def __init__(self, c=16, n_cls=5):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 4, stride=4)
        self.bn = nn.BatchNorm2d(c)
        self.grouped = nn.Conv2d(c, 2 * c, 3, padding=1, groups=4)
        self.gn = nn.GroupNorm(4, 2 * c)
        self.dw = nn.Conv2d(2 * c, 2 * c, 3, padding=1, groups=2 * c)
        self.up = nn.ConvTranspose2d(2 * c, c, 2, stride=2, groups=2)
        self.head = nn.Linear(c, n_cls)

    def forward(self, x):
        h = F.relu(self.bn(self.stem(x)))
        h = self.gn(self.grouped(h))
        h = h + self.dw(h)
        h = self.up(F.relu(h))
        return self.head(h.mean((2, 3)))


def conv_table(c=16):
    return {
        "stem.weight": input_conv(c, 3, 4), "stem.bias": bias(c),
        "bn.weight": gain(c), "bn.bias": bias(c),
        # (2c, c/4, 3, 3), groups 4: fan_in c/4*9, fan_out 2c/4 (one block)
        "grouped.weight": ("matrix", "hidden", "dense", c // 4 * 9, 2 * c // 4, (0, 1), (1, 2, 3), (0,)),
        "grouped.bias": bias(2 * c),
        "gn.weight": gain(2 * c), "gn.bias": bias(2 * c),
        # depthwise (2c, 1, 3, 3), groups 2c: fan_in 9 fixed, fan_out 1, width in the group count
        "dw.weight": ("vector", "input", "dense", 9, 1, (0,), (1, 2, 3), (0,)),
        "dw.bias": bias(2 * c),
        # transposed (in=2c, out/g=c/2, 2, 2), groups 2: fan_in (0, 2, 3) = 2c/2*4, fan_out (1,) = c/2
        "up.weight": ("matrix", "hidden", "dense", c * 4, c // 2, (0, 1), (0, 2, 3), (1,)),
        "up.bias": bias(c),
        "head.weight": readout_linear(5, c), "head.bias": fixed_bias(5),
    }


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("route", ROUTES)
def test_convolutions(route, mode):
    model, base = seeded(ConvNet), seeded(ConvNet, c=8)
    tr = run_trace(model, base, mode, route, images())
    assert_table(tr, model, conv_table(), groups={"grouped.weight": 4, "dw.weight": 32, "up.weight": 2})
    if mode == "base":
        assert tr["dw.weight"].base_groups == 16 and tr["grouped.weight"].base_groups == 4
        assert tr["dw.weight"].base_fan_out == 1 and tr["up.weight"].base_fan_in == 32


# ---------------------------------------------------------------------------------------------
# a ViT of our own: class token after expand, learned position embedding, layer scale, temperature


class TinyViT(nn.Module):
    def __init__(self, width=32, n_cls=5):
        super().__init__()
        self.patch = nn.Conv2d(3, width, 4, stride=4)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.pos_embed = nn.Parameter(torch.randn(1, 17, width) * 0.02)
        self.norm = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, 3 * width)
        self.fc2 = nn.Linear(3 * width, width)
        self.layer_scale = nn.Parameter(torch.full((width,), 0.1))
        self.head = nn.Linear(width, n_cls)
        self.temperature = nn.Parameter(torch.tensor(1.0))

    def forward(self, x):
        h = self.patch(x).flatten(2).transpose(1, 2)  # (B, 16, width)
        h = torch.cat([self.cls_token.expand(h.shape[0], -1, -1), h], dim=1) + self.pos_embed
        h = h + self.layer_scale * self.fc2(F.gelu(self.fc1(self.norm(h))))
        return self.head(h[:, 0]) * self.temperature


def tiny_vit_table(w=32):
    return {
        "patch.weight": input_conv(w, 3, 4), "patch.bias": bias(w),
        "cls_token": ("vector", "embedding", "sparse", 1, w, (2,), (), (2,)),
        "pos_embed": ("vector", "embedding", "sparse", 17, w, (2,), (1,), (2,)),
        "norm.weight": gain(w), "norm.bias": bias(w),
        "fc1.weight": hidden_linear(3 * w, w), "fc1.bias": bias(3 * w),
        "fc2.weight": hidden_linear(w, 3 * w), "fc2.bias": bias(w),
        "layer_scale": gain(w),
        "head.weight": readout_linear(5, w), "head.bias": fixed_bias(5),
        "temperature": scalar(),
    }


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("route", ROUTES)
def test_tiny_vit(route, mode):
    model, base = seeded(TinyViT), seeded(TinyViT, width=16)
    tr = run_trace(model, base, mode, route, images())
    assert_table(tr, model, tiny_vit_table())
    assert tr["cls_token"].uses[0].op == "cat", tr["cls_token"].uses


def token_ids():
    """The same B x T ids over an 11-token vocabulary for every token model below."""
    return torch.randint(0, 11, (B, T), generator=torch.Generator().manual_seed(6))


class Recurrent(nn.Module):
    """torch's own recurrent layers (aten.lstm / gru / rnn_tanh take every weight in one list: the
    capture decomposes them) and PReLU's per-channel slope, on token ids."""

    def __init__(self, width=32, vocab=11):
        super().__init__()
        self.emb = nn.Embedding(vocab, width)
        self.lstm = nn.LSTM(width, width, batch_first=True)
        self.gru = nn.GRU(width, 2 * width, num_layers=2, batch_first=True)
        self.rnn = nn.RNN(2 * width, width, batch_first=True)
        self.act = nn.PReLU(width)
        self.head = nn.Linear(width, vocab)

    def forward(self, ids):
        h = self.rnn(self.gru(self.lstm(self.emb(ids))[0])[0])[0]  # (B, T, width)
        return self.head(self.act(h.transpose(1, 2)).transpose(1, 2))  # PReLU slopes on axis 1


def gate_stack_rows(prefix, suffix, gates, fan_in, out):
    """Each gate stack is one dense operator: weight_ih (gates*out, in), weight_hh (gates*out, out)."""
    return {f"{prefix}weight_ih{suffix}": hidden_linear(gates * out, fan_in),
            f"{prefix}weight_hh{suffix}": hidden_linear(gates * out, out),
            f"{prefix}bias_ih{suffix}": bias(gates * out), f"{prefix}bias_hh{suffix}": bias(gates * out)}


def recurrent_table(w=32):
    table = {"emb.weight": embedding(11, w), "act.weight": gain(w), "head.weight": readout_linear(11, w),
             "head.bias": fixed_bias(11)}
    for prefix, gates, n_in, n_out in (("lstm.", 4, w, w), ("gru.", 3, w, 2 * w), ("rnn.", 1, 2 * w, w)):
        layers = [(n_in, n_out)] + ([(n_out, n_out)] if prefix == "gru." else [])
        for layer, (fan_in, out) in enumerate(layers):
            table.update(gate_stack_rows(prefix, f"_l{layer}", gates, fan_in, out))
    return table


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("route", ROUTES)
def test_recurrent_layers_and_prelu(route, mode):
    model, base = seeded(Recurrent), seeded(Recurrent, width=16)
    tr = run_trace(model, base, mode, route, token_ids())
    assert_table(tr, model, recurrent_table())


class RecurrentCells(nn.Module):
    """A loop over time of torch's cells (aten.lstm_cell / gru_cell / rnn_tanh_cell hide every weight
    behind one op: the capture runs their composite kernels), one use per step."""

    def __init__(self, width=32, vocab=11):
        super().__init__()
        self.emb = nn.Embedding(vocab, width)
        self.lstm = nn.LSTMCell(width, width)
        self.gru = nn.GRUCell(width, 2 * width)
        self.rnn = nn.RNNCell(2 * width, width, nonlinearity="relu")
        self.head = nn.Linear(width, vocab)

    def forward(self, ids):
        h = c = ids.new_zeros(ids.shape[0], self.lstm.hidden_size, dtype=torch.float32)
        g = ids.new_zeros(ids.shape[0], self.gru.hidden_size, dtype=torch.float32)
        r = torch.zeros_like(h)
        outs = []
        for t in range(ids.shape[1]):
            h, c = self.lstm(self.emb(ids[:, t]), (h, c))
            g = self.gru(h, g)
            r = self.rnn(g, r)
            outs.append(self.head(r))
        return torch.stack(outs, 1)


def recurrent_cells_table(w=32):
    table = {"emb.weight": embedding(11, w), "head.weight": readout_linear(11, w), "head.bias": fixed_bias(11)}
    for prefix, gates, n_in, n_out in (("lstm.", 4, w, w), ("gru.", 3, w, 2 * w), ("rnn.", 1, 2 * w, w)):
        table.update(gate_stack_rows(prefix, "", gates, n_in, n_out))
    return table


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("route", ROUTES)
def test_recurrent_cells_in_a_loop(route, mode):
    model, base = seeded(RecurrentCells), seeded(RecurrentCells, width=16)
    tr = run_trace(model, base, mode, route, token_ids())
    assert_table(tr, model, recurrent_cells_table())
    assert len(tr["lstm.weight_ih"].uses) == T  # one use per time step


class WeightNormed(nn.Module):
    def __init__(self, width=32, new_api=True):
        super().__init__()
        wn = nn.utils.parametrizations.weight_norm if new_api else nn.utils.weight_norm
        self.a, self.b = nn.Linear(5, width), wn(nn.Linear(width, width))
        self.head = nn.Linear(width, 3)

    def forward(self, x):
        return self.head(torch.relu(self.b(torch.relu(self.a(x)))))


@pytest.mark.parametrize("new_api", [True, False])
def test_weight_norm_s_factors_are_planned(new_api):
    """W = g v / |v|: v has W's axes and is classified as the layer's weight, g as the gain of its rows
    (tests/graph/test_weight_norm.py; docs/rules.md "Weight norm"). Until 2026-12-03 both factors were
    reported unclassified with the way out (remove_parametrizations / remove_weight_norm), because a
    guessed rule had zeroed a readout's v and made NaNs: now strict=True passes, the weight the layer uses
    is the planned v, and removing the reparametrization still leaves an ordinary hidden linear."""
    model = seeded(WeightNormed, new_api=new_api)
    x = torch.randn(B, 5)
    tr = sptrace.trace(model, x)
    v, g = (("b.parametrizations.weight.original1", "b.parametrizations.weight.original0") if new_api
            else ("b.weight_v", "b.weight_g"))
    assert not tr.unclassified and tr[v].role.value == "hidden" and tr[g].role.value == "gain"
    sptrace.parametrize(model, "adam", lr=1e-3, example_inputs=(x,), strict=True)
    assert torch.allclose(model.b.weight, model.get_parameter(v), rtol=1e-5, atol=1e-8)
    if new_api:
        nn.utils.parametrize.remove_parametrizations(model.b, "weight")
    else:
        nn.utils.remove_weight_norm(model.b)
    tr = sptrace.trace(model, x)
    assert not tr.unclassified and tr["b.weight"].role.value == "hidden"


@pytest.mark.parametrize("training", [True, False])
def test_a_spectral_norm_s_power_iteration_buffers_are_not_data(training):
    """spectral_norm keeps vectors ``_u`` / ``_v`` as wide as the weight, in buffers, and contracts
    the weight with them. Read as constant data (like a coordinate table) they fixed every axis the
    weight shares with the network: the input layer, the readout and every bias came out with no
    width axis at all (``a.weight`` 'fixed'), in training and eval mode. The reparametrized weight is
    classified as its layer's (graph/selfnorm.py; tests/graph/test_self_norm.py)."""
    model = seeded(WeightNormed).train(training)
    model.b = nn.utils.parametrizations.spectral_norm(nn.Linear(32, 32))
    tr = sptrace.trace(model, torch.randn(B, 5))
    assert not tr.unclassified
    roles = {r.name: (r.role.value, r.width_dims) for r in tr if r.classified}
    assert roles == {"a.weight": ("input", (0,)), "a.bias": ("bias", (0,)), "b.bias": ("bias", (0,)),
                     "b.parametrizations.weight.original": ("hidden", (0, 1)),
                     "head.weight": ("readout", (1,)), "head.bias": ("bias", ())}, roles


class CappedEmbedding(nn.Module):
    def __init__(self, width=32, max_norm=1.0):
        super().__init__()
        self.emb = nn.Embedding(11, width, max_norm=max_norm)
        self.head = nn.Linear(width, 11)

    def forward(self, ids):
        return self.head(self.emb(ids))


@pytest.mark.parametrize("route", ROUTES)
def test_embedding_max_norm_is_an_embedding_with_a_warning(route):
    """`max_norm` renormalises looked-up rows in place (aten.embedding_renorm_, steered by the ids):
    the table is still an embedding, and the constant cap is named, because it makes the looked-up
    vectors' RMS shrink like 1/sqrt(width) whatever sptrace does (measured below)."""
    ids = token_ids()
    tr = sptrace.trace(seeded(CappedEmbedding), ids, base=seeded(CappedEmbedding, width=16), routes=(route,))
    assert not tr.unclassified and tr["emb.weight"].role.value == "embedding"
    assert any("emb.weight: nn.Embedding(max_norm=1.0)" in w for w in tr.warnings), tr.warnings

    def looked_up_rms(width, max_norm):
        model = seeded(CappedEmbedding, width=width, max_norm=max_norm)
        sptrace.parametrize(model, "adam", lr=1e-3, example_inputs=(ids,))
        with torch.no_grad():
            return model.emb(ids).square().mean().sqrt().item()

    capped = looked_up_rms(256, 1.0) / looked_up_rms(64, 1.0)
    free = looked_up_rms(256, None) / looked_up_rms(64, None)
    assert capped == pytest.approx(0.5, rel=0.1) and free == pytest.approx(1.0, rel=0.1), (capped, free)
    assert not any("max_norm" in w for w in sptrace.trace(seeded(CappedEmbedding, max_norm=None), ids).warnings)


class Bilinear(nn.Module):
    def __init__(self, width=32):
        super().__init__()
        self.a, self.b = nn.Linear(5, width), nn.Linear(5, 2 * width)
        self.bil = nn.Bilinear(width, 2 * width, width)
        self.head = nn.Linear(width, 3)

    def forward(self, x):
        return self.head(self.bil(self.a(x), self.b(x)))


@pytest.mark.parametrize("route", ROUTES)
def test_bilinear_is_planned_and_what_no_rule_settles_is_named(route):
    """nn.Bilinear's fan-in is in1 x in2, which grows like width^2 against a fan-out of width: it is a
    matrix of those fans (docs/rules.md, "nn.Bilinear": under Adam its natural norms stay flat), and
    the trace says what the paper's tables do not settle for it (its init output shrinks, a norm
    after it scales its SGD gradient up); before, it was left at the library default (its output then
    grows like width^+0.6 under Adam)."""
    model = seeded(Bilinear)
    tr = sptrace.trace(model, torch.randn(B, 5), routes=(route,))
    assert not tr.unclassified, [r.problem for r in tr.unclassified]
    bil = tr["bil.weight"]
    assert (bil.kind.value, bil.role.value, bil.fan_in_axes, bil.fan_out_axes) == ("matrix", "hidden", (1, 2), (0,))
    assert any(w.startswith("bil.weight: its fan-in has more width axes than its fan-out") for w in tr.warnings)
    assert not any(w.startswith(("a.weight", "head.weight")) for w in tr.warnings)
    assert tr["a.weight"].role.value == "input" and tr["head.weight"].role.value == "readout"
