"""The plan of a self-normalised weight (planning/plan.py, planning/weightnorm.py ``spectral_norm_multiplier``;
docs/rules.md "Self-normalised weights"): a spectral-normed layer's use is multiplied by the spectral norm
the rules' init has, relative to the reference width (1 there and for every hidden layer); a weight
divided by another scalar of itself (a Frobenius norm) gets no multiplier and a warning naming it."""
import math

import pytest
import torch
from torch import nn

import sptrace
from tests.graph.test_self_norm import HandNormed, Net, seeded

X = torch.randn(4, 5)


@pytest.mark.parametrize("api", ["hook", "parametrizations"])
def test_a_spectral_normed_layer_s_multiplier_is_its_rule_s_spectral_norm(api):
    model = seeded(Net, width=64, api=api)
    opt = sptrace.parametrize(model, "adam", example_inputs=(X,))
    multipliers = {m.module: m.value for m in opt.sptrace.multipliers}
    # width 64 against the reference 256: an input layer's norm sqrt(width), a readout's 1/sqrt(width)
    assert multipliers == pytest.approx({"a": 0.5, "head": 2.0}), multipliers
    assert all(m.what == "spectral-normed layer input" for m in opt.sptrace.multipliers)
    assert "divided by its spectral norm" in opt.sptrace.report()


def test_the_multiplier_scales_the_layer_s_weight_term_only():
    model = seeded(Net, width=64, api="parametrizations")
    sptrace.parametrize(model, "sgd", example_inputs=(X,))
    h = torch.randn(4, 5)
    layer = model.a.eval()  # training mode would move the power iteration on at every read of the weight
    assert torch.allclose(layer(h), nn.functional.linear(h, layer.weight) * 0.5 + layer.bias, atol=1e-6)


def test_at_the_reference_width_nothing_is_multiplied():
    opt = sptrace.parametrize(seeded(Net, width=256), "adam", example_inputs=(X,))
    assert not opt.sptrace.multipliers


def test_in_base_form_the_multiplier_is_one_at_the_base():
    base = seeded(Net, width=32)
    opt = sptrace.parametrize(seeded(Net, width=128), "adam", example_inputs=(X,), base=base)
    multipliers = {m.module: m.value for m in opt.sptrace.multipliers}
    assert multipliers == pytest.approx({"a": 2.0, "head": 0.5}), multipliers
    assert not sptrace.parametrize(seeded(Net, width=32), "adam", example_inputs=(X,), base=base).sptrace.multipliers


def test_another_norm_of_the_weight_gets_a_warning_and_no_multiplier():
    opt = sptrace.parametrize(seeded(HandNormed, width=64), "adam", example_inputs=(X,))
    assert not opt.sptrace.multipliers
    assert any(w.startswith("w: the forward divides it by a norm computed from itself") for w in opt.sptrace.warnings)


def test_the_standard_parametrization_gets_no_multiplier():
    opt = sptrace.parametrize(seeded(Net, width=64), "adam", example_inputs=(X,), parametrization="sp")
    assert not opt.sptrace.multipliers and math.isfinite(opt.param_groups[0]["lr"])
