"""Stage 4 alone: plan() and group() from hand-built ParamRecords (tests/planning/test_rules.py's
builders), no model: the multipliers the rules give, the global lr and decay multiplied in, the
form chosen, and param groups merged by equal hyperparameters."""

import pytest
import torch
import torch.nn as nn

from sptrace.planning.plan import GROUP_LR_MULT, GROUP_NAMES, group, plan, plan_warnings
from sptrace.types import ParamRecord, Role, SptraceError
from tests.planning.test_rules import R, S, bias, conv, embedding, gain, mlp, rec

pytestmark = pytest.mark.usefixtures("one_thread")


def by_name(plans):
    return {p.name: p for p in plans}


def test_adam_multipliers_are_one_over_the_fan_in():
    """§3.3: sign-like updates, eta = 1/d_in: input 1/3072, hidden and readout 1/n."""
    n = 256
    plans = by_name(plan(mlp(n), "adam", lr=1e-2, form="absolute", zero_readout=False))
    assert [plans[k].lr_multiplier for k in ("fc1", "fc2", "fc3")] == [R(1 / 3072), R(1 / n), R(1 / n)]
    assert plans["fc2"].lr == R(1e-2 / n) and plans["fc2"].global_lr == 1e-2
    assert plans["fc2"].form == "absolute" and plans["fc2"].parametrization == "sptrace"
    assert plans["fc2"].init == "gaussian" and plans["fc2"].init_std == R(1 / 16)  # 1/sqrt(n)
    assert plans["fc3"].init_std == R(S(10) / n)  # readout: sqrt(fan_out)/fan_in


def test_base_form_multipliers_are_base_fan_in_over_fan_in():
    n, b = 256, 64
    plans = by_name(plan(mlp(n, b), "adam", lr=1e-2, zero_readout=False))  # every record has a base shape: base form
    assert plans["fc2"].form == "base"
    assert [plans[k].lr_multiplier for k in ("fc1", "fc2", "fc3")] == [1.0, R(b / n), R(b / n)]
    assert [plans[k].init for k in ("fc1", "fc2", "fc3")] == ["keep", "keep", "scale"]
    assert plans["fc3"].init_scale == R(0.5)  # sqrt(b/n) on top of PyTorch's 1/sqrt(fan_in)
    absolute = by_name(plan(mlp(n, b), "adam", lr=1e-2, form="absolute"))
    assert absolute["fc2"].lr_multiplier == R(1 / n) and absolute["fc2"].form == "absolute"


def test_sgd_and_spectral_multipliers():
    n = 256
    sgd = by_name(plan([*mlp(n), bias(n)], "sgd", lr=0.1, form="absolute"))
    assert [sgd[k].lr_multiplier for k in ("fc1", "fc2", "fc3", "bias")] == [R(n / 3072), 1.0, R(10 / n), R(n)]
    spectral = by_name(plan(mlp(n), "spectral", lr=0.02, form="absolute"))
    assert all(p.lr_multiplier == 1.0 for p in spectral.values())
    assert [spectral[k].spectral_scale for k in ("fc1", "fc2", "fc3")] == [R(S(n / 3072)), 1.0, R(S(10 / n))]


def test_spectral_groups_split_by_scale_update_and_layout():
    """Equal lr but a different block view (linear vs conv) or update mode: separate groups."""
    n = 64
    records = [mlp(n)[1], rec("fc2b", (n, n), (1,), (0,), {0, 1}, Role.HIDDEN), conv(n), embedding(n)]
    groups = group(plan(records, "spectral", lr=0.02, form="absolute"))
    assert [g[GROUP_NAMES] for g in groups] == [["fc2", "fc2b"], ["conv"], ["wte"]]
    assert [g["sptrace_update"] for g in groups] == ["orthogonal", "orthogonal", "column"]
    assert groups[1]["sptrace_layout"] == {"fan_out_axes": (0,), "fan_in_axes": (1, 2, 3), "group_axes": (),
                                           "groups": 1}
    assert groups[2]["spectral_scale"] == R(S(n))  # sparse input: sqrt(d_out / 1)
    assert all(g["lr"] == 0.02 and g[GROUP_LR_MULT] == 1.0 for g in groups)


def test_plan_lr_wd_and_no_decay():
    n = 256
    records = [*mlp(n), bias(n), gain(n)]
    plans = plan(records, "adamw", lr=1e-2, form="absolute", zero_readout=False, weight_decay=0.1,
                 no_decay={"bias", Role.GAIN})
    by = {p.name: p for p in plans}
    assert by["fc2"].lr == R(1e-2 / n) and by["fc2"].lr_multiplier == R(1 / n)
    assert by["fc2"].weight_decay == R(0.1 * n)  # lr * wd = 1e-3 at every width
    assert by["fc2"].lr * by["fc2"].weight_decay == R(1e-2 * 0.1)
    assert by["bias"].weight_decay == 0.0 and by["gain"].weight_decay == 0.0
    assert by["fc2"].citation and by["fc2"].rule is not None
    assert [p.init for p in plans] == ["gaussian", "gaussian", "gaussian", "zeros", "keep"]


