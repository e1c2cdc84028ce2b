"""Registration order is only a guess (sptrace/apply/inputs.py, rule 4; docs/parametrize.md "Example
inputs"): when the input of a model's first layer with parameters of its own does not run it, the
next layers' inputs are tried, each distinct input once, at most MAX_ENTRY_TRIES in all.

Before, only the first layer's input was tried, and the one-line call asked for example_inputs= on a
LoRA adapter whose base Linear is registered before the embedding the ids go to, and on a
hypernetwork whose first Linear generates weights from a parameter (measured on 56da923: both
"SptraceError: pass example_inputs=").
"""
import pytest
import torch
from torch import nn

import sptrace
from sptrace.apply.inputs import MAX_ENTRY_TRIES, resolve_example_inputs

pytestmark = pytest.mark.usefixtures("one_thread")
FORWARDS = []  # one entry per run of Lora.forward


class Lora(nn.Module):
    """The base Linear (and the readout) registered before the embedding the ids go to, unless
    ``emb_first``."""

    def __init__(self, w=128, r=4, emb_first=False):
        super().__init__()
        if emb_first:
            self.emb = nn.Embedding(50, w)
        self.base = nn.Linear(w, w)
        self.A = nn.Parameter(torch.randn(r, w) / w ** .5)
        self.B = nn.Parameter(torch.zeros(w, r))
        self.emb, self.head = nn.Embedding(50, w), nn.Linear(w, 50)

    def forward(self, ids):
        FORWARDS.append(type(self).__name__)  # module-level: the trace may run a copy of the model
        x = self.emb(ids)
        x = self.base(x) + (x @ self.A.t()) @ self.B.t()
        return self.head(torch.relu(x))


class Hyper(nn.Module):
    """The first Linear generates a weight from a parameter; the input goes to the second."""

    def __init__(self, w=128):
        super().__init__()
        self.z = nn.Parameter(torch.randn(8))
        self.gen, self.inp, self.out = nn.Linear(8, w * 16), nn.Linear(16, w), nn.Linear(w, 2)
        self.w = w

    def forward(self, x):
        weight = self.gen(self.z).view(16, self.w)
        return self.out(torch.relu(self.inp(x) + x @ weight))


class Sliced(nn.Module):
    """``n`` Linears of distinct widths registered before the body, which reads the first position
    of a sequence: no layer's input runs the model."""

    def __init__(self, n=2):
        super().__init__()
        self.heads = nn.ModuleList(nn.Linear(7 + i, 3) for i in range(n - 1))
        self.body = nn.Linear(4, 7)

    def forward(self, x):
        return self.heads[0](torch.relu(self.body(x[:, 0])))


def _run(build, inputs):
    """The plan, the report without its warnings, the init and the global RNG after the call."""
    torch.manual_seed(0)
    model = build()
    opt = sptrace.parametrize(model, "adam", lr=1e-3, example_inputs=inputs)
    groups = [(g["sptrace_names"], g["lr"], g["eps"]) for g in opt.param_groups]
    report = opt.sptrace.report().split("Warnings:")[0]
    return groups, report, [p.detach().clone() for p in model.parameters()], torch.get_rng_state(), opt


@pytest.mark.parametrize("build, explicit, layer", [
    (Lora, (torch.randint(0, 50, (2, 8)),), "emb (Embedding): example_inputs=(torch.randint(0, 50, (2, 8)),)"),
    (Hyper, (torch.randn(2, 16),), "inp (Linear): example_inputs=(torch.randn(2, 16),)"),
], ids=["lora", "hypernetwork"])
def test_a_later_layer_s_input_gives_the_plan_explicit_inputs_give(build, explicit, layer):
    groups, report, init, rng, opt = _run(build, None)
    groups_x, report_x, init_x, rng_x, _ = _run(build, explicit)
    assert groups == groups_x and report == report_x
    assert all(torch.equal(a, b) for a, b in zip(init, init_x))
    assert torch.equal(rng, rng_x)  # the tries drew from the private generator, the failed one too
    assert any(f"inferred: the input of its next layer in registration order {layer}" in w
               for w in opt.sptrace.warnings), opt.sptrace.warnings


