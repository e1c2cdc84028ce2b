"""Bad or unusual input to ``sptrace.trace``: documented behaviour, clear messages, model untouched.

docs/classification.md ("Unclassified"): a parameter consumed by an op sptrace does not understand
(the record's ``problem`` names the node and the op), or one the graph never uses, gets
``kind = unclassified``; ``strict=True`` raises ``SptraceError`` instead. Every case below also
checks that tracing leaves the model exactly as it was: every state_dict entry (parameters and
buffers such as BatchNorm running stats) bit-identical, requires_grad flags and train/eval mode
unchanged.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager

import pytest
import torch
from torch import nn

import sptrace
from sptrace import SptraceError

ROUTES = ("export", "eager")


# ---------------------------------------------------------------------------------------------
# the model must come back untouched


def _bits(t: torch.Tensor):
    t = t.detach()
    if t.device.type == "meta":
        return None  # no data to compare; shape/dtype/device are compared instead
    return t.cpu().contiguous().reshape(-1).view(torch.uint8).clone()


def _snapshot(model: nn.Module):
    state = {k: (tuple(v.shape), v.dtype, v.device, _bits(v)) for k, v in model.state_dict(keep_vars=True).items()}
    flags = {n: p.requires_grad for n, p in model.named_parameters(remove_duplicate=False)}
    modes = {n: m.training for n, m in model.named_modules()}
    ids = {n: id(p) for n, p in model.named_parameters(remove_duplicate=False)}
    return state, flags, modes, ids


@contextmanager
def untouched(*models):
    before = [_snapshot(m) for m in models]
    yield
    for model, (state, flags, modes, ids) in zip(models, before):
        now_state, now_flags, now_modes, now_ids = _snapshot(model)
        assert now_state.keys() == state.keys(), "state_dict keys changed"
        for k, (shape, dtype, device, bits) in state.items():
            shape2, dtype2, device2, bits2 = now_state[k]
            assert (shape2, dtype2, device2) == (shape, dtype, device), f"{k}: shape/dtype/device changed"
            assert (bits is None) == (bits2 is None) and (bits is None or torch.equal(bits, bits2)), f"{k} changed"
        assert now_flags == flags, "requires_grad flags changed"
        assert now_modes == modes, "train/eval mode changed"
        assert now_ids == ids, "parameters were replaced"


# ---------------------------------------------------------------------------------------------
# models


class MLP(nn.Module):
    def __init__(self, d_in=6, width=32, n_out=3):
        super().__init__()
        self.fc1 = nn.Linear(d_in, width)
        self.fc2 = nn.Linear(width, width)
        self.fc3 = nn.Linear(width, n_out)

    def forward(self, x):
        return self.fc3(torch.relu(self.fc2(torch.relu(self.fc1(x)))))


MLP_EXPECTED = {  # hand-derived: (kind, role, input_space, width_dims)
    "fc1.weight": ("vector", "input", "dense", (0,)),
    "fc1.bias": ("vector", "bias", "sparse", (0,)),
    "fc2.weight": ("matrix", "hidden", "dense", (0, 1)),
    "fc2.bias": ("vector", "bias", "sparse", (0,)),
    "fc3.weight": ("vector", "readout", "dense", (1,)),
    "fc3.bias": ("scalar", "bias", "sparse", ()),
}


def summary(tr):
    return {r.name: (r.kind.value, r.role.value, r.input_space.value, r.width_dims) for r in tr}


def x_in(d=6, batch=4):
    return torch.randn(batch, d, generator=torch.Generator().manual_seed(0))


class BNNet(nn.Module):
    def __init__(self, c=8, fail=False):
        super().__init__()
        self.fail = fail
        self.conv = nn.Conv2d(3, c, 3)
        self.bn = nn.BatchNorm2d(c)
        self.head = nn.Linear(c, 2)

    def forward(self, x):
        h = torch.relu(self.bn(self.conv(x)))
        if self.fail:
            raise RuntimeError("boom after the batch norm")
        return self.head(h.mean((2, 3)))


def image():
    return torch.randn(2, 3, 9, 9, generator=torch.Generator().manual_seed(0))


# ---------------------------------------------------------------------------------------------
# untraceable


class Raises(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x):
        raise RuntimeError("forward is broken on purpose")


def test_untraceable_model_names_routes_tried():
    model = Raises()
    with untouched(model), pytest.raises(SptraceError) as info:
        sptrace.trace(model, x_in(4))
    msg = str(info.value)
    assert "Raises" in msg
    assert "export" in msg and "eager" in msg
    assert "forward is broken on purpose" in msg


@pytest.mark.parametrize("route", ROUTES)
def test_untraceable_names_only_the_route_tried(route):
    model = Raises()
    with untouched(model), pytest.raises(SptraceError) as info:
        sptrace.trace(model, x_in(4), routes=(route,))
    other = {"export": "eager", "eager": "export"}[route]
    assert f"{route}:" in str(info.value) and f"{other}:" not in str(info.value)


@pytest.mark.parametrize("route", ROUTES)
def test_forward_raising_after_batchnorm_leaves_running_stats(route):
    model = BNNet(fail=True)
    with untouched(model), pytest.raises(SptraceError):
        sptrace.trace(model, image(), routes=(route,))


def test_wrong_example_inputs_is_a_clear_error():
    model = MLP()
    with untouched(model), pytest.raises(SptraceError) as info:
        sptrace.trace(model, x_in(d=5))  # fc1 expects 6 features
    assert "MLP" in str(info.value)


QUIET = ("torch._subclasses.fake_tensor", "torch.fx.experimental.symbolic_shapes")


def torch_log(caplog):
    """What torch's own log handler would print on stderr (it holds the stderr of its import, which
    capfd does not see): records of WARNING and above from torch's loggers."""
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.name.startswith("torch")
            and r.levelno >= logging.WARNING]


