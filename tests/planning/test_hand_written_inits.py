"""Hand-written inits read by the reference form (planning/library.py detect_laws), and a parameter
normalised per row in the forward (graph/selfnorm.py): found by validating hand-written models on the
zoo's data (docs/validation.md, "Hand-written models"). FusedQKV is not the slow test's LlamaBlockLM:
its nn.Linear input and head are what made "in1" the model's law at width 64 on some seeds."""
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sptrace


class FusedQKV(nn.Module):
    """A llama-style block written by hand: attention with a (d, 3, heads, head_dim) projection and a
    (heads, head_dim, d) output drawn with std d^-1/2 (torch's layout convention reads their fan-ins as
    3 * head_dim and head_dim * d), and a SwiGLU MLP of nn.Linear layers."""

    def __init__(self, width, head_dim=16):
        super().__init__()
        self.inp = nn.Linear(64, width)
        self.qkv = nn.Parameter(torch.randn(width, 3, width // head_dim, head_dim) * width ** -0.5)
        self.o = nn.Parameter(torch.randn(width // head_dim, head_dim, width) * width ** -0.5)
        self.up = nn.Linear(width, 6 * width, bias=False)
        self.down = nn.Linear(3 * width, width, bias=False)
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        x = self.inp(x)
        q, k, v = torch.einsum("btd,dkhe->kbhte", x, self.qkv).unbind(0)
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + torch.einsum("bhte,hed->btd", attended, self.o)
        gate, up = self.up(x).chunk(2, -1)
        return self.head(x + self.down(F.silu(gate) * up))


class CosineClassifier(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.f1 = nn.Linear(64, width)
        self.protos = nn.Parameter(torch.randn(10, width))

    def forward(self, x):
        return 10 * F.normalize(F.relu(self.f1(x)), dim=-1) @ F.normalize(self.protos, dim=-1).t()


def _planned(model, optimizer, example_inputs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return sptrace.parametrize(model, optimizer, example_inputs=example_inputs)


@pytest.mark.parametrize("seed", range(4))
def test_a_std_of_one_over_sqrt_width_in_any_layout_is_kept_at_every_width(seed):
    for width in (64, 128, 512):
        torch.manual_seed(seed)
        model = FusedQKV(width)
        before = {n: p.std().item() for n, p in model.named_parameters() if n in ("qkv", "o")}
        opt = _planned(model, "adam", torch.randn(2, 8, 64))
        for name, std in before.items():  # the rule's std, d^-1/2, is the init's own law: nothing to rescale
            assert opt.sptrace[name].init == "keep", (width, name, opt.sptrace[name].init)
            assert abs(getattr(model, name).std().item() / std - 1) < 1e-6


def test_unit_normal_prototypes_follow_the_readout_rule_and_are_never_zeroed():
    stds = {}
    for width in (64, 128, 256, 512):
        torch.manual_seed(0)
        model = CosineClassifier(width)
        opt = _planned(model, "sgd", torch.randn(2, 64))
        assert opt.sptrace.trace["protos"].self_normalized_by is not None, "F.normalize(protos, dim=-1)"
        stds[width] = model.protos.std().item()
    assert min(stds.values()) > 0, "a row-normalised readout at zero is 0/0: its gradient is 1/eps"
    for width, std in stds.items():  # N(0, 1) read as width-free, times the readout rule's 256/width
        assert abs(std / (256 / width) - 1) < 0.1, stds
