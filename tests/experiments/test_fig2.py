"""Tests for experiments.fig2 (the paper's Fig. 2 on the digits, set up by sptrace.parametrize) and
its run store. tests/experiments/test_gd_mlp.py holds parametrize's init and lrs to Appendix A."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import experiments.fig2 as fig2
from experiments.digits import binary_digits
from experiments.fig2 import FIG2_PREDICTED, fig2_run, run_fig2
from experiments.fig2_store import RUN_ROUTE, Fig2RunStore, fig2_run_key, file_digest
from models_zoo.data import DIGITS_PATH
from sptrace.types import SptraceError

pytestmark = pytest.mark.usefixtures("one_thread")

STORE = Path(__file__).resolve().parents[2] / "docs" / "img" / "paper" / "fig2_runs.jsonl"


def _check_slopes(res, tol, skip=()):
    for p in ("sptrace", "ntp"):
        for q in ("feature_change", "spectral_change"):
            if (p, q) in skip:
                continue
            dev = res.slopes[p][q].slope - FIG2_PREDICTED[p][q]
            assert abs(dev) <= tol, (p, q, res.slopes[p][q].slope)


def _inverse_width_model_slope(res, p, q):
    """Slope over ``res.widths`` of the fitted ``a + b / n`` (the finite-width model of the means)."""
    from sptrace.validation.slopes import fit_slope

    a, b = res.inverse_width_fit[p][q]
    return fit_slope(res.widths, [a + b / w for w in res.widths]).slope


def test_fig2_fast(tmp_path):
    """Widths 16..512, 300 steps, 3 seeds, slopes fitted over every width (docs/measurements.md).

    What holds already at this cost: the spectral change of W2 (μP flat, NTP -1/2), the Frobenius
    change and the alignment point the predicted way, and μP's feature change is flat from width
    64 on. Over the full range μP's feature change carries the finite-width bend documented in
    docs/measurements.md (mean ≈ a + b/n with b > 0: larger at 16 and 32), and 300 steps leave
    NTP undertrained, so neither feature-change slope is asserted to ±0.1 from 16 here; the slow
    test checks the documented run."""
    res = run_fig2((16, 32, 64, 128, 256, 512), steps=300, seeds=(0, 1, 2), tol=0.1)
    assert res.fit_widths == res.widths == [16, 32, 64, 128, 256, 512]
    assert res.wide_from == 64
    _check_slopes(res, 0.1, skip={("sptrace", "feature_change"), ("ntp", "feature_change")})
    assert abs(res.slopes_wide["sptrace"]["feature_change"].slope) <= 0.1
    # the bend: larger at the narrow widths, a positive 1/n correction, still far from NTP's -1/2
    mup_feat = res.mean["sptrace"]["feature_change"]
    assert mup_feat[0] > mup_feat[2] > 0
    assert res.inverse_width_fit["sptrace"]["feature_change"][1] > 0
    assert -0.35 < res.slopes["sptrace"]["feature_change"].slope < 0
    assert res.slopes["ntp"]["feature_change"].slope < -0.4
    assert res.passed == all(abs(d) <= 0.1 for p in res.params for q, d in res.deviations[p].items()
                             if q in res.acceptance)
    # the other two panels point the right way
    assert abs(res.slopes["sptrace"]["alignment"].slope) < 0.15
    assert res.slopes["ntp"]["alignment"].slope < -0.3
    assert res.slopes["sptrace"]["frobenius_change"].slope < -0.3
    assert res.slopes["ntp"]["frobenius_change"].slope < -0.8
    # alignment of the final layer at init is ~1/sqrt(n) under both (Sec. 6)
    assert res.mean["sptrace"]["alignment_init"][-1] < 0.25
    d = json.loads(json.dumps(res.to_dict()))
    assert d["steps"] == 300 and d["fit_widths"][0] == 16 and "feature_change_pooled" in d["slopes"]["sptrace"]
    assert d["route"] == RUN_ROUTE
    assert set(d["inverse_width_fit"]["sptrace"]["feature_change"]) == {"a", "b"}
    table = res.table()
    assert "| sptrace | feature_change (acceptance)" in table and "slope (64–512, diagnostic)" in table
    pytest.importorskip("matplotlib")
    paths = res.write(tmp_path)
    assert (tmp_path / "fig2.json").exists() and (tmp_path / "fig2.png").stat().st_size > 10_000
    assert paths["png"].endswith("fig2.png")


def test_fig2_seeds_at_and_run_store(tmp_path, monkeypatch):
    """`seeds_at` runs fewer seeds at the named widths (means over what ran, seed slopes only over
    seeds that ran everywhere); a run store makes a second call train nothing and agree exactly."""
    store = tmp_path / "runs.jsonl"
    res = run_fig2((16, 32), steps=5, seeds=(0, 1), seeds_at={32: 1}, runs=store)
    assert res.seed_counts == [2, 1]
    fc = res.raw["sptrace"]["feature_change"]
    assert fc[1][1] is None and fc[0][1] is not None and fc[1][0] is not None
    assert res.mean["sptrace"]["feature_change"][1] == fc[0][1]
    assert res.mean["sptrace"]["feature_change"][0] == pytest.approx((fc[0][0] + fc[1][0]) / 2)
    assert len(res.seed_slopes["sptrace"]["feature_change"]) == 1
    assert len(store.read_text().splitlines()) == 6  # 3 (seed, width) pairs x 2 parametrizations
    assert "| sptrace | feature_change (acceptance)" in res.table()
    assert json.loads(json.dumps(res.to_dict()))["seed_counts"] == [2, 1]

    def no_training(*args, **kwargs):
        raise AssertionError("a stored run was trained again")

    monkeypatch.setattr(fig2, "fig2_run", no_training)
    again = run_fig2((16, 32), steps=5, seeds=(0, 1), seeds_at={32: 1}, runs=store)
    assert again.raw == res.raw and again.slopes["ntp"]["spectral_change"] == res.slopes["ntp"]["spectral_change"]
    # a different training length is a different run
    with pytest.raises(AssertionError, match="trained again"):
        run_fig2((16, 32), steps=6, seeds=(0,), runs=store)


def test_fig2_seeds_at_and_run_store_errors(tmp_path, monkeypatch):
    def no_training(*args, **kwargs):
        raise AssertionError("bad arguments must fail before any training")

    monkeypatch.setattr(fig2, "fig2_run", no_training)
    with pytest.raises(SptraceError, match=r"seeds_at names widths \[64\]"):
        run_fig2((16, 32), steps=1, seeds=(0,), seeds_at={64: 1})
    with pytest.raises(SptraceError, match=r"seeds_at\[32\] = 3: must be between 1 and the number of seeds \(2\)"):
        run_fig2((16, 32), steps=1, seeds=(0, 1), seeds_at={32: 3})
    with pytest.raises(SptraceError, match=r"widths \[16\]: a slope needs at least two widths"):
        run_fig2((16,), steps=1, seeds=(0,))
    with pytest.raises(SptraceError, match=r"fit_from=64 leaves fewer than two"):
        run_fig2((16, 32, 64), steps=1, seeds=(0,), fit_from=64)
    with pytest.raises(SptraceError, match=r"unknown parametrization 'mup'"):
        run_fig2((16, 32), steps=1, seeds=(0,), params=("mup", "ntp"))
    bad = tmp_path / "runs.jsonl"
    bad.write_text('{"key": {"width": 16}, "result": {}}\nnot json\n')
    with pytest.raises(SptraceError, match=r"runs.jsonl:2 is not a Fig. 2 run record"):
        run_fig2((16, 32), steps=1, seeds=(0,), runs=bad)


def test_run_store_keeps_a_diverged_run(tmp_path):
    """A NaN result is written as valid JSON (sptrace.validation.jsonio) and read back as NaN."""
    key = fig2_run_key("d", (0, 1), 200, 0, "sptrace", 16, 5, 0.1, True)
    Fig2RunStore(tmp_path / "runs.jsonl").put(key, {"final_loss": float("nan"), "alignment": 0.5})
    line = json.loads((tmp_path / "runs.jsonl").read_text())  # strict JSON: no bare NaN
    assert line["result"]["final_loss"] == "nan" and line["key"]["param"] == "sptrace"
    again = Fig2RunStore(tmp_path / "runs.jsonl").get(key)
    assert again["alignment"] == 0.5 and again["final_loss"] != again["final_loss"]


def test_fig2_run_goes_through_parametrize(monkeypatch):
    """Every run is set up by the public sptrace.parametrize (so a change of the library's rules
    reaches Fig. 2), with Appendix A's options: SGD, absolute form, ReLU gain, Gaussian readout."""
    import sptrace

    calls, real = [], sptrace.parametrize

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(sptrace, "parametrize", spy)
    x, y = binary_digits(200, (0, 1), seed=0)
    fig2_run(x, y, 16, "ntp", 2, seed=10_000)
    assert len(calls) == 1
    kw = calls[0]
    assert (kw["parametrization"], kw["form"], kw["zero_readout"], kw["lr"]) == ("ntp", "absolute", False, 0.1)
    assert kw["init_gain"] == pytest.approx(2 ** 0.5) and kw["example_inputs"][0].shape == (200, 3072)


