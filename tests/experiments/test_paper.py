"""Tests for experiments.paper (the paper's Fig. 1 / Fig. 2 on digits) and sptrace.validation.plots."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from experiments.paper import FIG2_PREDICTED, binary_digits, fig2_constants, fig2_measure, input_basis, load_digits, main, run_fig1, run_fig2, run_lr_sweep, train_mlp_gd


pytestmark = pytest.mark.usefixtures("one_thread")


def test_binary_digits():
    x, y = binary_digits(200, (0, 1), seed=0)
    assert x.shape == (200, 3072) and x.dtype == torch.float32
    assert set(y.tolist()) == {-1.0, 1.0}
    assert 60 < int((y > 0).sum()) < 140
    assert float(x.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(x.std()) == pytest.approx(1.0, abs=1e-4)
    x2, y2 = binary_digits(200, (0, 1), seed=0)
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(binary_digits(200, (0, 1), seed=1)[0], x)
    # upsampled 8x8 images repeated over 3 channels span at most 65 dimensions
    xp, V = input_basis(x)
    assert xp.shape[1] <= 65
    assert torch.allclose(xp @ V.T, x, atol=1e-4)
    with pytest.raises(ValueError):
        binary_digits(1000)
    # a side may be a group of digits; the default pair is unchanged by that option
    xg, yg = binary_digits(200, ((0, 1, 2, 3, 4), (5, 6, 7, 8, 9)), seed=0)
    assert xg.shape == (200, 3072) and 60 < int((yg > 0).sum()) < 140
    x3, y3 = binary_digits(200, ((0,), [1]), seed=0)
    assert torch.equal(x3, x) and torch.equal(y3, y)
    with pytest.raises(ValueError):
        binary_digits(100, ((0, 1), (1, 2)))
    with pytest.raises(FileNotFoundError):
        load_digits("/nonexistent/digits.npz")


def test_fig2_constants_agree_at_width_one():
    mu = fig2_constants("mup", 3072, 1)
    nt = fig2_constants("ntp", 3072, 1)
    assert mu[0] == pytest.approx(nt[0]) and mu[1] == pytest.approx(nt[1])
    s, lr = fig2_constants("mup", 3072, 256, eta=0.1)
    assert s == pytest.approx([math.sqrt(2 / 3072), math.sqrt(2 / 256), math.sqrt(2) / 256])
    assert lr == pytest.approx([0.1 * 256 / 3072, 0.1, 0.1 / 256])
    with pytest.raises(ValueError):
        fig2_constants("abc", 10, 10)


def test_input_projection_is_exact():
    """Training W1 V on V^T x gives the same network as training W1 on x (paper.py docstring)."""
    x, y = binary_digits(200, seed=3)
    x, y = x.double(), y.double()
    xp, V = input_basis(x)
    g = torch.Generator().manual_seed(0)
    sig, lrs = fig2_constants("mup", 3072, 32, eta=0.1)
    W0 = [torch.randn(32, 3072, generator=g, dtype=torch.float64) * sig[0],
          torch.randn(32, 32, generator=g, dtype=torch.float64) * sig[1],
          torch.randn(1, 32, generator=g, dtype=torch.float64) * sig[2]]
    W_full, hist_full = train_mlp_gd(x, y, W0, lrs, 50, record_every=10)
    W0p = [W0[0] @ V, W0[1], W0[2]]
    W_proj, hist_proj = train_mlp_gd(xp, y, W0p, lrs, 50, record_every=10)
    assert hist_full == pytest.approx(hist_proj, rel=1e-6)
    assert hist_full[-1] < hist_full[0]
    assert torch.allclose(W_full[1], W_proj[1], rtol=1e-6, atol=1e-9)
    assert torch.allclose(W_full[2], W_proj[2], rtol=1e-6, atol=1e-9)
    assert torch.allclose(W_full[0] @ V, W_proj[0], rtol=1e-6, atol=1e-9)
    m_full = fig2_measure(x, W0, W_full)
    m_proj = fig2_measure(xp, W0p, W_proj)
    for q in m_full:
        assert m_full[q] == pytest.approx(m_proj[q], rel=1e-6), q


def _check_slopes(res, tol, skip=()):
    for p in ("mup", "ntp"):
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
    _check_slopes(res, 0.1, skip={("mup", "feature_change"), ("ntp", "feature_change")})
    assert abs(res.slopes_wide["mup"]["feature_change"].slope) <= 0.1
    # the bend: larger at the narrow widths, a positive 1/n correction, still far from NTP's -1/2
    mup_feat = res.mean["mup"]["feature_change"]
    assert mup_feat[0] > mup_feat[2] > 0
    assert res.inverse_width_fit["mup"]["feature_change"][1] > 0
    assert -0.35 < res.slopes["mup"]["feature_change"].slope < 0
    assert res.slopes["ntp"]["feature_change"].slope < -0.4
    assert res.passed == all(abs(d) <= 0.1 for p in res.params for q, d in res.deviations[p].items()
                             if q in res.acceptance)
    # the other two panels point the right way
    assert abs(res.slopes["mup"]["alignment"].slope) < 0.15
    assert res.slopes["ntp"]["alignment"].slope < -0.3
    assert res.slopes["mup"]["frobenius_change"].slope < -0.3
    assert res.slopes["ntp"]["frobenius_change"].slope < -0.8
    # alignment of the final layer at init is ~1/sqrt(n) under both (Sec. 6)
    assert res.mean["mup"]["alignment_init"][-1] < 0.25
    d = json.loads(json.dumps(res.to_dict()))
    assert d["steps"] == 300 and d["fit_widths"][0] == 16 and "feature_change_pooled" in d["slopes"]["mup"]
    assert set(d["inverse_width_fit"]["mup"]["feature_change"]) == {"a", "b"}
    table = res.table()
    assert "| mup | feature_change (acceptance)" in table and "slope (64–512, diagnostic)" in table
    pytest.importorskip("matplotlib")
    paths = res.write(tmp_path)
    assert (tmp_path / "fig2.json").exists() and (tmp_path / "fig2.png").stat().st_size > 10_000
    assert paths["png"].endswith("fig2.png")


def test_fig2_cli_classes(tmp_path, capsys):
    """`--classes` takes digit groups; `--name` names the outputs; the fit covers every width."""
    rc = main(["fig2", "--widths", "16", "32", "--steps", "3", "--seeds", "1", "--classes", "0,1,2,3,4",
               "5,6,7,8,9", "--name", "grp", "--out", str(tmp_path)])
    assert rc in (0, 1)
    d = json.loads((tmp_path / "grp.json").read_text())
    assert d["classes"] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]] and d["fit_widths"] == [16, 32]
    assert "| ntp | spectral_change (acceptance)" in capsys.readouterr().out


def test_fig2_seeds_at_and_run_store(tmp_path, monkeypatch):
    """`seeds_at` runs fewer seeds at the named widths (means over what ran, seed slopes only over
    seeds that ran everywhere); a run store makes a second call train nothing and agree exactly."""
    import experiments.paper as paper

    store = tmp_path / "runs.jsonl"
    res = run_fig2((16, 32), steps=5, seeds=(0, 1), seeds_at={32: 1}, runs=store)
    assert res.seed_counts == [2, 1]
    fc = res.raw["mup"]["feature_change"]
    assert fc[1][1] is None and fc[0][1] is not None and fc[1][0] is not None
    assert res.mean["mup"]["feature_change"][1] == fc[0][1]
    assert res.mean["mup"]["feature_change"][0] == pytest.approx((fc[0][0] + fc[1][0]) / 2)
    assert len(res.seed_slopes["mup"]["feature_change"]) == 1
    assert len(store.read_text().splitlines()) == 6  # 3 (seed, width) pairs x 2 parametrizations
    assert "| mup | feature_change (acceptance)" in res.table()
    assert json.loads(json.dumps(res.to_dict()))["seed_counts"] == [2, 1]

    def no_training(*args, **kwargs):
        raise AssertionError("a stored run was trained again")

    monkeypatch.setattr(paper, "fig2_run", no_training)
    again = run_fig2((16, 32), steps=5, seeds=(0, 1), seeds_at={32: 1}, runs=store)
    assert again.raw == res.raw and again.slopes["ntp"]["spectral_change"] == res.slopes["ntp"]["spectral_change"]
    # a different training length is a different run
    with pytest.raises(AssertionError, match="trained again"):
        run_fig2((16,), steps=6, seeds=(0,), runs=store)


def test_fig2_seeds_at_and_run_store_errors(tmp_path):
    with pytest.raises(ValueError, match=r"seeds_at names widths \[64\]"):
        run_fig2((16, 32), steps=1, seeds=(0,), seeds_at={64: 1})
    with pytest.raises(ValueError, match=r"seeds_at\[32\] = 3: must be between 1 and the number of seeds \(2\)"):
        run_fig2((16, 32), steps=1, seeds=(0, 1), seeds_at={32: 3})
    bad = tmp_path / "runs.jsonl"
    bad.write_text('{"key": {"width": 16}, "result": {}}\nnot json\n')
    with pytest.raises(ValueError, match=r"runs.jsonl:2 is not a Fig. 2 run record"):
        run_fig2((16,), steps=1, seeds=(0,), runs=bad)
    with pytest.raises(SystemExit, match="expected WIDTH=K"):
        main(["fig2", "--widths", "16", "--seeds-at", "16:1", "--out", str(tmp_path)])


@pytest.mark.parametrize("width, seed", [(16, 3), pytest.param(2048, 0, marks=pytest.mark.slow)])
def test_committed_fig2_runs_reproduce(width, seed):
    """The run store behind docs/measurements.md's Fig. 2 table holds what this code computes: stored
    runs (both parametrizations) are trained again and compared; the narrowest width by default,
    a wide one (minutes) with -m slow."""
    from experiments.paper import DIGITS_PATH, Fig2RunStore, _file_digest, fig2_run, fig2_run_key

    store = Fig2RunStore(Path(__file__).resolve().parents[2] / "docs" / "img" / "paper" / "fig2_runs.jsonl")
    assert len(store) >= 140
    x, y = binary_digits(200, (0, 1), seed=seed)
    for param in ("mup", "ntp"):
        stored = store.get(fig2_run_key(_file_digest(DIGITS_PATH), (0, 1), 200, seed, param, width, 4000, 0.1, True))
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

    import experiments.paper as paper

    def no_training(*args, **kwargs):
        raise AssertionError("the committed run store lacks a run of the documented configuration")

    monkeypatch.setattr(paper, "fig2_run", no_training)
    store = tmp_path / "runs.jsonl"
    shutil.copy(Path(__file__).resolve().parents[2] / "docs" / "img" / "paper" / "fig2_runs.jsonl", store)
    res = run_fig2((16, 32, 64, 128, 256, 512, 1024, 2048, 4096), seeds=tuple(range(10)),
                   seeds_at={2048: 5, 4096: 2}, runs=store)
    assert res.passed and res.seed_counts == [10] * 7 + [5, 2]
    _check_slopes(res, 0.1, skip=set())
    for p in ("mup", "ntp"):
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
    2268 s measured on one CPU thread of the loaded shared machine."""
    res = run_fig2((16, 32, 64, 128, 256, 512, 1024), steps=4000, seeds=tuple(range(10)), tol=0.1)
    assert res.fit_widths == res.widths
    _check_slopes(res, 0.1, skip={("mup", "feature_change")})
    for p in ("mup", "ntp"):
        assert max(res.mean[p]["final_loss"]) < 0.01
        for q in ("frobenius_change", "alignment"):
            assert abs(res.slopes[p][q].slope - FIG2_PREDICTED[p][q]) < 0.1, (p, q)
    assert abs(res.slopes_wide["mup"]["feature_change"].slope) <= 0.1
    a, b = res.inverse_width_fit["mup"]["feature_change"]
    assert a > 0 and b > 0
    for w, m in zip(res.widths, res.mean["mup"]["feature_change"]):
        assert abs(a + b / w - m) <= 0.1 * m, (w, m, a + b / w)
    model = _inverse_width_model_slope(res, "mup", "feature_change")
    assert abs(res.slopes["mup"]["feature_change"].slope - model) <= 0.05


