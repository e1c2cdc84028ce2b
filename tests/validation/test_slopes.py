"""Tests for sptrace.validation.slopes: log-log slope fits and width-stability verdicts."""
from __future__ import annotations

import json
import math

import pytest
import torch

from sptrace import SptraceError
from sptrace.validation.slopes import SlopeFit, fit_slope, fit_slopes, verdict


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
