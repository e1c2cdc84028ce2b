"""Learning-rate transfer (sptrace.validation.transfer): the best lr tuned at a narrow width stays best when the
model gets wider under sptrace, and moves under standard parametrization (SP).

The fast test runs a tiny grid on the MLP (widths 64 and 256). The slow test is the acceptance
experiment of docs/transfer.md (16x width range, MLP and GPT, CPU); with SPTRACE_TRANSFER_OUT set
it writes the JSON and PNGs there (that is how docs/img/ was made). The gpu test repeats it at
larger widths on CUDA.
"""
import json
import math
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sptrace import SptraceError
from sptrace.validation.transfer import Comparison, Drift, SweepData, SweepResult, compare, log2_grid, lr_sweep

FAST_LRS = log2_grid(-12, -6)  # 2^-6 diverges at both widths: the divergence path is exercised


@pytest.fixture(scope="module")
def fast():
    # one thread: on a busy 2-core machine the default thread count is several times slower.
    # tail=10: the training loss averages the last quarter of the run (the default, steps // 10 = 4
    # steps, is noisy enough at 40 steps to flip SP's best lr for one seed in five)
    return compare("mlp", (64, 256), FAST_LRS, "adam", steps=40, batch_size=32, eval_batches=4, seed=0, threads=1,
                   tail=10)


def test_grid_and_anchoring(fast):
    for name in ("sptrace", "sp"):
        r = fast.results[name]
        assert r.parametrization == name and r.widths == [64, 256] and r.lrs == FAST_LRS
        for grid in (r.train_loss, r.val_loss, r.initial_loss, r.diverged):
            assert len(grid) == 2 and all(len(row) == len(FAST_LRS) for row in grid)
        for w in r.widths:
            assert r.best_lr(w) in FAST_LRS and r.best_lr(w, "val") in FAST_LRS
    # at the base width sptrace *is* standard practice: same init, same per-parameter lrs
    assert fast.sptrace.train_loss[0] == pytest.approx(fast.sp.train_loss[0], rel=1e-5)
    assert fast.sptrace.initial_loss[0] == pytest.approx(fast.sp.initial_loss[0], rel=1e-6)
    assert fast.sptrace.base_width == 64


def test_divergence_is_a_failure_with_infinite_loss(fast):
    for r in fast.results.values():
        for i in range(2):
            assert r.diverged[i][-1] and r.train_loss[i][-1] == math.inf and r.val_loss[i][-1] == math.inf
            assert all(math.isfinite(v) for v, d in zip(r.train_loss[i], r.diverged[i]) if not d)
            assert math.isfinite(r.best_lr(r.widths[i]))  # diverged runs never win


def test_sptrace_transfers_the_lr_and_sp_does_not(fast):
    """What would fail if sptrace's rules were wrong: the best lr moves at most one factor-2 step
    over 4x width, and every lr that trains at width 64 still trains at width 256. Under SP the
    wide model diverges at an lr where the narrow one trains. Measured with this config for seeds
    0-4: sptrace's best lr moved 0, 0, 0, 0, +1 steps, SP's -2, -2, -1, -2, -1; every assertion
    below held for each seed."""
    d = fast.sptrace.drift()
    assert isinstance(d, Drift) and abs(d.end_to_end) <= 1, fast.summary()
    narrow, wide = fast.sptrace.diverged
    assert not any(w and not n for n, w in zip(narrow, wide)), fast.sptrace.table()
    narrow, wide = fast.sp.diverged
    assert any(w and not n for n, w in zip(narrow, wide)), fast.sp.table()
    assert fast.sp.drift().end_to_end <= 0, fast.summary()  # SP: wider wants a smaller (never larger) lr


def test_json_round_trip_and_plots(fast, tmp_path):
    path = fast.save(tmp_path / "c.json")
    data = json.loads(open(path).read())  # plain JSON: inf is written as a string
    assert data["results"]["sptrace"]["train_loss"][0][-1] == "inf"
    back = Comparison.load(path)
    for name, r in fast.results.items():
        b = back.results[name]
        assert b.train_loss == r.train_loss and b.val_loss == r.val_loss and b.diverged == r.diverged
        assert b.widths == r.widths and b.lrs == r.lrs and b.drift().to_dict() == r.drift().to_dict()
    files = fast.plot(tmp_path, stem="mlp")
    assert sorted(os.path.basename(f) for f in files) == ["mlp-sp.png", "mlp-sptrace.png"]
    assert all(os.path.getsize(f) > 1000 for f in files)
    one = fast.sptrace.plot(tmp_path / "val.png", metric="val")
    assert os.path.getsize(one) > 1000
    assert "**" in fast.sp.table() and "div" in fast.sp.table()


