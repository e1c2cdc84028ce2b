"""A weight norm's g starts at ||v|| after v's init (init "norm", apply/init.py's ``norm_of_``), so that the
weight a layer uses, ``g * v / ||v||``, is the planned v exactly, at every width, in every form, on a
second call and from a plan applied later (docs/rules.md "Weight norm")."""
import pytest
import torch

import sptrace
from sptrace.apply.init import apply_init
from tests.graph.test_weight_norm import PositionalConv, WeightNormed

B = 4


def weights_equal_v(model, zeroed=()):
    """Every weight-normed layer's weight against its v (a readout whose g starts at zero: 0, v not)."""
    for module in model.modules():
        if torch.nn.utils.parametrize.is_parametrized(module, "weight"):
            v = module.parametrizations.weight.original1
            if module in zeroed:
                assert not module.weight.abs().max() and v.abs().max() > 0, module
            else:
                assert torch.allclose(module.weight, v, rtol=1e-5, atol=1e-8), module
            yield module


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("width", [64, 1024])
def test_the_weight_a_layer_uses_is_the_planned_v(optimizer, width):
    torch.manual_seed(0)
    model = WeightNormed(width=width)
    x = torch.randn(B, 5)
    opt = sptrace.parametrize(model, optimizer, example_inputs=(x,))
    zeroed = (model.head,) if optimizer == "adam" else ()  # Adam: the readout's g starts at zero, never v
    assert len(list(weights_equal_v(model, zeroed))) == 3
    assert opt.sptrace["head.parametrizations.weight.original1"].init == "scale"
    sptrace.parametrize(model, optimizer, example_inputs=(x,))  # again: g is set again from v
    assert len(list(weights_equal_v(model, zeroed))) == 3
    model(x).square().sum().backward()
    opt.step()
    assert all(torch.isfinite(p).all() for p in model.parameters()) and model.head.weight.abs().max() > 0


def test_a_plan_applied_later_sets_g_from_v():
    torch.manual_seed(0)
    x = torch.randn(B, 10, 6)
    model = PositionalConv(width=128)
    plan = sptrace.plan(model, "adam", example_inputs=(x,))
    with torch.no_grad():
        model.conv.parametrizations.weight.original0.fill_(3.0)  # g off its norm: the plan puts it back
    plan.init_(model, reset=False)
    assert len(list(weights_equal_v(model))) == 1


def test_norm_init_needs_its_v():
    g = torch.zeros(4, 1)
    with pytest.raises(sptrace.SptraceError, match="source="):
        apply_init(g, "norm", name="g")
    v = torch.randn(4, 6)
    apply_init(g, "norm", source=v, dim=0)
    assert torch.allclose(g.squeeze(1), v.norm(dim=1))
