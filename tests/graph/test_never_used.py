"""Parameters the example inputs never reach (issue: a multimodal model traced on text, a
decoder's cross-attention traced without encoder states): one warning lists them, the call
succeeds, and they are left as they are with the plain lr."""
import torch
import torch.nn as nn

import sptrace


class TextOnly(nn.Module):
    """A text path that is traced, and a 'vision tower' of 3 blocks that these inputs never reach."""

    def __init__(self):
        super().__init__()
        self.text = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 4))
        self.vision = nn.ModuleDict({f"block{i}": nn.Sequential(nn.Linear(64, 64), nn.LayerNorm(64)) for i in range(3)})

    def forward(self, x):
        return self.text(x)


def test_one_warning_names_every_unreached_parameter_by_module():
    traced = sptrace.trace(TextOnly(), torch.randn(2, 8))
    unreached = [w for w in traced.warnings if "never used" in w]
    assert len(unreached) == 1, traced.warnings
    assert unreached[0].startswith("12 parameters never used by the forward pass")
    assert all(f"vision.block{i}.* (4)" in unreached[0] for i in range(3))


def test_a_few_unreached_parameters_are_named_one_by_one():
    model = TextOnly()
    del model.vision["block1"], model.vision["block2"]
    traced = sptrace.trace(model, torch.randn(2, 8))
    (line,) = [w for w in traced.warnings if "never used" in w]
    assert "vision.block0.0.weight, vision.block0.0.bias, vision.block0.1.weight, vision.block0.1.bias" in line


def test_parametrize_leaves_unreached_parameters_as_they_were():
    model = TextOnly()
    before = {n: p.detach().clone() for n, p in model.vision.named_parameters()}
    opt = sptrace.parametrize(model, "adam", example_inputs=(torch.randn(2, 8),))
    assert all(torch.equal(p, before[n]) for n, p in model.vision.named_parameters())
    lrs = {n: g["lr"] for g in opt.param_groups for n in g["sptrace_names"]}
    assert all(lrs[f"vision.{n}"] == 1e-3 for n in before)
    assert sum("never used" in w for w in opt.sptrace.warnings) == 1
