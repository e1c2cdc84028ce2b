"""Adam's ε follows the gradient's size (docs/rules.md "Adam's ε"): the rules give a gradient entry of
size η_Adam / η_SGD (hidden and input layers 1/d_out, gains, biases and embeddings 1/n, readouts a
constant), so the group ε is the optimizer's ε times that ratio against the reference width, and
Adam's update keeps its shape, ``m / (sqrt(v) + ε)``, at every width."""
import pytest
import torch

import models_zoo
import sptrace
from sptrace.planning.rules import gradient_size, rule_for
from sptrace.validation.coord import coord_check
from sptrace.planning.plan import plan
from tests.planning.test_rules import R, bias, embedding, gain, mlp


def _eps(records, family="adam", **options):
    return {r.name: rule_for(r, family, **options).eps_multiplier for r in records}


def test_eps_multiplier_is_the_gradient_size_by_role():
    n = 128
    eps = _eps([*mlp(n), bias(n), gain(n), embedding(n)], form="absolute")
    assert eps["fc2"] == R(1 / n) and eps["fc1"] == R(1 / n)  # hidden, input layer: 1/d_out
    assert eps["fc3"] == R(1 / 10)  # the readout: a constant (its fan-out, 10, is fixed)
    assert eps["bias"] == R(1 / n) and eps["gain"] == R(1 / n) and eps["wte"] == R(1 / n)
    for r in mlp(n):
        d = rule_for(r, "adam", form="absolute").dims
        assert gradient_size(d) == R(rule_for(r, "adam", form="absolute").lr_multiplier
                                     / rule_for(r, "sgd", form="absolute").lr_multiplier)


def test_eps_multiplier_is_a_width_ratio_in_the_anchored_forms():
    """At the reference width every multiplier is 1; at 4x the width the hidden ε is 1/4, the
    readout's unchanged; SGD, SpectralSGD and the baselines leave ε alone."""
    def eps_at(width, **options):
        model = models_zoo.get("mlp").build(width)
        opt = sptrace.parametrize(model, optimizer="adam", **options)
        return {n: g["eps"] for g in opt.param_groups for n in g["sptrace_names"]}

    assert set(eps_at(256).values()) == {1e-8}
    wide = eps_at(1024)
    assert wide["fc2.weight"] == pytest.approx(1e-8 / 4) and wide["fc1.weight"] == pytest.approx(1e-8 / 4)
    assert wide["fc3.weight"] == 1e-8
    assert eps_at(1024, eps=1e-6)["fc2.weight"] == pytest.approx(1e-6 / 4)  # the caller's ε is the one scaled
    model = models_zoo.get("mlp").build(1024)
    records = sptrace.trace(model, torch.randn(2, 3072)).records
    for family, options in (("sgd", {}), ("spectral", {}), ("adam", {"parametrization": "sp"}),
                            ("adam", {"parametrization": "ntp"})):
        assert {p.eps_multiplier for p in plan(records, family, lr=1.0, **options)} == {1.0}


def _coord(fixed_eps: bool):
    """The zoo MLP on digits with its loss weighted by 3e-5 (as an auxiliary loss is), which brings
    the hidden gradients near Adam's ε = 1e-8 around width 256."""
    spec = models_zoo.get("mlp")
    stream = spec.batches(32, seed=0)
    batches = [next(stream) for _ in range(3)]

    def make_optimizer(model):
        opt = sptrace.parametrize(model, optimizer="adam", example_inputs=batches[0][0])
        if fixed_eps:
            for g in opt.param_groups:
                g["eps"] = 1e-8
        return opt

    optimizers = {}

    def make_model(width):
        model = spec.build(width)
        optimizers[id(model)] = make_optimizer(model)
        return model

    cc = coord_check(make_model, lambda m: optimizers.pop(id(m)), batches, lambda out, y: 3e-5 * spec.loss(out, y),
                     [64, 128, 256, 512], steps=3, names=["fc2"])
    return cc.slopes(["delta_rms@3"])["fc2"]["delta_rms@3"].slope


def test_scaled_eps_keeps_small_gradients_updates_width_stable():
    """Measured: the hidden layer's output change under the rule's ε is flat in width; with one ε for
    every width it shrinks as the gradients sink below ε."""
    scaled, fixed = _coord(fixed_eps=False), _coord(fixed_eps=True)
    assert abs(scaled) < 0.25, scaled
    assert fixed < -0.25, fixed
