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
    assert all(math.isinf(v[-1]) for v in res.losses.values())  # lr 1000 diverges: inf, not a crash
    assert [row[-1] for row in res.sweeps[0].diverged] == [True, True]
    assert res.best_lr()[32] in (0.05, 0.2)
    json.dumps(res.to_dict())
    pytest.importorskip("matplotlib")
    paths = res.write(tmp_path)
    assert (tmp_path / "lr_sptrace.png").exists()
    d = read_json(paths["json"])  # strict JSON: the diverged run is the string "inf"
    assert d["param"] == "sptrace" and d["losses"]["32"][-1] == "inf" and d["best_lr"]["32"] in (0.05, 0.2)
    assert d["sweeps"][0]["parametrization"] == "sptrace" and d["sweeps"][0]["base_width"] is None


def test_lr_sweep_is_full_batch_gd():
    """The sweep's run is the Fig. 2 route's (parametrize's groups, its SGD): the loss at step t is
    the loss after t - 1 GD updates, and two seeds' losses average."""
    from experiments.digits import binary_digits
    from experiments.gd_mlp import parametrized_mlp, train_full_batch

    res = run_lr_sweep((16,), (0.5,), param="ntp", steps=6, seeds=(0, 1))
    direct = []
    for seed in (0, 1):
        x, y = binary_digits(200, seed=seed)
        mlp, opt, xin = parametrized_mlp(x, 16, "ntp", 0.5, 10_000 + seed)
        direct.append(train_full_batch(mlp, opt, xin, y, 5)[-1])
    assert [s.losses("train")[16][0] for s in res.sweeps] == pytest.approx(direct, rel=1e-5)
    assert res.losses[16][0] == pytest.approx(sum(direct) / 2, rel=1e-5)
