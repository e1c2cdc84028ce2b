"""Tests for sptrace.validation.coord: output recording and the coord check (JSON round trip,
parameter axes, seed averaging, unmeasurable modules, deterministic probe passes)."""
from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from sptrace import SptraceError
from sptrace.validation.coord import PARAM_JUDGED, RESOLUTION_ULPS, ROOT, CoordCheck, OutputRecorder, coord_check, first_tensor, rms


pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------ output recording


class _Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 8)
        self.fc2 = nn.Linear(8, 3)
        self.act = nn.ReLU()

    def forward(self, x):
        h = self.act(self.fc1(x))
        return {"logits": self.act(self.fc2(h)), "hidden": h}


def test_output_recorder_names_repeats_and_structures():
    m = _Twice()
    x = torch.randn(5, 4)
    with OutputRecorder(m, keep_outputs=True) as rec:
        out = m(x)
    assert set(rec.rms) == {ROOT, "fc1", "fc2", "act", "act#1"}
    assert rec.rms["act#1"] == pytest.approx(rms(out["logits"]))
    assert rec.rms[ROOT] == pytest.approx(rms(out["logits"]))  # first tensor of the dict
    assert torch.equal(rec.outputs["fc1"], m.fc1(x).detach())
    # a second forward starts a fresh record; hooks are removed on exit
    with OutputRecorder(m, names=["fc2"]) as rec2:
        m(x)
        m(x)
    assert set(rec2.rms) == {"fc2"}
    assert not m._forward_hooks and not m.fc1._forward_hooks
    with OutputRecorder(m, leaves_only=True, include_root=False) as rec3:
        m(x)
    assert ROOT not in rec3.rms and "fc1" in rec3.rms
    assert first_tensor((None, [torch.arange(3), torch.ones(2)])) is not None
    assert first_tensor({"a": 1}) is None


# ------------------------------------------------------------------ coord check


def _data(n: int = 64, steps: int = 3):
    """Real data: the digits at 8x8 (64 features), each feature centred, scaled to std 1; 10 classes.
    (Uncentred digits share one large mean direction, which hides width effects at these widths.)"""
    from models_zoo.data import digits_raw

    images, target = digits_raw()
    x = images[: n * steps].reshape(-1, 64).float() / 16
    x = (x - x.mean(0)) / x.std()
    return [(x[i * n:(i + 1) * n], target[i * n:(i + 1) * n]) for i in range(steps)]


class MLP(nn.Module):
    def __init__(self, width, n0=64, n_out=10):
        super().__init__()
        self.fc1 = nn.Linear(n0, width, bias=False)
        self.act1 = nn.ReLU()
        self.fc2 = nn.Linear(width, width, bias=False)
        self.act2 = nn.ReLU()
        self.readout = nn.Linear(width, n_out, bias=False)

    def forward(self, x):
        return self.readout(self.act2(self.fc2(self.act1(self.fc1(x)))))


def make_sp(width):
    m = MLP(width)
    for lin in (m.fc1, m.fc2, m.readout):
        nn.init.normal_(lin.weight, std=math.sqrt(2 / lin.in_features))
    return m


def make_mup(width):
    """Hand muP init (paper Appendix A): readout std sqrt(2)/width."""
    m = MLP(width)
    nn.init.normal_(m.fc1.weight, std=math.sqrt(2 / 64))
    nn.init.normal_(m.fc2.weight, std=math.sqrt(2 / width))
    nn.init.normal_(m.readout.weight, std=math.sqrt(2) / width)
    return m


def adam_sp(model, lr=1e-2):
    return torch.optim.Adam(model.parameters(), lr=lr)


def adam_mup(model, lr=1e-2):
    """Adam under muP (docs/derivations.md §2): lr ~ 1/fan_in for hidden and readout, Theta(1) for the input layer."""
    w = model.fc2.in_features
    return torch.optim.Adam([
        {"params": [model.fc1.weight], "lr": lr},
        {"params": [model.fc2.weight], "lr": lr * 32 / w},
        {"params": [model.readout.weight], "lr": lr * 32 / w},
    ])


def sgd_sp(model, lr=0.05):
    return torch.optim.SGD(model.parameters(), lr=lr)


def sgd_mup(model, lr=0.05):
    """SGD under muP (Appendix A): lr ~ fan_out / fan_in."""
    w = model.fc2.in_features
    return torch.optim.SGD([
        {"params": [model.fc1.weight], "lr": lr * w / 64},
        {"params": [model.fc2.weight], "lr": lr},
        {"params": [model.readout.weight], "lr": lr / w},
    ])


