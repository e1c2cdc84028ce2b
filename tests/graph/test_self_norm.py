"""Parameters divided by a scalar computed from themselves (graph/selfnorm.py; docs/classification.md
"Weight reparametrizations"): ``torch.nn.utils.spectral_norm`` (the older hook: ``weight_orig`` with
buffers ``weight_u``, ``weight_v`` beside it), ``torch.nn.utils.parametrizations.spectral_norm``, and a
hand-written ``W / W.norm()``, on both capture routes, in training and eval mode. The weight is
classified by its layer's use, exactly as the same model without the normaliser, and nothing else in
the model changes. Before, the hook's power-iteration buffers were read as constant data and the whole
model lost its width axes (every parameter "scalar", no width dims); the newer API's weight was
unclassified ("transformed by an op that mixes its entries")."""
import pytest
import torch
from torch import nn

import sptrace

ROUTES = ("export", "eager")
B = 4


class Net(nn.Module):
    """An input layer, a hidden layer and a readout; ``normed`` says which are spectral-normed."""

    def __init__(self, width=32, api="hook", normed=("a", "b", "head")):
        super().__init__()
        self.a, self.b, self.head = nn.Linear(5, width), nn.Linear(width, width), nn.Linear(width, 3)
        sn = nn.utils.spectral_norm if api == "hook" else nn.utils.parametrizations.spectral_norm
        for name in normed:
            setattr(self, name, sn(getattr(self, name)))

    def forward(self, x):
        return self.head(torch.relu(self.b(torch.relu(self.a(x)))))


class HandNormed(nn.Module):
    """``W / ||W||`` written in the forward (a Frobenius norm: one number)."""

    def __init__(self, width=32):
        super().__init__()
        self.a, self.head = nn.Linear(5, width), nn.Linear(width, 3)
        self.w = nn.Parameter(torch.randn(width, width))

    def forward(self, x):
        h = torch.relu(self.a(x))
        return self.head(torch.relu(h @ (self.w / self.w.norm()).t()))


class ScaledByItsMean(HandNormed):
    """A scalar of a parameter that scales the activations, not the parameter: a use, not a normaliser."""

    def forward(self, x):
        h = torch.relu(self.a(x))
        return self.head(h @ self.w.t() * self.w.mean())


def roles(traced, weight_names):
    out = {}
    for r in traced:
        name = weight_names.get(r.name, r.name)
        out[name] = (r.kind.value, r.role.value, r.fan_in_axes, r.fan_out_axes, r.width_dims)
    return out


def weight_names(api, normed):
    return {(f"{layer}.weight_orig" if api == "hook" else f"{layer}.parametrizations.weight.original"): f"{layer}.weight"
            for layer in normed}


def seeded(build, *a, **k):
    torch.manual_seed(0)
    return build(*a, **k)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("api", ["hook", "parametrizations"])
def test_a_spectral_normed_weight_is_classified_as_its_layer(api, route, training):
    x = torch.randn(B, 5)
    plain = sptrace.trace(seeded(Net, normed=()).train(training), x, routes=(route,))
    normed = ("a", "b", "head")
    traced = sptrace.trace(seeded(Net, api=api, normed=normed).train(training), x, routes=(route,))
    assert not traced.unclassified, [(r.name, r.problem) for r in traced.unclassified]
    assert roles(traced, weight_names(api, normed)) == roles(plain, {}), traced.report()
    scaled = [r.name for r in traced if r.self_normalized_by is not None]
    assert sorted(scaled) == sorted(weight_names(api, normed)), scaled
    assert all(traced[name].self_normalized_by.spectral for name in scaled)


@pytest.mark.parametrize("route", ROUTES)
def test_the_hook_s_buffers_no_longer_take_the_model_s_width_axes(route):
    """The hidden layer alone spectral-normed with the hook: its u and v (buffers as wide as the weight)
    used to fix every axis, so that the input layer, the readout and the biases had no width dim."""
    traced = sptrace.trace(seeded(Net, normed=("b",)), torch.randn(B, 5), routes=(route,))
    assert traced["a.weight"].width_dims == (0,) and traced["head.weight"].width_dims == (1,)
    assert traced["b.weight_orig"].role.value == "hidden" and traced["b.weight_orig"].width_dims == (0, 1)


@pytest.mark.parametrize("route", ROUTES)
def test_a_hand_written_norm_of_the_weight_is_a_normaliser(route):
    traced = sptrace.trace(seeded(HandNormed), torch.randn(B, 5), routes=(route,))
    assert not traced.unclassified, [(r.name, r.problem) for r in traced.unclassified]
    assert traced["w"].role.value == "hidden" and traced["w"].self_normalized_by is not None
    assert not traced["w"].self_normalized_by.spectral  # a Frobenius norm: no spectral norm of 1 to scale


def test_a_scalar_of_a_parameter_that_scales_activations_is_a_use():
    traced = sptrace.trace(seeded(ScaledByItsMean), torch.randn(B, 5))
    assert traced["w"].self_normalized_by is None and traced["w"].uses[0].node.startswith("matmul")


@pytest.mark.parametrize("api", ["hook", "parametrizations"])
def test_a_spectral_normed_readout_is_never_zeroed(api):
    """A zero readout would be 0 / 0 under the normaliser (NaN): it keeps its rule's init."""
    model = seeded(Net, api=api, normed=("b", "head"))
    x = torch.randn(B, 5)
    opt = sptrace.parametrize(model, "adam", example_inputs=(x,))
    weight = model.head.weight_orig if api == "hook" else model.head.parametrizations.weight.original
    assert weight.abs().sum() > 0
    for _ in range(2):
        opt.zero_grad()
        model(x).square().mean().backward()
        opt.step()
    assert torch.isfinite(model(x)).all()