def _result(train, lrs=(1e-3, 2e-3, 4e-3, 8e-3), widths=(32, 64, 128)):
    inf = math.inf
    train = [[inf if v is None else v for v in row] for row in train]
    return SweepResult("toy", "sptrace", "adam", list(widths), list(lrs), train, train,
                       [[2.3] * len(lrs) for _ in widths], [[v == inf for v in row] for row in train], 10, 8)


def test_drift_bookkeeping():
    r = _result([[0.5, 0.3, 0.4, None], [0.5, 0.4, 0.2, 0.3], [0.6, 0.5, 0.45, 0.3]])
    assert [r.best_lr(w) for w in (32, 64, 128)] == [2e-3, 4e-3, 8e-3]
    d = r.drift()
    assert d.end_to_end == pytest.approx(2) and d.max_consecutive == pytest.approx(1) and d.spread == pytest.approx(2)
    assert d.grid_steps == pytest.approx(2) and d.at_edge == [128] and d.undefined == []
    assert math.isnan(d.end_to_end_interp)  # the widest minimum is on the edge
    # parabola through (log2 lr, log loss) at the minimum and its neighbours
    y0, y1, y2 = math.log(0.5), math.log(0.3), math.log(0.4)
    vertex = (y0 - y2) / (2 * (y0 - 2 * y1 + y2))
    assert r.best_lr(32, interpolate=True) == pytest.approx(2e-3 * 2 ** vertex, rel=1e-9)

    dead = _result([[None] * 4, [0.5, 0.4, 0.2, 0.3], [None] * 4])
    assert math.isnan(dead.best_lr(32)) and dead.best_index(32) is None
    dd = dead.drift()
    assert dd.undefined == [32, 128] and math.isnan(dd.end_to_end) and math.isnan(dd.spread)
    assert SweepResult.from_dict(json.loads(json.dumps(dead.to_dict()))).train_loss == dead.train_loss
    with pytest.raises(SptraceError, match="not in this sweep"):
        r.best_lr(99)
    with pytest.raises(SptraceError, match="unknown metric"):
        r.best_lr(32, metric="test")


def test_bad_input():
    with pytest.raises(SptraceError, match="unknown parametrization"):
        lr_sweep("mlp", (64,), (1e-3,), parametrization="ntk")
    with pytest.raises(SptraceError, match="unknown optimizer"):
        lr_sweep("mlp", (64,), (1e-3,), optimizer="lbfgs")
    with pytest.raises(SptraceError, match="positive"):
        lr_sweep("mlp", (64,), (0.0,))
    with pytest.raises(SptraceError, match="duplicate"):
        lr_sweep("mlp", (64, 64), (1e-3,))
    with pytest.raises(SptraceError, match=r"log2_grid: empty lr grid 2\*\*-3 .. 2\*\*-5; pass lo <= hi"):
        log2_grid(-3, -5)
    assert log2_grid(-3, -1) == [0.125, 0.25, 0.5]


# ------------------------------------------------------------------------------ the acceptance runs

# (model, widths, lr grid, build options, steps, batch size): docs/transfer.md reports these runs
ACCEPTANCE_CPU = [
    ("mlp", (64, 128, 256, 512, 1024), log2_grid(-14, -5), {}, 200, 32),
    ("gpt", (32, 64, 128, 256, 512), log2_grid(-11, -3), {"n_layer": 1}, 200, 16),
]
ACCEPTANCE_GPU = [
    ("mlp", (256, 512, 1024, 2048, 4096), log2_grid(-17, -7), {}, 300, 64),
    ("gpt", (128, 256, 512, 1024, 2048), log2_grid(-13, -5), {"n_layer": 2}, 200, 32),
]