WIDTHS = [32, 64, 128, 256]


def test_coord_check_sp_grows_mup_flat():
    batches = _data()
    kw = dict(batches=batches, loss_fn=F.cross_entropy, widths=WIDTHS, steps=3, seed=0)
    sp = coord_check(make_sp, adam_sp, **kw)
    mup = coord_check(make_mup, adam_mup, **kw)
    assert sp.widths == WIDTHS and sp.steps == 3
    assert set(sp.modules) == {ROOT, "fc1", "act1", "fc2", "act2", "readout"}
    assert set(sp.records["fc2"]) == {"rms@0", "rms@T", "delta_rms@1", "delta_rms@2", "delta_rms@3"}
    assert set(sp.param_records["fc2.weight"]) == {"nat@0", "dnat", "dnat_last", "grad64", "ulps"}
    assert len(sp.losses) == 4 and len(sp.losses[0]) == 3
    s_sp = sp.slopes()
    # SP with one Adam lr: updates of entry size ~lr make hidden and output changes grow with width
    assert s_sp["fc2"]["delta_rms@3"].slope > 0.3
    assert s_sp["readout"]["delta_rms@3"].slope > 0.5
    v_sp = sp.verdict(quantities=["delta_rms@3"])
    assert not v_sp.passed and v_sp.worst[0].module in ("readout", ROOT)
    # hand muP: every output's change is flat; outputs at init too, except the readout's, which
    # muP shrinks on purpose (init std ~ 1/width): allowed when asked
    v = mup.verdict(allow_shrink=["rms@*"])
    assert v.passed, v.summary()
    for name in ("fc1", "fc2", "readout"):
        assert abs(mup.slopes()[name]["delta_rms@3"].slope) < 0.2
    # muP's W and updates have Theta(1) natural spectral norm; SP's hidden and readout updates grow
    p_mup = mup.slopes(params=True)
    p_sp = sp.slopes(params=True)
    for name in ("fc1.weight", "fc2.weight", "readout.weight"):
        assert abs(p_mup[name]["dnat"].slope) < 0.2, (name, p_mup[name]["dnat"].slope)
        assert abs(p_mup[name]["nat@0"].slope) < 0.25
    assert p_sp["fc2.weight"]["dnat"].slope > 0.5
    assert p_sp["readout.weight"]["dnat"].slope > 0.5
    # SGD under muP (Appendix A constants) is flat too
    sgd = coord_check(make_mup, sgd_mup, **kw)
    assert sgd.verdict(allow_shrink=["rms@*"]).passed, sgd.verdict(allow_shrink=["rms@*"]).summary()
    # JSON round trip
    d = json.loads(json.dumps(mup.to_dict()))
    back = CoordCheck.from_dict(d)
    assert back.records == mup.records and back.widths == mup.widths


def test_coord_check_param_axes_rng_and_nonfinite():
    batches = _data(steps=2)
    state = torch.random.get_rng_state()
    # axes given explicitly as tuple or dict; None skips a parameter
    from enum import Enum
    from types import SimpleNamespace

    class Space(str, Enum):  # like sptrace.types.Space
        DENSE = "dense"
        SPARSE = "sparse"

    record = SimpleNamespace(fan_in_axes=(1,), fan_out_axes=(0,), groups=1, input_space=Space.SPARSE,
                             output_space=Space.DENSE)  # a ParamRecord-like object
    axes = {"fc1.weight": record, "readout.weight": {"fan_in_axes": (1,), "fan_out_axes": (0,)},
            "fc2.weight": None}
    cc = coord_check(make_mup, adam_mup, batches, F.cross_entropy, [32, 64], steps=2, param_axes=axes,
                     record_steps=[2], names=["fc2", "readout"])
    assert torch.equal(state, torch.random.get_rng_state())
    assert set(cc.param_records) == {"fc1.weight", "readout.weight"}
    assert set(cc.records) == {"fc2", "readout"}
    assert set(cc.records["fc2"]) == {"rms@0", "rms@T", "delta_rms@2"}
    # fc1 measured with a sparse input space: sigma / sqrt(fan_out), not sqrt(64 / fan_out) sigma
    torch.manual_seed(0)
    w0 = make_mup(32).fc1.weight.detach()
    assert cc.param_records["fc1.weight"]["nat@0"][0] == pytest.approx(
        float(torch.linalg.matrix_norm(w0, ord=2)) / math.sqrt(32), rel=1e-4)
    # same seed -> identical records
    cc2 = coord_check(make_mup, adam_mup, batches, F.cross_entropy, [32, 64], steps=2, param_axes=axes,
                      record_steps=[2], names=["fc2", "readout"])
    assert cc.records == cc2.records
    # a diverging run is reported as invalid, not silently fitted
    bad = coord_check(make_sp, lambda m: sgd_sp(m, lr=1e6), batches, F.cross_entropy, [32, 64], steps=2,
                      params=False)
    v = bad.verdict()
    assert not v.passed
    assert v.worst[0].status == "invalid"
    assert "nan" in v.summary() or "inf" in v.summary()
    json.dumps(bad.to_dict())  # non-finite values serialise as strings
    # with the parameters' natural norms measured too (the default): their weight change is NaN,
    # judged invalid by name rather than crashing the SVD
    measured = coord_check(make_sp, lambda m: sgd_sp(m, lr=math.inf), batches, F.cross_entropy, [32, 64], steps=2)
    v = measured.verdict(params=True)
    assert not v.passed
    invalid = {c.module for c in v.worst if c.status == "invalid"}
    assert v.params and set(v.params) <= invalid


