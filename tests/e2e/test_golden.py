"""Golden record of what sptrace does, kept fixed across refactors: for every zoo model and the
external models the tests use, the trace report (JSON), the plan (init and lr multiplier per
parameter, per optimizer family, absolute and base form) and the loss before and after one
training step through ``sptrace.parametrize``. A difference means behaviour changed.

Rewrite the records (only for an intended change of behaviour, said in the commit):
``SPTRACE_WRITE_GOLDEN=1 python -m pytest tests/e2e/test_golden.py``.
"""
import json
import math
import os
import warnings
from pathlib import Path

import pytest
import torch

import models_zoo
import sptrace
from sptrace.planning.plan import plan
from tests.external_models import MODELS as EXTERNAL

GOLDEN = Path(__file__).parent / "golden"
WRITE = os.environ.get("SPTRACE_WRITE_GOLDEN") == "1"
WIDTH, BASE_WIDTH, DELTA_WIDTH = 64, 32, 128
FAMILIES = ("adam", "sgd", "spectral")
STEP_LR = {"adam": 1e-2, "sgd": 0.05, "spectral": 0.02}
SEQ = 4  # tokens per example: short, so that export's unrolled cell loop stays cheap


def _zoo_case(name):
    spec = models_zoo.get(name)
    return spec.build, spec


def _external_case(name):
    build, data = EXTERNAL[name]
    return build, models_zoo.get(data)


CASES = {**{f"zoo-{n}": (lambda n=n: _zoo_case(n)) for n in models_zoo.names()},
         **{f"ext-{n}": (lambda n=n: _external_case(n)) for n in EXTERNAL}}


def _batch(spec):
    inputs, target = next(iter(spec.batches(2, seed=0, steps=1)))
    if spec.task == "language-modelling":
        inputs, target = tuple(x[:, :SEQ] for x in inputs), target[:, :SEQ]
    return tuple(inputs), target


def _loss(spec, model, inputs, target):
    out = model(*inputs)
    return spec.loss(getattr(out, "logits", out), target)


def _plan_rows(records, family, form):
    rows = {}
    for p in plan(records, family, lr=1.0, form=form):
        rows[p.name] = {"init": p.init, "init_std": p.init_std, "init_target": p.init_target,
                        "init_scale": p.init_scale, "lr_multiplier": p.lr_multiplier,
                        "weight_decay": p.weight_decay, "spectral_scale": p.spectral_scale, "update": p.update}
    return rows


def _one_step(build, spec, inputs, target, family, traced=None):
    """The losses before and after one step of ``family``, and the trace ``parametrize`` used: every
    family's call has the same model, base and delta, so the first one traces and the others take
    its trace (``traced=``, as validate reuses a width's trace across seeds): an export of the
    unrolled cell loop costs seconds."""
    torch.manual_seed(0)
    model = build(WIDTH)
    torch.manual_seed(1)
    base = build(BASE_WIDTH)
    with torch.device("meta"):
        delta = build(DELTA_WIDTH)
    opt = sptrace.parametrize(model, family, lr=STEP_LR[family], example_inputs=inputs, base=base, delta=delta,
                              zero_readout=True, traced=traced)
    before = _loss(spec, model, inputs, target)
    before.backward()
    opt.step()
    with torch.no_grad():
        after = _loss(spec, model, inputs, target)
    return [float(before), float(after)], opt.sptrace.trace


def record(case):
    build, spec = CASES[case]()
    inputs, target = _batch(spec)
    torch.manual_seed(0)
    model = build(WIDTH)
    traced = sptrace.trace(model, *inputs)
    with torch.device("meta"):
        base, delta = build(BASE_WIDTH), build(DELTA_WIDTH)
    based = sptrace.trace(model, *inputs, base=base, delta=delta)
    losses, stepped = {}, None
    for family in FAMILIES:
        losses[family], stepped = _one_step(build, spec, inputs, target, family, traced=stepped)
    return {
        "torch": torch.__version__.split("+")[0],
        "report": traced.to_dict(),
        "plan": {f"{family}/{form}": _plan_rows(t.records, family, form)
                 for family in FAMILIES
                 for form, t in (("absolute", traced), ("base", based), ("reference", traced))},
        "loss": losses,
    }


def _close(a, b, where):
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            _close(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{where}: {a} != {b}"
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and isinstance(b, (int, float)):
        assert math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-7) or (math.isnan(a) and math.isnan(b)), \
            f"{where}: {a!r} != {b!r}"
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.parametrize("case", sorted(CASES))
def test_behaviour_matches_the_golden_record(case, one_thread):
    if case.startswith("ext-"):
        pytest.importorskip("transformers")
    path = GOLDEN / f"{case}.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        now = json.loads(json.dumps(record(case)))
    if WRITE:
        path.write_text(json.dumps(now, indent=1, sort_keys=True) + "\n")
        return
    golden = json.loads(path.read_text())
    if golden["torch"] != now["torch"]:
        # export names graph nodes differently across torch versions; the plan and losses still hold
        golden.pop("report"), now.pop("report")
    _close(golden, now, case)
