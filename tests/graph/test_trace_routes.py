"""Which capture route was used, why the others failed, and that the routes agree.

capture.py: routes are tried in order (export, then eager); the first that works wins and why
the others failed is recorded in ``Trace.failures``. Both produce the same kind of graph, so the
classification must not depend on the route.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

import sptrace
from sptrace import SptraceError


class MLP(nn.Module):
    def __init__(self, d_in=6, width=32, n_out=3):
        super().__init__()
        self.fc1, self.fc2, self.fc3 = nn.Linear(d_in, width), nn.Linear(width, width), nn.Linear(width, n_out)

    def forward(self, x):
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


class Branchy(nn.Module):
    """Data-dependent control flow: export cannot trace `if x.sum() > 0`, eager takes the branch."""

    def __init__(self, d_in=6, width=32, n_out=3):
        super().__init__()
        self.fc_in = nn.Linear(d_in, width)
        self.pos = nn.Linear(width, width)
        self.neg = nn.Linear(width, width)
        self.out = nn.Linear(width, n_out)

    def forward(self, x):
        h = torch.relu(self.fc_in(x))
        if x.sum() > 0:
            h = self.pos(h)
        else:
            h = self.neg(h)
        return self.out(h)


def positive_x(d=6):
    return torch.rand(4, d, generator=torch.Generator().manual_seed(0)) + 0.1


def fingerprint(tr):
    """Everything the classification says about a record, for comparing routes."""
    return {
        r.name: (r.aliases, r.kind.value, r.role.value, r.input_space.value, r.fan_in_axes, r.fan_out_axes,
                 r.width_dims, r.groups, r.fan_in, r.fan_out,
                 tuple((u.fan_in_axes, u.fan_out_axes, u.role.value) for u in r.secondary_uses),
                 r.classified)
        for r in tr
    }


def test_simple_model_uses_export():
    tr = sptrace.trace(MLP(), positive_x())
    assert tr.route == "export"
    assert tr.failures == {}
    assert not any("capture route" in w for w in tr.warnings)
    assert tr.summary()["route"] == "export" and tr.summary()["capture_failures"] == {}


def test_data_dependent_control_flow_falls_back_to_eager():
    torch.manual_seed(0)
    model = Branchy()
    tr = sptrace.trace(model, positive_x())
    assert tr.route == "eager"
    assert set(tr.failures) == {"export"} and tr.failures["export"].strip()
    assert any("export" in w and "eager" in w for w in tr.warnings), tr.warnings
    assert tr.summary()["capture_failures"] == tr.failures
    # the eager route records the branch the example input takes (x.sum() > 0: `pos`)
    assert (tr["fc_in.weight"].role.value, tr["pos.weight"].role.value, tr["out.weight"].role.value) == (
        "input", "hidden", "readout")
    assert tr["neg.weight"].kind.value == "unclassified" and "never used" in tr["neg.weight"].problem
    assert tr["neg.bias"].kind.value == "unclassified"


class TopKExperts(nn.Module):
    """Top-k routing to experts that skips idle experts: a branch on a data-dependent count, so
    export fails part-way, where torch prints its partial graph to stderr."""

    def __init__(self, d_in=6, width=32, n_experts=4):
        super().__init__()
        self.inp, self.router = nn.Linear(d_in, width), nn.Linear(width, n_experts, bias=False)
        self.experts = nn.ModuleList(nn.Linear(width, width) for _ in range(n_experts))
        self.out = nn.Linear(width, 1)

    def forward(self, x):
        h = self.inp(x)
        weight, expert = self.router(h).topk(2, dim=-1)
        y = torch.zeros_like(h)
        for e, layer in enumerate(self.experts):
            token, slot = (expert == e).nonzero(as_tuple=True)
            if token.numel():  # skip idle experts, as MoE code does
                y = y.index_add(0, token, weight.softmax(-1)[token, slot, None] * layer(h[token]))
        return self.out(h + y)


def test_failed_export_is_quiet_and_recorded(capsys):
    torch.manual_seed(0)
    tr = sptrace.trace(TopKExperts(), torch.randn(16, 6, generator=torch.Generator().manual_seed(1)),
                       base=TopKExperts(width=16))
    err = capsys.readouterr().err
    assert tr.route == "eager" and set(tr.failures) == {"export"}
    assert "def forward" not in err, err[:500]
    assert tr["experts.0.weight"].role.value == "hidden" and tr["router.weight"].role.value == "readout"


def test_data_dependent_control_flow_export_only_is_an_error():
    with pytest.raises(SptraceError) as info:
        sptrace.trace(Branchy(), positive_x(), routes=("export",))
    assert "export:" in str(info.value) and "eager:" not in str(info.value)


def test_forced_eager_route():
    tr = sptrace.trace(MLP(), positive_x(), routes=("eager",))
    assert tr.route == "eager" and tr.failures == {}


def test_eager_first_when_asked():
    tr = sptrace.trace(MLP(), positive_x(), routes=("eager", "export"))
    assert tr.route == "eager"


def test_export_route_leaves_torch_settings_as_they_were():
    """The export route switches off stack-trace recording and eager graph-module code generation
    for its own call only: torch's settings are back afterwards, also when export fails."""
    from torch.fx import _lazy_graph_module

    before = (torch.fx.config.do_not_emit_stack_traces, _lazy_graph_module._use_lazy_graph_module_flag)
    tr = sptrace.trace(MLP(), positive_x(), routes=("export",))
    assert tr.route == "export"
    assert not any("stack_trace" in n.meta for n in tr.graph.nodes)
    with pytest.raises(SptraceError):
        sptrace.trace(Branchy(), positive_x(), routes=("export",))
    assert (torch.fx.config.do_not_emit_stack_traces, _lazy_graph_module._use_lazy_graph_module_flag) == before