class Routed(nn.Module):
    """The muP MLP plus side branches whose work depends on the call, as routing makes an expert's:
    ``varying`` sees one more row each call, ``late`` runs from the second call on, ``early`` only
    on the first. Their outputs feed nothing, so the MLP's own checks are unchanged."""

    def __init__(self, width):
        super().__init__()
        self.mlp = make_mup(width)
        self.varying, self.late, self.early = nn.Linear(64, 4), nn.Linear(64, 4), nn.Linear(64, 4)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        self.varying(x[: min(self.calls, len(x))])
        (self.late if self.calls > 1 else self.early)(x)
        return self.mlp(x)


def test_coord_check_names_modules_it_cannot_measure():
    """An output that changes shape (or a module not called at init, or not after a step) has no
    output change to fit: it is named with the reason, never fitted as NaN, and the rest is judged."""
    batches = _data(steps=2)
    cc = coord_check(Routed, lambda m: adam_mup(m.mlp), batches, F.cross_entropy, [32, 64, 128], steps=2,
                     params=False)
    why = cc.meta["unmeasured"]
    assert why["varying"].startswith("output shape (1, 4) at init, (") and "after step 1" in why["varying"]
    assert why["late"] == "not called on the probe batch at init"
    assert why["early"] == "not called on the probe batch after step 1"
    assert "delta_rms@2" not in cc.records["varying"] and "delta_rms@2" in cc.records["mlp.fc2"]
    v = cc.verdict(quantities=["rms@0", "delta_rms@2"], allow_shrink=["rms@0"])
    assert v.passed, v.summary()
    assert v.unmeasured == why and "Not judged (3, with the reason): early (not called" in v.summary()
    assert json.loads(json.dumps(v.to_dict()))["unmeasured"] == why


def test_coord_check_averages_init_seeds():
    """n_seeds=2 records, per width, the mean of the runs with seeds 0 and 1 (same data); the
    float64 gradient that tells a parameter without effect is the first seed's (one is enough); the
    update's largest entry in ulps is the larger of the two seeds'."""
    batches = _data(steps=2)
    kw = dict(batches=batches, loss_fn=F.cross_entropy, widths=[32, 64], steps=2, params=True)
    runs = [coord_check(make_mup, adam_mup, seed=s, **kw) for s in (0, 1)]
    mean = coord_check(make_mup, adam_mup, seed=0, n_seeds=2, **kw)
    assert mean.meta["n_seeds"] == 2
    for src in ("records", "param_records"):
        for name, quantities in getattr(mean, src).items():
            for q, values in quantities.items():
                expected = [(a + b) / 2 for a, b in zip(*(getattr(r, src)[name][q] for r in runs))]
                if q == "grad64":
                    expected = getattr(runs[0], src)[name][q]
                if q == "ulps":
                    expected = [max(a, b) for a, b in zip(*(getattr(r, src)[name][q] for r in runs))]
                assert values == pytest.approx(expected, rel=1e-6), (name, q)
    assert mean.losses[0] == pytest.approx([(a + b) / 2 for a, b in zip(runs[0].losses[0], runs[1].losses[0])])
    with pytest.raises(ValueError, match="n_seeds"):
        coord_check(make_mup, adam_mup, n_seeds=0, **kw)


