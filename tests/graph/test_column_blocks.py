"""Column blocks (graph/blocks.py): a Linear whose input is ``cat([width features, fixed-size features])``.

With ``base=`` a block grows where its size differs in the base model (or the delta): read off the
layer before it, or, for the block no parameter reaches (DLRM's interactions), as the rest of the
weight's base fan-in. Automatic mode splits only where the graph fixes one block (data) and ties the
other to a parameter's width axis: DLRM's interaction count and a positional encoding's frequencies
are width there for want of anything fixing them, so those layers keep one rule (docs/rules.md
"Column blocks")."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

import sptrace


class SkipConcatMLP(nn.Module):
    """NeRF-like: a positional encoding of a few input coordinates, read by the first layer and again,
    beside the hidden state, by a skip layer (NeRF's layer 5). zoo ``mlp`` data: x (B, 3072)."""

    def __init__(self, d, coords=6, freqs=4, classes=10):
        super().__init__()
        self.coords = coords
        self.register_buffer("freqs", 2.0 ** torch.arange(freqs) * math.pi)
        enc = coords * (2 * freqs + 1)
        self.inp = nn.Linear(enc, d)
        self.h1 = nn.Linear(d, d)
        self.skip = nn.Linear(d + enc, d)
        self.h2 = nn.Linear(d, d)
        self.out = nn.Linear(d, classes)

    def encode(self, x):
        p = x[:, : self.coords]
        a = p[..., None] * self.freqs
        return torch.cat([p, a.sin().flatten(1), a.cos().flatten(1)], -1)

    def forward(self, x):
        e = self.encode(x)
        h = torch.relu(self.h1(torch.relu(self.inp(e))))
        h = torch.relu(self.skip(torch.cat([h, e], -1)))
        return self.out(torch.relu(self.h2(h)))


class Interactions(nn.Module):
    """DLRM-like: the pairwise inner products (scale 1/d) of three width features, read beside the
    first one by the top layer; no parameter's axis is the interaction count."""

    def __init__(self, d, classes=10):
        super().__init__()
        self.a, self.b, self.c = nn.Linear(3072, d), nn.Linear(3072, d), nn.Linear(3072, d)
        self.top = nn.Linear(d + 3, d)
        self.out = nn.Linear(d, classes)

    def forward(self, x):
        z = torch.stack([torch.relu(self.a(x)), self.b(x), self.c(x)], 1)
        inter = torch.einsum("bfd,bgd->bfg", z, z) / z.shape[-1]
        i, j = torch.triu_indices(3, 3, 1)
        return self.out(torch.relu(self.top(torch.cat([z[:, 0], inter[:, i, j]], -1))))


class DataBeside(nn.Module):
    """A hidden layer that reads the raw input's first 8 features beside the hidden state."""

    def __init__(self, d):
        super().__init__()
        self.inp, self.mix, self.out = nn.Linear(3072, d), nn.Linear(d + 8, d), nn.Linear(d, 10)

    def forward(self, x):
        return self.out(torch.relu(self.mix(torch.cat([torch.relu(self.inp(x)), x[:, :8]], -1))))


class FunctionalConcat(DataBeside):
    """The same, through F.linear in its own forward: no module whose input a multiplier could scale."""

    def forward(self, x):
        h = torch.cat([torch.relu(self.inp(x)), x[:, :8]], -1)
        return self.out(torch.relu(F.linear(h, self.mix.weight, self.mix.bias)))


X = torch.randn(4, 3072)


def traced(build, width=128, base=64, delta=None):
    if base is None:
        return sptrace.trace(build(width), X)
    with torch.device("meta"):
        b, dl = build(base), (build(delta) if delta else None)
    return sptrace.trace(build(width), X, base=b, delta=dl)


def blocked(t):
    return {r.name: r.column_blocks for r in t if r.column_blocks}


def test_base_mode_splits_a_skip_layer_by_the_layer_before_each_block():
    assert blocked(traced(SkipConcatMLP)) == {
        "skip.weight": ((0, 128, True), (128, 182, False))}


def test_base_mode_reads_the_interactions_as_the_rest_of_the_base_fan_in():
    assert blocked(traced(Interactions)) == {"top.weight": ((0, 128, True), (128, 131, False))}


def test_the_base_model_itself_is_split_by_the_delta():
    assert blocked(traced(SkipConcatMLP, width=64, base=64, delta=128)) == {
        "skip.weight": ((0, 64, True), (64, 118, False))}


def test_automatic_mode_does_not_split_blocks_it_reads_as_width():
    assert blocked(traced(SkipConcatMLP, base=None)) == {}
    assert blocked(traced(Interactions, base=None)) == {}


def test_automatic_mode_splits_data_beside_a_hidden_state():
    t = traced(DataBeside, base=None)
    assert blocked(t) == {"mix.weight": ((0, 128, True), (128, 136, False))}
    assert t["mix.weight"].role.value == "hidden"


def test_a_concatenation_read_outside_an_nn_linear_is_not_split():
    assert blocked(traced(FunctionalConcat, base=None)) == {}
