"""Validating a model from outside the zoo and the catalogs: ``validate(model, data=...)`` trains a
user's factory on a zoo model's batches and loss (docs/validation.md, "Your own model").

The two models here are written the way users write them, not the way the zoo does: weights stored
(in, out) and read as ``x @ W`` with a hand-written init, and a causal convolutional character model.
Each passes under the one-line call where the standard parametrization fails, through the function,
the command line and ``module:factory``; a model on data it cannot take fails at once, by name.
"""
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sptrace
from sptrace.cli import main

WIDTHS = (64, 128, 256, 512)


class InOutMLP(nn.Module):
    """3072 -> width -> width -> 10, weights stored (in, out), a hand-written 1/sqrt(fan_in) init."""

    def __init__(self, width):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(3072, width) / 3072 ** 0.5)
        self.w2 = nn.Parameter(torch.randn(width, width) / width ** 0.5)
        self.b2 = nn.Parameter(torch.zeros(width))
        self.w3 = nn.Parameter(torch.randn(width, 10) / width ** 0.5)

    def forward(self, x):
        h = torch.relu(x @ self.w1)
        return torch.relu(h @ self.w2 + self.b2) @ self.w3


class CausalConvLM(nn.Module):
    """Character embedding, ``depth`` gated causal convolutions with residuals, LayerNorm, linear head."""

    def __init__(self, width, depth=2, vocab=77):
        super().__init__()
        self.emb = nn.Embedding(vocab, width)
        self.convs = nn.ModuleList(nn.Conv1d(width, 2 * width, 3) for _ in range(depth))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab)

    def forward(self, idx):
        h = self.emb(idx).transpose(1, 2)
        for conv in self.convs:
            h = h + F.glu(conv(F.pad(h, (2, 0))), dim=1)
        return self.head(self.norm(h.transpose(1, 2)))


def causal_conv_lm(width, depth=2):
    return CausalConvLM(width, depth)


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_function_validated_on_the_digits_passes_where_standard_practice_fails(optimizer):
    v = sptrace.validate(InOutMLP, WIDTHS, optimizer, data="mlp", parametrizations=("sptrace", "sp"))
    assert v.passed, v.summary()
    assert not v.runs["sp"].verdict.passed
    judged = v.runs["sptrace"].coord.param_records
    assert {"w1", "w2", "b2", "w3"} <= set(judged), "every parameter's natural norms are judged"


def test_module_factory_on_the_command_line(capsys):
    code = main(["validate", f"{__name__}:causal_conv_lm", "--data", "gpt", "--widths", *map(str, WIDTHS),
                 "--optimizer", "sgd", "--baselines", "sp", "--option", "depth=1"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "sptrace  PASS" in out and "sp       FAIL" in out


def test_build_options_are_the_factorys_keyword_arguments():
    v = sptrace.validate(causal_conv_lm, (64, 128), data="gpt", build_options={"depth": 1}, n_seeds=1,
                         parametrizations=("sptrace",), spectral=False)
    assert "convs.0" in v.runs["sptrace"].coord.modules and "convs.1" not in v.runs["sptrace"].coord.modules


def test_without_data_the_error_says_what_each_zoo_model_feeds():
    with pytest.raises(sptrace.SptraceError, match=r"pass data=(.|\n)*gpt: inputs \(2, 64\) int64"):
        sptrace.validate(f"{__name__}:causal_conv_lm", (64, 128))


def test_data_the_model_cannot_take_is_named_before_any_training():
    with pytest.raises(sptrace.SptraceError, match=r"does not train on data='mlp'(.|\n)*embedding"):
        sptrace.validate(causal_conv_lm, (64, 128), data="mlp")
    with pytest.raises(sptrace.SptraceError, match="unknown zoo model 'digits'"):
        sptrace.validate(causal_conv_lm, (64, 128), data="digits")


def test_module_factory_lr_sweep_on_the_command_line(tmp_path, capsys):
    code = main(["transfer", f"{__name__}:causal_conv_lm", "--data", "gpt", "--widths", "32", "64",
                 "--log2-lrs", "-9", "-8", "--steps", "2", "--batch-size", "4", "--eval-batches", "1",
                 "--option", "depth=1", "--threads", "1", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "## sptrace" in out and "| 64 |" in out
    swept = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert swept["results"]["sptrace"]["build_options"] == {"depth": 1}


def test_a_factory_swept_without_data_is_told_to_pass_it(capsys):
    assert main(["transfer", f"{__name__}:causal_conv_lm", "--widths", "32", "64", "--log2-lrs", "-9", "-8"]) == 2
    assert "transfer needs data and a loss" in (err := capsys.readouterr().err) and "pass --data" in err