def test_where_the_first_layer_s_input_runs_nothing_else_is_tried():
    """The LoRA adapter with its embedding registered first: as many forwards as with explicit inputs
    (the fallback, the base's input, is built, never run)."""
    assert list(Lora(emb_first=True)._modules)[0] == "emb"
    assert resolve_example_inputs(Lora(emb_first=True)).fallback.args[0].shape == (2, 128)
    calls = []
    for inputs in (None, (torch.randint(0, 50, (2, 8)),)):
        FORWARDS.clear()
        opt = sptrace.parametrize(Lora(emb_first=True), "adam", lr=1e-3, example_inputs=inputs)
        calls.append(len(FORWARDS))
        if inputs is None:
            warnings = opt.sptrace.warnings
    assert calls[0] == calls[1] > 0, calls
    assert any("inferred: the input of its first layer emb (Embedding)" in w for w in warnings), warnings



def test_each_distinct_input_once_and_at_most_the_cap():
    # base and head take the same (2, 128): tried once
    found = resolve_example_inputs(Lora())
    chain = []
    while found is not None:
        chain.append(found)
        found = found.fallback
    assert [tuple(f.args[0].shape) for f in chain] == [(2, 128), (2, 8)]
    # 8 Linears of distinct widths: only the first MAX_ENTRY_TRIES are tried
    with pytest.raises(sptrace.SptraceError) as info:
        sptrace.parametrize(Sliced(8), "adam", lr=1e-3)
    msg = str(info.value)
    assert MAX_ENTRY_TRIES == 6 and msg.count("the input of its") == 6, msg
    assert "torch.randn(2, 12)" in msg and "torch.randn(2, 13)" not in msg and "body" not in msg


def test_where_no_layer_s_input_runs_the_error_names_every_try():
    with pytest.raises(sptrace.SptraceError) as info:
        sptrace.parametrize(Sliced(), "adam", lr=1e-3)
    msg = str(info.value)
    assert msg.startswith("pass example_inputs="), msg
    assert ("it tried the input of its first layer heads.0 (Linear): example_inputs=(torch.randn(2, 7),); then the "
            "input of its next layer in registration order body (Linear): example_inputs=(torch.randn(2, 4),), and "
            "the model does not run on them (export: ") in msg, msg
    assert "the last: " not in msg, msg  # both tries failed alike: said once
    assert "Sliced.forward(x): pass example_inputs=(x,)" in msg


def test_a_first_submodule_of_a_type_rule_4_does_not_know_is_passed_over():
    """Before, a model whose first submodule with parameters of its own was a BatchNorm got the
    missing-inputs error without a try."""
    class Normed(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm, self.fc = nn.BatchNorm1d(6), nn.Linear(6, 3)

        def forward(self, x):
            return self.fc(self.norm(x))

    found = resolve_example_inputs(Normed())
    assert found.args[0].shape == (2, 6) and "first layer fc (Linear)" in found.source
    assert sptrace.parametrize(Normed(), "adam", lr=1e-3).sptrace.trace["fc.weight"].classified


def test_the_error_quotes_the_first_layer_s_failure():
    """A model that fixes its sequence length (gMLP's spatial gating over 64 positions) fails on the
    embedding's (2, 8) ids for the reason the user needs; the later guesses (a LayerNorm's floats fed to
    the embedding) fail for one that says nothing. Before, only the last was quoted."""
    class FixedLength(nn.Module):
        def __init__(self, width=32, positions=64):
            super().__init__()
            self.emb, self.ln = nn.Embedding(77, width), nn.LayerNorm(width)
            self.spatial, self.head = nn.Linear(positions, positions), nn.Linear(width, 77)

        def forward(self, ids):
            h = self.ln(self.emb(ids))
            return self.head(self.spatial(h.transpose(1, 2)).transpose(1, 2))

    with pytest.raises(sptrace.SptraceError) as info:
        sptrace.parametrize(FixedLength(), "adam")
    msg = str(info.value)
    first, _, last = msg.partition("; the last: ")
    assert "(the first: " in first and "64x64" in first and "indices" in last, msg
