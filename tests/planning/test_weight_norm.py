"""The rules of a weight-normed layer (planning/weightnorm.py; docs/rules.md "Weight norm"): v gets its
layer weight's rule; g = c * gain, c the planned slice norm of v, gets the gain's rule with Adam's lr x c,
SGD's x c², SpectralSGD's scale x c, Adam's ε / c, the decay 1 / lr multiplier, and starts at ||v||
("norm"). Hand-derived values against the plan, in the reference form (width 1024 against 256) and
the absolute form."""
import math

import pytest
import torch

import sptrace
from sptrace.planning.plan import plan
from tests.graph.test_weight_norm import PositionalConv, WeightNormed, factors

B = 4


def traced(width, model=WeightNormed, x=None):
    torch.manual_seed(0)
    return sptrace.trace(model(width=width), torch.randn(B, 5) if x is None else x)


def by_name(plans):
    return {p.name: p for p in plans}


@pytest.mark.parametrize("optimizer, expected", [
    # (input g, hidden g, readout g) lr multipliers at width 1024 against the reference 256:
    # Adam: the gain's 1 x c (c: 1, 1, (256/1024)^1/2); SGD: the gain's n / 256 (a width gain) or 1 x c^2
    ("adam", (1.0, 1.0, 0.5)), ("sgd", (4.0, 4.0, 0.25)), ("spectral", (1.0, 1.0, 1.0)),
])
def test_g_s_lr_is_the_gain_s_times_the_slice_norm(optimizer, expected):
    plans = by_name(plan(traced(1024).records, optimizer, lr=1.0))
    for layer, lr in zip(("a", "b", "head"), expected):
        v, g = (plans[n] for n in factors(layer, True))
        assert g.lr_multiplier == pytest.approx(lr), layer
        assert g.weight_decay / g.lr_multiplier == 0 or g.rule.weight_decay_multiplier == pytest.approx(1 / lr)
        zeroed = layer == "head" and optimizer != "sgd"  # a zero readout: g at zero under Adam and SpectralSGD
        assert g.init == ("zeros" if zeroed else "norm") and g.norm_of == (None if zeroed else v.name)
    readout_g = plans[factors("head", True)[1]]
    if optimizer == "spectral":
        assert readout_g.spectral_scale == pytest.approx(0.5)  # the sign update's step x c
    if optimizer == "adam":
        assert readout_g.eps_multiplier == pytest.approx(2.0)  # the gradient of g is the gain's over c


def test_the_absolute_form_reads_c_off_v_s_gaussian_rule():
    """c = sigma_v * sqrt(slice size): hidden 1/sqrt(n) * sqrt(n) = 1, readout sqrt(3)/n * sqrt(n)."""
    n = 512
    plans = by_name(plan(traced(n).records, "adam", lr=1.0, form="absolute"))
    hidden_g, readout_g = plans[factors("b", True)[1]], plans[factors("head", True)[1]]
    assert hidden_g.lr_multiplier == pytest.approx(1.0)
    assert readout_g.lr_multiplier == pytest.approx(math.sqrt(3) / math.sqrt(n))
    assert plans[factors("head", True)[0]].init_std == pytest.approx(math.sqrt(3) / n)


def test_a_norm_per_kernel_tap_scales_like_the_square_root_of_the_width():
    """wav2vec2's positional conv: g per tap of a (n, n/4, 8) grouped conv, c = sigma sqrt(n * n/4) with
    sigma = 1/sqrt(8 n/4): c ~ sqrt(n). Adam lr x c (2 at 4x the reference width), SGD x c^2 (4)."""
    records = traced(1024, PositionalConv, torch.randn(B, 10, 6)).records
    g = factors("conv", True)[1]
    assert by_name(plan(records, "adam", lr=1.0))[g].lr_multiplier == pytest.approx(2.0)
    assert by_name(plan(records, "sgd", lr=1.0))[g].lr_multiplier == pytest.approx(4.0)
    absolute = by_name(plan(records, "adam", lr=1.0, form="absolute"))[g]
    assert absolute.lr_multiplier == pytest.approx(math.sqrt(1024 / 8))


@pytest.mark.parametrize("zero_readout", ["auto", True])
@pytest.mark.parametrize("optimizer", ["adam", "spectral", "sgd"])
def test_a_zero_readout_zeroes_g_never_v(optimizer, zero_readout):
    """A zero v is 0/0. Under Adam and SpectralSGD g starts at zero (their first step sets it to its planned
    size); under SGD the readout starts at its rule's init, and says why (docs/rules.md "Weight norm")."""
    plans = by_name(plan(traced(1024).records, optimizer, lr=1.0, zero_readout=zero_readout))
    v, g = (plans[n] for n in factors("head", True))
    assert v.init == "scale"
    if optimizer == "sgd":
        assert g.init == "norm" and "not zero" in v.citation
    else:
        assert g.init == "zeros" and "g starts at zero" in g.citation
    unzeroed = by_name(plan(traced(1024).records, optimizer, lr=1.0, zero_readout=False))
    assert unzeroed[g.name].init == "norm"


def test_the_baselines_keep_w_equal_to_v():
    """NTP would set a gain to 1: g is v's norm instead; SP keeps both, and so does init="keep"."""
    records = traced(1024).records
    ntp = by_name(plan(records, "adam", lr=1.0, parametrization="ntp", form="absolute"))
    sp = by_name(plan(records, "adam", lr=1.0, parametrization="sp"))
    for layer in ("a", "b", "head"):
        g = factors(layer, True)[1]
        assert ntp[g].init == "norm" and sp[g].init == "keep" and sp[g].lr_multiplier == 1.0
        assert by_name(plan(records, "adam", lr=1.0, init="keep"))[g].init == "keep"
