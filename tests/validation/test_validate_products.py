"""Coord checks of a KAN-style hidden layer whose weight is the entrywise product of two parameters,
``W = weight * scaler[..., None]`` over a fixed basis axis (tests/graph/test_products.py's ``KANLike``),
between a plain input layer and a plain readout, with tests/validation/external_coord.py's conventions
(the one-line ``sptrace.parametrize`` call, validate's lr, the zoo's digits). Both factors are judged by
what they do to W (sptrace/validation/operators.py ``judge``). sptrace plans the larger factor with W's
rule and the other as a width-free gain of W's entries (planning/products.py; docs/rules.md "Products of
parameters"). Before, each factor got W's whole rule: the product started like 1/n, not n^-1/2, and the
factor's step moved W too little."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sptrace.planning.plan as plan_module
from tests.graph.test_products import KANLike
from tests.validation.external_coord import external_coord_check

WIDTHS = (32, 64, 128, 256)


class KANHidden(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.inp, self.hidden, self.out = nn.Linear(3072, width), KANLike(width, width), nn.Linear(width, 10)

    def forward(self, x):
        return self.out(self.hidden(torch.tanh(self.inp(x))))


def check(optimizer, parametrization="sptrace", n_seeds=2):
    return external_coord_check(KANHidden, "mlp", optimizer, parametrization, WIDTHS, steps=3, batch_size=16,
                                n_seeds=n_seeds)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_product_weight_is_width_stable(optimizer, one_thread):
    verdict = check(optimizer)
    assert verdict.passed, verdict.summary()
    assert not check(optimizer, "sp", n_seeds=1).passed


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_with_each_factor_planned_as_the_whole_weight_it_is_not(optimizer, monkeypatch, one_thread):
    monkeypatch.setattr(plan_module, "product_rules", lambda records, rules, *args, **kwargs: dict(rules))
    verdict = check(optimizer, n_seeds=1)
    assert not verdict.passed, verdict.summary()