@pytest.mark.parametrize("route", ROUTES + (None,))
def test_wrong_example_inputs_write_nothing_on_stderr(route, capfd, caplog):
    """The failure is sptrace's to report: torch's fake-tensor log of the failed op (~20 lines of
    traceback) does not reach stderr, and the loggers silenced meanwhile are restored after."""
    before = [logging.getLogger(name).disabled for name in QUIET]
    capfd.readouterr()
    with pytest.raises(SptraceError, match="could not capture"):
        sptrace.trace(MLP(), x_in(d=5), **({"routes": (route,)} if route else {}))
    assert capfd.readouterr().err == ""
    assert torch_log(caplog) == []
    assert [logging.getLogger(name).disabled for name in QUIET] == before


class DataDependent(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 8)

    def forward(self, x):
        h = self.fc(x)
        return h * 2 if h.sum() > 0 else h


def test_data_dependent_branch_falls_back_quietly(capfd, caplog):
    """Export cannot follow a branch on a value; its warning is recorded in the trace (the eager
    route takes the branch), not printed."""
    capfd.readouterr()
    tr = sptrace.trace(DataDependent(), x_in())
    assert tr.route == "eager" and "export" in tr.failures
    assert capfd.readouterr().err == ""
    assert torch_log(caplog) == []


def test_lazy_modules_must_be_materialised_first():
    model = nn.Sequential(nn.LazyLinear(16), nn.ReLU(), nn.Linear(16, 2))
    with pytest.raises(SptraceError, match=r"lazy modules have not created yet: 0.weight, 0.bias\. Run it once"):
        sptrace.trace(model, x_in())
    with pytest.raises(SptraceError, match=r"base has parameters that lazy modules"):
        sptrace.trace(MLP(), x_in(), base=nn.Sequential(nn.LazyLinear(8)))
    model(x_in())  # the dry run the message asks for
    assert sptrace.trace(model, x_in())["0.weight"].role.value == "input"


def test_not_a_module():
    with pytest.raises(SptraceError, match="nn.Module"):
        sptrace.trace(lambda x: x, x_in())


# ---------------------------------------------------------------------------------------------
# parameters through ops sptrace does not understand


