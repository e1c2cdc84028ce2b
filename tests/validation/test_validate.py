"""Coord checks of every zoo model (docs/derivations.md §7): sptrace width-stable, standard parametrization not.

Every zoo model under every optimizer family, an 8x width span on CPU, 4 steps, 3 init seeds
averaged, through ``sptrace.parametrize`` with its own defaults (validate's defaults,
docs/validation.md): the reference form (no base, the optimizer's default lr: the one-line call)
in the default run, the base form (base= the narrowest width) under ``-m slow`` but for the MLP.
Module outputs and every classified parameter's natural spectral norms (Condition 2) are judged.
Standard parametrization blows up clearly enough that one seed shows it.

Widths: the default run checks each cell at 32..256 (``NARROW``), but for the cells in ``WIDE``,
and the same cell at docs/validation.md's 64..512 (``WIDTHS``) under ``-m slow``: the widest
width is most of a cell's cost (the spectral optimizer's Newton-Schulz is cubic in it), so 32..256
costs a quarter to a third of 64..512 while keeping the 8x span. Measured at 32..256 (3 seeds, on
c93c678): sptrace passes every cell of ``NARROW`` at ±0.25 with no tolerance widened (the ViT's
SGD cell too), and SP fails each of its cells on 3 to 16 checks (worst slope 0.49 to 1.15 from its
expectation) but the MLP's Adam cell, which it fails on 2 checks by 0.27 only: there SP's growth
is still small, so that cell keeps 64..512 in the default run, where SP fails it clearly.
"""
import json

import pytest
import torch

from sptrace.validation.validate import validate

WIDTHS = (64, 128, 256, 512)  # docs/validation.md's tables
NARROW = (32, 64, 128, 256)  # the default run's span (module docstring)
OPTIONS = {"mlp": {}, "cnn": {}, "mixer": {}, "gpt": {"n_layer": 1}, "vit": {"depth": 1}}
# The cells the default run keeps at 64..512, measured at 32..256 (3 seeds, c93c678):
WIDE = {
    ("mlp", "adam"): "SP fails on 2 checks only, by 0.27: its growth under Adam is still small there",
    ("mixer", "sgd"): "sptrace's token MLP change shrinks -0.29 (blocks.0.token_mlp.fc2, delta_rms@4; "
                      "not decided at 3 seeds): the token mixing learns slowly under SGD at the narrow widths",
}


def run(name, optimizer, parametrization, n_seeds, spectral=True, form="reference", widths=WIDTHS):
    return validate(name, widths, optimizer, steps=4, batch_size=8, spectral=spectral, build_options=OPTIONS[name],
                    parametrizations=(parametrization,), n_seeds=n_seeds, form=form).runs[parametrization]


def cells(optimizers, names=sorted(OPTIONS)):
    """(name, optimizer, widths) of the default run (NARROW, or WIDTHS for a WIDE cell), and the
    same cell at WIDTHS under -m slow (id suffix ``-64..512``)."""
    for name in names:
        for optimizer in optimizers:
            wide = pytest.param(name, optimizer, WIDTHS, id=f"{name}-{optimizer}-64..512")
            if (name, optimizer) in WIDE:
                yield wide
                continue
            yield pytest.param(name, optimizer, NARROW, id=f"{name}-{optimizer}")
            yield pytest.param(*wide.values, marks=pytest.mark.slow, id=wide.id)


# Measured (docs/validation.md, "The one-line call's defaults"), SGD at lr 0.05: with 3 seeds
# the per-parameter dnat slopes of two SGD cells land just outside ±0.25 (the ViT's MLP block
# +0.29, the Mixer's blocks.0.norm1.bias -0.31); with 8 seeds every one of them passes ±0.25
# (test_zoo_strict_with_eight_seeds, -m slow): seed scatter, not drift. The default run keeps 3
# seeds and holds those cells' parameters to ±0.32. The CNN's cell, marginal while a depthwise
# conv was judged by the max over its channels (layer1.dw.weight -0.28), passes ±0.25 with 3 seeds
# since 63a5704 judges it by their RMS.
# At 32..256 the ViT's SGD cell passes ±0.25 (its worst check 0.24 from its expectation).
MARGINAL = {("mixer", "sgd", WIDTHS), ("vit", "sgd", WIDTHS)}
MARGINAL_TOL = 0.32
STRICT_SEEDS = 8