# ---------------------------------------------------------------------------------------------
# both routes give the same classification


class ConvBN(nn.Module):
    def __init__(self, c=16):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, padding=1)
        self.bn = nn.BatchNorm2d(c)
        self.dw = nn.Conv2d(c, c, 3, padding=1, groups=c)
        self.gn = nn.GroupNorm(4, c)
        self.head = nn.Linear(c, 5)

    def forward(self, x):
        h = torch.relu(self.bn(self.stem(x)))
        h = h + self.gn(self.dw(h))
        return self.head(h.mean((2, 3)))


class EncoderLM(nn.Module):
    def __init__(self, vocab=50, d=32, n_out=11):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.pos = nn.Parameter(torch.zeros(1, 7, d))
        self.layer = nn.TransformerEncoderLayer(d, 4, dim_feedforward=64, dropout=0.0, batch_first=True)
        self.head = nn.Linear(d, n_out)
        self.temperature = nn.Parameter(torch.tensor(1.0))

    def forward(self, ids):
        return self.head(self.layer(self.emb(ids) + self.pos)) / self.temperature


class TiedLM(nn.Module):
    def __init__(self, vocab=50, d=32):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.norm = nn.LayerNorm(d)
        self.fc = nn.Linear(d, d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.head.weight = self.emb.weight

    def forward(self, ids):
        return self.head(self.norm(torch.relu(self.fc(self.emb(ids)))))


def ids(vocab=50):
    return torch.randint(0, vocab, (2, 7), generator=torch.Generator().manual_seed(0))


def images():
    return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def gpt2():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.GPT2Config(vocab_size=50, n_positions=16, n_embd=32, n_layer=2, n_head=4, use_cache=False,
                                  bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(cfg)


def llama():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=48, num_hidden_layers=1,
                                   num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=16,
                                   use_cache=False, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    return transformers.LlamaForCausalLM(cfg)


CASES = {
    "mlp": (MLP, positive_x),
    "conv-bn": (ConvBN, images),
    "encoder-lm": (EncoderLM, ids),
    "tied-lm": (TiedLM, ids),
    "gpt2": (gpt2, ids),
    "llama": (llama, ids),
}


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_routes_agree(case, train):
    """Same model, same inputs: export and eager must classify every parameter the same way.
    In eval mode too: the eager recorder must see the forward the model runs in training (the
    classification is for training), not a no-grad inference fast path."""
    build, inputs = CASES[case]
    torch.manual_seed(0)
    model = build().train(train)
    x = inputs()
    by_export = sptrace.trace(model, x, routes=("export",))
    by_eager = sptrace.trace(model, x, routes=("eager",))
    assert (by_export.route, by_eager.route) == ("export", "eager")
    a, b = fingerprint(by_export), fingerprint(by_eager)
    assert a.keys() == b.keys()
    diff = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
    assert not diff, "routes disagree:\n" + "\n".join(f"{k}: export {v[0]} / eager {v[1]}" for k, v in diff.items())
    assert all(r.classified for r in by_export), [(r.name, r.problem) for r in by_export if not r.classified]
    assert len(by_export.attention) == len(by_eager.attention)


@pytest.mark.parametrize("case", ["mlp", "encoder-lm", "tied-lm"])
def test_routes_agree_in_base_mode(case):
    build, inputs = CASES[case]
    narrow = {"mlp": lambda: MLP(width=8), "encoder-lm": lambda: EncoderLM(d=16), "tied-lm": lambda: TiedLM(d=16)}[case]
    torch.manual_seed(0)
    model, base, x = build(), narrow(), inputs()
    a = fingerprint(sptrace.trace(model, x, base=base, routes=("export",)))
    b = fingerprint(sptrace.trace(model, x, base=base, routes=("eager",)))
    assert a == b
