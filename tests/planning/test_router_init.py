"""planning/readouts.py: under zero_readout="auto" (the default) a router (a readout whose logits reach
top-k, ``record.selected_by``) starts at ROUTER_INIT_SCALE times the readout rule's init: near zero, so
its init's width^-1/2 share of the logits' change is gone, but not at zero, which would tie top-k
(docs/rules.md "Mixture-of-experts layers"). Measured on the Hugging Face MoE models in
tests/validation/test_validate_moe.py."""
import pytest
import torch

import sptrace
from sptrace.planning.readouts import ROUTER_INIT_SCALE
from tests.external_models import MOE_MODELS

pytest.importorskip("transformers")

TOKENS = torch.randint(0, 77, (2, 8), generator=torch.Generator().manual_seed(0))
ROUTER = "model.layers.0.mlp.gate.weight"


def _parametrized(name, optimizer, **options):
    torch.manual_seed(0)
    model = MOE_MODELS[name][0](64)
    opt = sptrace.parametrize(model, optimizer, lr=0.05, example_inputs=(TOKENS,), **options)
    return model, opt


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("name", ["mixtral", "qwen3-moe"])
def test_router_starts_near_zero_and_the_lm_head_at_zero(name, optimizer):
    model, opt = _parametrized(name, optimizer)
    full, _ = _parametrized(name, optimizer, zero_readout=False)
    router, full_router = model.get_parameter(ROUTER), full.get_parameter(ROUTER)
    assert torch.allclose(router, full_router * ROUTER_INIT_SCALE, rtol=1e-5, atol=0)
    logits = torch.randn(64, 64) @ router.detach().T
    assert logits.topk(3, dim=-1).values.diff(dim=-1).abs().min() > 0  # no ties among the top experts
    assert not model.lm_head.weight.any()  # an ordinary readout still starts at zero
    plan = opt.sptrace[ROUTER]
    assert plan.init == "scale" and "router" in plan.citation and "tie top-k" in plan.citation
    line = next(l for l in opt.sptrace.report().splitlines() if l.startswith(ROUTER))
    assert "router: x0.001" in line


def test_zero_readout_true_and_false_override_the_router_rule():
    forced, _ = _parametrized("mixtral", "sgd", zero_readout=True)
    assert not forced.get_parameter(ROUTER).any()
    full, opt = _parametrized("mixtral", "sgd", zero_readout=False)
    assert "router" not in opt.sptrace[ROUTER].citation
    torch.manual_seed(0)
    library = MOE_MODELS["mixtral"][0](64).get_parameter(ROUTER)
    # the readout rule's init in the reference form: the library's values x reference width / width
    assert torch.allclose(full.get_parameter(ROUTER), library * 4, rtol=1e-5)


def test_a_router_bias_starts_near_zero_with_its_router():
    """gpt-oss's router has a bias (the library's N(0, 0.02²)): left at that while the weight starts near
    zero, the bias alone would rank the experts, the same for every token."""
    torch.manual_seed(0)
    model = MOE_MODELS["gpt-oss"][0](64)
    opt = sptrace.parametrize(model, "sgd", lr=0.05, example_inputs=(TOKENS,))
    torch.manual_seed(0)
    full = MOE_MODELS["gpt-oss"][0](64)
    sptrace.parametrize(full, "sgd", lr=0.05, example_inputs=(TOKENS,), zero_readout=False)
    router, full_router = model.model.layers[0].mlp.router, full.model.layers[0].mlp.router
    assert torch.allclose(router.bias, full_router.bias * ROUTER_INIT_SCALE, rtol=1e-5, atol=0)
    assert "router" in opt.sptrace["model.layers.0.mlp.router.bias"].citation
    seen = {}
    router.register_forward_hook(lambda module, inputs, output: seen.setdefault("logits", output))
    with torch.no_grad():
        model(torch.randint(0, 77, (8, 32), generator=torch.Generator().manual_seed(1)))
    logits = seen["logits"][0] if isinstance(seen["logits"], tuple) else seen["logits"]
    chosen = {tuple(sorted(pair)) for pair in logits.reshape(-1, 4).topk(2, dim=-1).indices.tolist()}
    assert len(chosen) > 1  # the tokens' own logits rank the experts, not the bias alone