def assert_width_stable(sptrace, name, optimizer, widths=WIDTHS):
    if (name, optimizer, widths) not in MARGINAL:
        assert sptrace.verdict.passed, sptrace.verdict.summary()
        return
    outputs = sptrace.coord.verdict(quantities=["rms@0", "delta_rms@4"], allow_shrink=["rms@0"])
    assert outputs.passed, outputs.summary()
    params = sptrace.coord.verdict(tol=MARGINAL_TOL, quantities=[], params=True)
    assert params.passed, params.summary()


@pytest.mark.parametrize("name, optimizer, widths", list(cells(["adam", "sgd", "spectral"])))
def test_zoo_sptrace_stable_standard_not(name, optimizer, widths):
    """The one-line call's defaults: module outputs and every parameter's natural spectral norm at
    init and of its update pass; the standard parametrization (the same optimizer at its default
    lr on the library init) fails on outputs alone."""
    assert_width_stable(run(name, optimizer, "sptrace", n_seeds=3, widths=widths), name, optimizer, widths)
    standard = run(name, optimizer, "sp", n_seeds=1, spectral=False, widths=widths)
    assert not standard.verdict.passed, standard.verdict.summary()


@pytest.mark.parametrize("name, optimizer, widths", list(cells(["adamw"])))
def test_zoo_adamw_with_its_default_decay(name, optimizer, widths):
    """AdamW's own weight decay (0.01), divided per group by the lr multiplier (docs/rules.md)."""
    assert_width_stable(run(name, optimizer, "sptrace", n_seeds=3, widths=widths), name, optimizer, widths)


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["adam", "adamw", "sgd", "spectral"])
@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_zoo_strict_with_eight_seeds(name, optimizer):
    """The issue's acceptance as written: every output and every parameter within ±0.25, no cell
    excepted, with enough seeds that one seed's scatter cannot decide the verdict."""
    result = run(name, optimizer, "sptrace", n_seeds=STRICT_SEEDS)
    assert result.verdict.passed, result.verdict.summary()


# the MLP's four at 32..256 in the default run (measured on 3c77b1a: all pass ±0.25, 2-5 s each
# on one core), every model's at 64..512 under -m slow
BASE_FAMILIES = ("adam", "adamw", "sgd", "spectral")
BASE_CASES = [pytest.param("mlp", optimizer, NARROW, id=f"mlp-{optimizer}") for optimizer in BASE_FAMILIES] + [
    pytest.param(name, optimizer, WIDTHS, id=f"{name}-{optimizer}-64..512", marks=pytest.mark.slow)
    for name in sorted(OPTIONS) for optimizer in BASE_FAMILIES]


@pytest.mark.parametrize("name, optimizer, widths", BASE_CASES)
def test_zoo_base_form(name, optimizer, widths):
    """The same with base= the narrowest width (delta= the next): parametrize's other form."""
    assert_width_stable(run(name, optimizer, "sptrace", n_seeds=3, form="base", widths=widths), name, optimizer,
                        widths)


def test_validate_writes_json_and_plots(tmp_path):
    validate("mlp", (64, 128), "adam", steps=2, batch_size=8, out=str(tmp_path), parametrizations=("sptrace", "ntp"))
    data = json.loads((tmp_path / "mlp-adam.json").read_text())
    assert set(data["runs"]) == {"sptrace", "ntp"} and data["widths"] == [64, 128]
    spectral = data["runs"]["sptrace"]["coord_check"]
    assert "fc2.weight" in json.dumps(spectral)
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == ["mlp-adam-ntp-coord.png", "mlp-adam-ntp-spectral.png", "mlp-adam-sptrace-coord.png",
                    "mlp-adam-sptrace-spectral.png"]


def test_cli_validate_spectral_defaults_to_the_baselines_it_has(capsys):
    """NTP (Eq. 22) has no spectral-optimizer form: the default baselines drop it, not fail."""
    from sptrace.cli import main

    code = main(["validate", "mlp", "--widths", "64", "128", "--steps", "2", "--batch-size", "8", "--optimizer",
                 "spectral", "--no-spectral", "--seeds", "1"])
    out = capsys.readouterr().out
    assert code == 0 and "sptrace  PASS" in out and "sp       " in out and "ntp" not in out


