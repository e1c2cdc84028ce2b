"""Agreement with the reference μP library (``mup``) on its own style of MLP (MuReadout +
set_base_shapes): per-layer learning rates, weight decay and init scales of sptrace's base form
must change between widths exactly as MuAdam's / MuSGD's do.

mup parametrizes the readout with a forward multiplier ``a = output_mult / width_mult``; sptrace
puts everything into init and lr. The two are the same abc-parametrization after converting the
stored parameter W to the effective one ``a W``: effective std = a * std, effective lr = a * lr
(Adam: the update is entrywise-normalised, only the forward factor acts) or a^2 * lr (SGD: the
gradient is scaled by a as well). Decoupled/coupled decay is a relative shrink, ``lr * wd``, which
the multiplier does not change.

Install: ``pip install --no-deps mup`` (it imports torch, numpy and pyyaml).
"""

import pytest
import torch
import torch.nn as nn

mup = pytest.importorskip("mup")

from dataclasses import replace  # noqa: E402

from sptrace.planning.plan import plan  # noqa: E402
from sptrace.types import DimDecision, Kind, ParamRecord, ParamUse, Role, Space  # noqa: E402

D_IN, D_OUT, BASE = 32, 10, 32


pytestmark = pytest.mark.usefixtures("one_thread")