def test_committed_store_holds_only_parametrize_runs():
    lines = [json.loads(line) for line in STORE.read_text().splitlines() if line.strip()]
    assert len(lines) == len(Fig2RunStore(STORE)) >= 154  # one line per run, no duplicates
    assert {rec["key"]["route"] for rec in lines} == {RUN_ROUTE}


@pytest.mark.parametrize("width, seed", [(16, 3), pytest.param(2048, 0, marks=pytest.mark.slow)])
def test_committed_fig2_runs_reproduce(width, seed):
    """The run store behind docs/measurements.md's Fig. 2 table holds what this code computes: stored
    runs (both parametrizations) are trained again through sptrace.parametrize and compared; the
    narrowest width by default, a wide one (minutes) with -m slow."""
    store = Fig2RunStore(STORE)
    x, y = binary_digits(200, (0, 1), seed=seed)
    for param in ("sptrace", "ntp"):
        stored = store.get(fig2_run_key(file_digest(DIGITS_PATH), (0, 1), 200, seed, param, width, 4000, 0.1, True))
        assert stored is not None, param
        fresh = fig2_run(x, y, width, param, 4000, seed=10_000 + seed)
        for q in ("feature_change", "spectral_change", "final_loss"):
            assert fresh[q] == pytest.approx(stored[q], rel=1e-3, abs=1e-6), (param, q)