def test_each_seeds_values_are_kept_and_give_the_verdicts_standard_error():
    """``per_seed`` holds each seed's own run (seed 1 of a 2-seed check is the 1-seed check with seed 1),
    their mean is the record the verdict fits (``ulps``: their max; ``grad64``, the first seed's, is
    not per seed), each judged slope carries the seeds' own slopes and their standard error, and the
    JSON round trip keeps them."""
    batches = _data(steps=2)
    kw = dict(batches=batches, loss_fn=F.cross_entropy, widths=[32, 64, 128], steps=2, params=True)
    runs = [coord_check(make_mup, sgd_mup, seed=s, **kw) for s in (0, 1)]
    cc = coord_check(make_mup, sgd_mup, seed=0, n_seeds=2, **kw)
    assert cc.per_seed is not None and cc.per_seed.seeds == [0, 1]
    for src in ("records", "param_records"):
        means, kept = getattr(cc, src), getattr(cc.per_seed, src)
        assert set(kept) == set(means)
        for name, quantities in means.items():
            assert set(kept[name]) == set(quantities) - {"grad64"}, name
            for q, series in kept[name].items():
                for run, own in zip(runs, series):
                    assert own == pytest.approx(getattr(run, src)[name][q], rel=1e-6), (name, q)
                combine = max if q == "ulps" else (lambda v: sum(v) / len(v))
                assert [combine(v) for v in zip(*series)] == pytest.approx(quantities[q], rel=1e-12), (name, q)
    v = cc.verdict(quantities=["delta_rms@2"], params=True)
    for name, fits in (*cc.slopes(["delta_rms@2"]).items(), *cc.slopes(PARAM_JUDGED, params=True).items()):
        src = "param_records" if name in cc.param_records else "records"
        for q, fit in fits.items():
            own = [r.slopes([q], params=src == "param_records")[name][q].slope for r in runs]
            assert fit.seed_slopes == pytest.approx(own, abs=1e-9), (name, q)
            assert fit.se == pytest.approx(abs(own[0] - own[1]) / 2, abs=1e-9)  # sd of two over sqrt(2)
            check = v.modules[name].checks[q]
            assert check.se == fit.se and check.n_seeds == 2 and check.slope == fit.slope
    back = CoordCheck.from_dict(json.loads(json.dumps(cc.to_dict())))
    assert back.per_seed == cc.per_seed
    assert back.verdict(quantities=["delta_rms@2"], params=True).summary() == v.summary()
    assert runs[0].per_seed.seeds == [0] and runs[0].slopes()["fc2"]["delta_rms@2"].se is None