class MLP(nn.Module):
    def __init__(self, width, readout=None):
        super().__init__()
        self.fc1 = nn.Linear(D_IN, width)
        self.fc2 = nn.Linear(width, width)
        self.readout = (readout or nn.Linear)(width, D_OUT)

    def forward(self, x):
        return self.readout(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


def mup_model(width):
    model = MLP(width, mup.MuReadout)
    mup.set_base_shapes(model, MLP(BASE, mup.MuReadout), delta=MLP(2 * BASE, mup.MuReadout))
    return model


def records(width):
    """ParamRecords for MLP(width) built by hand, as the tracer would classify it, with base shapes."""

    def rec(name, node, shape, base_shape, fan_in_axes, fan_out_axes, role, space=Space.DENSE):
        width_axes = {a for a, (s, b) in enumerate(zip(shape, base_shape)) if s != b}
        dims = tuple(DimDecision(a, s, a in width_axes, "base") for a, s in enumerate(shape))
        fiw = any(a in width_axes for a in fan_in_axes)
        fow = any(a in width_axes for a in fan_out_axes)
        use = ParamUse(node, "linear", "weight", node, fan_in_axes, fan_out_axes, (), 1, space, role)
        return ParamRecord(
            name, (name,), shape, "float32", True, (use,), [Kind.SCALAR, Kind.VECTOR, Kind.MATRIX][fiw + fow],
            role, space, Space.DENSE, fan_in_axes, fan_out_axes, 1, dims, base_shape=base_shape,
        )

    w, b = width, BASE
    return [
        rec("fc1.weight", "fc1", (w, D_IN), (b, D_IN), (1,), (0,), Role.INPUT),
        rec("fc1.bias", "fc1", (w,), (b,), (), (0,), Role.BIAS, Space.SPARSE),
        rec("fc2.weight", "fc2", (w, w), (b, b), (1,), (0,), Role.HIDDEN),
        rec("fc2.bias", "fc2", (w,), (b,), (), (0,), Role.BIAS, Space.SPARSE),
        rec("readout.weight", "readout", (D_OUT, w), (D_OUT, b), (1,), (0,), Role.READOUT),
        rec("readout.bias", "readout", (D_OUT,), (D_OUT,), (), (0,), Role.BIAS, Space.SPARSE),
    ]


def forward_mult(model, name):
    """mup's forward multiplier on the stored tensor (MuReadout scales its input, not its bias)."""
    return model.readout.output_mult / model.readout.width_mult() if name == "readout.weight" else 1.0


def mup_effective(opt_fn, width, lr, wd):
    model = mup_model(width)
    opt = opt_fn(model.parameters(), lr=lr, weight_decay=wd)
    where = {id(p): g for g in opt.param_groups for p in g["params"]}
    power = 2 if opt_fn is mup.MuSGD else 1
    out = {}
    for name, p in model.named_parameters():
        g = where[id(p)]
        out[name] = (g["lr"] * forward_mult(model, name) ** power, g["lr"] * g["weight_decay"])
    return out


def ours(family, width, lr, wd):
    return {p.name: (p.lr, p.lr * p.weight_decay) for p in plan(records(width), family, lr=lr, weight_decay=wd)}


@pytest.mark.parametrize("family,opt_fn", [("adam", "MuAdam"), ("adamw", "MuAdamW"), ("sgd", "MuSGD")])
@pytest.mark.parametrize("widths", [(64, 256), (48, 1024)])
def test_lr_and_decay_ratios_between_widths_match_mup(family, opt_fn, widths):
    opt_fn = getattr(mup, opt_fn)
    lr, wd = 1e-2, 0.1
    m = [mup_effective(opt_fn, w, lr, wd) for w in widths]
    s = [ours(family, w, lr, wd) for w in widths]
    for name in m[0]:
        mup_ratio = m[1][name][0] / m[0][name][0]
        our_ratio = s[1][name][0] / s[0][name][0]
        assert our_ratio == pytest.approx(mup_ratio, rel=1e-12), (name, our_ratio, mup_ratio)
        # per-step shrink lr * wd: width-independent in both
        assert s[1][name][1] / s[0][name][1] == pytest.approx(m[1][name][1] / m[0][name][1], rel=1e-12), name
        # and the same values (both are anchored: identical to one global lr at the base width)
        assert s[1][name][0] == pytest.approx(m[1][name][0], rel=1e-12), name


def test_identical_at_the_base_width():
    for fam, fn in (("adam", mup.MuAdam), ("sgd", mup.MuSGD)):
        m, s = mup_effective(fn, BASE, 3e-3, 0.01), ours(fam, BASE, 3e-3, 0.01)
        assert m == s and all(v[0] == 3e-3 for v in s.values())  # exactly one global lr


@pytest.mark.parametrize("width", [64, 512])
def test_init_matches_set_base_shapes_rescaling(width):
    """Same seed, same library init; mup rescales MuReadout (x sqrt(width_mult), with the 1/width_mult
    forward multiplier) and every Linear bias (x sqrt(fan-in mult)). sptrace's base-form plan applied
    to a plain nn.Linear model must give the same effective tensors."""
    from sptrace.apply.init import apply_init

    torch.manual_seed(0)
    theirs = MLP(width, mup.MuReadout)
    torch.manual_seed(0)
    mine = MLP(width)
    mup.set_base_shapes(theirs, MLP(BASE, mup.MuReadout), delta=MLP(2 * BASE, mup.MuReadout))
    params = dict(mine.named_parameters())
    for p in plan(records(width), "adam", lr=1e-3, zero_readout=False):
        apply_init(params[p.name], p.init, std=p.init_std, target=p.init_target, scale=p.init_scale, layout=p.layout)
    for name, t in theirs.named_parameters():
        effective = t.detach() * forward_mult(theirs, name)
        assert torch.allclose(params[name].detach(), effective, rtol=1e-6, atol=0), name


@pytest.mark.parametrize("family,opt_fn", [("adam", "MuAdam"), ("adamw", "MuAdamW"), ("sgd", "MuSGD")])
@pytest.mark.parametrize("width", [48, 512])
def test_the_reference_form_is_mup_with_the_reference_width_as_base(family, opt_fn, width):
    """No base model: reference_width plays mup's base width (docs/parametrize.md, "What lr means"),
    so lrs, decay and init are mup's with set_base_shapes(base=MLP(reference_width))."""
    from sptrace.apply.init import apply_init

    no_base = [replace(r, base_shape=None) for r in records(width)]
    lr, wd = 3e-3, 0.1
    mine = {p.name: (p.lr, p.lr * p.weight_decay)
            for p in plan(no_base, family, lr=lr, weight_decay=wd, reference_width=BASE)}
    theirs = mup_effective(getattr(mup, opt_fn), width, lr, wd)
    for name, (their_lr, their_shrink) in theirs.items():
        assert mine[name] == (pytest.approx(their_lr, rel=1e-12), pytest.approx(their_shrink, rel=1e-12)), name
    torch.manual_seed(0)
    theirs = mup_model(width)
    torch.manual_seed(0)
    model = MLP(width)
    params = dict(model.named_parameters())
    for p in plan(no_base, family, lr=lr, zero_readout=False, reference_width=BASE):
        apply_init(params[p.name], p.init, std=p.init_std, target=p.init_target, scale=p.init_scale, layout=p.layout)
    for name, t in theirs.named_parameters():
        assert torch.allclose(params[name].detach(), t.detach() * forward_mult(theirs, name), rtol=1e-6), name
