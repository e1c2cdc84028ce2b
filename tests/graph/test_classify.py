"""Stage 3b alone: classify() from hand-made ParamFacts and a width decider, no model, no graph."""
import torch

from sptrace.graph.classify import classify
from sptrace.types import Kind, ParamFacts, ParamUse, Role, Space


def use(node, fan_in_axes, fan_out_axes, *, op="linear", arg="weight", space=Space.DENSE, role=Role.UNKNOWN):
    return ParamUse(node, op, arg, "", tuple(fan_in_axes), tuple(fan_out_axes), input_space=space, role=role)


def facts(name, shape, *uses, problem=None):
    return ParamFacts(name, (name,), torch.empty(*shape, device="meta"), list(uses), problem)


def width_axes(*axes):
    """A decider: these axes grow with width, the others are fixed."""
    return lambda axis: (axis in axes, f"axis {axis} {'grows' if axis in axes else 'fixed'} in this test")


def test_a_linear_weight_by_which_of_its_axes_grow():
    weight = facts("fc.weight", (64, 32), use("fc", (1,), (0,)))
    hidden = classify(weight, width_axes(0, 1))
    assert (hidden.kind, hidden.role) == (Kind.MATRIX, Role.HIDDEN)
    assert (hidden.fan_in_axes, hidden.fan_out_axes, hidden.fan_in, hidden.fan_out) == ((1,), (0,), 32, 64)
    assert hidden.width_dims == (0, 1) and hidden.dims[1].reason == "axis 1 grows in this test"
    first = classify(weight, width_axes(0))
    assert (first.kind, first.role, first.width_dims) == (Kind.VECTOR, Role.INPUT, (0,))
    readout = classify(weight, width_axes(1))
    assert (readout.kind, readout.role) == (Kind.VECTOR, Role.READOUT)
    fixed = classify(weight, width_axes())
    assert (fixed.kind, fixed.role) == (Kind.SCALAR, Role.FIXED)


def test_the_record_keeps_names_shape_dtype_and_base_shape():
    record = classify(facts("fc.weight", (64, 32), use("fc", (1,), (0,))), width_axes(0, 1), (16, 8), None)
    assert (record.name, record.aliases, record.dtype) == ("fc.weight", ("fc.weight",), "float32")
    assert record.shape == (64, 32)
    assert record.base_shape == (16, 8) and (record.base_fan_in, record.base_fan_out) == (8, 16)
    assert record.requires_grad is False  # a plain meta tensor, not a Parameter


def test_a_tied_table_keeps_its_embedding_use_and_names_the_readout_as_secondary():
    table = facts("wte", (100, 64), use("embed", (0,), (1,), op="embedding", space=Space.SPARSE,
                                        role=Role.EMBEDDING), use("lm_head", (1,), (0,)))
    record = classify(table, width_axes(1))
    assert (record.role, record.input_space, record.fan_in_axes, record.fan_out_axes) == (
        Role.EMBEDDING, Space.SPARSE, (0,), (1,))
    (readout,) = record.secondary_uses
    assert (readout.node, readout.role, readout.fan_in_axes) == ("lm_head", Role.READOUT, (1,))


def test_an_added_table_with_a_fixed_axis_is_a_position_embedding():
    """Added to activations, all axes width: a bias; one axis fixed (positions): an embedding."""
    added = use("add", (), (0, 1), op="add", arg="other", space=Space.SPARSE, role=Role.BIAS)
    positions = classify(facts("wpe", (16, 64), added), width_axes(1))
    assert (positions.role, positions.fan_in_axes, positions.fan_out_axes) == (Role.EMBEDDING, (0,), (1,))
    bias = classify(facts("b", (64,), use("add", (), (0,), op="add", arg="other", space=Space.SPARSE,
                                          role=Role.BIAS)), width_axes(0))
    assert (bias.role, bias.kind) == (Role.BIAS, Kind.VECTOR)


def test_a_problem_or_no_use_leaves_the_parameter_unclassified_with_the_reason():
    broken = classify(facts("w", (8, 8), use("mm", (1,), (0,)), problem="node 'mm' (mm): combined with v"),
                      width_axes(0, 1))
    assert broken.kind is Kind.UNCLASSIFIED and not broken.classified
    assert broken.problem == "node 'mm' (mm): combined with v" and broken.fan_in_axes == ()
    unused = classify(facts("spare", (8,)), width_axes(0))
    assert unused.kind is Kind.UNCLASSIFIED and unused.problem == "never used by the forward pass"