class _Drop(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.fc = nn.Linear(64, width)
        self.bn = nn.BatchNorm1d(width)
        self.drop = nn.Dropout(0.5)
        self.out = nn.Linear(width, 10)

    def forward(self, x):
        return self.out(self.drop(self.bn(self.fc(x))))


def test_coord_check_dropout_batchnorm_probe_is_deterministic():
    batches = _data(steps=1)
    cc = coord_check(_Drop, lambda m: torch.optim.SGD(m.parameters(), lr=0.0), batches, F.cross_entropy,
                     [16, 32], steps=1)
    # lr 0: nothing changes, and the probe passes use the same dropout masks and BN statistics
    for name, rec in cc.records.items():
        assert rec["delta_rms@1"] == [0.0, 0.0], name
    # the bias (1-D) is measured as a sparse-input vector: natural norm = RMS
    assert cc.param_records["fc.bias"]["nat@0"][0] > 0


def test_coord_check_errors_name_the_argument_and_the_fix():
    batches = _data(steps=1)
    kw = dict(loss_fn=F.cross_entropy, widths=[32, 64])
    with pytest.raises(SptraceError, match="coord_check: steps=-1 is negative; pass steps >= 0"):
        coord_check(make_mup, adam_mup, batches, steps=-1, **kw)
    with pytest.raises(SptraceError, match=r"coord_check: record_steps \[3\] lie outside 1..2"):
        coord_check(make_mup, adam_mup, batches, steps=2, record_steps=[1, 3], **kw)
    with pytest.raises(SptraceError, match="coord_check: batches is empty but steps=2"):
        coord_check(make_mup, adam_mup, [], steps=2, **kw)
    with pytest.raises(SptraceError, match="coord_check: n_seeds=0; pass n_seeds >= 1"):
        coord_check(make_mup, adam_mup, batches, n_seeds=0, **kw)


def test_coord_check_without_steps_records_the_init_only():
    cc = coord_check(make_mup, adam_mup, [], F.cross_entropy, [32, 64], steps=0, probe=_data(steps=1)[0][0])
    assert set(cc.records["fc2"]) == {"rms@0", "rms@T"} and cc.records["fc2"]["rms@0"] == cc.records["fc2"]["rms@T"]
    assert set(cc.param_records["fc2.weight"]) == {"nat@0"} and cc.losses == [[], []]


# ------------------------------------------------------------------ judging parameters (Condition 2)


class _Normed(nn.Module):
    """16 -> w -> w -> 4 MLP whose hidden layer is followed by a LayerNorm, which hides from every
    module after it how large the hidden weight is."""

    def __init__(self, width, hidden_std):
        super().__init__()
        self.fc1 = nn.Linear(16, width, bias=False)
        self.fc2 = nn.Linear(width, width, bias=False)
        self.norm = nn.LayerNorm(width, elementwise_affine=False)
        self.readout = nn.Linear(width, 4, bias=False)
        nn.init.normal_(self.fc1.weight, std=16 ** -0.5)
        nn.init.normal_(self.fc2.weight, std=hidden_std(width))
        nn.init.zeros_(self.readout.weight)  # nat@0 identically zero: reported, not a failure

    def forward(self, x):
        return self.readout(self.norm(self.fc2(torch.tanh(self.fc1(x)))))


def _normed_check(hidden_std):
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(32, 16, generator=g), torch.randint(0, 4, (32,), generator=g)) for _ in range(2)]

    def adam(m):  # muP Adam: the lr of a layer whose fan-in grows falls like 1/width
        w = m.fc2.weight.shape[0]
        return torch.optim.Adam([{"params": [m.fc1.weight], "lr": 1e-2},
                                 {"params": [m.fc2.weight, m.readout.weight], "lr": 1e-2 * 64 / w}])

    return coord_check(lambda w: _Normed(w, hidden_std), adam, batches, F.cross_entropy, [64, 128, 256, 512],
                       steps=2, names=["norm", "readout"])


def test_verdict_judges_parameters_by_name():
    """A hidden weight initialised with a constant std (not 1/sqrt(fan_in)) has a natural spectral
    norm growing like width^+1/2: the parameter verdict fails it by name, while the outputs recorded
    after the LayerNorm stay flat."""
    bad = _normed_check(lambda w: 0.1)
    assert bad.verdict(quantities=["rms@0"]).passed  # the outputs after the norm do not see it
    v = bad.verdict(quantities=["rms@0"], params=True)
    assert not v.passed and v.params == ["fc1.weight", "fc2.weight", "readout.weight"]
    assert [(c.module, c.quantity, c.status) for c in v.worst] == [("fc2.weight", "nat@0", "grows")]
    assert v.worst[0].slope == pytest.approx(0.5, abs=0.1)
    assert "fc2.weight [nat@0] grows: slope +0.5" in v.summary()
    assert v.modules["readout.weight"].checks["nat@0"].status == "zero"
    assert "readout.weight [nat@0]" in v.summary()
    # fc1 (16 -> w) has a fixed side: its nat@0 may approach its limit from above; fc2 may not
    assert bad.fixed_side("fc1.weight") and bad.fixed_side("readout.weight") and not bad.fixed_side("fc2.weight")
    # only the names asked for are judged
    assert bad.verdict(quantities=["rms@0"], params=["fc1.weight"]).passed


def test_verdict_passes_flat_parameters():
    good = _normed_check(lambda w: w ** -0.5)
    v = good.verdict(quantities=["rms@0", "delta_rms@2"], params=True)
    assert v.passed, v.summary()
    assert set(v.modules["fc2.weight"].checks) == {"nat@0", "dnat"}
    assert "3 parameters" in v.summary()
    # JSON round trip keeps what the verdict needs (the parameters' matrix shapes)
    again = CoordCheck.from_dict(json.loads(json.dumps(good.to_dict())))
    assert again.verdict(quantities=["rms@0", "delta_rms@2"], params=True).to_dict() == v.to_dict()


