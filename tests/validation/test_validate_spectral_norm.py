"""Coord checks of a spectral-normed MLP (tests/validation/spectralnormed.py) with
tests/validation/external_coord.py's conventions (the one-line ``sptrace.parametrize`` call, validate's
lr, the zoo's digits, 4 steps, batch 32, 3 init seeds, widths 64..512): module outputs and every
parameter's natural norms. The layer uses ``W / sigma(W)``, of spectral norm 1 at every width; sptrace
plans W by its layer's rule and multiplies the layer's input by the spectral norm the rule's init has
(planning/weightnorm.py ``spectral_norm_multiplier``; docs/rules.md "Self-normalised weights").

Measured (2026-12-03): sptrace passes under Adam and SGD with either API; the library default (SP) fails
(its layers' output changes shrink, -0.35 to -0.6); without the multiplier the input layer's and the readout's
scale stays 1 and sptrace fails too (Adam: the layers' output changes shrink, -0.3 to -0.4; SGD: the
readout's output change grows +0.6; docs/rules.md has the table)."""
import functools

import pytest

import sptrace.planning.plan as plan_module
from tests.validation.external_coord import external_coord_check
from tests.validation.spectralnormed import SpectralNormedMLP

WIDTHS = (64, 128, 256, 512)


def check(optimizer, parametrization="sptrace", api="hook", n_seeds=3):
    return external_coord_check(functools.partial(SpectralNormedMLP, api=api), "mlp", optimizer, parametrization,
                                WIDTHS, steps=4, batch_size=32, n_seeds=n_seeds)


@pytest.mark.parametrize("optimizer, api", [("adam", "hook"), ("sgd", "parametrizations")])
def test_a_spectral_normed_mlp_is_width_stable(optimizer, api, one_thread):
    verdict = check(optimizer, api=api)
    assert verdict.passed, verdict.summary()
    assert not check(optimizer, "sp", api=api, n_seeds=1).passed


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_without_the_multiplier_it_is_not(optimizer, monkeypatch, one_thread):
    monkeypatch.setattr(plan_module, "spectral_norm_multiplier", lambda *args, **kwargs: 1.0)
    verdict = check(optimizer, n_seeds=1)
    assert not verdict.passed, verdict.summary()
