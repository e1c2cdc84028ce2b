"""The one-line call, ``sptrace.parametrize(model, optimizer="adam")``: what lr means without a base
(docs/parametrize.md, "What lr means"), what it says it did, and that at the reference width it is
exactly standard practice."""
import math

import pytest
import torch
import torch.nn as nn

import models_zoo
import sptrace


def mlp(width):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))


def lrs(opt):
    return {n: g["lr"] for g in opt.param_groups for n in g["sptrace_names"]}


def test_the_one_line_call_uses_adams_default_lr_at_the_reference_width():
    model = models_zoo.get("mlp").build(512)
    opt = sptrace.parametrize(model, optimizer="adam")
    lr = lrs(opt)
    assert lr["fc1.weight"] == 1e-3  # fixed fan-in: no width ratio
    assert lr["fc2.weight"] == pytest.approx(1e-3 * 256 / 512) and lr["fc3.weight"] == pytest.approx(1e-3 * 256 / 512)
    assert all(b == 1e-3 for n, b in lr.items() if n.endswith("bias"))
    for g in opt.param_groups:
        assert g["sptrace_lr_note"].startswith(f"0.001 x {g['sptrace_lr_multiplier']:.4g} = ")
        assert "lr is the lr at width 256 (this model's width: 512)" in g["sptrace_lr_note"]
    report = opt.sptrace.report()
    assert "Notes:" in report and "0.001 x 0.5 = 0.0005: Adam: lr ∝ 1/d_in" in report


def test_at_the_reference_width_it_is_standard_practice_but_for_the_zero_readout():
    model, library = mlp(256), mlp(256)
    opt = sptrace.parametrize(model, "adam", example_inputs=(torch.randn(2, 64),))
    assert set(lrs(opt).values()) == {1e-3}
    for (name, ours), theirs in zip(model.named_parameters(), library.parameters()):
        if name == "4.weight":
            assert not ours.any()  # μP's zero readout (docs/parametrize.md, "Zero readouts")
        else:
            assert torch.equal(ours, theirs), name


@pytest.mark.parametrize("optimizer, default", [("sgd", 1e-3), ("adamw", 1e-3), ("spectral", 0.02)])
def test_every_optimizer_gets_its_own_default_lr(optimizer, default):
    opt = sptrace.parametrize(mlp(256), optimizer, example_inputs=(torch.randn(2, 64),))
    assert {g["sptrace_base_lr"] for g in opt.param_groups} == {default}


def test_reference_width_moves_the_anchor():
    opt = sptrace.parametrize(mlp(512), "adam", lr=3e-3, reference_width=512, example_inputs=(torch.randn(2, 64),))
    assert set(lrs(opt).values()) == {3e-3}
    opt = sptrace.parametrize(mlp(512), "adam", lr=3e-3, reference_width=128, example_inputs=(torch.randn(2, 64),))
    assert lrs(opt)["2.weight"] == pytest.approx(3e-3 / 4)


def test_the_init_follows_the_library_law_it_detects():
    """Width 1024 against the reference 256: PyTorch's default hidden init already shrinks like
    1/sqrt(fan_in), as μP's does (kept); a fixed-std init (Hugging Face's 0.02) is scaled by
    sqrt(256/1024) so that it shrinks the same way."""
    torch_default = mlp(1024)
    before = torch_default[2].weight.detach().clone()
    sptrace.parametrize(torch_default, "adam", example_inputs=(torch.randn(2, 64),))
    assert torch.equal(torch_default[2].weight, before)
    fixed = mlp(1024)
    for layer in (fixed[0], fixed[2], fixed[4]):
        nn.init.normal_(layer.weight, std=0.02)
    hidden = fixed[2].weight.detach().clone()
    opt = sptrace.parametrize(fixed, "adam", example_inputs=(torch.randn(2, 64),))
    assert torch.allclose(fixed[2].weight, hidden * math.sqrt(256 / 1024))
    assert "default x0.5" in opt.sptrace.report()


def test_a_config_s_initializer_range_is_the_law_only_where_the_weights_were_drawn_with_it():
    """Hugging Face Funnel Transformer names an initializer_range (0.1) but draws its linears from
    N(0, 1/(fan_in + fan_out)) and its relative-attention tensors from U(0, 0.1). Read as a constant
    law (before), the linears' std, which already falls like 1/sqrt(width), was scaled by the rule's
    sqrt(256/64) once more: every hidden matrix's nat@0 fell with slope -0.5 and the coord check
    failed 54 of 125 (docs/validation.md, "Funnel Transformer"). Read off the weights, the linears
    keep the library's init at width 64 (their fan-in law is the rule's), the relative-attention
    kernel, drawn off centre, is a width-free constant scaled by the rule, and the per-head segment
    table (a fixed block per head) is kept; a GPT-2 drawn with its range stays constant."""
    transformers = pytest.importorskip("transformers")
    config = transformers.FunnelConfig(vocab_size=77, d_model=64, n_head=4, d_head=16, d_inner=256, block_sizes=[1, 1],
                                       num_decoder_layers=1, hidden_dropout=0.0, attention_dropout=0.0,
                                       activation_dropout=0.0)
    torch.manual_seed(0)
    planned = {p.name: p for p in sptrace.plan(transformers.FunnelForMaskedLM(config), "adam",
                                               example_inputs=torch.randint(0, 77, (2, 16))).params}
    attention = "funnel.encoder.blocks.0.0.attention."
    for name in (attention + "q_head.weight", attention + "post_proj.weight", "funnel.encoder.blocks.0.0.ffn.linear_2.weight"):
        assert (planned[name].init, planned[name].init_scale) == ("keep", 1.0), name
    assert (planned[attention + "r_kernel"].init, planned[attention + "r_kernel"].init_scale) == ("scale", 2.0)
    assert planned[attention + "seg_embed"].init == "keep"
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(n_embd=64, n_head=4, n_layer=1, vocab_size=77,
                                                                n_positions=64))
    planned = {p.name: p for p in sptrace.plan(gpt2, "adam", example_inputs=torch.randint(0, 77, (2, 16))).params}
    assert planned["transformer.h.0.mlp.c_fc.weight"].init_scale == pytest.approx(2.0)


def test_the_absolute_form_is_the_explicit_prefactor():
    opt = sptrace.parametrize(mlp(512), "adam", lr=1.0, form="absolute", example_inputs=(torch.randn(2, 64),))
    assert lrs(opt)["2.weight"] == pytest.approx(1 / 512)
    assert "absolute form: lr is the rules' width-free prefactor" in opt.param_groups[0]["sptrace_lr_note"]


def test_param_groups_reads_the_same_defaults():
    groups = sptrace.param_groups(mlp(512), "adam", example_inputs=(torch.randn(2, 64),))
    assert {g["lr"] for g in groups} == {1e-3, 5e-4}
    assert all(g["sptrace_lr_note"] for g in groups)


def test_param_groups_and_parametrize_read_the_same_weight_decay():
    """AdamW's own default decay (0.01) reaches both twins' groups; a width-512 hidden weight's lr
    multiplier is 1/2, so its decay is 0.02 (lr x decay width-free)."""
    x = (torch.randn(2, 64),)
    groups = sptrace.param_groups(mlp(512), "adamw", example_inputs=x)
    built = sptrace.parametrize(mlp(512), "adamw", example_inputs=x).param_groups
    key = lambda gs: sorted((g["lr"], g["weight_decay"]) for g in gs)  # noqa: E731
    assert key(groups) == key(built)
    assert (5e-4, pytest.approx(0.02)) in [(g["lr"], g["weight_decay"]) for g in groups]
