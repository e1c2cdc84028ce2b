"""Tests for experiments.fig1 (the paper's Fig. 1 on the digits)."""
from __future__ import annotations

import json

import pytest

from experiments.fig1 import run_fig1
from sptrace.types import SptraceError

pytestmark = pytest.mark.usefixtures("one_thread")


def test_fig1_fast(tmp_path):
    res = run_fig1((1, 16, 256), width=300, trials=2)
    for act in ("relu", "tanh"):
        sr = res.mean[act]["stable_rank"]
        al = res.mean[act]["alignment"]
        assert sr[0] == pytest.approx(1.0, rel=1e-4)  # B = 1: rank one
        assert al[0] == pytest.approx(1.0, rel=1e-4)  # ... and aligned with its own input
        assert sr[-1] < 20  # far below min(n1, n2) = 300 even at B = 256
        assert al[-1] > 0.2
        # Fig. 3: one sample's H'_1 and G_2 are single columns
        assert res.mean[act]["input_stable_rank"][0] == pytest.approx(1.0, rel=1e-4)
        assert res.mean[act]["grad_stable_rank"][0] == pytest.approx(1.0, rel=1e-4)
    assert json.loads(json.dumps(res.to_dict()))["parametrization"] == "ntp"
    assert "| 256 |" in res.table()
    pytest.importorskip("matplotlib")
    paths = res.write(tmp_path)
    assert (tmp_path / "fig1.png").stat().st_size > 10_000 and paths["json"].endswith("fig1.json")


def test_fig1_errors():
    with pytest.raises(SptraceError, match="batch size 4096 exceeds the 1797 samples"):
        run_fig1((1, 4096), trials=1)
    with pytest.raises(SptraceError, match=r"activations \['gelu'\] unknown"):
        run_fig1((1,), activations=("relu", "gelu"), trials=1)


def test_fig1_init_comes_from_parametrize():
    """The MLP's init comes from sptrace.parametrize: NTP gives every layer std gain/sqrt(fan_in),
    muP only a smaller readout (Parametrization 1: gain/sqrt(fan_in) * sqrt(fan_out/fan_in) =
    gain sqrt(10)/300); both update W2 in rank one at B = 1."""
    import math

    import torch

    from experiments.fig1 import _parametrized

    X = torch.randn(64, 3072, generator=torch.Generator().manual_seed(0))
    for param, readout in (("ntp", math.sqrt(2 / 300)), ("sptrace", math.sqrt(2) * math.sqrt(10) / 300)):
        mlp, opt = _parametrized(X, "relu", 300, 10, param, seed=1)
        planned = [opt.sptrace[f"{i}.weight"].init_std for i in (0, 2, 4)]
        assert planned == pytest.approx([math.sqrt(2 / 3072), math.sqrt(2 / 300), readout], rel=1e-6)
        assert mlp[2].weight.dtype == torch.float64
        assert float(mlp[2].weight.detach().std()) == pytest.approx(math.sqrt(2 / 300), rel=0.02)
    res = run_fig1((1,), width=300, trials=1, parametrization="sptrace", activations=("tanh",))
    assert res.mean["tanh"]["stable_rank"][0] == pytest.approx(1.0, rel=1e-4)
    with pytest.raises(SptraceError, match="parametrization"):
        run_fig1((1,), trials=1, parametrization="mup")