def test_fig2_documented_run_from_the_store(tmp_path, monkeypatch):
    """docs/measurements.md's Fig. 2 verdict follows from the committed run store: the paper's widths
    16..4096 (10 seeds, 5 at 2048, 2 at 4096) pass every acceptance slope (±0.1) and every width
    trains below 0.01 loss. No run is trained here (a missing one fails at once);
    test_committed_fig2_runs_reproduce checks that stored runs are what the code computes."""
    import shutil

    def no_training(*args, **kwargs):
        raise AssertionError("the committed run store lacks a run of the documented configuration")

    monkeypatch.setattr(fig2, "fig2_run", no_training)
    store = tmp_path / "runs.jsonl"
    shutil.copy(STORE, store)
    res = run_fig2((16, 32, 64, 128, 256, 512, 1024, 2048, 4096), seeds=tuple(range(10)),
                   seeds_at={2048: 5, 4096: 2}, runs=store)
    assert res.passed and res.seed_counts == [10] * 7 + [5, 2]
    _check_slopes(res, 0.1, skip=set())
    for p in ("sptrace", "ntp"):
        assert max(res.mean[p]["final_loss"]) < 0.01


@pytest.mark.slow
def test_fig2_full():
    """The 16..1024 part of the documented reproduction (docs/measurements.md "Fig. 2") trained
    again: 4000 steps, 10 seeds, digits 0 vs 1, slopes fitted over every width. Every width trains
    below 0.01 loss on average. Asserted over the full range 16..1024: μP spectral change 0 and NTP feature and
    spectral change -1/2 (±0.1), the alignment and Frobenius panels (±0.1). μP's feature change is
    flat (±0.1) from width 64 on; over 16..1024 its mean follows a + b/n (b > 0, within 10% at
    every width) and its slope is the slope of that finite-width model (±0.05), which the paper's
    Θ(1) prediction does not include: see the docs for why the full-range value misses ±0.1.
    Not run as a test since the route through sptrace.parametrize: the same 140 runs, made by the
    documented command into the committed store, took 3686 s of run time (one thread each, two runs
    side by side with other jobs on the 2-core machine); refitted from that store they meet every
    assertion here (docs/measurements.md "Fig. 2")."""
    res = run_fig2((16, 32, 64, 128, 256, 512, 1024), steps=4000, seeds=tuple(range(10)), tol=0.1)
    assert res.fit_widths == res.widths
    _check_slopes(res, 0.1, skip={("sptrace", "feature_change")})
    for p in ("sptrace", "ntp"):
        assert max(res.mean[p]["final_loss"]) < 0.01
        for q in ("frobenius_change", "alignment"):
            assert abs(res.slopes[p][q].slope - FIG2_PREDICTED[p][q]) < 0.1, (p, q)
    assert abs(res.slopes_wide["sptrace"]["feature_change"].slope) <= 0.1
    a, b = res.inverse_width_fit["sptrace"]["feature_change"]
    assert a > 0 and b > 0
    for w, m in zip(res.widths, res.mean["sptrace"]["feature_change"]):
        assert abs(a + b / w - m) <= 0.1 * m, (w, m, a + b / w)
    model = _inverse_width_model_slope(res, "sptrace", "feature_change")
    assert abs(res.slopes["sptrace"]["feature_change"].slope - model) <= 0.05


@pytest.mark.gpu
def test_fig2_to_the_papers_widths_on_cuda():
    """The paper's range, 16..4096, on a GPU (minutes): the same run as test_fig2_full with two more
    widths. Asserts the acceptance slopes (feature and spectral change, μP 0 and NTP -1/2, ±0.1)
    over the whole range, and that a run on CUDA reproduces the CPU one at one width."""
    x, y = binary_digits(200, (0, 1), seed=0)
    cpu = fig2_run(x, y, 64, "sptrace", 200, seed=10_000)
    gpu = fig2_run(x, y, 64, "sptrace", 200, seed=10_000, device="cuda")
    for q in ("feature_change", "spectral_change", "final_loss"):
        assert gpu[q] == pytest.approx(cpu[q], rel=1e-3), q
    res = run_fig2((16, 32, 64, 128, 256, 512, 1024, 2048, 4096), steps=4000, seeds=tuple(range(10)), tol=0.1,
                   device="cuda")
    print(res.table())
    for p in ("sptrace", "ntp"):
        for q in ("feature_change", "spectral_change"):
            assert abs(res.slopes[p][q].slope - FIG2_PREDICTED[p][q]) <= 0.1, (p, q, res.slopes[p][q].slope)
