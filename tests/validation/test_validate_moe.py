"""Coord checks on Hugging Face mixture-of-experts LMs (Mixtral, Qwen3-MoE; tests/external_models.py),
with tests/validation/external_coord.py's conventions (the zoo's byte-level data, the one-line
``sptrace.parametrize`` call, validate's lr, module outputs and every classified parameter's natural
spectral norm judged, widths 64..512, 3 init seeds): each expert slice of the stacked
``(experts, out, in)`` parameters is measured as its own matrix (its record's group axis).

10 steps, not the 3 of the dense external models: a router's logit change is a Θ(1) part that
grows as the routing gradient becomes consistent across tokens, plus cross-talk between tokens
that shrinks like width^-1/2; over the first 3 Adam steps the cross-talk dominates at these widths
(router logits' change slope -0.29 on Mixtral, 3 seeds), by 10 steps it no longer does (docs/rules.md,
"Mixture-of-experts layers"). Each cell runs for a minute or more on 2 cores: ``-m slow``."""
import pytest
import torch

from sptrace.spectral import natural_spectral_norm
from tests.external_models import MOE_MODELS
from tests.validation.external_coord import external_coord_check

transformers = pytest.importorskip("transformers")

WIDTHS = (64, 128, 256, 512)
STEPS = 10
NAMES = ("mixtral", "qwen3-moe")
# SGD, measured (validate's lr 0.05, reference form): the router's logits' change shrinks with width,
# -0.50 (Qwen3-MoE) and -0.52 (Mixtral) at 10 steps (3 seeds). On a fixed input it is W0.dx + dW.x.
# W0.dx, the router at init reading its input's change, shrinks like width^-1/2 (a router cannot start
# at zero: zero logits tie top-k), as a tied readout's does: slope -0.48/-0.50/-0.43 at steps 3/10/100
# (Qwen3-MoE, widths 64 and 512, 2 seeds), Mixtral -0.40 to -0.51. dW.x, the router's own update, is
# Θ(1) in the limit but slow under SGD: its gradient compares experts that are alike at init, a
# fluctuation (Frobenius-norm width slope +0.11/+0.09/+0.07 at steps 2/3/10, lm_head's +0.50), so dW.x
# is 0.009 against W0.dx 0.211 at step 3 and overtakes only at 75-100 steps on Qwen3-MoE (not by 100 on
# Mixtral). Adam normalises its size: dW.x is Θ(1) from step 3 (slope +0.05). Not an lr rule: the
# router's SGD lr times sqrt(width/256) leaves the slope at steps 3/10/30 as it was (Qwen3-MoE
# -0.50/-0.54/-0.47, Mixtral -0.26/-0.26/-0.27, 1 seed). Not a horizon either: Qwen3-MoE's whole check
# passes at 100 SGD steps (3 seeds), Mixtral's router is still -0.37 there, and Adam at 100 steps gives
# -0.33 (Qwen3-MoE, 2 seeds). A router init x1e-3 (W0.dx gone) passes Mixtral under SGD but Qwen3-MoE
# still fails on dW.x (-0.36). docs/rules.md, "Mixture-of-experts layers". Qwen3-MoE's per-head
# q_norm / k_norm gains also grow under SGD (+0.91) until sptrace/graph/trace.py calls
# graph/attention.py's assume_fixed_head_dims (then -0.09; docs/rules.md, "Parameters applied per
# attention head").
SGD_OPEN = pytest.mark.xfail(strict=True, reason="router logits' change shrinks under SGD at these widths and "
                                                 "steps: its init reading a changed input (width^-1/2) leads "
                                                 "while its own update's gradient is a fluctuation (measured, "
                                                 "see the comment above)")


def check(name, parametrization, optimizer, n_seeds=3):
    build, data = MOE_MODELS[name]
    return external_coord_check(build, data, optimizer, parametrization, WIDTHS, steps=STEPS, batch_size=8,
                                n_seeds=n_seeds)


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["adam", pytest.param("sgd", marks=SGD_OPEN)])
@pytest.mark.parametrize("name", NAMES)
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
