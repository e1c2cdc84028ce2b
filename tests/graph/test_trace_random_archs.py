"""Hypothesis-generated architectures: tracing never crashes and never drops a parameter.

Random stacks of Linear / Conv2d (grouped) / LayerNorm / BatchNorm / GroupNorm / Embedding with
random widths (size 1 included), optional biases and affine norms, optional residuals and a module
reused at two places (a tie). For every one:

* every parameter name (aliases included) appears in exactly one record, one record per tensor;
* each record is classified or carries a non-empty ``problem`` (and these ops are all supported,
  so every record must in fact be classified);
* the record is self-consistent with docs/classification.md: kind counts the width axes among
  fan-in / fan-out, the role fits the module type, axes are in range;
* in base mode (the same spec built at a smaller unit width) the width dims are exactly the axes
  whose size differs.
"""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import sptrace  # noqa: E402

ROUTES = ("export", "eager")
KINDS = {
    "vector": ("linear", "layernorm", "batchnorm", "groupnorm"),
    "tokens": ("linear", "layernorm"),
    "image": ("conv", "batchnorm", "groupnorm"),
}
FIXED_IN = {"vector": 7, "image": 3}
VOCAB, N_OUT, BATCH = 13, 5, 4


@dataclass(frozen=True)
class Layer:
    kind: str
    units: int  # output width of a linear/conv, in units of `groups` x the model's unit width
    groups: int
    bias: bool
    affine: bool
    residual: bool
    share: bool  # a square linear is applied twice (the same module: a tied parameter)
    kernel: int


@dataclass(frozen=True)
class Spec:
    inp: str
    layers: tuple[Layer, ...]
    embed_units: int
    head: bool
    unit: int
    route: str
    base: bool


@st.composite
def specs(draw):
    inp = draw(st.sampled_from(sorted(KINDS)))
    layers = tuple(
        Layer(
            kind=draw(st.sampled_from(KINDS[inp])),
            units=draw(st.integers(1, 3)),
            groups=draw(st.sampled_from([1, 2, 4])),
            bias=draw(st.booleans()),
            affine=draw(st.booleans()),
            residual=draw(st.booleans()),
            share=draw(st.booleans()),
            kernel=draw(st.sampled_from([1, 3])),
        )
        for _ in range(draw(st.integers(1, 5)))
    )
    if not any(layer.kind in ("linear", "conv") for layer in layers) and inp != "tokens":
        layers = layers + (Layer("conv" if inp == "image" else "linear", 2, 1, True, True, False, False, 1),)
    unit = draw(st.integers(1, 3))
    return Spec(inp, layers, draw(st.integers(1, 3)), draw(st.booleans()), unit, draw(st.sampled_from(ROUTES)),
                draw(st.booleans()) and unit >= 2)


