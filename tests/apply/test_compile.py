"""torch.compile of a parametrized model (forward multipliers included) and of SpectralSGD.step.

All under ``-m slow`` (compiling takes longer than a default test may): with the ``eager`` backend
Dynamo captures the whole graph (``fullgraph=True`` fails on any graph break) and runs it as
captured (8 s and 12 s on one loaded CPU core, measured); ``aot_eager`` adds AOT autograd's
forward and backward; ``inductor`` its C++ code generation (70 s for the 2-layer zoo GPT).
"""
import pytest
import torch

import models_zoo
import sptrace

SPEC = models_zoo.get("gpt")
BACKENDS = ["eager", "aot_eager", "inductor"]
pytestmark = pytest.mark.slow


def parametrized(**options):
    """The zoo GPT, tied readout (a forward multiplier) and 2 heads: head_dim grows, so
    ``attention_fix=True`` installs the μP scale too."""
    with torch.device("meta"):
        base = SPEC.build(32, tied=True, n_head=2, n_layer=1)
    torch.manual_seed(0)
    model = SPEC.build(64, tied=True, n_head=2, n_layer=1)
    opt = sptrace.parametrize(model, example_inputs=SPEC.example_inputs(), base=base, **options)
    return model, opt


def loss_and_grads(model, inputs, target):
    model.zero_grad()
    loss = SPEC.loss(model(*inputs), target)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_parametrized_model_compiles_whole_and_agrees(backend):
    """fullgraph=True: no graph break from the multipliers. A plain model of the same class is
    compiled first in the same process: the parametrized one must not reuse its code (torch.compile
    does not guard on forward hooks, which is why the multipliers wrap forward instead)."""
    torch._dynamo.reset()
    plain = SPEC.build(64, tied=True, n_head=2, n_layer=1)
    model, opt = parametrized(optimizer="adam", lr=1e-3, attention_fix=True)
    assert {m.what for m in opt.sptrace.multipliers} == {"tied readout input", "attention scale"}
    plain.load_state_dict(dict(model.state_dict()))
    (inputs, target), = SPEC.batches(4, seed=0, steps=1)
    torch.compile(plain, fullgraph=True, backend=backend)(*inputs)
    compiled = torch.compile(model, fullgraph=True, backend=backend)
    with torch.no_grad():
        assert not torch.allclose(model(*inputs), plain(*inputs), atol=1e-3)  # the multipliers matter here
        assert torch.allclose(compiled(*inputs), model(*inputs), atol=1e-5)
    eager_loss, eager_grads = loss_and_grads(model, inputs, target)
    compiled_loss, compiled_grads = loss_and_grads(compiled, inputs, target)
    assert torch.allclose(compiled_loss, eager_loss, atol=1e-5)
    for (name, _), g, c in zip(model.named_parameters(), eager_grads, compiled_grads):
        assert torch.allclose(c, g, atol=1e-5), name


@pytest.mark.parametrize("backend", BACKENDS)
def test_spectral_sgd_step_compiles_and_agrees(backend):
    torch._dynamo.reset()
    model, opt = parametrized(optimizer="spectral", lr=0.02, momentum=0.9)
    twin, twin_opt = parametrized(optimizer="spectral", lr=0.02, momentum=0.9)
    step = torch.compile(twin_opt.step, fullgraph=True, backend=backend)
    for inputs, target in SPEC.batches(4, seed=0, steps=3):
        loss_and_grads(model, inputs, target)
        loss_and_grads(twin, inputs, target)
        opt.step()
        step()
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        assert torch.allclose(p, q, atol=1e-5), name
