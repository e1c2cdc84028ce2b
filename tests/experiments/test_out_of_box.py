"""Tests for experiments.out_of_box: the one-line call vs plain Adam, and the lr sweep in the
default form vs SP (docs/training.md). The fast tests prove the plumbing (same init, same batches,
the literal calls); the slow ones are the issue's acceptance: width 1024 passes, its CPU stand-in 512
is a strict xfail (docs/training.md)."""
from __future__ import annotations

import json
import math
import os

import pytest
import torch

import models_zoo
import sptrace
from experiments.__main__ import main
from experiments.out_of_box import (ABLATIONS, ADAM_DEFAULT_LR, _sweep_arm, fingerprint, one_line, run_out_of_box,
                                    run_transfer, zoo_data)
from sptrace.types import SptraceError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name", ["mlp", "gpt"])
def test_both_arms_share_init_and_batches(name):
    res = run_out_of_box([name], width=16, steps=4, seeds=(0, 1), tail=2)
    by = {(r["seed"], r["arm"]): r for r in res.runs}
    assert set(by) == {(s, a) for s in (0, 1) for a in ("sptrace", "adam")}
    for seed in (0, 1):
        ours, plain = by[seed, "sptrace"], by[seed, "adam"]
        assert ours["init_fp"] == plain["init_fp"] and ours["data_fp"] == plain["data_fp"]
        assert plain["lrs"] == [ADAM_DEFAULT_LR] == [1e-3]
        assert len(ours["lrs"]) > 1  # per-group lrs: width 16 is 16x below the reference width 256
        classes = 10 if name == "mlp" else models_zoo.data.VOCAB_SIZE
        assert ours["initial"] == pytest.approx(math.log(classes), rel=1e-5)  # zero readout: uniform output
        assert all(math.isfinite(ours[k]) and math.isfinite(plain[k]) for k in ("train", "val"))
    assert by[0, "adam"]["init_fp"] != by[1, "adam"]["init_fp"] and by[0, "adam"]["data_fp"] != by[1, "adam"]["data_fp"]
    # the plain arm is literally the library model: its first loss is that of a fresh seeded build
    spec = models_zoo.get(name)
    torch.manual_seed(0)
    model = spec.build(16)
    inputs, target = zoo_data(name, 4, 0).train[0]
    with torch.no_grad():
        assert by[0, "adam"]["initial"] == pytest.approx(float(spec.loss(model(*inputs), target)), rel=1e-6)
    assert any("lr is the lr at width 256" in note for note in res.lr_notes[name])
    assert f"| {name} | sptrace | 16 | 4 | 2 |" in res.table() and f"| {name} | adam | 16 | 4 | 2 |" in res.table()
    json.dumps(res.to_dict())


@pytest.mark.parametrize("name", ["mlp", "gpt"])
def test_sweep_reparametrize_equals_a_fresh_call(name):
    """The sweep parametrizes each width once, restores those weights and calls parametrize(lr=)
    again per lr: the weights and every group's lr must be those of a fresh model's call."""
    build, make = _sweep_arm(name, "sptrace")
    torch.manual_seed(0)
    model = build(32)
    snapshot = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(snapshot)
    again = make(model, 4e-3)
    torch.manual_seed(0)
    fresh = models_zoo.get(name).build(32)
    direct = one_line(fresh, 4e-3)
    assert fingerprint(list(model.state_dict().values())) == fingerprint(list(fresh.state_dict().values()))
    assert [(g["lr"], len(g["params"])) for g in again.param_groups] == \
        [(g["lr"], len(g["params"])) for g in direct.param_groups]


def test_sweep_refuses_a_replanned_model(monkeypatch):
    """If the per-lr call planned other inits than the first call (as the library-law detection once
    did for the GPT at width 32, seed 3, once the readout was zero), the sweep would train something
    other than the one-line call: it says so instead."""
    import experiments.out_of_box as oob

    build, make = _sweep_arm("mlp", "sptrace")
    torch.manual_seed(0)
    model = build(32)
    monkeypatch.setattr(oob, "one_line", lambda m, lr=None: sptrace.parametrize(m, optimizer="adam", lr=lr,
                                                                                zero_readout=False))
    with pytest.raises(SptraceError, match="planned .* differently"):
        make(model, 1e-3)