class _BiasBeforeBatchNorm(nn.Module):
    """A conv bias followed by a training-mode BatchNorm, which removes every per-channel constant:
    the bias has no effect on the loss, so its gradient (and its update) is rounding noise."""

    def __init__(self, width):
        super().__init__()
        self.conv = nn.Conv2d(3, width, 3, padding=1)
        self.bn = nn.BatchNorm2d(width)
        self.head = nn.Linear(width, 4)

    def forward(self, x):
        return self.head(self.bn(self.conv(x)).relu().mean((2, 3)))


def test_a_parameter_without_effect_is_named_not_judged():
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 4, (8,), generator=g)) for _ in range(2)]
    cc = coord_check(_BiasBeforeBatchNorm, lambda m: torch.optim.Adam(m.parameters(), lr=1e-2), batches,
                     F.cross_entropy, [16, 32, 64], steps=2)
    assert max(cc.param_records["conv.bias"]["grad64"]) < 1e-12 < 1e-3 < min(cc.param_records["conv.weight"]["grad64"])
    assert cc.without_effect("conv.bias") and not cc.without_effect("conv.weight")
    v = cc.verdict(quantities=["rms@0"], params=True)
    assert "conv.bias" not in v.params and "conv.weight" in v.params
    assert "no effect on the loss" in v.unmeasured["conv.bias"] and "conv.bias" in v.summary()


class _GainBehindLayerScale(nn.Module):
    """A residual block whose output is multiplied by a layer scale of 1e-6 (ConvNeXt's init; held
    here, where ConvNeXt's moves little in a few steps): the block's LayerNorm gain (value 1) gets
    updates about 1e-6 of the others', below a float32 ulp of 1 (1.2e-7), so it barely moves, if at all."""

    def __init__(self, width):
        super().__init__()
        self.stem = nn.Linear(6, width)
        self.norm = nn.LayerNorm(width)
        self.fc = nn.Linear(width, width)
        self.register_buffer("scale", torch.full((width,), 1e-6))
        self.head = nn.Linear(width, 4)

    def forward(self, x):
        h = self.stem(x)
        return self.head(h + self.scale * self.fc(self.norm(h)))


def test_an_update_below_float32_resolution_is_named_not_judged():
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(8, 6, generator=g), torch.randint(0, 4, (8,), generator=g)) for _ in range(3)]
    cc = coord_check(_GainBehindLayerScale, lambda m: torch.optim.SGD(m.parameters(), lr=0.05), batches,
                     F.cross_entropy, [16, 32, 64], steps=3)
    gain, weight = cc.param_records["norm.weight"], cc.param_records["fc.weight"]
    assert max(gain["ulps"]) <= RESOLUTION_ULPS < 10 < min(weight["ulps"])  # fc is behind the scale too
    assert cc.below_resolution("norm.weight") and not cc.below_resolution("fc.weight")
    v = cc.verdict(quantities=["rms@0"], params=True)
    assert set(v.modules["norm.weight"].checks) == {"nat@0"}, "its init is still judged"
    assert set(v.modules["fc.weight"].checks) == {"nat@0", "dnat"}
    assert "below float32 resolution" in v.unmeasured["norm.weight"] and "norm.weight" in v.summary()


def test_a_resolved_update_that_shrinks_still_fails():
    """The exemption needs every width below resolution: an update that falls to a few ulps at the
    widest width only is a width trend and fails."""
    records = {"out": {"rms@0": [1.0, 1.0, 1.0]}}
    shrinking = {"nat@0": [1.0, 1.0, 1.0], "dnat": [1e-3, 1e-5, 1e-7], "dnat_last": [1e-3, 1e-5, 1e-7],
                 "ulps": [1e4, 1e2, 1.0]}
    cc = CoordCheck(widths=[16, 32, 64], steps=1, records=records, param_records={"w": shrinking})
    v = cc.verdict(quantities=["rms@0"], params=True)
    assert not cc.below_resolution("w") and v.modules["w"].checks["dnat"].status == "shrinks" and not v.passed
    cc.param_records["w"]["ulps"] = [2.0, 1.0, 0.0]
    assert cc.verdict(quantities=["rms@0"], params=True).passed


