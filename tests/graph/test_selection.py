"""graph/selection.py: a readout whose output reaches top-k (a router) is marked; others are not."""
import pytest
import torch
import torch.nn as nn

import sptrace
from sptrace.planning.readouts import ROUTER_INIT_SCALE


class TopKMoE(nn.Module):
    """A router (n -> experts) whose logits pick 2 experts, two experts, and a readout head."""

    def __init__(self, n, experts=4, classes=10):
        super().__init__()
        self.inp = nn.Linear(16, n)
        self.router = nn.Linear(n, experts)
        self.experts = nn.ModuleList(nn.Linear(n, n) for _ in range(experts))
        self.head = nn.Linear(n, classes)

    def forward(self, x):
        h = torch.relu(self.inp(x))
        gates = torch.softmax(self.router(h), dim=-1)
        weight, index = torch.topk(gates, 2, dim=-1)
        mixed = sum(weight[:, k:k + 1] * torch.stack([e(h) for e in self.experts], 1)[torch.arange(len(h)), index[:, k]]
                    for k in range(2))
        return self.head(torch.relu(mixed))


# The expert count is read from the graph (the axis top-k ranks, graph/axes.py) and from a base model
# alike (tests/graph/test_moe.py has the Hugging Face MoE layers).
@pytest.mark.parametrize("with_base", [False, True])
def test_a_router_feeding_topk_is_marked_and_the_head_is_not(with_base):
    traced = sptrace.trace(TopKMoE(64), torch.randn(4, 16), base=TopKMoE(32) if with_base else None)
    assert traced["router.weight"].role.value == "readout" and traced["router.weight"].selected_by
    assert "topk" in traced["router.weight"].selected_by
    assert traced["head.weight"].role.value == "readout" and traced["head.weight"].selected_by is None
    assert traced["inp.weight"].selected_by is None  # the walk stops at the next parameter's op


def test_zero_readout_auto_zeroes_the_head_and_starts_the_router_near_zero():
    torch.manual_seed(0)
    model = TopKMoE(64)
    sptrace.parametrize(model, "adam", example_inputs=(torch.randn(4, 16),), base=TopKMoE(32))
    assert not model.head.weight.any()
    assert model.router.weight.std() > 0  # zero logits would tie every expert in top-k
    torch.manual_seed(0)
    forced = TopKMoE(64)
    sptrace.parametrize(forced, "adam", example_inputs=(torch.randn(4, 16),), base=TopKMoE(32), zero_readout=True)
    assert not forced.router.weight.any()
    torch.manual_seed(0)
    off = TopKMoE(64)
    sptrace.parametrize(off, "adam", example_inputs=(torch.randn(4, 16),), base=TopKMoE(32), zero_readout=False)
    assert off.head.weight.any()
    # "auto" starts the router near zero: the readout rule's init x ROUTER_INIT_SCALE (planning/readouts.py)
    assert torch.allclose(model.router.weight, off.router.weight * ROUTER_INIT_SCALE, rtol=1e-5, atol=0)