def test_transfer_plumbing(tmp_path):
    tr = run_transfer(["mlp"], widths=(16, 32), log2_lrs=(-10, -9), steps=3)
    for arm in ("sptrace", "sp"):
        r = tr.mean("mlp", arm)
        assert r.widths == [16, 32] and r.lrs == [2.0 ** -10, 2.0 ** -9] and r.steps == 3
    assert "| mlp | sptrace | 16–32 |" in tr.summary_table() and "| mlp | sp | 16–32 |" in tr.summary_table()
    d = json.loads(open(tr.write(tmp_path, plot=False)["json"]).read())
    assert set(d["mean"]["mlp"]) == {"sptrace", "sp"}


def test_cli_oob(tmp_path, capsys):
    rc = main(["oob", "--models", "mlp", "--width", "16", "--steps", "3", "--seeds", "1", "--sweep-widths", "16", "32",
               "--sweep-log2-lrs", "-10", "-9", "--sweep-steps", "3", "--parts", "compare", "sweep", "ablate",
               "--threads", "1", "--out", str(tmp_path)])
    compared = json.loads((tmp_path / "out_of_box.json").read_text())
    swept = json.loads((tmp_path / "out_of_box_transfer.json").read_text())
    assert rc == (0 if compared["passed"]["mlp"]["train"] and swept["passed"]["mlp"] else 1)
    ablated = json.loads((tmp_path / "out_of_box_ablations.json").read_text())
    assert ablated["arms"] == list(ABLATIONS) and len(ablated["runs"]) == len(ABLATIONS)
    assert len({r["init_fp"] for r in ablated["runs"]}) == 1  # every variant starts from the same library init
    out = capsys.readouterr().out
    assert "| mlp | sptrace | 16 | 3 | 1 |" in out and "| mlp | sptrace | 16–32 |" in out
    with pytest.raises(SptraceError, match="--data does not apply"):
        main(["oob", "--data", "x.npz", "--out", str(tmp_path)])


# ------------------------------------------------------------------------ the acceptance (slow)

OUT = os.environ.get("SPTRACE_OOB_OUT")  # a folder to keep the slow runs' JSON in


# The acceptance names width 1024 (512 is its CPU stand-in). Seeds as measured in docs/training.md
# ("At width 1024"): the MLP's memorisation-level training loss needs 24 to settle 0.003.
AT_512 = ("at 2x the reference width the zero readout (about 0.03 nats on the GPT in 200 steps) and the "
          "halved hidden lr cost more than muP gains over plain Adam: docs/training.md, 'Why'")
OOB_CELLS = [pytest.param("mlp", 1024, 24, id="mlp-1024"), pytest.param("gpt", 1024, 8, id="gpt-1024"),
             pytest.param("mlp", 512, None, id="mlp-512", marks=pytest.mark.xfail(strict=True, reason=AT_512)),
             pytest.param("gpt", 512, None, id="gpt-512", marks=pytest.mark.xfail(strict=True, reason=AT_512))]


@pytest.mark.slow
@pytest.mark.parametrize("name, width, n_seeds", OOB_CELLS)
def test_one_line_call_trains_as_well_as_plain_adam(name, width, n_seeds):
    res = run_out_of_box([name], width=width, steps=200, seeds=n_seeds and range(n_seeds), progress=True)
    if OUT:
        res.write(OUT, f"out_of_box-{name}-{width}")
    print(res.table())
    for r in res.runs:
        print(r)
    assert res.passed(name, "train"), res.table()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mlp", "gpt"])
def test_default_form_best_lr_moves_at_most_one_step(name):
    tr = run_transfer([name], widths=(32, 64, 128, 256, 512), progress=True)
    if OUT:
        tr.write(OUT, f"out_of_box_transfer-{name}")
    print(tr.summary_table())
    for arm in ("sptrace", "sp"):
        print(arm, "\n" + tr.mean(name, arm).table())
    d = tr.mean(name, "sptrace").drift("train")
    assert not d.at_edge and not d.undefined, tr.summary_table()
    assert d.spread <= 1, tr.summary_table()
