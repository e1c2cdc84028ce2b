"""Column blocks planned and applied (planning/blocks.py, apply/hooks.py): a skip layer reading
``cat([h (d), encoding (k)])`` is planned as the sum of a hidden layer on h and an input layer on the
encoding: the tensor takes the hidden layer's init and lr, the fixed columns are stored divided by a
forward multiplier m that gives them the input layer's init and lr (Adam m = η_input/η, SGD its square
root). The multiplier is one more forward wrapper: transaction, checkpoint and plan-file guarantees hold."""
import pytest
import torch
import torch.nn as nn

import sptrace
from tests.graph.test_column_blocks import X, SkipConcatMLP

WIDTH, BASE, ENC = 256, 64, 54


class SplitSkip(SkipConcatMLP):
    """The same network with the skip layer as two layers: hidden on h, input (no bias) on the encoding."""

    def __init__(self, d):
        super().__init__(d)
        self.skip = nn.Linear(d, d)
        self.enc = nn.Linear(ENC, d, bias=False)

    def forward(self, x):
        e = self.encode(x)
        h = torch.relu(self.h1(torch.relu(self.inp(e))))
        h = torch.relu(self.skip(h) + self.enc(e))
        return self.out(torch.relu(self.h2(h)))


def base_of(build):
    with torch.device("meta"):
        return build(BASE)


def planned(build, optimizer, **kw):
    return sptrace.plan(build(WIDTH), optimizer, example_inputs=(X,), base=base_of(build), **kw)


@pytest.mark.parametrize("optimizer, power", [("adam", 1.0), ("sgd", 0.5)])
def test_the_fixed_columns_get_the_input_layers_init_and_lr(optimizer, power):
    joint = planned(SkipConcatMLP, optimizer, init="gaussian")
    split = planned(SplitSkip, optimizer, init="gaussian")
    weight, hidden, inputs = joint["skip.weight"], split["skip.weight"], split["enc.weight"]
    assert weight.lr == pytest.approx(hidden.lr) and weight.init_std == pytest.approx(hidden.init_std)
    (m,) = [x for x in joint.multipliers if x.what == "fixed input columns"]
    assert m.module == "skip" and m.columns == ((WIDTH, WIDTH + ENC),)
    assert m.value == pytest.approx((inputs.lr / hidden.lr) ** power)
    assert weight.fixed_columns == m.columns
    assert weight.init_std * weight.column_scale * m.value == pytest.approx(inputs.init_std)


def test_applied_the_effective_block_has_the_input_layers_std():
    torch.manual_seed(0)
    model = SkipConcatMLP(WIDTH)
    opt = sptrace.parametrize(model, "sgd", example_inputs=(X,), base=base_of(SkipConcatMLP))
    (m,) = opt.sptrace.multipliers
    stored = model.skip.weight.detach()
    # the library's U(±1/sqrt(fan_in)) at the base's fan-in (64 + 54): the input law keeps it at every width
    assert (stored[:, WIDTH:] * m.value).std() == pytest.approx((3 * (BASE + ENC)) ** -0.5, rel=0.05)
    assert stored[:, :WIDTH].std() == pytest.approx((3 * (BASE + ENC)) ** -0.5 * (BASE / WIDTH) ** 0.5, rel=0.05)
    assert f"multiplier {m.value:.4g} on fixed input columns of skip" in opt.sptrace.report()


def test_the_forward_multiplies_the_fixed_slice_only():
    torch.manual_seed(0)
    model = SkipConcatMLP(WIDTH)
    sptrace.parametrize(model, "adam", example_inputs=(X,), base=base_of(SkipConcatMLP))
    (m,) = model._sptrace_parametrization.plan.multipliers
    seen = []
    model.skip.register_forward_hook(lambda mod, args, out: seen.append((args[0], out)))
    model(X)
    x, out = seen[0]
    scaled = torch.cat([x[:, :WIDTH], x[:, WIDTH:] * m.value], -1)
    assert torch.allclose(out, torch.nn.functional.linear(scaled, model.skip.weight, model.skip.bias))


def test_a_failed_call_leaves_the_model_as_it_was():
    torch.manual_seed(0)
    model = SkipConcatMLP(WIDTH)
    before, out = {k: v.clone() for k, v in model.state_dict().items()}, model(X)

    def broken(groups, **kwargs):
        raise RuntimeError("no optimizer")

    with pytest.raises(RuntimeError):
        sptrace.parametrize(model, broken, lr=1e-3, example_inputs=(X,), base=base_of(SkipConcatMLP), family="sgd")
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert "forward" not in vars(model.skip) and torch.equal(model(X), out)


def test_calls_do_not_compound_and_checkpoints_round_trip():
    def fresh(optimizer):
        torch.manual_seed(0)
        model = SkipConcatMLP(WIDTH)
        sptrace.parametrize(model, optimizer, example_inputs=(X,), base=base_of(SkipConcatMLP))
        return model

    again = fresh("adam")
    sptrace.parametrize(again, "sgd", example_inputs=(X,), base=base_of(SkipConcatMLP))
    once = fresh("sgd")
    assert torch.allclose(again.skip.weight, once.skip.weight)
    assert vars(again.skip)["forward"] is not None and torch.allclose(again(X), once(X))
    other = fresh("sgd")
    with torch.no_grad():
        other.skip.weight.mul_(2.0)
    other.load_state_dict(once.state_dict())
    assert torch.equal(other(X), once(X))


def test_a_plan_file_keeps_the_columns():
    plan = planned(SkipConcatMLP, "adam")
    back = sptrace.load_plan(plan.to_dict())
    assert back.multipliers == plan.multipliers and back.digest == plan.digest
    assert back["skip.weight"].fixed_columns == ((WIDTH, WIDTH + ENC),)
    model = SkipConcatMLP(WIDTH)
    back.init_(model, reset=False)
    back.install(model)
    assert "forward" in vars(model.skip)
