"""Coord checks of a NeRF-like MLP whose skip layer reads ``cat([h (d), positional encoding (54)])``
(tests/graph/test_column_blocks.py), with tests/validation/external_coord.py's conventions in the base
form (``base=`` the model at 64, where the encoding's block is visible: automatic mode reads the
encoding's frequency axis as width), zoo digits, 4 steps, batch 32, 3 seeds, widths 64..512.

Measured (2026-12-04): with the skip layer planned as one hidden matrix of fan-in d + 54, SGD fails
(its output change shrinks, -0.58; h2's -0.58; skip.weight's update -0.50: the encoding's columns
start and move like a hidden layer's, d^-1/2 of an input layer's); with the columns planned as an input
layer (planning/blocks.py) sptrace passes under SGD and Adam; SP fails (docs/rules.md "Column blocks")."""
import pytest

import sptrace.planning.plan as plan_module
from tests.graph.test_column_blocks import SkipConcatMLP
from tests.validation.external_coord import external_coord_check

WIDTHS = (64, 128, 256, 512)


def check(optimizer, parametrization="sptrace", n_seeds=3):
    return external_coord_check(SkipConcatMLP, "mlp", optimizer, parametrization, WIDTHS, steps=4, batch_size=32,
                                n_seeds=n_seeds, form="base")


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_a_skip_concatenation_is_width_stable(optimizer, one_thread):
    verdict = check(optimizer)
    assert verdict.passed, verdict.summary()
    assert not check(optimizer, "sp", n_seeds=1).passed


def test_one_rule_for_the_whole_weight_is_not(monkeypatch, one_thread):
    monkeypatch.setattr(plan_module, "column_rules", lambda *args, **kwargs: None)
    verdict = check("sgd")
    assert not verdict.passed, verdict.summary()
    assert {c.module for c in verdict.worst if c.status == "shrinks"} >= {"skip"}