class CumsumGate(nn.Module):
    """A parameter transformed by cumsum (a parameter-only op sptrace cannot read) then used."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 16)
        self.steps = nn.Parameter(torch.rand(16))
        self.out = nn.Linear(16, 3)

    def forward(self, x):
        return self.out(self.fc(x) * torch.cumsum(self.steps, 0))


class FFTChannels(nn.Module):
    """A parameter Fourier-transformed along its width axis, then used as a gain: each entry of the
    transform sums all 16 channels (over positions, a long-convolution filter, it is classified:
    tests/graph/test_parameter_kernels.py)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 16)
        self.kernel = nn.Parameter(torch.randn(16) * 0.1)
        self.out = nn.Linear(16, 3)

    def forward(self, x):
        return self.out(self.fc(x) * torch.fft.fft(self.kernel).real)


UNKNOWN_OPS = [  # (model, input, parameter, the aten op that must be named)
    (CumsumGate, lambda: x_in(), "steps", "cumsum"),
    (FFTChannels, lambda: x_in(), "kernel", "fft"),
]


def _node_of(tr, op_fragment):
    return [n for n in tr.graph.nodes if n.op == "call_function" and op_fragment in str(n.target)]


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("build,inputs,param,op", UNKNOWN_OPS, ids=[c[0].__name__ for c in UNKNOWN_OPS])
def test_unknown_op_is_unclassified_and_named(build, inputs, param, op, route):
    torch.manual_seed(0)
    model, x = build(), inputs()
    with untouched(model):
        tr = sptrace.trace(model, x, routes=(route,))
    rec = tr[param]
    assert rec.kind.value == "unclassified" and not rec.classified
    assert rec.problem, "an unclassified record must say why"
    nodes = _node_of(tr, op)
    assert nodes, f"no {op} node in the graph"
    assert any(n.name in rec.problem for n in nodes), f"problem does not name the {op} node: {rec.problem}"
    assert op in rec.problem, f"problem does not name the op {op!r}: {rec.problem}"
    assert rec in tr.unclassified
    assert any(param in w and "unclassified" in w for w in tr.warnings), tr.warnings
    # the rest of the model is still classified
    assert all(r.classified for r in tr if r.name != param), [(r.name, r.problem) for r in tr if not r.classified]
    assert tr["fc.weight"].role.value == "input" and tr["out.weight"].role.value == "readout"


@pytest.mark.parametrize("build,inputs,param,op", UNKNOWN_OPS, ids=[c[0].__name__ for c in UNKNOWN_OPS])
def test_unknown_op_strict_raises_naming_parameter(build, inputs, param, op):
    torch.manual_seed(0)
    model, x = build(), inputs()
    with untouched(model), pytest.raises(SptraceError) as info:
        sptrace.trace(model, x, strict=True)
    assert param in str(info.value)
    assert op in str(info.value)


# ---------------------------------------------------------------------------------------------
# frozen, unused, buffers, non-float


@pytest.mark.parametrize("route", ROUTES)
def test_frozen_parameters_are_classified_and_warned(route):
    torch.manual_seed(0)
    model = MLP()
    model.fc1.weight.requires_grad_(False)
    model.fc2.requires_grad_(False)
    with untouched(model):
        tr = sptrace.trace(model, x_in(), routes=(route,))
    assert summary(tr) == MLP_EXPECTED
    assert [r.name for r in tr if not r.requires_grad] == ["fc1.weight", "fc2.weight", "fc2.bias"]
    for name in ("fc1.weight", "fc2.weight", "fc2.bias"):
        assert any(name in w and "frozen" in w for w in tr.warnings), tr.warnings
    assert not any("fc3" in w for w in tr.warnings)


class WithUnused(MLP):
    def __init__(self):
        super().__init__()
        self.spare = nn.Linear(32, 32)  # never called
        self.orphan = nn.Parameter(torch.zeros(5))


@pytest.mark.parametrize("route", ROUTES)
def test_unused_parameters_are_unclassified_never_used(route):
    torch.manual_seed(0)
    model = WithUnused()
    with untouched(model):
        tr = sptrace.trace(model, x_in(), routes=(route,))
    for name in ("spare.weight", "spare.bias", "orphan"):
        rec = tr[name]
        assert rec.kind.value == "unclassified"
        assert "never used" in rec.problem, rec.problem
    assert {k: v for k, v in summary(tr).items() if k in MLP_EXPECTED} == MLP_EXPECTED
    with pytest.raises(SptraceError, match="spare.weight"):
        sptrace.trace(model, x_in(), routes=(route,), strict=True)