def test_validate_rejects_bad_input():
    from sptrace import SptraceError

    with pytest.raises(SptraceError, match="unknown optimizer"):
        validate("mlp", (64, 128), "lbfgs")
    with pytest.raises(SptraceError, match="at least two widths"):
        validate("mlp", (64,), "adam")
    with pytest.raises(SptraceError, match="unknown parametrizations"):
        validate("mlp", (64, 128), "adam", parametrizations=("sptrace", "mup"))


def test_cli_validate(tmp_path, capsys):
    from sptrace.cli import main

    code = main(["validate", "mlp", "--widths", "64", "128", "--steps", "2", "--batch-size", "8", "--baselines",
                 "--no-spectral", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0 and "sptrace  PASS" in out and (tmp_path / "mlp-adam.json").exists()


SLOW = {name: {} for name in OPTIONS}  # the zoo's full depth


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["adam", "sgd", "spectral"])
@pytest.mark.parametrize("name", sorted(SLOW))
def test_zoo_full_cpu(name, optimizer):
    result = validate(name, WIDTHS, optimizer, steps=4, batch_size=16, build_options=SLOW[name])
    assert result.passed, result.summary()
    assert not result.runs["sp"].verdict.passed, result.summary()


GPU = {
    "mlp": (256, 512, 1024, 2048, 4096),
    "cnn": (64, 128, 256, 512, 1024),
    "mixer": (128, 256, 512, 1024, 2048),
    "gpt": (128, 256, 512, 1024, 2048),
    "vit": (128, 256, 512, 1024, 2048),
}


@pytest.mark.gpu
@pytest.mark.parametrize("name, optimizer", [(n, "adam") for n in sorted(GPU)] + [
    ("mlp", "sgd"), ("mlp", "spectral"), ("gpt", "sgd"), ("gpt", "spectral")])
def test_zoo_large_widths_cuda(name, optimizer, tmp_path):
    assert torch.cuda.is_available()
    result = validate(name, GPU[name], optimizer, steps=4, batch_size=32, device="cuda",
                      out=str(tmp_path), parametrizations=("sptrace", "sp"))
    print(result.summary())
    assert result.passed, result.summary()


class RegroupedLM(torch.nn.Module):
    """Attention whose output is regrouped into 8 groups, each projected by its own block
    (DeepSeek-V4's ``o_a_proj``): at width 128 (8 heads of 16) a group is exactly one head, and
    the per-head rule of automatic mode (docs/rules.md, "Parameters applied per attention head")
    fires at that width only."""

    def __init__(self, width, head=16, groups=8, rank=32):
        super().__init__()
        from models_zoo.data import VOCAB_SIZE

        self.heads, self.head, self.groups = width // head, head, groups
        self.wte = torch.nn.Embedding(VOCAB_SIZE, width)
        self.qkv = torch.nn.Linear(width, 3 * width)
        self.o_a = torch.nn.Parameter(torch.randn(groups, width // groups, rank) / 8)
        self.o_b = torch.nn.Linear(groups * rank, width)
        self.lm_head = torch.nn.Linear(width, VOCAB_SIZE)

    def forward(self, idx):
        x = self.wte(idx)
        B, S, _ = x.shape
        q, k, v = self.qkv(x).view(B, S, 3, self.heads, self.head).permute(2, 0, 3, 1, 4)
        a = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        a = torch.einsum("bsgd,gdr->bsgr", a.transpose(1, 2).reshape(B, S, self.groups, -1), self.o_a)
        return self.lm_head(x + self.o_b(a.flatten(2)))


def test_a_parameter_classified_differently_at_one_width_fails_validate_by_name():
    from dataclasses import replace

    import models_zoo
    from sptrace.validation.models import ModelSource

    spec = replace(models_zoo.get("gpt"), builder=lambda width: RegroupedLM(width))
    source = ModelSource("regrouped", lambda w: (spec.build(w), *spec.example_inputs()), 64, spec)
    result = validate(source, (64, 128), "adam", steps=1, batch_size=4, n_seeds=1, parametrizations=("sptrace",))
    assert list(result.class_changes) == ["o_a"], result.class_changes
    change = result.class_changes["o_a"]
    assert "at 64" in change and "at 128" in change and "head_dim of attention" in change, change
    assert not result.passed
    assert "classified differently at different widths" in result.summary() and "o_a" in result.summary()
    assert json.loads(json.dumps(result.to_dict()))["class_changes"] == result.class_changes
    # without the coincidence every width gets the same plan
    assert validate(source, (64, 256), "adam", steps=1, batch_size=4, n_seeds=1,
                    parametrizations=("sptrace",)).class_changes == {}