def _acceptance(name, widths, lrs, options, steps, batch_size, device, threads=None):
    c = compare(name, widths, lrs, "adam", steps=steps, batch_size=batch_size, eval_batches=8, seed=0,
                device=device, build_options=options, threads=threads, progress=True)
    print()
    for r in c.results.values():
        print(f"{r.summary()}  [{r.seconds:.0f} s]\n{r.table()}")
    out = os.environ.get("SPTRACE_TRANSFER_OUT")
    if out:
        suffix = "".join(f"-{k}{v}" for k, v in sorted(options.items()))
        stem = f"{name}{suffix}-adam-lr-transfer" + ("" if device == "cpu" else f"-{device}")
        c.save(os.path.join(out, f"{stem}.json"))
        c.plot(out, stem=stem)
    sp, sptrace = c.sp.drift(), c.sptrace.drift()
    # the acceptance criterion: at most one factor-2 step over the whole 16x range
    assert not sptrace.undefined and abs(sptrace.end_to_end) <= 1, c.summary()
    return c, sptrace, sp


@pytest.mark.slow
@pytest.mark.parametrize("case", ACCEPTANCE_CPU, ids=[c[0] for c in ACCEPTANCE_CPU])
def test_acceptance_cpu(case):
    c, sptrace, sp = _acceptance(*case, device="cpu", threads=1)
    # measured (docs/transfer.md): SP's best lr moves several factor-2 steps over the same range
    assert sp.end_to_end <= -2, c.summary()
    assert abs(sp.end_to_end) > abs(sptrace.end_to_end), c.summary()


@pytest.mark.gpu
@pytest.mark.parametrize("case", ACCEPTANCE_GPU, ids=[c[0] for c in ACCEPTANCE_GPU])
def test_acceptance_gpu(case):
    c, sptrace, sp = _acceptance(*case, device="cuda")
    # SP is reported, not asserted: these widths were not measured when the test was written
    print(f"SP drift {sp.end_to_end:+g} vs sptrace {sptrace.end_to_end:+g}")


# ------------------------------------------------------------------- a user's model, data and optimizer


def _tiny_data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 8, generator=g)
    y = (x[:, 0] > 0).long()
    return SweepData(train=[(x, y)], val=[(x, y)], loss=F.cross_entropy)


def tiny_mlp(width):
    return nn.Sequential(nn.Linear(8, width), nn.ReLU(), nn.Linear(width, 2))


def test_sweep_of_a_user_builder_on_its_own_data():
    """A builder and SweepData instead of a zoo name: at the base width sptrace is standard practice."""
    data = _tiny_data()
    kw = dict(data=data, steps=5, threads=1)
    sptrace = lr_sweep(tiny_mlp, (16, 64), log2_grid(-6, -4), "sgd", parametrization="sptrace", **kw)
    sp = lr_sweep(tiny_mlp, (16, 64), log2_grid(-6, -4), "sgd", parametrization="sp", **kw)
    assert sptrace.model == "tiny_mlp" and sptrace.widths == [16, 64] and sptrace.base_width == 16
    assert sptrace.train_loss[0] == pytest.approx(sp.train_loss[0], rel=1e-5)
    assert sptrace.train_loss[1] != pytest.approx(sp.train_loss[1], rel=1e-5)  # wider: the rules differ
    assert all(math.isfinite(v) for row in sptrace.val_loss for v in row)


def test_sweep_with_the_callers_optimizer():
    calls = []

    def sgd(model, lr):
        calls.append(lr)
        return torch.optim.SGD(model.parameters(), lr=lr)

    r = lr_sweep(tiny_mlp, (16, 32), [0.01, 0.1], data=_tiny_data(), steps=3, parametrization="hand-mup",
                 make_optimizer=sgd, tail=1)
    assert calls == [0.01, 0.1, 0.01, 0.1] and r.parametrization == "hand-mup" and r.base_width is None
    assert r.initial_loss[0][0] == pytest.approx(r.initial_loss[0][1])  # each lr starts from the same weights


def test_sweep_settings_errors_name_the_fix():
    with pytest.raises(SptraceError, match="pass data=SweepData"):
        lr_sweep(tiny_mlp, (16,), (1e-3,))
    with pytest.raises(SptraceError, match=r"lr_sweep: unknown setting\(s\) \['step'\]"):
        lr_sweep("mlp", (64,), (1e-3,), step=3)
    with pytest.raises(SptraceError, match="lr_sweep: steps=0; pass steps >= 1"):
        lr_sweep("mlp", (64,), (1e-3,), steps=0)
    with pytest.raises(SptraceError, match="compare: unknown parametrizations"):
        compare("mlp", (64,), (1e-3,), parametrizations=("sptrace", "mup"))
