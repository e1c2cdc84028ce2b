"""Coord check of a normalizer-free conv net whose convs standardise their weights in the forward
(tests/graph/test_standardised.py's NormFreeNet, timm's ScaledStdConv2d), on the zoo's images, with
tests/validation/external_coord.py's conventions (the one-line ``sptrace.parametrize`` call, widths
64..512, 3 init seeds): the raw weights planned as their layers' weights and the gains as gains keep
every module-output and parameter slope within ±0.25; the library default (one lr) does not.
Measured on 2 cores: sptrace 19 s (Adam) and 14 s (SGD), the baseline 2 s each; the default run
keeps SGD and the baselines, Adam is ``-m slow``."""
import pytest

from tests.graph.test_standardised import NormFreeNet
from tests.validation.external_coord import external_coord_check

WIDTHS = (64, 128, 256, 512)


def check(parametrization, optimizer, n_seeds=3):
    return external_coord_check(NormFreeNet, "cnn", optimizer, parametrization, WIDTHS, steps=3, batch_size=8,
                                n_seeds=n_seeds)


@pytest.mark.parametrize("optimizer", [pytest.param("adam", marks=pytest.mark.slow), "sgd"])
def test_standardised_convs_sptrace_stable(optimizer):
    verdict = check("sptrace", optimizer)
    assert verdict.passed, verdict.summary()


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_standardised_convs_standard_parametrization_is_not(optimizer):
    verdict = check("sp", optimizer, n_seeds=1)
    assert not verdict.passed, verdict.summary()