class _KeyBiasWithFloorInForward(nn.Module):
    """One attention head whose key bias adds q·b to every logit of a query, which the softmax
    removes (no effect on the loss), and whose forward floors the logits with a tensor made at the
    default dtype (XGLM: ``torch.max(w, torch.full((), finfo(w.dtype).min))``), which overflows
    float32 when the logits are float64."""

    def __init__(self, width):
        super().__init__()
        self.q, self.k, self.v = nn.Linear(6, width), nn.Linear(6, width), nn.Linear(6, width)
        self.head = nn.Linear(width, 4)

    def forward(self, x):
        logits = self.q(x) @ self.k(x).transpose(-1, -2) / self.q.out_features ** 0.5
        logits = torch.max(logits, torch.full((), torch.finfo(logits.dtype).min))
        return self.head((logits.softmax(-1) @ self.v(x)).mean(1))


def test_the_float64_gradient_runs_a_forward_that_makes_tensors_at_the_default_dtype():
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(8, 5, 6, generator=g), torch.randint(0, 4, (8,), generator=g)) for _ in range(2)]
    cc = coord_check(_KeyBiasWithFloorInForward, lambda m: torch.optim.Adam(m.parameters(), lr=1e-2), batches,
                     F.cross_entropy, [16, 32, 64], steps=2)
    assert torch.get_default_dtype() == torch.float32
    assert max(cc.param_records["k.bias"]["grad64"]) < 1e-12 < 1e-3 < min(cc.param_records["k.weight"]["grad64"])
    assert cc.without_effect("k.bias") and not cc.without_effect("k.weight")
    assert "k.bias" not in cc.verdict(quantities=["rms@0"], params=True).params


class _Depthwise(nn.Module):
    """Digits as 8x8 images: a pointwise conv to ``width`` channels, a depthwise 3x3, a readout."""

    def __init__(self, width):
        super().__init__()
        self.pw = nn.Conv2d(1, width, 1)
        self.dw = nn.Conv2d(width, width, 3, padding=1, groups=width, bias=False)
        self.readout = nn.Linear(width, 10)

    def forward(self, x):
        return self.readout(torch.relu(self.dw(self.pw(x.reshape(-1, 1, 8, 8)))).mean((2, 3)))


def test_a_depthwise_conv_is_measured_per_channel_at_every_width():
    """The axes come from one trace at the narrowest width; a depthwise conv's group count grows with
    its channels (a graph property: axis 0 width, the per-group fan-in fixed), so at every width each
    block is one channel's 3x3 taps (1 x 9), and its natural norm at init (N(0, 1/9) per tap: about
    3 at any width) does not fall. Before, the traced 16 groups were kept: at 64 channels blocks of 4
    channels (dims [4, 9]), whose natural norm sigma_max * sqrt(9 / 4) falls (ConvNeXt's conv_dw)."""
    import sptrace

    batches = _data(steps=2)
    records = {r.name: r for r in sptrace.trace(_Depthwise(16), batches[0][0])}
    assert records["dw.weight"].groups == 16 and records["dw.weight"].width_dims == (0,)

    def make(width):
        m = _Depthwise(width)
        nn.init.normal_(m.dw.weight, std=1 / 3)
        return m

    cc = coord_check(make, adam_sp, batches, F.cross_entropy, [16, 64], steps=1, param_axes=records)
    assert cc.meta["param_dims"]["dw.weight"] == [[1, 9], [1, 9]]  # [fan_out, fan_in] per width
    nat0 = cc.param_records["dw.weight"]["nat@0"]
    assert 0.9 < nat0[1] / nat0[0] < 1.1  # the RMS over the channels: the max would grow with their count


def test_blocks_that_grow_in_number_are_judged_by_their_rms():
    """A depthwise conv's channels are blocks whose number grows with width: their max samples the
    tail of one per-channel distribution further at every width (the zoo CNN's SGD update: median
    flat, max slope +0.41), so such a parameter is judged by the RMS over its blocks; a fixed number
    of blocks (experts, ResNeXt's groups) keeps the max, the natural norm of the block-diagonal whole."""
    from sptrace.validation.operators import natural_norm

    W = torch.zeros(64, 1, 3, 3)
    W[:, 0, 0, 0] = 1.0
    W[0, 0, 0, 0] = 8.0  # one outlier channel
    spec = {"fan_in_axes": (1, 2, 3), "fan_out_axes": (0,), "input_dense": True, "output_dense": True,
            "groups": 64}
    assert natural_norm(W, spec, "auto") == pytest.approx(8 * 3)
    rms = math.sqrt((63 + 64) / 64) * 3
    assert natural_norm(W, {**spec, "blocks_grow": True}, "auto") == pytest.approx(rms)
