"""Coord checks of weight-normed models (tests/validation/weightnormed.py) with
tests/validation/external_coord.py's conventions (the one-line ``sptrace.parametrize`` call, validate's
lr, zoo images, 3 steps, batch 8, 3 init seeds, widths 32..256): module outputs and every parameter's
natural norms; v judged as itself (W's axes, W = v at init), g by what it does to W (coord.py's
``judge`` (sptrace/validation/operators.py): W0's natural norm at init, W0 times the RMS relative change of g's slices for an update, and
the operator ``Δg v/|v|`` where g starts at zero). docs/rules.md "Weight norm" has the figures.

* ``WeightNormedNet`` (every layer weight-normed over dim 0, the readout too; under Adam the readout's g
  starts at zero): sptrace passes under Adam and SGD; the library default (SP) fails; and without g's
  slice-norm factor c (the gain's rule alone) the readout's g fails (+0.46 under Adam, +0.97 under SGD).
* ``PosConvNet`` (wav2vec2's grouped positional conv, normed over dim 2, c ~ sqrt(width)): sptrace
  passes under Adam, SP fails, and without c its g's update shrinks (-0.56). Under SGD it fails (g -0.53,
  v -0.29), and so does the same net with the conv's weight plain (its update -0.29): open, xfail."""
import functools

import pytest

import sptrace.planning.weightnorm as weightnorm
from tests.validation.external_coord import external_coord_check
from tests.validation.weightnormed import PosConvNet, WeightNormedNet

WIDTHS = (32, 64, 128, 256)
G = "head.parametrizations.weight.original0"  # the readout's g


def check(build, optimizer, parametrization="sptrace", n_seeds=3):
    return external_coord_check(build, "cnn", optimizer, parametrization, WIDTHS, steps=3, batch_size=8,
                                n_seeds=n_seeds)


def slopes(verdict, name):
    return {q: c.slope for q, c in verdict.modules[name].checks.items()}


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_weight_normed_net_is_width_stable(optimizer, one_thread):
    verdict = check(WeightNormedNet, optimizer)
    assert verdict.passed, verdict.summary()
    assert {"conv1.parametrizations.weight.original0", "conv2.parametrizations.weight.original1", G} <= set(verdict.params)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_weight_normed_net_in_standard_parametrization_is_not(optimizer, one_thread):
    verdict = check(WeightNormedNet, optimizer, "sp", n_seeds=1)
    assert not verdict.passed, verdict.summary()


@pytest.mark.parametrize("optimizer, grows", [("adam", 0.25), ("sgd", 0.6)])
def test_without_the_slice_norm_the_readout_s_g_moves_too_much(optimizer, grows, monkeypatch, one_thread):
    """The control: g ruled as a plain gain (c = 1 at every width) is too fast at the readout, where
    c ~ width^-1/2 (Adam: lr x c, SGD: x c^2)."""
    monkeypatch.setattr(weightnorm, "slice_norm", lambda *args, **kwargs: 1.0)
    verdict = check(WeightNormedNet, optimizer, n_seeds=1)
    assert slopes(verdict, G)["dnat"] > grows, verdict.summary()


def test_a_positional_conv_normed_per_tap_is_width_stable_under_adam(one_thread):
    verdict = check(PosConvNet, "adam")
    assert verdict.passed, verdict.summary()
    assert not check(PosConvNet, "adam", "sp", n_seeds=1).passed


def test_without_the_slice_norm_a_per_tap_g_moves_too_little(monkeypatch, one_thread):
    monkeypatch.setattr(weightnorm, "slice_norm", lambda *args, **kwargs: 1.0)
    verdict = check(PosConvNet, "adam", n_seeds=1)
    assert slopes(verdict, "conv.parametrizations.weight.original0")["dnat"] < -0.4, verdict.summary()


@pytest.mark.xfail(strict=True, reason="open: under SGD the grouped positional conv's update shrinks with its weight "
                   "plain too (-0.29); weight-normed, v -0.34 and g -0.52 at 3 steps (-0.36, -0.34 at 10): "
                   "docs/rules.md \"Weight norm\"")
@pytest.mark.parametrize("normed", [True, False])
def test_a_positional_conv_under_sgd(normed, one_thread):
    verdict = check(functools.partial(PosConvNet, normed=normed), "sgd")
    assert verdict.passed, verdict.summary()
