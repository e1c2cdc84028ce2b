"""Stage 2 alone: analyse_uses on small fx graphs built by hand (no model, no capture).

Each graph is a few aten calls on placeholders whose ``meta["val"]`` are meta tensors, as the
capture stage leaves them; the test reads which parameter axes the uses stage calls fan-in and
fan-out, the input space and the role it can tell without widths.
"""
import torch
import torch.fx as fx

from sptrace.graph.ops import Shapes
from sptrace.graph.uses import analyse_uses
from sptrace.types import CapturedGraph, ParamUse, Role, Space

aten = torch.ops.aten


def meta(*shape, dtype=torch.float32):
    return torch.empty(*shape, dtype=dtype, device="meta")


class HandGraph:
    """An fx graph written call by call; every value carries its shape in ``meta["val"]``."""

    def __init__(self):
        self.graph = fx.Graph()
        self.params: dict[str, str] = {}
        self.inputs: list[str] = []

    def param(self, name, *shape):
        node = self.graph.placeholder(f"p_{name}")
        node.meta["val"] = meta(*shape)
        self.params[node.name] = name
        return node

    def input(self, name, *shape, dtype=torch.float32):
        node = self.graph.placeholder(name)
        node.meta["val"] = meta(*shape, dtype=dtype)
        self.inputs.append(node.name)
        return node

    def call(self, op, *args, shape):
        node = self.graph.call_function(op, args)
        node.meta["val"] = meta(*shape)
        return node

    def uses(self, *outputs):
        self.graph.output(tuple(outputs))
        captured = CapturedGraph(self.graph, "by hand", {}, self.params, {}, self.inputs, [o.name for o in outputs])
        return analyse_uses(captured, Shapes(self.graph))


def only_use(analysis, param: fx.Node) -> ParamUse:
    (use,) = analysis.uses[param.name]
    return use


def test_a_linear_weight_contracts_axis_1_and_outputs_axis_0():
    g = HandGraph()
    x, w, b = g.input("x", 2, 4), g.param("fc.weight", 8, 4), g.param("fc.bias", 8)
    out = g.call(aten.linear.default, x, w, b, shape=(2, 8))
    analysis = g.uses(out)
    weight = only_use(analysis, w)
    assert (weight.op, weight.arg, weight.node) == ("linear", "weight", out.name)
    assert (weight.fan_in_axes, weight.fan_out_axes, weight.group_axes) == ((1,), (0,), ())
    assert weight.input_space is Space.DENSE
    assert weight.role is Role.UNKNOWN  # hidden, input or readout: classify decides from the widths
    bias = only_use(analysis, b)
    assert (bias.fan_in_axes, bias.fan_out_axes) == ((), (0,))
    assert bias.role is Role.BIAS and bias.input_space is Space.SPARSE  # the constant-1 input
    assert analysis.problems == {}
    assert analysis.op_axes[out.name].category == "matmul"


def test_a_transposed_view_maps_back_to_the_stored_axes():
    g = HandGraph()
    x, w = g.input("x", 2, 4), g.param("w", 8, 4)
    wt = g.call(aten.t.default, w, shape=(4, 8))
    out = g.call(aten.mm.default, x, wt, shape=(2, 8))
    use = only_use(g.uses(out), w)
    assert (use.fan_in_axes, use.fan_out_axes, use.via) == ((1,), (0,), ("t",))


def test_integer_ids_make_an_embedding_with_a_sparse_input():
    g = HandGraph()
    table, ids = g.param("wte", 10, 8), g.input("ids", 2, 3, dtype=torch.int64)
    out = g.call(aten.embedding.default, table, ids, shape=(2, 3, 8))
    use = only_use(g.uses(out), table)
    assert (use.fan_in_axes, use.fan_out_axes) == ((0,), (1,))
    assert use.input_space is Space.SPARSE and use.role is Role.EMBEDDING


def test_an_elementwise_scale_is_a_gain_and_a_sum_of_parameters_is_a_problem():
    g = HandGraph()
    x, gain = g.input("x", 2, 8), g.param("gain", 8)
    a, b = g.param("a", 8, 8), g.param("b", 8, 8)
    scaled = g.call(aten.mul.Tensor, x, gain, shape=(2, 8))
    ab = g.call(aten.mm.default, a, b, shape=(8, 8))  # two parameters multiplied before any data
    out = g.call(aten.mm.default, scaled, ab, shape=(2, 8))
    analysis = g.uses(out)
    use = only_use(analysis, gain)
    assert use.role is Role.GAIN and (use.fan_in_axes, use.fan_out_axes) == ((), (0,))
    assert set(analysis.problems) == {a.name, b.name}
    assert "combined with b before any activation" in analysis.problems[a.name]
    assert analysis.uses[a.name] == [] and analysis.uses[b.name] == []
