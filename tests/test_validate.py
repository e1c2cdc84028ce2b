"""Coord checks of every zoo model (NOTES §7): sptrace width-stable, standard parametrization not.

Widths span 8x on CPU. The MLP is cheap enough for 64..512 (the NOTES' range); the ViT starts at
32 so that it has at least two heads of the fixed head_dim 16.
"""
import json

import pytest
import torch

from sptrace.validate import validate

FAST = {  # model -> (widths, build options)
    "mlp": ((64, 128, 256, 512), {}),
    "cnn": ((16, 32, 64, 128), {}),
    "mixer": ((16, 32, 64, 128), {}),
    "gpt": ((16, 32, 64, 128), {"n_layer": 1}),
    "vit": ((32, 64, 128, 256), {"depth": 1}),
}


def run(name, optimizer, steps=3, batch_size=8, **kw):
    widths, options = FAST[name]
    return validate(name, widths, optimizer, steps=steps, batch_size=batch_size, spectral=False,
                    build_options=options, **kw)


@pytest.mark.parametrize("name", sorted(FAST))
def test_zoo_adam_sptrace_stable_standard_not(name):
    result = run(name, "adam", parametrizations=("sptrace", "sp"))
    assert result.runs["sptrace"].verdict.passed, result.summary()
    assert not result.runs["sp"].verdict.passed, result.summary()


@pytest.mark.parametrize("optimizer", ["sgd", "spectral"])
def test_mlp_other_optimizers(optimizer):
    result = run("mlp", optimizer, steps=4, batch_size=32, parametrizations=("sptrace", "sp"))
    assert result.runs["sptrace"].verdict.passed, result.summary()
    assert not result.runs["sp"].verdict.passed, result.summary()


def test_validate_writes_json_and_plots(tmp_path):
    result = validate("mlp", (64, 128), "adam", steps=2, batch_size=8, out=str(tmp_path), parametrizations=("sptrace", "ntp"))
    data = json.loads((tmp_path / "mlp-adam.json").read_text())
    assert set(data["runs"]) == {"sptrace", "ntp"} and data["widths"] == [64, 128]
    spectral = data["runs"]["sptrace"]["coord_check"]
    assert "fc2.weight" in json.dumps(spectral)
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == ["mlp-adam-ntp-coord.png", "mlp-adam-ntp-spectral.png", "mlp-adam-sptrace-coord.png",
                    "mlp-adam-sptrace-spectral.png"]


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


SLOW = {
    "mlp": ((64, 128, 256, 512), {}),
    "cnn": ((32, 64, 128, 256), {}),
    "mixer": ((32, 64, 128, 256), {}),
    "gpt": ((32, 64, 128, 256), {}),
    "vit": ((32, 64, 128, 256), {}),
}


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["adam", "sgd", "spectral"])
@pytest.mark.parametrize("name", sorted(SLOW))
def test_zoo_full_cpu(name, optimizer):
    widths, options = SLOW[name]
    result = validate(name, widths, optimizer, steps=4, batch_size=16, build_options=options)
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
