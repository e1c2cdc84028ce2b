"""Runs of identical blocks captured once (sptrace/graph/repeats.py): the trace, the plan and the
parametrized model from the shortcut equal those from the full capture, and the check falls back
to the full capture wherever the blocks do not repeat."""
from __future__ import annotations

import dataclasses
import re

import pytest
import torch
from torch import nn

import models_zoo
import sptrace
from sptrace.graph import repeats
from sptrace.graph import trace as trace_module


def hf():
    return pytest.importorskip("transformers")


@pytest.fixture
def full_capture(monkeypatch):
    """A function that runs ``fn`` with the shortcut switched off (every block captured)."""
    def run(fn, *args, **kwargs):
        with monkeypatch.context() as patch:
            patch.setattr(trace_module, "_shortcut_runs", lambda *a, **k: [])
            return fn(*args, **kwargs)
    return run


NODE = re.compile(r"'[A-Za-z_]+(_[0-9]+)?'")


def comparable(value, field=""):
    """Records, uses, sites and plans as plain data, without what names a node of the captured graph
    (the shortcut's graph has other node names; node fields and node names quoted in reasons)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: comparable(getattr(value, f.name), f.name) for f in dataclasses.fields(value)
                if f.name not in ("node", "selected_by", "normalized_by")}
    if isinstance(value, (list, tuple)):
        return [comparable(v, field) for v in value]
    if isinstance(value, str) and field in ("reason", "problem"):
        return NODE.sub("'node'", value)
    return value


def assert_same_trace(short, full):
    assert [r.name for r in short.records] == [r.name for r in full.records]
    for a, b in zip(short.records, full.records):
        assert comparable(a) == comparable(b), a.name
    assert comparable(short.attention) == comparable(full.attention)
    assert sorted(short.warnings) == sorted(full.warnings)
    assert short.route == full.route


def assert_same_plan(short, full):
    assert short.shapes == full.shapes
    assert [p.name for p in short.params] == [p.name for p in full.params]
    for a, b in zip(short.params, full.params):
        assert comparable(a) == comparable(b), a.name
    assert short.multipliers == full.multipliers
    assert sorted(short.warnings) == sorted(full.warnings)


def check(model, inputs, full_capture, shortcut: bool, **plan_options):
    """Trace and plan with and without the shortcut; ``shortcut``: whether it must have been taken."""
    short = sptrace.trace(model, *inputs)
    full = full_capture(sptrace.trace, model, *inputs)
    assert bool(short.repeats) is shortcut, short.repeats
    assert not full.repeats
    assert_same_trace(short, full)
    # the plans made from the two traces (attention_fix: a multiplier on every attention site)
    options = dict(example_inputs=inputs, attention_fix=True, **plan_options)
    assert_same_plan(sptrace.plan(model, "adam", lr=1e-3, traced=short, **options),
                     sptrace.plan(model, "adam", lr=1e-3, traced=full, **options))
    return short


# ---------------------------------------------------------------------------------------------
# models whose blocks repeat: the shortcut is taken and changes nothing


@pytest.mark.parametrize("tied", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_zoo_gpt(full_capture, tied):
    model = models_zoo.get("gpt").build(64, n_layer=5, tied=tied)
    ids = torch.randint(0, 77, (2, 16))
    short = check(model, (ids,), full_capture, shortcut=True)
    assert short.repeats[0].container == "transformer.h" and short.repeats[0].elided == ("2", "3")
    # the graph holds the three kept blocks only
    blocks = {m[0] for n in short.graph.nodes for m in (n.meta.get("nn_module_stack") or {}).values()}
    assert {"transformer.h.0", "transformer.h.1", "transformer.h.4"} <= blocks
    assert not {"transformer.h.2", "transformer.h.3"} & blocks


@pytest.mark.slow
@pytest.mark.parametrize("name, option", [("vit", "depth"), ("mixer", "depth")])
def test_zoo_vision(full_capture, name, option):
    model = models_zoo.get(name).build(64, **{option: 5}).eval()
    check(model, (torch.randn(2, 3, 32, 32),), full_capture, shortcut=True)


@pytest.mark.slow
def test_zoo_without_runs_unchanged(full_capture):
    for name in ("mlp", "cnn"):
        model = models_zoo.get(name).build(32)
        x = torch.randn(2, 3 * 32 * 32) if name == "mlp" else torch.randn(2, 3, 32, 32)
        check(model, (x,), full_capture, shortcut=False)


def gpt2(layers=5, tied=True):
    cfg = hf().GPT2Config(vocab_size=97, n_positions=40, n_embd=48, n_layer=layers, n_head=4, use_cache=False,
                          tie_word_embeddings=tied)
    torch.manual_seed(0)
    return hf().GPT2LMHeadModel(cfg)


@pytest.mark.slow  # the parametrize test below covers GPT-2 in the default run
def test_hf_gpt2(full_capture):
    check(gpt2(), (torch.randint(0, 97, (2, 7)),), full_capture, shortcut=True)


def test_hf_llama_on_meta(full_capture):
    cfg = hf().LlamaConfig(vocab_size=320, max_position_embeddings=64, use_cache=False, hidden_size=64,
                           intermediate_size=96, num_hidden_layers=6, num_attention_heads=4, num_key_value_heads=2)
    with torch.device("meta"):
        model = hf().LlamaForCausalLM(cfg)
    short = check(model, (torch.randint(0, 320, (1, 8)),), full_capture, shortcut=True)
    assert len(short.attention) == 6


@pytest.mark.slow
def test_hf_gpt2_with_base(full_capture):
    """Base mode: the base is cut like the model (the same containers), widths from its shapes."""
    base = gpt2()
    cfg = hf().GPT2Config(vocab_size=97, n_positions=40, n_embd=96, n_layer=5, n_head=8, use_cache=False)
    model = hf().GPT2LMHeadModel(cfg)
    ids = torch.randint(0, 97, (2, 7))
    short = sptrace.trace(model, ids, base=base)
    full = full_capture(sptrace.trace, model, ids, base=base)
    assert short.repeats and short.width_mode == "base"
    assert_same_trace(short, full)


def test_parametrize_identical_and_multipliers_on_every_block(full_capture):
    """The same seed gives bit-identical weights, the same groups and the same outputs, and the
    attention-scale and tied-readout multipliers are installed on every block, elided ones included."""
    ids = torch.randint(0, 97, (2, 7))
    results = []
    for use_shortcut in (True, False):
        model = gpt2().eval()
        torch.manual_seed(1)
        call = sptrace.parametrize if use_shortcut else (lambda *a, **k: full_capture(sptrace.parametrize, *a, **k))
        opt = call(model, "adam", lr=1e-3, example_inputs=(ids,), attention_fix=True)
        assert bool(opt.sptrace.trace.repeats) is use_shortcut
        modules = {m.module for m in opt.sptrace.multipliers if m.what == "attention scale"}
        assert modules == {f"transformer.h.{i}.attn" for i in range(5)}
        with torch.no_grad():
            logits = model(ids).logits
        results.append((model.state_dict(), [len(g["params"]) for g in opt.param_groups],
                        [g["lr"] for g in opt.param_groups], logits, len(opt.sptrace.handles)))
    (s1, n1, lr1, out1, h1), (s2, n2, lr2, out2, h2) = results
    assert s1.keys() == s2.keys() and all(torch.equal(s1[k], s2[k]) for k in s1)
    assert (n1, lr1, h1) == (n2, lr2, h2)
    assert torch.equal(out1, out2)


def test_sequential_root(full_capture):
    """The model itself is the container (its children are named 0, 1, ...)."""
    class Residual(nn.Module):
        def __init__(self, width):
            super().__init__()
            self.norm, self.fc1, self.fc2 = nn.LayerNorm(width), nn.Linear(width, 2 * width), nn.Linear(2 * width, width)

        def forward(self, x):
            return x + self.fc2(torch.relu(self.fc1(self.norm(x))))

    torch.manual_seed(0)
    model = nn.Sequential(*[Residual(24) for _ in range(5)])
    short = check(model, (torch.randn(3, 24),), full_capture, shortcut=True)
    assert short.repeats[0].container == "" and short.repeats[0].elided == ("2", "3")


def test_model_left_as_it_was():
    model = gpt2()
    before = list(model.transformer.h._modules.items())
    state = {k: v.clone() for k, v in model.state_dict().items()}
    ids = torch.randint(0, 97, (2, 7))
    rng = torch.get_rng_state()
    assert sptrace.trace(model, ids).repeats
    assert list(model.transformer.h._modules.items()) == before
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert torch.equal(torch.get_rng_state(), rng)


# ---------------------------------------------------------------------------------------------
# blocks that differ in behaviour: the check falls back to the full capture


class Block(nn.Module):
    def __init__(self, width, layer, variant):
        super().__init__()
        self.layer, self.variant = layer, variant
        self.norm, self.fc = nn.LayerNorm(width), nn.Linear(width, width)

    def forward(self, x, extra=None):
        h = self.fc(self.norm(x))
        if self.variant == "alternating_ops" and self.layer % 2:
            h = torch.nn.functional.gelu(h)
        if self.variant == "per_layer_scale":
            h = h * (1.0 / (self.layer + 1))
        if extra is not None:
            h = h + extra
        return x + h


class Stack(nn.Module):
    def __init__(self, variant, width=20, depth=6):
        super().__init__()
        self.variant = variant
        self.embed = nn.Embedding(30, width)
        self.blocks = nn.ModuleList(Block(width, i, variant) for i in range(depth))
        self.head = nn.Linear(width, 30)

    def forward(self, ids):
        x = self.embed(ids)
        outputs = [x]
        for i, block in enumerate(self.blocks):
            if self.variant == "skip_two":  # reads the output of the block two back
                x = block(x, outputs[-2] if len(outputs) > 1 else None)
            elif self.variant == "per_layer_mask":  # a different outside tensor for odd layers
                x = block(x, self.embed.weight[:1] if i % 2 else None)
            else:
                x = block(x)
            outputs.append(x)
        if self.variant == "sum_of_layers":  # every block's output reaches the head
            x = torch.stack(outputs).sum(0)
        return self.head(x)


@pytest.mark.parametrize("variant", ["alternating_ops", "per_layer_scale", "skip_two", "per_layer_mask",
                                     "sum_of_layers"])
def test_blocks_that_differ_fall_back(full_capture, variant):
    torch.manual_seed(0)
    model = Stack(variant)
    check(model, (torch.randint(0, 30, (2, 5)),), full_capture, shortcut=False)


def test_plain_stack_takes_the_shortcut(full_capture):
    """The control for the test above: the same model without a per-layer difference."""
    torch.manual_seed(0)
    check(Stack("plain"), (torch.randint(0, 30, (2, 5)),), full_capture, shortcut=True)


def test_alternating_moe_layers_fall_back(full_capture):
    """Every other layer a mixture of experts: the children differ in their parameters."""
    class Dense(nn.Module):
        def __init__(self, width):
            super().__init__()
            self.fc = nn.Linear(width, width)

        def forward(self, x):
            return x + self.fc(x)

    class Experts(nn.Module):
        def __init__(self, width, n=4):
            super().__init__()
            self.router = nn.Linear(width, n)
            self.experts = nn.Parameter(torch.randn(n, width, width) / width ** 0.5)

        def forward(self, x):
            weights = torch.softmax(self.router(x), -1)
            return x + torch.einsum("be,eio,bi->bo", weights, self.experts, x)

    torch.manual_seed(0)
    model = nn.Sequential(*[Experts(16) if i % 2 else Dense(16) for i in range(6)])
    check(model, (torch.randn(3, 16),), full_capture, shortcut=False)


def test_gemma2_sliding_and_full_attention_fall_back(full_capture):
    """Gemma 2 alternates sliding-window and full attention by layer (the config's layer_types):
    identical parameters, different masks per layer, so no layer stands for another."""
    cfg = hf().Gemma2Config(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=6,
                            num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=4,
                            max_position_embeddings=32, use_cache=False)
    torch.manual_seed(0)
    model = hf().Gemma2ForCausalLM(cfg)
    assert len(set(cfg.layer_types)) == 2
    short = check(model, (torch.randint(0, 64, (1, 8)),), full_capture, shortcut=False)
    assert len(short.attention) == 6


@pytest.mark.slow
def test_gemma2_all_full_attention_takes_the_shortcut(full_capture):
    """The control: the same architecture with one attention type for every layer."""
    cfg = hf().Gemma2Config(vocab_size=64, hidden_size=32, intermediate_size=48, num_hidden_layers=6,
                            num_attention_heads=2, num_key_value_heads=1, head_dim=16, sliding_window=4,
                            max_position_embeddings=32, use_cache=False, layer_types=["full_attention"] * 6)
    torch.manual_seed(0)
    check(hf().Gemma2ForCausalLM(cfg), (torch.randint(0, 64, (1, 8)),), full_capture, shortcut=True)


def test_shared_block_is_not_a_run():
    """One module object repeated (weights shared across depth) is captured whole."""
    block = nn.Linear(8, 8)
    model = nn.Sequential(block, block, block, block, block)
    assert repeats.repeated_runs(model, (torch.randn(2, 8),), {}) == []
