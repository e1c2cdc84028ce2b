"""Coord checks of nn.Bilinear(n, n, n), whose (out, in1, in2) weight contracts two width inputs
(fan-in n², fan-out n; graph/ops.py) and which PyTorch draws from U(±1/sqrt(in1)), not by the
fan-in law (planning/library.py, law "in1"). Conventions of tests/validation/external_coord.py (the
one-line ``sptrace.parametrize`` call, validate's lr), on the digits. docs/rules.md, "nn.Bilinear":
under Adam every parameter's natural norms stay flat (Condition 2); the module output change of the
bilinear layer shrinks over the narrow widths (its library init reading its inputs' change), and
under SGD its update grows (open, measured there)."""
import pytest
import torch

import sptrace.planning.library as library
from tests.validation.external_coord import external_coord_check

WIDTHS = (16, 32, 64, 128)


class BilinearNet(torch.nn.Module):
    """Two Linear branches of the image joined by nn.Bilinear, a LayerNorm, a readout."""

    def __init__(self, width):
        super().__init__()
        self.a, self.b = torch.nn.Linear(3072, width), torch.nn.Linear(3072, width)
        self.join = torch.nn.Bilinear(width, width, width)
        self.norm = torch.nn.LayerNorm(width)
        self.head = torch.nn.Linear(width, 10)

    def forward(self, x):
        x = x.flatten(1)
        return self.head(torch.relu(self.norm(self.join(torch.relu(self.a(x)), torch.relu(self.b(x))))))


def parameter_checks(verdict):
    return {(name, q): check for name in verdict.params for q, check in verdict.modules[name].checks.items()}


def check(steps=4, n_seeds=2):
    return external_coord_check(BilinearNet, "mlp", "adam", "sptrace", WIDTHS, steps=steps, batch_size=16,
                                n_seeds=n_seeds)


def test_under_adam_every_parameter_s_natural_norms_are_flat(one_thread):
    checks = parameter_checks(check())
    assert {("join.weight", "nat@0"), ("join.weight", "dnat"), ("join.bias", "dnat")} <= set(checks)
    failing = {key: round(c.slope, 2) for key, c in checks.items() if not c.passed}
    assert not failing, failing


def test_read_by_the_fan_in_law_its_init_grows(monkeypatch, one_thread):
    """The control: with nn.Bilinear's draw read as PyTorch's fan-in law (n² here), the plan scales its
    init by sqrt(width) too little, and the weight's and the bias's natural norms at init grow."""
    monkeypatch.setattr(library, "_LAW_FANS", {**library._LAW_FANS, "in1": library._fan_in})
    checks = parameter_checks(check(steps=1, n_seeds=1))  # the init alone is judged here
    for name in ("join.weight", "join.bias"):
        assert checks[name, "nat@0"].status == "grows" and checks[name, "nat@0"].slope > 0.35, name