class RandomNet(nn.Module):
    """Builds `spec` at unit width `unit`: widths are (units x groups x unit), inputs stay fixed."""

    def __init__(self, spec: Spec, unit: int):
        super().__init__()
        self.inp = spec.inp
        self.steps: list[tuple[int, bool, bool]] = []  # (module index, residual, relu after)
        modules: list[nn.Module] = []
        if spec.inp == "tokens":
            width, units = spec.embed_units * unit, spec.embed_units  # units: size at unit width 1
            self.embed = nn.Embedding(VOCAB, width)
        else:
            width = units = FIXED_IN[spec.inp]
            fixed = True
        fixed = spec.inp != "tokens"
        for layer in spec.layers:
            count = units if not fixed else width  # divisibility must hold at every unit width
            g = layer.groups if count % layer.groups == 0 else 1
            if layer.kind in ("linear", "conv"):
                out_units = layer.units * (g if layer.kind == "conv" else 1)
                out = out_units * unit
                if layer.kind == "linear":
                    module = nn.Linear(width, out, bias=layer.bias)
                else:
                    module = nn.Conv2d(width, out, layer.kernel, padding=layer.kernel // 2, groups=g, bias=layer.bias)
                share = layer.share and layer.kind == "linear" and out == width and not fixed
                modules.append(module)
                self.steps.append((len(modules) - 1, layer.residual and out == width, True))
                if share:  # the same module registered again: its tensors get two names
                    modules.append(module)
                    self.steps.append((len(modules) - 1, True, True))
                width, units, fixed = out, out_units, False
            elif layer.kind == "layernorm":
                modules.append(nn.LayerNorm(width, elementwise_affine=layer.affine, bias=layer.bias))
                self.steps.append((len(modules) - 1, False, False))
            elif layer.kind == "batchnorm":
                cls = nn.BatchNorm2d if spec.inp == "image" else nn.BatchNorm1d
                modules.append(cls(width, affine=layer.affine))
                self.steps.append((len(modules) - 1, layer.residual, False))
            elif layer.kind == "groupnorm":
                modules.append(nn.GroupNorm(g, width, affine=layer.affine))
                self.steps.append((len(modules) - 1, layer.residual, False))
        self.layers = nn.ModuleList(modules)
        self.head = nn.Linear(width, N_OUT) if spec.head else None

    def forward(self, x):
        h = self.embed(x) if self.inp == "tokens" else x
        for index, residual, relu in self.steps:
            out = self.layers[index](h)
            if relu:
                out = torch.relu(out)
            h = h + out if residual and out.shape == h.shape else out
        if self.inp == "image":
            h = h.mean((2, 3))
        return self.head(h) if self.head is not None else h


def example(spec: Spec):
    g = torch.Generator().manual_seed(0)
    if spec.inp == "tokens":
        return torch.randint(0, VOCAB, (BATCH, 6), generator=g)
    if spec.inp == "image":
        return torch.randn(BATCH, 3, 6, 6, generator=g)
    return torch.randn(BATCH, FIXED_IN["vector"], generator=g)


def expected_roles(module: nn.Module, leaf: str, record) -> set[str]:
    """The doc's roles by module type; without any width axis a record is `scalar` (one element,
    or Role.SCALAR 'no width dims at all'), except a weight matrix used as such (`fixed`) and a
    bias, which keeps its role (its library init follows its layer's fan-in)."""
    is_weight = isinstance(module, (nn.Linear, nn.Conv2d)) and leaf == "weight"
    if record.width_dims == ():
        if is_weight and record.fan_in * record.fan_out > 1:
            return {"fixed"}
        return {"scalar", "bias"} if leaf == "bias" else {"scalar"}
    if isinstance(module, nn.Embedding):
        return {"embedding"}
    if is_weight:
        return {"hidden", "input", "readout"}
    return {"gain"} if leaf == "weight" else {"bias"}


def check_trace(tr, model, base=None):
    names = [n for n, _ in model.named_parameters(remove_duplicate=False)]
    seen = [a for r in tr for a in r.aliases]
    assert sorted(seen) == sorted(names), "a parameter name is missing or appears twice"
    assert len(tr) == len({id(p) for p in model.parameters()})
    params = dict(model.named_parameters(remove_duplicate=False))
    for r in tr:
        assert r.name == r.aliases[0]
        assert all(params[a] is params[r.name] for a in r.aliases), "aliases of different tensors grouped"
        assert r.shape == tuple(params[r.name].shape)
        assert r.classified or r.problem, f"{r.name}: unclassified without a problem"
        assert r.classified, f"{r.name}: {r.problem}"  # every op here is supported
        rank = len(r.shape)
        assert [d.axis for d in r.dims] == list(range(rank))
        assert set(r.fan_in_axes) | set(r.fan_out_axes) <= set(range(rank))
        assert not set(r.fan_in_axes) & set(r.fan_out_axes)
        kind = ["scalar", "vector", "matrix"][r.fan_in_is_width + r.fan_out_is_width]
        assert r.kind.value == kind, f"{r.name}: kind {r.kind.value} but width axes say {kind}"
        module_name, _, leaf = r.name.rpartition(".")
        module = model.get_submodule(module_name)
        assert r.role.value in expected_roles(module, leaf, r), f"{r.name}: role {r.role.value} for {type(module).__name__}"
        if r.role.value in ("bias", "embedding"):
            assert r.input_space.value == "sparse"
        if base is not None:
            b = tuple(dict(base.named_parameters(remove_duplicate=False))[r.name].shape)
            differs = tuple(a for a in range(rank) if r.shape[a] != b[a])
            assert r.width_dims == differs, f"{r.name}: {r.shape} vs base {b}: width dims {r.width_dims}"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True)
@given(specs())
def test_random_architectures(spec):
    torch.manual_seed(0)
    model = RandomNet(spec, spec.unit)
    x = example(spec)
    model(x)  # the architecture itself must run
    base = RandomNet(spec, 1) if spec.base else None
    tr = sptrace.trace(model, x, base=base, routes=(spec.route,))
    assert tr.route == spec.route
    check_trace(tr, model, base)


@pytest.mark.parametrize("route", ROUTES)
def test_random_architecture_with_tie(route):
    """A fixed example of the generator with a shared square linear (a regression anchor)."""
    layer = Layer("linear", 2, 1, True, True, False, True, 1)
    spec = Spec("vector", (Layer("linear", 2, 1, True, True, False, False, 1), layer), 1, True, 3, route, True)
    model, base = RandomNet(spec, 3), RandomNet(spec, 1)
    assert model.layers[1] is model.layers[2]
    tr = sptrace.trace(model, example(spec), base=base, routes=(route,))
    check_trace(tr, model, base)
    assert tr["layers.2.weight"].aliases == ("layers.1.weight", "layers.2.weight")