def test_plan_unclassified_and_frozen():
    n = 64
    odd = rec("weird", (n, 3), (), (), set(), Role.UNKNOWN, problem="node fft_1: op fft_rfft not understood")
    frozen = rec("frozen", (n, n), (1,), (0,), {0, 1}, Role.HIDDEN, requires_grad=False)
    plans = plan([*mlp(n), odd, frozen], "adam", lr=1e-3, form="absolute")
    by = {p.name: p for p in plans}
    assert by["weird"].init == "keep" and by["weird"].lr == 1e-3 and by["weird"].lr_multiplier == 1.0
    (w,) = plan_warnings(plans)
    assert "weird" in w and "fft" in w
    groups = group(plans)
    names = [nm for g in groups for nm in g["sptrace_names"]]
    assert "frozen" not in names and "weird" in names
    assert by["frozen"].init == "gaussian"  # planned, just not optimised


def test_group_merges_equal_hyperparameters():
    n = 128
    records = [*mlp(n), rec("fc2b", (n, n), (1,), (0,), {0, 1}, Role.HIDDEN), bias(n), gain(n)]
    groups = group(plan(records, "adam", lr=1e-3, form="absolute", weight_decay=0.01))
    # fc2, fc2b share lr/n and eps/n; fc3 (the readout) has lr/n but eps x 1: its gradient is Θ(1);
    # bias and gain share lr and eps/n; fc1 alone (lr/3072)
    assert sorted(len(g["params"]) for g in groups) == [1, 1, 2, 2]
    by_names = {tuple(g["sptrace_names"]): g["sptrace_eps_multiplier"] for g in groups}
    assert by_names[("fc2", "fc2b")] == R(1 / n) and by_names[("fc3",)] == R(1 / 10)
    for g in groups:
        assert set(g) >= {"params", "lr", "weight_decay", "sptrace_lr_multiplier", "sptrace_base_lr"}
        assert g["lr"] == R(1e-3 * g["sptrace_lr_multiplier"]) and g["sptrace_base_lr"] == 1e-3
    # with tensors, ready for torch.optim
    params = {r.name: nn.Parameter(torch.zeros(r.shape)) for r in records}
    opt = torch.optim.AdamW(group(plan(records, "adam", lr=1e-3), params), lr=1e-3)
    assert sum(len(g["params"]) for g in opt.param_groups) == len(records)
    # spectral: layouts and update kinds split groups
    sg = group(plan(records, "spectral", lr=0.02))
    assert all({"spectral_scale", "sptrace_update", "sptrace_layout"} <= set(g) for g in sg)
    assert {g["sptrace_update"] for g in sg} == {"orthogonal", "column", "sign"}


def test_group_uses_aliases_and_reports_missing():
    r = mlp(64)[1]
    r = ParamRecord(**{**r.__dict__, "aliases": ("fc2", "shared.fc2")})
    (g,) = group(plan([r], "sgd", lr=0.1), {"shared.fc2": nn.Parameter(torch.zeros(64, 64))})
    assert g["params"][0].shape == (64, 64)
    with pytest.raises(SptraceError, match="fc2"):
        group(plan([r], "sgd", lr=0.1), {"other": nn.Parameter(torch.zeros(1))})


def test_zero_readout_and_init_choices():
    plans = plan(mlp(128), "adam", lr=1e-3, form="absolute", zero_readout=True)
    assert [p.init for p in plans] == ["gaussian", "gaussian", "zeros"]
    plans = plan(mlp(128, 64), "adam", lr=1e-3, zero_readout=True)
    assert [p.init for p in plans] == ["keep", "keep", "zeros"]
    plans = plan([*mlp(128), bias(128), embedding(128)], "adam", lr=1e-3, form="absolute", zero_readout=False,
                 init="orthogonal")
    assert [p.init for p in plans] == ["orthogonal"] * 3 + ["zeros", "orthogonal"]
    assert plans[1].init_target == R(1.0) and plans[2].init_target == R(S(10 / 128))
    assert plans[4].init_target == R(S(1000))  # embedding, V = 1000 > n: sqrt(max(n, V))
    assert all(p.init == "keep" for p in plan(mlp(128), "adam", lr=1e-3, init="keep"))
