"""The rules of a weight made as the entrywise product of two parameters, ``W = carrier * factor``
(planning/products.py; docs/rules.md "Products of parameters"): the carrier keeps W's rule, the factor
is a width-free gain of W's entries (init 1 in the absolute form, the library's values at the base width
in the anchored forms) whose lr moves W as the carrier's does: Adam's the carrier's / sigma, SGD's the
carrier's / sigma^2, sigma the carrier's planned std. Before, each factor got W's whole rule, so the
product's init shrank like the square of the rule's (a hidden layer's like 1/n, not n^-1/2)."""
import math

import pytest
import torch

import sptrace
from sptrace.planning.plan import plan
from tests.graph.test_products import X, KANNet

BASE, WIDTH = 16, 64  # n / b = 4


def _plans(optimizer, width=WIDTH, **kw):
    with torch.device("meta"):
        base = KANNet(BASE)
    return sptrace.plan(KANNet(width), optimizer, lr=1.0, example_inputs=(X,), base=base, library_init="torch",
                        **kw).params


def _by_name(plans):
    return {p.name: p for p in plans}


@pytest.mark.parametrize("optimizer, expected", [
    # factor's lr multiplier of (input, hidden, readout) at n = 4 b: the carrier's over sigma's ratio
    # Adam: 1 / 1, (1/4) / (1/2), (1/4) / (1/4); SGD: 4 / 1, 1 / (1/4), (1/4) / (1/16)
    ("adam", (1.0, 0.5, 1.0)), ("sgd", (4.0, 4.0, 4.0)),
])
def test_the_factor_is_a_width_free_gain_and_its_lr_moves_w_as_the_carrier_s(optimizer, expected):
    plans = _by_name(_plans(optimizer))
    for i, lr in enumerate(expected):
        carrier, factor = plans[f"layers.{i}.weight"], plans[f"layers.{i}.scaler"]
        plain = plans[f"layers.{i}.base"]  # the layer's plain matrix: the carrier's rule is W's, as before
        assert carrier.lr_multiplier == pytest.approx(plain.lr_multiplier), i
        assert factor.lr_multiplier == pytest.approx(lr), i  # before: the carrier's (Adam 1, 1/4, 1/4)
        assert factor.rule.weight_decay_multiplier == pytest.approx(1 / lr)
        # width-free: PyTorch's (out, in) init has std ~ in^-1/2, so the hidden and readout factors are
        # scaled back to the base's size by (n/b)^1/2; the input layer's (in = 12) is kept
        assert (factor.init, factor.init_scale) == (("keep", 1.0) if i == 0 else ("scale", pytest.approx(2.0))), i
    assert plans["layers.2.weight"].init == "zeros" and plans["layers.2.base"].init == "zeros"
    assert "a gain of W = layers.1.weight * this" in plans["layers.1.scaler"].lr_note


def test_adam_eps_and_the_spectral_sign_step_follow_sigma():
    adam = _by_name(_plans("adam"))
    assert adam["layers.1.scaler"].eps_multiplier == pytest.approx(adam["layers.1.weight"].eps_multiplier * 0.5)
    spectral = _by_name(_plans("spectral"))["layers.1.scaler"]
    assert (spectral.update, spectral.lr_multiplier) == ("sign", 1.0)
    assert spectral.spectral_scale == pytest.approx(0.25 / 0.5)  # Adam's step of the carrier over sigma


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_the_product_s_init_shrinks_as_the_rule_not_as_its_square(optimizer):
    """The hidden product's RMS at n = 64 and 256 over base 16: the rule's (256/64)^-1/2 = 0.5; before,
    both factors shrank like n^-1/2 and the product like 1/n (0.25)."""
    rms = {}
    for width in (64, 256):
        torch.manual_seed(0)
        model = KANNet(width)
        with torch.device("meta"):
            base = KANNet(BASE)
        sptrace.parametrize(model, optimizer, lr=1.0, example_inputs=(X,), base=base)
        layer = model.layers[1]
        rms[width] = float((layer.weight * layer.scaler[..., None]).square().mean().sqrt())
        rms[width, "base"] = float(layer.base.square().mean().sqrt())
    assert rms[256] / rms[64] == pytest.approx(0.5, rel=0.1)
    assert rms[256, "base"] / rms[64, "base"] == pytest.approx(0.5, rel=0.1)


def test_absolute_form_starts_the_factor_at_one_so_w_is_the_planned_weight():
    plans = _by_name(plan(sptrace.trace(KANNet(WIDTH), X).records, "adam", lr=1.0, form="absolute"))
    carrier, factor = plans["layers.1.weight"], plans["layers.1.scaler"]
    assert factor.init == "ones" and carrier.init == "gaussian"
    sigma = 1 / math.sqrt(4 * WIDTH)  # hidden over n * 4 (the basis axis is fixed, so min(1, ...) = 1)
    assert carrier.init_std == pytest.approx(sigma)
    assert factor.lr_multiplier == pytest.approx(carrier.lr_multiplier / sigma)


def test_the_baselines_and_keep_leave_the_factor_s_values():
    plans = _by_name(_plans("adam", parametrization="sp"))
    assert plans["layers.1.scaler"].init == "keep" and plans["layers.1.scaler"].lr_multiplier == 1.0
    kept = _by_name(_plans("adam", init="keep"))["layers.1.scaler"]
    assert kept.init == "keep" and kept.lr_multiplier == pytest.approx(0.5)
