"""graph/values.py alone: what a value is, read off the aten graph torch.export makes."""
import pytest
import torch
import torch.nn.functional as F

from sptrace.graph.values import l2_norm_of, unit_vector_of


class Returns(torch.nn.Module):
    def __init__(self, f):
        super().__init__()
        self.f = f

    def forward(self, x):
        return self.f(x)


def _output(f):
    """The node that computes ``f(x)`` for x of shape (2, 3, 8), in the exported graph."""
    graph = torch.export.export(Returns(f), (torch.randn(2, 3, 8),)).graph
    [out] = [n for n in graph.nodes if n.op == "output"]
    return out.args[0][0]


@pytest.mark.parametrize("norm", [
    lambda x: x.norm(dim=-1, keepdim=True),
    lambda x: torch.linalg.vector_norm(x, 2, dim=-1),
    lambda x: x.norm(dim=-1, keepdim=True).clamp_min(1e-6),
    lambda x: torch.pow(torch.sum(torch.pow(x, 2), dim=-1, keepdim=True), 0.5),
    lambda x: torch.sqrt((x * x).sum(-1) + 1e-12),
])
def test_an_l2_norm_over_the_last_axis_is_read_in_any_spelling(norm):
    found = l2_norm_of(_output(norm))
    assert found is not None and found[1] == [2]
    assert found[0].op == "placeholder"


@pytest.mark.parametrize("not_a_norm", [
    lambda x: x.norm(p=1, dim=-1),
    lambda x: torch.sqrt((x * x).mean(-1)),  # an RMS
    lambda x: torch.sqrt((x * x.flip(-1)).sum(-1)),
    lambda x: x.norm(dim=-1) + x.sum(-1),
])
def test_other_statistics_are_not_l2_norms(not_a_norm):
    assert l2_norm_of(_output(not_a_norm)) is None


def test_the_norm_over_every_axis_names_every_axis():
    assert l2_norm_of(_output(lambda x: torch.sqrt(torch.sum(x ** 2))))[1] == [0, 1, 2]


@pytest.mark.parametrize("unit, is_unit", [
    (lambda x: F.normalize(x, dim=-1), True),
    (lambda x: (x / x.norm(dim=-1, keepdim=True)).transpose(0, 1), True),
    (lambda x: x / x.norm(dim=-1, keepdim=True).clamp_min(1e-6), True),
    (lambda x: x.flip(0) / x.norm(dim=-1, keepdim=True), False),  # another value's norm
    (lambda x: x / x.norm(p=1, dim=-1, keepdim=True), False),
])
def test_a_unit_vector_is_a_value_over_its_own_l2_norm(unit, is_unit):
    assert (unit_vector_of(_output(unit)) is not None) is is_unit
