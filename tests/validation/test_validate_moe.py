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
# SGD, measured (3 seeds, 10 steps, lr 0.1): the router's weight change has a flat natural norm, but
# its logits' change shrinks (Mixtral -0.40, Qwen3-MoE -0.49; Mixtral at 30 steps, 1 seed: -0.33).
# At init the experts are statistically alike, so the loss gradient tells them apart only by
# fluctuations of relative size width^-1/2: the routing gradient itself is that small until the
# experts differ. Adam normalises the gradient's size away (only its alignment is left, which builds
# up by 10 steps); SGD's update keeps it, so over the check's horizon the router learns less at larger
# width. Not a classification question: the router's rule is the readout's either way. Qwen3-MoE's
# per-head q_norm / k_norm gains also grow (+0.87): automatic mode cannot tell that head_dim, not the
# head count, is the fixed factor of the attention width (graph/attention.py's open case).
SGD_OPEN = pytest.mark.xfail(strict=True, reason="router logits' change is cross-talk dominated under SGD at "
                                                 "these widths and steps (measured, see the comment above)")


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
