"""Tests for sptrace.validation.slopes: log-log slope fits and width-stability verdicts."""
from __future__ import annotations

import json
import math

import pytest
import torch

from sptrace import SptraceError
from sptrace.validation.slopes import SlopeFit, fit_slope, fit_slopes, seeds_to_decide, standard_error, undecided_within, verdict


def test_fit_slope_power_laws():
    ws = [16, 32, 64, 128, 256]
    for s in (-1.0, -0.5, 0.0, 0.5, 2.0):
        f = fit_slope(ws, [3.0 * w ** s for w in ws])
        assert isinstance(f, SlopeFit)
        assert f.ok and f.slope == pytest.approx(s, abs=1e-9)
        assert f.r2 == pytest.approx(1.0) or s == 0.0
        assert f.intercept == pytest.approx(math.log(3.0), abs=1e-9)
    g = torch.Generator().manual_seed(0)
    noisy = [w ** 0.5 * math.exp(0.05 * float(torch.randn(1, generator=g))) for w in ws]
    f = fit_slope(ws, noisy)
    assert f.slope == pytest.approx(0.5, abs=0.1) and f.r2 > 0.95


def test_fit_slope_degenerate_values():
    ws = [1, 2, 4]
    assert fit_slope(ws, [1.0, float("nan"), 2.0]).status == "nonfinite"
    f = fit_slope(ws, [1.0, 2.0, float("inf")])
    assert not f.ok and "inf" in f.message and "4" in f.message
    assert fit_slope(ws, [1.0, -2.0, 3.0]).status == "negative"
    z = fit_slope(ws, [0.0, 0.0, 0.0])
    assert z.ok and z.status == "zero" and z.slope == 0.0
    pz = fit_slope(ws, [0.0, 1.0, 2.0])
    assert not pz.ok and pz.status == "partial-zero"
    with pytest.raises(SptraceError, match="fewer than two distinct widths"):
        fit_slope([8, 8], [1.0, 2.0])
    with pytest.raises(SptraceError, match="2 widths but 1 values; pass one value per width"):
        fit_slope([1, 2], [1.0])
    json.dumps(f.to_dict())


def test_verdict():
    ws = [32, 64, 128, 256]
    records = {
        "fc1": {"rms@0": [1.0] * 4, "delta_rms@1": [w ** 0.05 for w in ws]},
        "fc2": {"rms@0": [w ** -0.5 for w in ws], "delta_rms@1": [w ** 0.6 for w in ws]},
        "out": {"rms@0": [1.0] * 4, "delta_rms@1": [w ** 1.1 for w in ws]},
        "dead": {"rms@0": [1.0, 1.0, float("nan"), 1.0], "delta_rms@1": [0.0] * 4},
    }
    v = verdict(fit_slopes(ws, records), tol=0.25)
    assert not v.passed
    assert v.modules["fc1"].passed
    assert not v.modules["fc2"].passed
    assert v.modules["fc2"].checks["rms@0"].status == "shrinks"
    assert v.modules["fc2"].checks["delta_rms@1"].status == "grows"
    assert v.modules["dead"].checks["delta_rms@1"].status == "zero"  # identically zero: passes, reported
    # worst first: invalid, then the steepest growth
    assert [(c.module, c.quantity) for c in v.worst[:2]] == [("dead", "rms@0"), ("out", "delta_rms@1")]
    s = v.summary()
    assert s.startswith("FAIL") and "out" in s and "dead" in s
    # shrinking outputs at init allowed when asked
    v2 = verdict(fit_slopes(ws, {k: records[k] for k in ("fc1", "fc2")}), allow_shrink=["rms@*"])
    assert v2.modules["fc2"].checks["rms@0"].status == "shrinks-allowed"
    assert v2.modules["fc2"].checks["rms@0"].passed
    # expected slopes per quantity and plain float inputs
    v3 = verdict({"m": {"a": -0.45, "b": 0.1}}, expected={"a": -0.5}, tol=0.1)
    assert v3.passed
    assert verdict({"m": {"a": float("nan")}}).worst[0].status == "invalid"
    assert verdict({"m": {"a": 0.0}}).summary().startswith("PASS")
    json.dumps(v.to_dict())


WS = [64, 128, 256, 512]


def _seeds(slopes, scales=None):
    """Each seed's values ``c_i * w**s_i``: a power law of known slope per seed."""
    scales = scales or [1.0] * len(slopes)
    return [[c * w ** s for w in WS] for s, c in zip(slopes, scales)]


def _judged(seeds, quantity="dnat", **kwargs):
    """The verdict on the seeds' mean, with the seeds kept: (the fit, its check)."""
    mean = [sum(v) / len(v) for v in zip(*seeds)]
    fits = fit_slopes(WS, {"m": {quantity: mean}}, seed_records={"m": {quantity: seeds}})
    v = verdict(fits, tol=0.25, **kwargs)
    return fits["m"][quantity], v.modules["m"].checks[quantity], v


