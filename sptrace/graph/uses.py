"""Stage 2: every use of every parameter, with the parameter axes that are fan-in and fan-out.

One forward pass over the graph. A value computed from parameters alone (a view, a cast, ``1 + w``,
``w.chunk(3)``) is *parameter-derived* and carries an axis map: for each of its axes, the set of
(parameter, axis) it came from. Where a parameter-derived value meets an activation, the op's
semantics (``ops.op_axes``) say which of its axes are contracted and which reach the output; the
axis map turns those into the parameter's own axes. Activations are marked sparse (integer ids,
one-hot) or dense on the way, so every use knows the space of its input.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Optional

import torch
import torch.fx as fx

from ..types import CapturedGraph, OpAxes, ParamUse, Ref, Role, Space, UseAnalysis
from .capture import module_path
from .ops import CONSTANT_CREATIONS, MIXING, SHAPE_READERS, Shapes, op_axes, op_name, value_key

AxisMap = list[frozenset]  # per axis of a value: {(param node, param axis), ...}

ADDITIVE = {"add", "sub", "rsub"}
MULTIPLICATIVE = {"mul", "div", "true_divide", "prelu", "_prelu_kernel"}
# self + value * tensor1 (* or /) tensor2 (ConvNeXt-V2's GlobalResponseNorm: addcmul(bias, weight, x)):
# the argument ``self`` is added, ``tensor1`` and ``tensor2`` multiply each other
ADD_PRODUCT = {"addcmul": "self", "addcdiv": "self"}
# where(condition, self, other): every output entry is an entry of one of the value operands, the
# condition (data) picks which; a parameter there has its entries placed into the activation, as
# index_put's values are (``x[mask] = token``)
SELECTING = {"where": ("self", "other"), "index_put": ("values",), "_unsafe_index_put": ("values",)}
# a layer's data operand and its weight, by op (a conv's are ``input`` and ``weight`` whatever its
# name; a linear decomposed to addmm reads x as ``mat1``, its weight transposed as ``mat2``)
LAYER_OPERANDS = {"linear": ("input", "weight"), "addmm": ("mat1", "mat2"), "_addmm_activation": ("mat1", "mat2"),
                  "baddbmm": ("batch1", "batch2")}
# an attention op's token operands: a parameter read there is tokens of the network's own
ATTENTION_DATA = ("query", "key", "value")
ADDITIVE_ARG = {  # the argument that is added to the product: a bias
    "linear": "bias", "bilinear": "bias", "addmm": "self", "baddbmm": "self", "addmv": "self", "_addmm_activation": "self",
}


@dataclass
class Derived:
    params: frozenset  # parameter nodes this value is computed from
    axes: AxisMap
    via: tuple[str, ...] = ()
    # (param node, axis) whose entry an index picked: one block of a stack of matrices (an MoE's
    # experts) where a contraction reads the value, the one-hot input of a table anywhere else
    picked: frozenset = frozenset()
    lookup: Optional[tuple[str, str]] = None  # (node, module) that looked the value up by integer ids
    mixed: frozenset = frozenset()  # (param node, axis, node) a softmax / cumsum combined entries along
    gains: frozenset = frozenset()  # param nodes that scale a standardised parameter (a norm's weight)
    biases: frozenset = frozenset()  # param nodes added to a standardised parameter (a norm's bias)


def analyse_uses(captured: CapturedGraph, shapes: Shapes) -> UseAnalysis:
    return _UseWalker(captured, shapes).run()


def _norm_vector_use(param: str, derived: Derived, non_singleton: tuple[int, ...], common: dict) -> Optional[ParamUse]:
    """The use of a norm's gain or bias on a standardised parameter (``derived``): the gain scales its rows
    (a diagonal operator), the bias is added to them; None for any other parameter of it."""
    if param in derived.gains:
        return ParamUse(fan_in_axes=(), fan_out_axes=non_singleton, role=Role.GAIN, **common)
    if param in derived.biases:
        return ParamUse(fan_in_axes=(), fan_out_axes=non_singleton, input_space=Space.SPARSE, role=Role.BIAS, **common)
    return None


class _UseWalker:
    def __init__(self, captured: CapturedGraph, shapes: Shapes):
        self.captured, self.shapes = captured, shapes
        self.derived: dict[str, Derived] = {}
        self.activation: set[str] = set()
        self.sparse: set[str] = set()
        self.constant: set[str] = set()  # float buffers and what is computed from them alone
        self.made: set[str] = set()  # grids the graph makes itself (``arange``) and what is computed from them alone
        self.uses: dict[str, list[ParamUse]] = {p: [] for p in captured.param_nodes}
        self.problems: dict[str, str] = {}
        self.axes: dict[str, OpAxes] = {}

    def run(self) -> UseAnalysis:
        for node in self.captured.graph.nodes:
            if node.name in self.captured.normaliser_nodes:
                continue  # a parameter's own normaliser (graph/selfnorm.py) reads no data: not a use
            if node.op == "placeholder":
                self._placeholder(node)
            elif node.op == "call_function":
                self._call(node)
            elif node.op == "output":
                for key in dict.fromkeys(self._input_keys(node)):
                    self._consume_lookup(key)
            elif node.op != "get_attr":
                for p in self._derived_params(node):
                    self._problem(p, node, f"unsupported graph op kind {node.op!r}")
        return UseAnalysis(self.uses, self.problems, self.axes)

    # -- bookkeeping ---------------------------------------------------------------------------

    def _placeholder(self, node: fx.Node):
        shape = self.shapes.get(node.name)
        if node.name in self.captured.param_nodes and shape is not None:
            self.derived[node.name] = Derived(frozenset({node.name}), [frozenset({(node.name, a)}) for a in range(len(shape))])
        elif node.name in self.captured.input_nodes or self._is_index(node.name):
            self.activation.add(node.name)
            if self._is_index(node.name):
                self.sparse.add(node.name)
        elif node.name in self.captured.data_buffers:
            self.constant.add(node.name)

    def _is_index(self, key: str) -> bool:
        """Integer tensors are data (ids, positions) wherever they come from: sparse."""
        dtype = self.shapes.dtype.get(key)
        return dtype is not None and not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool)

    def _pname(self, node_name: str) -> str:
        return self.captured.param_nodes.get(node_name, node_name)

    def _problem(self, param: str, node: fx.Node, what: str):
        self.problems.setdefault(param, f"node {node.name!r} ({op_name(node)}): {what}")

    def _input_keys(self, node: fx.Node) -> list[str]:
        keys = []
        for v in _flat(list(node.args) + list(node.kwargs.values())):
            if isinstance(v, fx.Node):
                keys.append(v.name)
        return keys

    def _derived_params(self, node: fx.Node) -> set[str]:
        return {p for k in self._input_keys(node) if k in self.derived for p in self.derived[k].params}

    def _output_keys(self, node: fx.Node) -> list[str]:
        val = node.meta.get("val")
        if isinstance(val, (tuple, list)):
            return [f"{node.name}.{i}" for i in range(len(val))]
        return [node.name]

    # -- the walk ------------------------------------------------------------------------------

    def _call(self, node: fx.Node):
        ax = op_axes(node, self.shapes)
        self.axes[node.name] = ax
        inputs = [k for k in self._input_keys(node) if k not in ax.steering]
        if node.target is operator.getitem and isinstance(node.args[0], fx.Node):
            inputs = [f"{node.args[0].name}.{node.args[1]}"]
        if op_name(node) in SHAPE_READERS:  # made from nothing but the input's shape: data, as zeros are
            inputs = [k for k in inputs if k not in self.derived]
        derived_inputs = [k for k in inputs if k in self.derived]
        if self._looks_up(node, ax, inputs, derived_inputs):
            self._propagate(node, ax, derived_inputs)
            return
        if not self._carries_lookup(ax, inputs, derived_inputs):
            for key in derived_inputs:
                self._consume_lookup(key)
            derived_inputs = [k for k in derived_inputs if k in self.derived]
        table = self._table_read(node, ax, inputs)
        if table is not None:
            self._consume_table(node, ax, table)
            derived_inputs = [k for k in derived_inputs if k != table]
        if self._scales_by_made(ax, inputs, derived_inputs):
            self._propagate(node, ax, derived_inputs)
            return
        # data: computed from an input, an index, or made from nothing (an RNN's zero initial state)
        is_activation = any(k in self.activation for k in inputs) or (
            not derived_inputs and (self._is_index(node.name) or not inputs)) or self._reads_constant(ax, inputs)
        if not is_activation and not derived_inputs and any(k in self.constant for k in inputs):
            self.constant.update(self._output_keys(node) + [node.name])
            return
        if is_activation:
            for key in self._output_keys(node) + [node.name]:
                self.activation.add(key)
            if (op_name(node) in CONSTANT_CREATIONS and not inputs) or (
                    inputs and all(k in self.made or k in self.constant for k in inputs)):
                self.made.update(self._output_keys(node) + [node.name])
            self._mark_sparse(node, ax, inputs)
            for key in dict.fromkeys(derived_inputs):
                self._consume(node, ax, key)
        elif derived_inputs:
            self._propagate(node, ax, derived_inputs)

    def _scales_by_made(self, ax: OpAxes, inputs: list[str], derived_inputs: list[str]) -> bool:
        """A parameter combined entry by entry with values the graph makes itself and nothing else (S4D's
        ``exp(dt * A * arange(L))``): those values are a constant, as a buffer that only multiplies a
        parameter is (docs/classification.md, "Parameters combined into a kernel"), and the result is
        still parameter-derived. Elsewhere they stay data (an ``arange`` of positions looked up in a table)."""
        return bool(derived_inputs) and ax.category in ("elementwise", "passthrough") and any(
            k in self.made for k in inputs) and all(k in self.made or k in self.derived or k in self.constant
                                                    for k in inputs)

    def _mark_sparse(self, node: fx.Node, ax: OpAxes, inputs: list[str]):
        if ax.category == "one_hot":
            self.sparse.add(node.name)
        elif ax.category == "passthrough" and inputs and all(k in self.sparse for k in inputs if k in self.activation):
            self.sparse.update(self._output_keys(node) + [node.name])

    def _reads_constant(self, ax: OpAxes, inputs: list[str]) -> bool:
        """A contraction of parameters with a constant (a coordinate table in a buffer, Swin V2's
        relative-position MLP): the constant is the data the weights read, its contracted axis a data
        axis like an input's features, and the result an activation."""
        if ax.category not in ("matmul", "conv"):
            return False
        data = [ref for pair in ax.contract for ref in pair if ref[0] in self.constant]
        ax.fixed.extend((ref, "contracted with a constant buffer (data)") for ref in data)
        return bool(data)

    # -- tables read as data ---------------------------------------------------------------------

    def _table_read(self, node: fx.Node, ax: OpAxes, inputs: list[str]) -> Optional[str]:
        """A layer whose data operand (a linear's or a conv's ``input``, a decomposed linear's
        ``mat1``) is computed from parameters alone while its weight is a parameter: a learned table
        (Perceiver's latents, DETR's queries, DeBERTa's relative-position embeddings normalised and
        projected by the attention's own ``query_proj``, StyleGAN's constant input) read by the layer
        as data. Returns the data operand's key, or None."""
        operands = ("input", "weight") if ax.category == "conv" else LAYER_OPERANDS.get(op_name(node))
        if operands is None or any(k in self.activation for k in inputs):
            return None
        key, weight_key = (value_key(ax.args.get(a)) for a in operands)
        if key not in self.derived or weight_key not in self.derived or key == weight_key:
            return None
        if self.derived[key].params & self.derived[weight_key].params:
            return None
        return key

    def _consume_table(self, node: fx.Node, ax: OpAxes, key: str):
        """The table's rows are inputs of the network, as an embedding's looked-up rows are: its
        features (the axes the layer contracts) are the fan-out, its other axes index the rows (a
        one-hot fan-in, a count of positions or slots, fixed as a vocabulary is). A norm's gain and
        bias on the way (``LayerNorm(table)``) are a gain and a bias of those rows. The value is an
        activation from here on, so the layer's own weight is classified as on any input."""
        derived = self.derived.pop(key)
        self.activation.add(key)
        contracted = sorted({i for pair in ax.contract for k, i in pair if k == key})
        rows = [i for i in range(len(derived.axes)) if i not in contracted]
        ax.fixed.extend(((key, i), "rows of a parameter table a layer reads as its data (positions, latent slots, "
                         "queries): a count, as a vocabulary") for i in rows)
        common = dict(node=node.name, op=op_name(node), arg=_arg_name(ax.args, key) or "input",
                      module=module_path(node), via=derived.via)
        for param in sorted(derived.params):
            shape = self.shapes.get(param) or ()
            non_singleton = tuple(a for a in range(len(shape)) if shape[a] > 1)
            mixed = _mixed_axes(derived, param)
            norm_use = _norm_vector_use(param, derived, non_singleton, dict(common, mixed_axes=mixed))
            if norm_use is not None:
                self.uses[param].append(norm_use)
                continue
            fan_out = self._param_axes(derived, contracted, param)
            fan_in = tuple(a for a in self._param_axes(derived, rows, param) if a not in fan_out and shape[a] > 1)
            self.uses[param].append(ParamUse(fan_in_axes=fan_in, fan_out_axes=fan_out, input_space=Space.SPARSE,
                                             role=Role.EMBEDDING, mixed_axes=mixed, **common))

    # -- tables looked up by integer ids ----------------------------------------------------------

    def _looks_up(self, node: fx.Node, ax: OpAxes, inputs: list[str], derived_inputs: list[str]) -> bool:
        """A parameter indexed by integer data alone (``w[ids]``, ``w.index_select(0, ids)``): the
        picked axes are a lookup axis (vocabulary, experts), fixed like an embedding's vocabulary;
        whether the picked rows are vectors or matrices is up to the op that reads them."""
        if ax.category != "index" or op_name(node) == "gather" or len(derived_inputs) != 1:
            return False
        key = derived_inputs[0]
        indexed = ax.args.get("indexed_axes")
        if key != value_key(node.args[0]) or not indexed or not any(src == key for (src, _), _ in ax.same):
            return False
        ids = [k for k in inputs if k != key]
        if not ids or not all(k in self.activation and self._is_index(k) for k in ids):
            return False
        ax.fixed.extend(((key, a), "indexed by integer ids: a lookup axis (vocabulary, experts)") for a in indexed)
        return True

    def _carries_lookup(self, ax: OpAxes, inputs: list[str], derived_inputs: list[str]) -> bool:
        """Looked-up rows stay parameter-derived through views (one input) and into a contraction
        with an activation (they are its weight); anywhere else they are an activation."""
        if not any(self.derived[k].lookup for k in derived_inputs):
            return True
        if ax.category == "matmul":
            return any(k in self.activation for k in inputs)
        return ax.category == "passthrough" and len(derived_inputs) == 1

    def _consume_lookup(self, key: str):
        """Rows looked up and then used as activations: an embedding of the ids (sparse input)."""
        derived = self.derived.get(key)
        if derived is None or derived.lookup is None:
            return
        del self.derived[key]
        self.activation.add(key)
        node, module = derived.lookup
        for param in sorted(derived.params):
            picked = _own_axes(derived.picked, param)
            rest = self._param_axes(derived, range(len(derived.axes)), param)
            shape = self.shapes.get(param) or ()
            self.uses[param].append(ParamUse(
                node=node, op="index", arg="self", module=module, fan_in_axes=picked,
                fan_out_axes=tuple(a for a in rest if a not in picked and shape[a] > 1),
                input_space=Space.SPARSE, role=Role.EMBEDDING, via=derived.via,
                mixed_axes=_mixed_axes(derived, param)))

    def _picked(self, node: fx.Node, ax: OpAxes, derived_inputs: list[str]) -> frozenset:
        """Parameter axes an index or a constant ``select`` / ``unbind`` picks one entry of."""
        picked = frozenset().union(*(self.derived[k].picked for k in derived_inputs))
        name, src = op_name(node), self.derived.get(value_key(node.args[0]))
        if src is None:
            return picked
        if ax.category == "index":
            dims = ax.args.get("indexed_axes", ())
        elif name in ("select", "unbind"):
            dims = (_norm_axis(node.args[1] if len(node.args) > 1 else ax.args.get("dim", 0), len(src.axes)),)
            ax.fixed.extend(((value_key(node.args[0]), d), "a stack picked entry by entry (blocks, experts)")
                            for d in dims)
        else:
            return picked
        return picked.union(*(src.axes[d] for d in dims if d < len(src.axes)))

    def _propagate(self, node: fx.Node, ax: OpAxes, derived_inputs: list[str]):
        """A parameter-only computation: carry the axis map to the outputs, or give up loudly."""
        looked_up = ax.category == "index"
        mixes_all = op_name(node) in MIXING and not ax.mixed  # sort, top-k: no axis passes through intact
        standardised = self._standardises(ax)
        summed = self._summed_channel_by_channel(ax, derived_inputs)
        ax.mixed.extend(summed or ())
        along = (ax.category == "fourier" and ax.mixed) or summed is not None
        if ax.category not in ("passthrough", "elementwise", "cat") and not (looked_up or standardised is not None
                                                                             or along) or mixes_all:
            for p in self._derived_params(node):
                others = sorted({self._pname(q) for q in self._derived_params(node) if q != p})
                what = (f"combined with {', '.join(others)} before any activation" if others and ax.category == "matmul"
                        else "transformed by an op that mixes its entries")
                self._problem(p, node, f"{what}; sptrace cannot tell which parameter axes reach the use")
            return
        via = tuple(dict.fromkeys(v for k in derived_inputs for v in self.derived[k].via)) + (op_name(node),)
        params = frozenset().union(*(self.derived[k].params for k in derived_inputs))
        picked = self._picked(node, ax, derived_inputs)
        lookup = ((node.name, module_path(node)) if looked_up else
                  next((self.derived[k].lookup for k in derived_inputs if self.derived[k].lookup), None))
        mixed = frozenset().union(*(self.derived[k].mixed for k in derived_inputs),
                                  *({(p, a, node.name) for p, a in self._axis_of(ref)} for ref in ax.mixed))
        gains = frozenset().union(*(self.derived[k].gains for k in derived_inputs), standardised[0] if standardised else ())
        biases = frozenset().union(*(self.derived[k].biases for k in derived_inputs), standardised[1] if standardised else ())
        carried = dict(via=via, picked=picked, lookup=lookup, mixed=mixed, gains=gains, biases=biases)
        for out_key in self._output_keys(node):
            shape = self.shapes.get(out_key)
            if shape is None:
                continue
            axes: list[set] = [set() for _ in shape]
            for (src, i), (dst, j) in ax.same:
                if dst == out_key and src in self.derived and i < len(self.derived[src].axes):
                    axes[j] |= self.derived[src].axes[i]
            for lhs, rhs in ax.products:
                for group_in, group_out in ((lhs, rhs), (rhs, lhs)):
                    sources = set().union(*(self._axis_of(r) for r in group_in))
                    for dst, j in group_out:
                        if dst == out_key:
                            axes[j] |= sources
            if looked_up:
                self._index_axes(node, ax, out_key, axes)
            self.derived[out_key] = Derived(params, [frozenset(a) for a in axes], **carried)
        if len(self._output_keys(node)) > 1:
            self.derived.setdefault(node.name, Derived(params, [], **carried))

    def _summed_channel_by_channel(self, ax: OpAxes, derived_inputs: list[str]) -> Optional[list[Ref]]:
        """The summed axes of a contraction of parameter-derived values channel by channel (S4D's kernel,
        ``einsum("dn,dnl->dl", C * B, exp(dt * A * arange(L)))``): every output axis that carries a
        parameter axis is an axis of every operand (a batch axis), so each output entry reads the
        parameters at its own index only, and the summed axes combine entries as a softmax's axis does
        (``OpAxes.mixed``: a fixed count, graph/axes.py). A product of matrices (``A @ B``, each
        output axis from one of them) is not one (None): it stays reported."""
        operands = set(derived_inputs)
        if ax.category != "matmul" or len(operands) < 2 or not ax.contract:
            return None
        reaching: dict[Ref, set] = {}
        for (src, i), out in ax.same:
            if src in operands:
                reaching.setdefault(out, set()).add(src)
        if any(self._axis_of((src, i)) and reaching[out] != operands for (src, i), out in ax.same if src in operands):
            return None
        return [ref for pair in ax.contract for ref in pair if ref[0] in operands]

    def _standardises(self, ax: OpAxes) -> Optional[tuple[frozenset, frozenset]]:
        """A norm whose input is a parameter (weight standardisation: StdConv's batch norm over each
        output channel's fan-in; a table's rows normalised, DeBERTa's ``LayerNorm(rel_embeddings)``):
        the result has the parameter's axes, its scale fixed by construction. Returns the parameters
        that enter as the norm's own weight (per-channel gains) and bias, or None. A weight norm
        (``g * v / ||v||``, graph/weightnorm.py) is one too: v is normalised, g its gain."""
        weight_norm = ax.category == "weight_norm"
        x = ax.args.get("v" if weight_norm else "input")
        if ax.category not in ("norm", "weight_norm") or value_key(x) not in self.derived:
            return None
        gain, bias = (self.derived.get(value_key(ax.args.get(a))) for a in (("g", "") if weight_norm else ("weight", "bias")))
        return (gain.params if gain is not None else frozenset(), bias.params if bias is not None else frozenset())

    def _index_axes(self, node: fx.Node, ax: OpAxes, out_key: str, axes: list[set]):
        """The output axes that come from the ids stand for the picked parameter axes."""
        src = self.derived[value_key(node.args[0])]
        picked = set().union(*(src.axes[d] for d in ax.args["indexed_axes"] if d < len(src.axes)))
        for (key, _), (dst, j) in ax.same:
            if dst == out_key and key != value_key(node.args[0]) and key not in self.derived:
                axes[j] |= picked

    def _axis_of(self, ref: Ref) -> frozenset:
        key, axis = ref
        d = self.derived.get(key)
        return d.axes[axis] if d is not None and axis < len(d.axes) else frozenset()

    # -- a parameter meets an activation -------------------------------------------------------

    def _consume(self, node: fx.Node, ax: OpAxes, key: str):
        derived = self.derived[key]
        arg = _arg_name(ax.args, key)
        for param in sorted(derived.params):
            use = self._use_for(node, ax, key, arg, param, derived)
            if isinstance(use, str):
                self._problem(param, node, use)
            else:
                self.uses[param].append(use)

    def _param_axes(self, derived: Derived, view_axes, param: str) -> tuple[int, ...]:
        found = set()
        for a in view_axes:
            if a < len(derived.axes):
                found |= {pa for p, pa in derived.axes[a] if p == param}
        return tuple(sorted(found))

    def _use_for(self, node, ax: OpAxes, key, arg, param, derived: Derived):
        name = op_name(node)
        shape = self.shapes.get(param) or ()
        common = dict(node=node.name, op=name, arg=arg or "?", module=module_path(node), via=derived.via,
                      mixed_axes=_mixed_axes(derived, param))
        cat = ax.category
        layer_bias = (cat == "matmul" and arg == ADDITIVE_ARG.get(name)) or (cat in ("conv", "norm") and arg == "bias")
        if math.prod(shape) == 1 and not layer_bias:
            return ParamUse(fan_in_axes=(), fan_out_axes=(), role=Role.SCALAR, **common)
        all_axes = tuple(range(len(shape)))
        non_singleton = tuple(a for a in all_axes if shape[a] > 1)
        if param in derived.biases and param not in derived.gains and cat in ("matmul", "conv"):
            # a norm's bias added to the entries of a weight: no rule says what it is
            return (f"the bias of a norm of parameter(s) {', '.join(sorted(map(self._pname, derived.params - {param})))} "
                    "used as a weight: sptrace has no rule for a bias added to a weight's entries")
        norm_use = _norm_vector_use(param, derived, non_singleton, common)
        if norm_use is not None:
            return norm_use
        if layer_bias:  # one output's bias too (a value head's Linear(n, 1)): its library init shrinks with n
            return ParamUse(fan_in_axes=(), fan_out_axes=non_singleton, input_space=Space.SPARSE, role=Role.BIAS, **common)
        if cat == "norm" and arg == "weight":
            return ParamUse(fan_in_axes=(), fan_out_axes=non_singleton, role=Role.GAIN, **common)
        if cat == "elementwise" and name in MULTIPLICATIVE:
            return ParamUse(fan_in_axes=(), fan_out_axes=non_singleton, role=Role.GAIN, **common)
        if cat == "elementwise" and name in ADDITIVE:
            return ParamUse(fan_in_axes=(), fan_out_axes=non_singleton, input_space=Space.SPARSE, role=Role.BIAS, **common)
        if cat == "elementwise" and name in ADD_PRODUCT:
            factors = [v for a, v in ax.args.items() if a in ("tensor1", "tensor2") and a != arg]
            if arg == ADD_PRODUCT[name] or not any(isinstance(v, fx.Node) and v.name in self.activation for v in factors):
                # added to the product, or a factor of a product of parameters that is then added
                return ParamUse(fan_in_axes=(), fan_out_axes=non_singleton, input_space=Space.SPARSE, role=Role.BIAS,
                                **common)
            if arg in ("tensor1", "tensor2"):  # multiplied elementwise with an activation
                return ParamUse(fan_in_axes=(), fan_out_axes=non_singleton, role=Role.GAIN, **common)
        if cat == "elementwise" and arg in SELECTING.get(name, ()):
            # placed into the activation where the data says, as a concatenation or a looked-up row
            # places it (Gemma 4 puts a row of its token embedding at some positions): an embedding,
            # whose picked axes (a select of that row) are its one-hot fan-in
            picked = _own_axes(derived.picked, param)
            return ParamUse(fan_in_axes=picked, fan_out_axes=tuple(a for a in non_singleton if a not in picked),
                            input_space=Space.SPARSE, role=Role.EMBEDDING, **common)
        if cat == "cat":
            return ParamUse(fan_in_axes=(), fan_out_axes=non_singleton, input_space=Space.SPARSE, role=Role.EMBEDDING, **common)
        if cat == "embedding" and arg == "weight":
            view_rank = len(derived.axes)
            return ParamUse(
                fan_in_axes=self._param_axes(derived, [0], param),
                fan_out_axes=self._param_axes(derived, range(1, view_rank), param),
                input_space=Space.SPARSE, role=Role.EMBEDDING, **common,
            )
        if cat == "index" and arg in ("self", "input", "arg0"):
            indexed = ax.args.get("indexed_axes", (0,))
            rest = [a for a in range(len(derived.axes)) if a not in indexed]
            return ParamUse(
                fan_in_axes=self._param_axes(derived, indexed, param),
                fan_out_axes=self._param_axes(derived, rest, param),
                input_space=Space.SPARSE, role=Role.EMBEDDING, **common,
            )
        if cat == "conv" and arg == "weight":
            return self._conv_use(ax, derived, param, common)
        if cat == "attention" and arg in ATTENTION_DATA:
            return self._attention_data_use(ax, key, derived, param, common)
        if cat == "matmul":
            return self._contraction_use(node, ax, key, derived, param, common)
        return f"parameter {self._pname(param)!r} used as argument {arg!r} of an op sptrace does not understand"

    def _conv_use(self, ax: OpAxes, derived: Derived, param: str, common: dict):
        rank = len(derived.axes)
        transposed, groups = ax.args.get("transposed", False), ax.args.get("groups", 1)
        fan_in_view = [0] + list(range(2, rank)) if transposed else list(range(1, rank))
        fan_out_view = [1] if transposed else [0]
        x = ax.args.get("input")
        space = Space.SPARSE if isinstance(x, fx.Node) and x.name in self.sparse else Space.DENSE
        return ParamUse(
            fan_in_axes=self._param_axes(derived, fan_in_view, param),
            fan_out_axes=self._param_axes(derived, fan_out_view, param),
            groups=groups, input_space=space, **common,
        )

    def _attention_data_use(self, ax: OpAxes, key: str, derived: Derived, param: str, common: dict) -> ParamUse:
        """A parameter that an attention op reads as its query, key or value with no projection
        between (an attention-pooling head's learned query, memory tokens): tokens of the network's
        own, as a table a layer reads as data is (:meth:`_consume_table`). The features (the last
        axis: heads × head size) are the fan-out; the token axis is a count, fixed as a vocabulary."""
        rank = len(derived.axes)
        if rank >= 2:
            ax.fixed.append(((key, rank - 2), "tokens of a parameter an attention reads as its query, key or value "
                             "(learned queries, memory tokens): a count, as a vocabulary"))
        shape = self.shapes.get(param) or ()
        fan_out = self._param_axes(derived, [rank - 1], param)
        rows = self._param_axes(derived, [rank - 2] if rank >= 2 else [], param)
        fan_in = tuple(a for a in rows if a not in fan_out and shape[a] > 1)
        return ParamUse(fan_in_axes=fan_in, fan_out_axes=fan_out, input_space=Space.SPARSE, role=Role.EMBEDDING, **common)

    def _contraction_use(self, node, ax: OpAxes, key, derived: Derived, param, common):
        contracted, partners = [], []
        for left, right in ax.contract:
            for mine, other in ((left, right), (right, left)):
                if mine[0] == key:
                    contracted.append(mine[1])
                    partners.append(other[0])
        if not contracted:
            return f"parameter {self._pname(param)!r} enters a contraction without a contracted axis"
        activation_out = {o for (src, _), o in ax.same if src in self.activation and src != key}
        fan_out_view, group_view = [], []
        for (src, i), o in ax.same:
            if src == key:
                (group_view if o in activation_out else fan_out_view).append(i)
        group_view += [i for src, i in ax.blocks if src == key]
        if any(p in self.derived for p in partners):
            return f"parameter {self._pname(param)!r} is contracted with another parameter"
        space = Space.SPARSE if partners and all(p in self.sparse for p in partners) else Space.DENSE
        fan_in = self._param_axes(derived, contracted, param)
        fan_out = tuple(a for a in self._param_axes(derived, fan_out_view, param) if a not in fan_in)
        groups = set(self._param_axes(derived, group_view, param)) | set(_own_axes(derived.picked, param))
        return ParamUse(
            fan_in_axes=fan_in, fan_out_axes=fan_out,
            group_axes=tuple(sorted(groups - set(fan_in) - set(fan_out))),
            input_space=space, **common,
        )


def _own_axes(refs: frozenset, param: str) -> tuple[int, ...]:
    return tuple(sorted(a for p, a in refs if p == param))


def _mixed_axes(derived: Derived, param: str) -> tuple[tuple[int, str], ...]:
    return tuple(sorted((a, node) for p, a, node in derived.mixed if p == param))


def _norm_axis(dim, rank: int) -> int:
    return int(dim) + rank if int(dim) < 0 else int(dim)


def _flat(values):
    for v in values:
        if isinstance(v, (list, tuple)):
            yield from _flat(v)
        else:
            yield v


def _arg_name(args: dict, key: str) -> Optional[str]:
    base = key.split(".")[0]
    for name, value in args.items():
        for v in _flat([value]):
            if isinstance(v, fx.Node) and v.name in (key, base):
                return name
    return None
