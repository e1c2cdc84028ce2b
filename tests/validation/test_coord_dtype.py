"""The coord check's precision knob (``coord_check(dtype=...)``, ``validate(dtype=...)``, ``python -m
sptrace validate --dtype``): the models train and are measured in that dtype, the verdict says which, and
the default dtype and the models' own dtypes are restored (docs/validation.md, "Updates below float32
resolution")."""
from __future__ import annotations

import pytest
import torch

import models_zoo
from sptrace import SptraceError
from sptrace.cli import main
from sptrace.validation.coord import coord_check
from sptrace.validation.validate import validate

WIDTHS = [16, 32]


def _zoo_cnn_check(dtype, loss_seen, built, lr=0.05, steps=2):
    """The zoo CNN (convs, BatchNorm buffers) under SGD; ``loss_seen`` collects the dtype of every
    output the loss gets, ``built`` every model coord_check trained."""
    spec = models_zoo.get("cnn")
    stream = spec.batches(8, seed=0)
    batches = [next(stream) for _ in range(steps)]

    def make_model(width):
        built.append(spec.build(width))
        return built[-1]

    def loss_fn(out, y):
        loss_seen.append(out.dtype)
        return spec.loss(out, y)

    return coord_check(make_model, lambda m: torch.optim.SGD(m.parameters(), lr=lr, momentum=0.9), batches, loss_fn,
                       WIDTHS, steps=steps, dtype=dtype)


def test_the_models_train_in_the_dtype_and_are_restored(one_thread):
    seen, built = [], []
    cc = _zoo_cnn_check(torch.float64, seen, built)
    assert seen and set(seen) == {torch.float64}, "every training step ran in float64"
    assert cc.meta["dtype"] == "float64" and cc.precision == "float64"
    assert "measured in float64" in cc.verdict(quantities=["rms@0"], params=True).summary()
    assert torch.get_default_dtype() == torch.float32
    for model in built:  # left as built: float32 parameters and BatchNorm statistics
        assert {t.dtype for t in (*model.parameters(), *model.buffers()) if t.is_floating_point()} == {torch.float32}
    seen, built = [], []  # as built: float32 steps (2 a width), and the float64 gradient pass (one a width)
    assert _zoo_cnn_check(None, seen, built).precision == "float32"
    assert seen.count(torch.float32) == 2 * len(WIDTHS) and seen.count(torch.float64) == len(WIDTHS)


class _PinnedToFloat32(torch.nn.Module):
    """A forward that makes a float32 tensor of its own: it cannot run in float64."""

    def __init__(self, width):
        super().__init__()
        self.fc = torch.nn.Linear(6, width)

    def forward(self, x):
        return self.fc(x) @ torch.ones(self.fc.out_features, 4, dtype=torch.float32)


def test_a_model_that_cannot_run_in_the_dtype_is_named_and_restored(one_thread):
    built = []
    batch = (torch.randn(8, 6), torch.randint(0, 4, (8,)))
    with pytest.raises(SptraceError, match=r"dtype=float64.*pass dtype=None"):
        coord_check(lambda w: built.append(_PinnedToFloat32(w)) or built[-1],
                    lambda m: torch.optim.SGD(m.parameters(), lr=0.1), [batch], torch.nn.functional.cross_entropy,
                    WIDTHS, steps=1, dtype=torch.float64)
    assert torch.get_default_dtype() == torch.float32
    assert {p.dtype for p in built[0].parameters()} == {torch.float32}
    assert coord_check(_PinnedToFloat32, lambda m: torch.optim.SGD(m.parameters(), lr=0.1), [batch],
                       torch.nn.functional.cross_entropy, WIDTHS, steps=1).precision == "float32"


def test_float64_resolves_an_update_float32_rounds_away(one_thread):
    """At an SGD lr of 1e-6 the zoo MLP's hidden weights (behind a readout that starts at zero) get updates
    far below a float32 ulp: in float32 no entry moves (the update is named below resolution, not judged);
    in float64 they move by 10^4 to 10^7 of its ulps and are judged. Without the dtype applied the float64
    run would read like the float32 one."""
    runs = {d: validate("mlp", WIDTHS, optimizer="sgd", steps=2, lr=1e-6, n_seeds=1, parametrizations=("sptrace",),
                        dtype=d) for d in (None, "float64")}
    f32, f64 = (runs[d].runs["sptrace"].coord for d in (None, "float64"))
    hidden = [n for n in f64.param_records if n.endswith("weight") and min(f64.param_records[n]["nat@0"]) > 0]
    assert hidden
    for name in hidden:
        assert f32.below_resolution(name) and "below float32 resolution" in runs[None].runs["sptrace"].verdict.unmeasured[name]
        assert not f64.below_resolution(name) and min(f64.param_records[name]["ulps"]) > 1e4
        assert name not in runs["float64"].runs["sptrace"].verdict.unmeasured
    assert runs["float64"].dtype == "float64" and "float64" in runs["float64"].summary()
    assert runs[None].dtype == "float32"


def test_the_cli_passes_the_dtype_and_names_a_wrong_one(capsys, one_thread):
    main(["validate", "mlp", "--widths", "16", "32", "--optimizer", "sgd", "--steps", "1", "--seeds", "1",
          "--baselines", "--no-spectral", "--dtype", "float64"])
    out = capsys.readouterr().out
    assert "float64" in out.splitlines()[0] and "measured in float64" in out
    with pytest.raises(SptraceError, match="float64"):
        validate("mlp", WIDTHS, dtype="int64")
    with pytest.raises(SystemExit):
        main(["validate", "mlp", "--dtype", "float16"])
    assert "--dtype" in capsys.readouterr().err