def test_a_slopes_standard_error_is_the_spread_of_the_seeds_own_slopes():
    fit, check, _ = _judged(_seeds([0.1, 0.2, 0.3]))
    assert fit.seed_slopes == pytest.approx([0.1, 0.2, 0.3], abs=1e-12)
    assert fit.se == pytest.approx(0.1 / math.sqrt(3), abs=1e-12) == standard_error([0.1, 0.2, 0.3])
    assert (check.se, check.n_seeds) == (fit.se, 3)
    assert standard_error([0.5]) is None and standard_error([0.1, float("nan")]) is None
    one = fit_slopes(WS, {"m": {"dnat": _seeds([0.5])[0]}}, seed_records={"m": {"dnat": _seeds([0.5])}})
    shown = verdict(one).summary()
    assert one["m"]["dnat"].se is None and "slope +0.50" in shown and "slope +0.50 ±" not in shown


def test_the_standard_error_keeps_each_seed_paired_across_the_widths():
    """The seeds differ by a factor that is the same at every width (one init larger everywhere): each
    seed's slope is -0.4, so the slope's standard error is 0 and a fail 0.15 beyond the edge is decided.
    The same values at each width paired differently across the widths give a spread: an error taken
    from each width's scatter alone (the widths independent) would be the same for both, and large."""
    paired = _seeds([-0.4] * 3, scales=[1.0, 3.0, 0.3])
    fit, check, v = _judged(paired)
    assert fit.se == pytest.approx(0.0, abs=1e-12)
    assert check.status == "shrinks" and not check.undecided and not v.passed
    shuffled = [[paired[(i + j) % 3][j] for j in range(len(WS))] for i in range(3)]
    assert [sorted(v) for v in zip(*shuffled)] == [sorted(v) for v in zip(*paired)]
    fit, check, v = _judged(shuffled)
    assert fit.se > 0.1 and check.status == "shrinks" and check.undecided and not v.passed


def test_how_far_a_slope_must_lie_from_the_edge_to_be_decided_grows_as_the_seeds_get_fewer():
    """The standard error is itself estimated from the n seeds, so the band is Student's t (95 %, n - 1
    degrees of freedom), not 2: a fail 3 to 4 standard errors beyond the edge is not decided at 3 seeds
    (t 4.30) and is at 8 (t 2.36)."""
    assert undecided_within(3) == pytest.approx(4.303) and undecided_within(8) == pytest.approx(2.365)
    assert undecided_within(100) == pytest.approx(1.96)
    for slopes, decided in (([-0.4, -0.5, -0.6], False), ([-0.35 - 0.08 * i for i in range(8)], True)):
        fit, check, _ = _judged(_seeds(slopes))
        assert 3 < (check.expected - 0.25 - check.slope) / fit.se < 4  # between t at 8 seeds and at 3
        assert check.status == "shrinks" and check.undecided is not decided
    # 3 seeds 3.8 standard errors beyond: 4 seeds (t 3.18) would decide it if their spread holds
    assert seeds_to_decide(3, fit.se, margin=3.8 * fit.se) == 4 and seeds_to_decide(3, 0.1, 0.03) is None


def test_the_verdict_marks_a_check_its_seeds_have_not_decided_and_keeps_its_pass_or_fail():
    # a fail far beyond the edge (0.4 beyond, se 0.03): decided, shown with its standard error
    _, far, v = _judged(_seeds([-0.6, -0.65, -0.7]))
    assert far.status == "shrinks" and not far.undecided
    assert "m [dnat] shrinks: slope -0.64 ± 0.03" in v.summary() and "not decided" not in v.summary()
    # a fail just beyond the edge (-0.28, se 0.12): still a fail, marked as not decided
    _, close, v = _judged(_seeds([-0.2, -0.4, -0.6]))
    assert close.status == "shrinks" and close.undecided and not v.passed
    assert "slope -0.28 ± 0.12 (not decided at 3 seeds: more than 100 may be needed)" in v.summary()
    # a pass just inside the edge (+0.21, se 0.09): still a pass, named as not decided
    _, inside, v = _judged(_seeds([0.0, 0.1, 0.3]))
    assert inside.status == "pass" and inside.undecided and v.passed
    assert v.close_passes == [inside] and "not decided at 3 seeds): m [dnat] slope +0.21 ± 0.09" in v.summary()
    # the same near the lower edge of a quantity allowed to shrink: no edge there to decide
    _, allowed, v = _judged(_seeds([-0.1, -0.2, -0.4]), quantity="rms@0", allow_shrink=["rms@0"])
    assert allowed.status == "pass" and not allowed.undecided and not v.close_passes
    _, below, _ = _judged(_seeds([-0.1, -0.2, -0.4]), quantity="rms@0")
    assert below.undecided
    json.dumps(v.to_dict())