class WithBuffers(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.bn = nn.BatchNorm2d(8)
        self.register_buffer("scale", torch.full((8,), 0.5))
        self.register_buffer("table", torch.randn(8, 8), persistent=False)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        h = torch.relu(self.bn(self.conv(x))) * self.scale[:, None, None]
        h = torch.einsum("bchw,cd->bdhw", h, self.table)
        return self.head(h.mean((2, 3)))


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("route", ROUTES)
def test_buffers_are_not_records_and_running_stats_untouched(route, train):
    torch.manual_seed(0)
    model = WithBuffers().train(train)
    with untouched(model):
        tr = sptrace.trace(model, image(), routes=(route,))
    names = {a for r in tr for a in r.aliases}
    assert names == {n for n, _ in model.named_parameters()}
    for buf in ("bn.running_mean", "bn.running_var", "bn.num_batches_tracked", "scale", "table"):
        assert buf not in tr
    assert all(r.classified for r in tr), [(r.name, r.problem) for r in tr if not r.classified]
    assert (tr["bn.weight"].role.value, tr["bn.bias"].role.value) == ("gain", "bias")


class IntParam(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 16)
        self.index = nn.Parameter(torch.tensor([0, 3, 5]), requires_grad=False)
        self.out = nn.Linear(16, 3)

    def forward(self, x):
        return self.out(self.fc(x.index_select(1, self.index).repeat(1, 2)))


@pytest.mark.parametrize("route", ROUTES)
def test_non_float_parameter_is_unclassified(route):
    torch.manual_seed(0)
    model = IntParam()
    with untouched(model):
        tr = sptrace.trace(model, x_in(), routes=(route,))
    rec = tr["index"]
    assert rec.kind.value == "unclassified"
    assert "int64" in rec.problem and "float" in rec.problem, rec.problem
    assert tr["fc.weight"].classified and tr["out.weight"].classified


def test_empty_model():
    for model in (nn.Identity(), nn.Sequential(nn.ReLU(), nn.Flatten())):
        with untouched(model):
            tr = sptrace.trace(model, x_in())
        assert len(tr) == 0 and list(tr) == []
        assert tr.warnings and "no parameters" in tr.warnings[0]
        assert tr.unclassified == []


def test_only_buffers_model():
    model = nn.BatchNorm1d(6, affine=False)
    with untouched(model):
        tr = sptrace.trace(model, x_in())
    assert len(tr) == 0 and tr.warnings


# ---------------------------------------------------------------------------------------------
# devices and dtypes


@pytest.mark.parametrize("route", ROUTES)
def test_meta_model_with_cpu_inputs(route):
    with torch.device("meta"):
        model = MLP()
    with untouched(model):
        tr = sptrace.trace(model, x_in(), routes=(route,))  # inputs on cpu are moved to meta
    assert summary(tr) == MLP_EXPECTED
    assert all(p.device.type == "meta" for p in model.parameters())


@pytest.mark.parametrize("route", ROUTES)
def test_meta_base_for_cpu_model(route):
    torch.manual_seed(0)
    model = MLP(width=32)
    with torch.device("meta"):
        base = MLP(width=8)
    with untouched(model, base):
        tr = sptrace.trace(model, x_in(), base=base, routes=(route,))
    assert tr.width_mode == "base"
    assert summary(tr) == MLP_EXPECTED
    assert tr["fc2.weight"].base_shape == (8, 8)


def hf():
    """transformers, or skip the test that needs it (the other tests of this file still run)."""
    return pytest.importorskip("transformers")


def tiny_gpt2():
    cfg = hf().GPT2Config(vocab_size=50, n_positions=16, n_embd=32, n_layer=1, n_head=2, use_cache=False,
                                  bos_token_id=0, eos_token_id=0)
    return hf().GPT2LMHeadModel(cfg)


def test_meta_gpt2_matches_cpu():
    """A meta model is traced by the default routes (export runs on fake tensors, no data needed).
    The eager route runs the real forward on meta tensors and cannot pass HF's data-dependent
    checks (``.item()``), so export must be the route that worked."""
    ids = torch.randint(0, 50, (2, 5), generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    cpu = tiny_gpt2()
    with torch.device("meta"):
        meta = tiny_gpt2()
    with untouched(meta):
        tr_meta = sptrace.trace(meta, ids)
    tr_cpu = sptrace.trace(cpu, ids)
    assert tr_meta.route == "export"
    assert summary(tr_meta) == summary(tr_cpu)
    assert all(r.classified for r in tr_meta)
    assert tr_meta["lm_head.weight"] is tr_meta["transformer.wte.weight"]


@pytest.mark.parametrize("route", ROUTES)
def test_bf16_cpu(route):
    torch.manual_seed(0)
    model = MLP().to(torch.bfloat16)
    with untouched(model):
        tr = sptrace.trace(model, x_in().to(torch.bfloat16), routes=(route,))
    assert summary(tr) == MLP_EXPECTED
    assert {r.dtype for r in tr} == {"bfloat16"}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("route", ROUTES)
def test_bf16_cuda(route):
    torch.manual_seed(0)
    model = WithBuffers().cuda().to(torch.bfloat16)
    with untouched(model):
        tr = sptrace.trace(model, image().cuda().to(torch.bfloat16), routes=(route,))
    ref = sptrace.trace(WithBuffers(), image(), routes=(route,))
    assert summary(tr) == summary(ref)
    assert {r.dtype for r in tr} == {"bfloat16"}


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_model_with_meta_base():
    torch.manual_seed(0)
    model = MLP().cuda()
    with torch.device("meta"):
        base = MLP(width=8)
    with untouched(model, base):
        tr = sptrace.trace(model, x_in().cuda(), base=base)
    assert summary(tr) == MLP_EXPECTED


# ---------------------------------------------------------------------------------------------
# bad base models and overrides


def test_wider_base_is_an_error():
    model, base = MLP(width=16), MLP(width=32)
    with untouched(model, base), pytest.raises(SptraceError) as info:
        sptrace.trace(model, x_in(), base=base)
    assert "narrower" in str(info.value) and "fc1.weight" in str(info.value)


class OtherArch(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))

    def forward(self, x):
        return self.body(x)


class MLPPlus(MLP):
    def __init__(self, width=8):
        super().__init__(width=width)
        self.extra = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return super().forward(x) * self.extra


@pytest.mark.parametrize("base_cls", [OtherArch, MLPPlus], ids=["renamed", "extra-parameter"])
def test_base_of_another_architecture_is_an_error(base_cls):
    model, base = MLP(width=16), base_cls()
    with untouched(model, base), pytest.raises(SptraceError) as info:
        sptrace.trace(model, x_in(), base=base)
    msg = str(info.value)
    assert "architecture" in msg or "lacks" in msg, msg
    assert ("fc1.weight" in msg) if base_cls is OtherArch else ("extra" in msg)


def test_base_not_a_module():
    model = MLP()
    with untouched(model), pytest.raises(SptraceError, match="base"):
        sptrace.trace(model, x_in(), base={"fc1.weight": (8, 6)})


def test_width_override_unknown_parameter():
    model = MLP()
    with untouched(model), pytest.raises(SptraceError) as info:
        sptrace.trace(model, x_in(), width_overrides={"fc9.weight": (0,)})
    assert "fc9.weight" in str(info.value)


def test_width_override_bad_axis():
    model = MLP()
    with untouched(model), pytest.raises(SptraceError) as info:
        sptrace.trace(model, x_in(), width_overrides={"fc2.weight": (2,)})
    assert "fc2.weight" in str(info.value)


def test_width_override_replaces_the_decision():
    model = MLP()
    with untouched(model):
        tr = sptrace.trace(model, x_in(), width_overrides={"fc1.weight": (0, 1), "fc3.weight": ()})
    fc1 = tr["fc1.weight"]
    assert fc1.width_dims == (0, 1) and fc1.kind.value == "matrix" and fc1.role.value == "hidden"
    assert all(d.reason == "user override" for d in fc1.dims)
    assert tr["fc3.weight"].width_dims == () and tr["fc3.weight"].kind.value == "scalar"
    assert summary(tr)["fc2.weight"] == MLP_EXPECTED["fc2.weight"]
