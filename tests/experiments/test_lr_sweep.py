"""Tests for experiments.lr_sweep (learning-rate sweep of the Fig. 2 MLP)."""
from __future__ import annotations

import json
import math

import pytest

from experiments.lr_sweep import run_lr_sweep
from sptrace.validation.jsonio import read_json

pytestmark = pytest.mark.usefixtures("one_thread")


def test_lr_sweep(tmp_path):
    res = run_lr_sweep((32, 64), (0.05, 0.2, 1e3), param="sptrace", steps=20)
    assert set(res.losses) == {32, 64}
    assert all(math.isnan(v[-1]) for v in res.losses.values())  # lr 1000 diverges: NaN, not a crash
    assert res.best_lr()[32] in (0.05, 0.2)
    json.dumps(res.to_dict())
    pytest.importorskip("matplotlib")
    paths = res.write(tmp_path)
    assert (tmp_path / "lr_sptrace.png").exists()
    d = read_json(paths["json"])  # strict JSON: the diverged run is the string "nan"
    assert d["param"] == "sptrace" and d["losses"]["32"][-1] == "nan" and d["best_lr"]["32"] in (0.05, 0.2)
