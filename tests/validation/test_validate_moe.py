"""Coord checks on Hugging Face mixture-of-experts LMs (Mixtral, Qwen3-MoE as configured by default and as
released, OLMoE, Qwen2-MoE, gpt-oss;
tests/external_models.py), with tests/validation/external_coord.py's conventions (the zoo's byte-level
data, the one-line ``sptrace.parametrize`` call, validate's lr, module outputs and every classified
parameter's natural spectral norm judged, widths 64..512, 3 init seeds): each expert slice of the
stacked ``(experts, out, in)`` parameters is measured as its own matrix (its record's group axis).

10 steps, not the 3 of the dense external models: a router's update aligns over the first steps
(router logits' change slope -0.29 at 3 Adam steps on Mixtral, 3 seeds; docs/rules.md,
"Mixture-of-experts layers"). The router starts near zero (planning/readouts.py: the readout rule's
init x1e-3, so its init reading a changed input, which shrinks like width^-1/2, is gone). Each cell
runs for 18-42 s on 2 cores (the file 4:43): ``-m slow``."""
import pytest
import torch

from sptrace.spectral import natural_spectral_norm
from tests.external_models import MOE_MODELS
from tests.validation.external_coord import external_coord_check

transformers = pytest.importorskip("transformers")

WIDTHS = (64, 128, 256, 512)
STEPS = 10
# qwen3-moe is Hugging Face's default Qwen3MoeConfig (norm_topk_prob=False); qwen3-moe-released the routing of
# the released Qwen3-MoE checkpoints (norm_topk_prob=True in their config.json), otherwise the same build.
NAMES = ("mixtral", "qwen3-moe", "qwen3-moe-released", "olmoe", "qwen2-moe", "gpt-oss")
# Routers whose top-k weights are the softmax over all experts, not renormalised over the chosen ones
# (Qwen3-MoE and OLMoE with norm_topk_prob=False, their Hugging Face default; Qwen2-MoE): under SGD the
# router's logits' change still shrinks at these widths and 10 steps, batch 8 (measured with the router
# init x1e-3, 3 seeds; docs/rules.md "Mixture-of-experts layers"): logits / weight -0.37 / -0.40 Qwen3-MoE,
# -0.97 / -0.89 OLMoE, -0.79 / -0.59 Qwen2-MoE (whose zero-started shared_expert_gate, a sigmoid gate on a
# dense expert, also shrinks: -0.38 / -0.36). The router's gradient then has two parts: the choice among the
# chosen experts (as in a renormalised router) and the weight of the chosen experts against the others, whose
# direction follows the tokens' random split at init. Split on Qwen3-MoE (SGD, 10 steps, 2 seeds, widths
# 64-2048; scripts/moe_router.py split), the sum's logit change shrinks like width^-1/2 all the way (slope
# -0.48; 0.007/0.009 at 64, 0.002/0.001 at 2048) while each part shrinks more slowly (-0.22, -0.28): their
# Θ(1) pieces cancel, so the limit of the 10-step change is near zero and the check sees the width^-1/2
# fluctuation around it. It grows in with the steps: at 30 steps Qwen3-MoE's and OLMoE's checks pass (router
# -0.13, -0.13), Qwen2-MoE's router is at the edge (-0.25). With norm_topk_prob=True Qwen3-MoE and OLMoE pass
# at 10 steps (+0.16 / +0.14, -0.05 / -0.07), as Mixtral and gpt-oss do; at batch 32 Qwen3-MoE passes
# (-0.16 / -0.22) and OLMoE does not (-0.77 / -0.75). Steps, batch and tolerance stay as they are: an open
# case of the rules.
UNNORMALISED = ("qwen3-moe", "olmoe", "qwen2-moe")
SGD_OPEN = pytest.mark.xfail(strict=True, reason="router with top-k weights not renormalised: under SGD its "
                                                 "10-step logits' change is a width^-1/2 fluctuation (its "
                                                 "chosen-vs-other and among-chosen parts cancel; measured, "
                                                 "see the comment above)")


def cells():
    for name in NAMES:
        for optimizer in ("adam", "sgd"):
            marks = SGD_OPEN if optimizer == "sgd" and name in UNNORMALISED else ()
            yield pytest.param(name, optimizer, marks=marks, id=f"{name}-{optimizer}")


def check(name, parametrization, optimizer, n_seeds=3):
    build, data = MOE_MODELS[name]
    return external_coord_check(build, data, optimizer, parametrization, WIDTHS, steps=STEPS, batch_size=8,
                                n_seeds=n_seeds)


@pytest.mark.slow
@pytest.mark.parametrize("name, optimizer", list(cells()))
def test_moe_models_sptrace_stable(name, optimizer):
    verdict = check(name, "sptrace", optimizer)
    assert verdict.passed, verdict.summary()


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
@pytest.mark.parametrize("name", NAMES)
def test_moe_models_standard_parametrization_is_not(name, optimizer):
    verdict = check(name, "sp", optimizer, n_seeds=1)
    assert not verdict.passed, verdict.summary()


def test_each_expert_is_measured_as_its_own_matrix():
    """The coord check's natural spectral norm of a stacked-experts record is the largest over the
    expert slices, each a (fan_out, fan_in) matrix: scaling one expert up moves it, and it is not the
    norm of the stack flattened to one matrix."""
    import sptrace

    torch.manual_seed(0)
    model = MOE_MODELS["mixtral"][0](64)
    record = sptrace.trace(model, torch.randint(0, 77, (2, 8)))["model.layers.0.mlp.experts.down_proj"]
    stack = model.get_parameter(record.name).detach().clone()
    stack[1] *= 4
    measured = float(natural_spectral_norm(stack, record.fan_in_axes, record.fan_out_axes, groups=record.groups,
                                           method="exact"))
    per_expert = [float(natural_spectral_norm(stack[e], (1,), (0,), method="exact")) for e in range(stack.shape[0])]
    assert measured == pytest.approx(max(per_expert), rel=1e-5)
    assert max(per_expert) > 3 * min(per_expert)
    flattened = float(natural_spectral_norm(stack.reshape(-1, stack.shape[-1]), (1,), (0,), method="exact"))
    assert measured != pytest.approx(flattened, rel=0.05)
