"""Tests for experiments.coord_demo and the coord-check plot it draws (sptrace.validation.plots)."""
from __future__ import annotations

import pytest

from experiments.coord_demo import run_coord_demo
from sptrace.validation.jsonio import read_json

pytestmark = pytest.mark.usefixtures("one_thread")


def test_coord_demo(tmp_path):
    """SP and the one-line call ("sptrace") at three widths, two Adam steps: both recorded and
    judged; the readout's output change grows with width under SP (docs/measurements.md) and not
    under sptrace, whose every slope passes."""
    pytest.importorskip("matplotlib")
    out = run_coord_demo((32, 128, 512), steps=2, out_dir=tmp_path)
    assert set(out) == {"sp", "sptrace", "verdicts"} and set(out["verdicts"]) == {"sp", "sptrace"}
    slope = {p: out[p].slopes(["delta_rms@2"])["readout"]["delta_rms@2"].slope for p in ("sp", "sptrace")}
    assert slope["sp"] > 0.5 and abs(slope["sptrace"]) < 0.25, slope
    assert out["verdicts"]["sptrace"].passed and not out["verdicts"]["sp"].passed
    for p in ("sp", "sptrace"):
        assert (tmp_path / f"coord_{p}.png").stat().st_size > 10_000
        assert set(read_json(tmp_path / f"coord_{p}.json")) == {"coord_check", "verdict"}


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