def test_fig1_fast(tmp_path):
    res = run_fig1((1, 16, 256), width=300, trials=2)
    for act in ("relu", "tanh"):
        sr = res.mean[act]["stable_rank"]
        al = res.mean[act]["alignment"]
        assert sr[0] == pytest.approx(1.0, rel=1e-4)  # B = 1: rank one
        assert al[0] == pytest.approx(1.0, rel=1e-4)  # ... and aligned with its own input
        assert sr[-1] < 20  # far below min(n1, n2) = 300 even at B = 256
        assert al[-1] > 0.2
    json.dumps(res.to_dict())
    assert "| 256 |" in res.table()
    pytest.importorskip("matplotlib")
    paths = res.write(tmp_path)
    assert (tmp_path / "fig1.png").stat().st_size > 10_000 and paths["json"].endswith("fig1.json")


def test_lr_sweep_and_cli(tmp_path, capsys):
    res = run_lr_sweep((32, 64), (0.05, 0.2, 1e3), param="mup", steps=20)
    assert set(res.losses) == {32, 64}
    assert all(math.isnan(v[-1]) for v in res.losses.values())  # lr 1000 diverges: NaN, not a crash
    assert res.best_lr()[32] in (0.05, 0.2)
    json.dumps(res.to_dict())
    pytest.importorskip("matplotlib")
    assert main(["fig1", "--batch-sizes", "1", "4", "--width", "16", "--trials", "1", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "fig1.json").exists()
    assert "| 4 |" in capsys.readouterr().out
    res.write(tmp_path)
    assert (tmp_path / "lr_mup.png").exists()


def test_plot_coord_check(tmp_path):
    pytest.importorskip("matplotlib")
    from sptrace.validation.coord import CoordCheck
    from sptrace.validation.plots import plot_coord_check

    ws = [32, 64, 128, 256]
    recs = {f"layer{i}": {"rms@0": [1.0 + 0.01 * i] * 4, "delta_rms@1": [w ** (0.1 * i) / 100 for w in ws]}
            for i in range(15)}
    recs["broken"] = {"rms@0": [1.0, float("nan"), 1.0, 1.0], "delta_rms@1": [0.0] * 4}
    cc = CoordCheck(widths=ws, steps=1, records=recs,
                    param_records={"w": {"nat@0": [2.0] * 4, "dnat": [0.1] * 4, "dnat_last": [0.1] * 4}})
    p = plot_coord_check(cc, tmp_path / "sub" / "cc.png")
    assert (tmp_path / "sub" / "cc.png").stat().st_size > 10_000 and p.endswith("cc.png")
    plot_coord_check(cc, tmp_path / "cc_params.png", params=True)
    with pytest.raises(ValueError):
        plot_coord_check(cc, tmp_path / "none.png", quantities=["missing"])


@pytest.mark.gpu
def test_fig2_to_the_papers_widths_on_cuda():
    """The paper's range, 16..4096, on a GPU (minutes): the same run as test_fig2_full with two more
    widths. Asserts the acceptance slopes (feature and spectral change, μP 0 and NTP -1/2, ±0.1)
    over the whole range, and that a run on CUDA reproduces the CPU one at one width."""
    x, y = binary_digits(200, (0, 1), seed=0)
    from experiments.paper import fig2_run

    cpu = fig2_run(x, y, 64, "mup", 200, seed=10_000)
    gpu = fig2_run(x, y, 64, "mup", 200, seed=10_000, device="cuda")
    for q in ("feature_change", "spectral_change", "final_loss"):
        assert gpu[q] == pytest.approx(cpu[q], rel=1e-3), q
    res = run_fig2((16, 32, 64, 128, 256, 512, 1024, 2048, 4096), steps=4000, seeds=tuple(range(10)), tol=0.1,
                   device="cuda")
    print(res.table())
    for p in ("mup", "ntp"):
        for q in ("feature_change", "spectral_change"):
            assert abs(res.slopes[p][q].slope - FIG2_PREDICTED[p][q]) <= 0.1, (p, q, res.slopes[p][q].slope)
