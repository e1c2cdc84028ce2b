"""Stage 3a: which tensor axes grow with width (automatic mode, docs/derivations.md §3).

Every axis of every value in the graph is a vertex; an op that says two axes are the same dim
(a view, a broadcast, a contraction, the output axis of a weight) joins them with an edge
(networkx finds the connected components). A component is *fixed* when it holds an axis that the
data decides: an input axis, an output axis, an embedding's vocabulary, a conv kernel tap, a
one-hot class axis. Reshapes that merge or split axes relate components by products: the merged
axis is fixed exactly when all its parts are; two splits of one merged axis are products of each
other run by run, between the places where the products of their trailing factors agree (an
im2col's channels x taps split by the model into heads x head size x taps). A split or a concatenation along an axis relates them
by a sum, the same way: each part is a dim of its own (DeepSeek's ``kv_a_proj`` output splits into
its latent rank and a fixed rotary part; the rank is not fixed because the rotary part is), and the
whole is fixed exactly when every part is. Slices of one value that cover an axis once are its
split (a fused q/k/v projection cut by indexing); a lone slice stays the whole's dim (a position
table cut to the sequence length). Everything else is width.

Output axes are seeds only where no parameter contracts them as a dense fan-in, and where no
weight that reads such a hidden axis makes them at that axis's own size (a square projection): the
hidden states (and pooled projections of them) that a headless encoder returns are width, the logits
of a classifier are not, even where the class count happens to equal some other hidden size (an
EfficientNet's 10 classes beside its squeeze-excitation's 10 channels). The axis a top-k / sort /
argmax ranks is a seed on the same condition: the alternatives it chooses among (a router's
experts) are a count, unless a parameter reads them as features (top-k sparse activations).

Integer values are positions: the axes one set of them indexes (a gather's looked-up axis, an
embedding's vocabulary, a one-hot's classes, a histogram's bins) are one dim where their sizes
agree, and a top-k's positions index the axis it ranked (a hash router's scores gathered at the
expert ids that also count the rows of each expert's block).

Copies of the hidden state made by a broadcast (an expand, or a product with a size-1 axis) and
summed again by a parameter-free reduction are a count of the construction (hyper-connections'
residual streams): seeds, where no parameter reads the copies' axis as features.

Input axes are seeds, with one exception, the mirror of the output rule: beside token ids (whose
embedding sets the model's width), a float input whose last axis a parameter reads as dense
features, of the size of such a hidden axis, is the hidden states of another network of the
model's width (an encoder's output read by a decoder's cross-attention): that axis is width.

One more seed holds in automatic mode only where no input reaches: a weight that reads a constant
buffer (a coordinate table, Swin V2's and the relative-position ViTs' bias MLPs) makes new axes,
its fan-out and whatever is tied to it. Where none of them is on a value computed from the inputs,
they are the inner sizes of a small network on constants, not of the model's representation
(its output joins the data elsewhere: the head axis of a position bias): taken as fixed, which
``base=`` overrules (docs/classification.md, "Width dims").
"""
from __future__ import annotations

import networkx as nx
import torch

from ..types import AxisLabels, CapturedGraph, OpAxes, Ref
from .capture import computed_from_inputs, reached_from
from .ops import (BROADCASTS, ELEMENTWISE_BINARY, GROUPED_MATMULS, RANKED_PAIRS, RANKED_POSITIONS, UNKNOWN_SIZE,
                  VALUE_KEEPING, Shapes, index_reads, normalized_args, op_name, param_behind, tiling_slices,
                  value_key)


def label_axes(captured: CapturedGraph, shapes: Shapes, axes: dict[str, OpAxes], dense_fan_in: set[Ref]) -> AxisLabels:
    sizes = {(key, i): s for key, shape in shapes.by_key.items() for i, s in enumerate(shape)}
    sizes.update({ref: s for ax in axes.values() for ref, s in ax.sizes.items()})
    graph = nx.Graph()
    graph.add_nodes_from(sizes)
    products = [p for ax in axes.values() for p in ax.products]
    sums = [s for ax in axes.values() for s in ax.sums] + tiling_slices(captured.graph, shapes)
    partitioned = {frozenset((whole, part)) for whole, parts in sums for part in parts}
    for ax in axes.values():
        for a, b in ax.same + ax.contract:
            if sizes.get(a) != 1 and sizes.get(b) != 1 and frozenset((a, b)) not in partitioned:
                graph.add_edge(a, b)
    for a, b in _index_range_ties(captured, shapes, axes, sizes):
        graph.add_edge(a, b)
    for lhs, rhs in products:
        graph.add_nodes_from(lhs + rhs)
    component = {ref: i for i, comp in enumerate(nx.connected_components(graph)) for ref in comp}
    refined, merges = _tie_undone_merges(graph, component, sizes, products)
    if _tie_rejoined_parts(graph, component, sums) or merges:
        component = {ref: i for i, comp in enumerate(nx.connected_components(graph)) for ref in comp}
    labels = AxisLabels(component, {}, sizes)

    def seed(ref: Ref, reason: str):
        if ref in component and sizes.get(ref) != 1:
            labels.fixed_reason.setdefault(component[ref], reason)

    states = _hidden_state_axes(captured, shapes, component, dense_fan_in)
    for name in captured.input_nodes:
        for i, size in enumerate(shapes.get(name) or ()):
            if i > 0 and (name, i) not in states:
                seed((name, i), f"tied to input {name!r} axis {i} (size {size})")
    for ax in axes.values():
        for ref, reason in ax.fixed:
            seed(ref, reason)
    candidates = {component[r] for r in states}
    hidden_refs = [r for r in dense_fan_in if r in component and labels.decide(r)[0] and component[r] not in candidates]
    hidden = {component[r] for r in hidden_refs}
    hidden_sizes = {sizes[r] for r in hidden_refs}
    for ref in states:  # hidden states of the model's width, else data like any other input
        if sizes[ref] not in hidden_sizes:
            seed(ref, f"tied to input {ref[0]!r} axis {ref[1]} (size {sizes[ref]}, not a hidden width)")
    square = _square_projections(dense_fan_in, hidden_refs, sizes, component)
    for name in captured.output_nodes:
        for i, size in enumerate(shapes.get(name) or ()):
            if i > 0 and component.get((name, i)) not in hidden | square:
                seed((name, i), f"tied to output {name!r} axis {i} (size {size})")
    for ax in axes.values():
        for ref in ax.ranked:
            if component.get(ref) not in hidden:
                seed(ref, f"alternatives ranked by a selection (size {sizes.get(ref)}: a router's experts)")
    for ref in _combined_copies(captured, shapes, axes, component, hidden):
        seed(ref, f"copies of the hidden state made by a broadcast and summed again (size {sizes.get(ref)}: "
                  "residual streams, a scan's states): a count (automatic mode; pass base= to decide)")
    for ref in _constant_network_axes(captured, axes, component):
        seed(ref, f"inner size of a network on a constant buffer no input reaches (size {sizes.get(ref)}), "
                  "taken as fixed (automatic mode; pass base= to decide)")
    for ref in _combined_inside_parameters(captured, axes, component):
        seed(ref, f"combined inside a computation on parameters and constants that no input reaches (size "
                  f"{sizes.get(ref)}: the states of a kernel built from parameters), taken as fixed (automatic mode; "
                  "pass base= to decide)")
    relations = products + [((whole,), parts) for whole, parts in sums] + refined
    _close_products(labels, relations)
    entries = _parameter_entries_beside_fixed(captured, axes, labels)
    for ref in entries:
        seed(ref, f"a parameter's own entries concatenated with fixed ones (size {sizes.get(ref)}: register or "
                  "class tokens beside the data's): a count")
    if entries:
        _close_products(labels, relations)
    return labels


def parameter_axes(captured: CapturedGraph, labels: AxisLabels) -> dict[int, list[tuple[str, int]]]:
    """{axis component: [(parameter name, axis)]}: the parameters' own axes in each component, which
    give an activation axis's size in another model of the family (the base's)."""
    out: dict[int, list[tuple[str, int]]] = {}
    for (key, axis), component in labels.component.items():
        name = captured.param_nodes.get(key)
        if name is not None:
            out.setdefault(component, []).append((name, axis))
    return out


def _square_projections(dense_fan_in: set[Ref], hidden_refs: list[Ref], sizes, component) -> set:
    """The components of the axes a weight makes at the size of the hidden axis it reads (a pooler's
    ``Linear(d, d)``, a contrastive tower's projection to its own width): an output there is a
    projection of the hidden state, width, where the logits of a classifier (its fan-out a count of
    another size) are not, whatever other hidden axis shares their size (module docstring)."""
    readers = {param for param, _ in hidden_refs}
    axes_of: dict[str, list[Ref]] = {}
    for ref in sizes:
        if ref[0] in readers and ref not in dense_fan_in and ref in component:
            axes_of.setdefault(ref[0], []).append(ref)
    return {component[ref] for param, axis in hidden_refs for ref in axes_of.get(param, ())
            if sizes[ref] == sizes[(param, axis)]}


def _index_range_ties(captured: CapturedGraph, shapes: Shapes, axes: dict[str, OpAxes], sizes) -> list[tuple[Ref, Ref]]:
    """Axes indexed by the same integer values, of one size, are one dim (module docstring): the
    values of an index tensor are followed back through ops that keep them (views, casts, a sort's
    values, a lookup's source) to where they were made; the positions a top-k / sort / argmax returns
    are positions on the axis it ranked. A hash router's expert ids (a table looked up by token id)
    gather its scores and count the rows of each expert's block (a histogram, cumulated into a
    grouped matmul's offsets, one per group): its scores' axis is the experts' group axis."""
    origin: dict[str, tuple] = {}
    integral: set[str] = set()  # values that are integers: of an integer dtype, or kept from such
    reads: dict[tuple, list[Ref]] = {}
    pairs: list[tuple[Ref, Ref]] = []
    for node in captured.graph.nodes:
        name = op_name(node) if node.op == "call_function" else ""
        first = node.args[0] if node.args and isinstance(node.args[0], torch.fx.Node) else None
        parent = op_name(first) if first is not None and first.op == "call_function" else ""
        ranked = axes[node.name].ranked if node.name in axes else []
        made = ("value", node.name)
        if name == "getitem" and parent in RANKED_PAIRS and axes.get(first.name) and axes[first.name].ranked:
            if node.args[1] == 1:
                made = ("axis", axes[first.name].ranked[0])
            elif node.args[1] == 0 and first.args and isinstance(first.args[0], torch.fx.Node):
                made = origin.get(first.args[0].name, made)
        elif name == "getitem" and parent in VALUE_KEEPING:
            made = origin.get(first.name, made)
        elif name in RANKED_POSITIONS and ranked:
            made = ("axis", ranked[0])
        elif name in VALUE_KEEPING and first is not None:
            made = origin.get(first.name, ("value", first.name))
        origin[node.name] = made
        dtype = shapes.dtype.get(node.name)
        if (dtype is not None and not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool)) or (
                made[0] == "axis" or (name in VALUE_KEEPING | {"getitem"} and first is not None and first.name in integral)):
            integral.add(node.name)
        for key, ref in index_reads(node, shapes):
            if key in integral:
                reads.setdefault(origin.get(key, ("value", key)), []).append(ref)
        if name in GROUPED_MATMULS and node.name in axes and axes[node.name].blocks:
            offsets = normalized_args(node).get("offs", node.args[2] if len(node.args) > 2 else None)
            if isinstance(offsets, torch.fx.Node):  # one offset per group: the groups' axis
                pairs.append(((offsets.name, 0), axes[node.name].blocks[0]))
    for where, refs in reads.items():
        refs = ([where[1]] if where[0] == "axis" else []) + refs
        by_size: dict[int, list[Ref]] = {}
        for ref in refs:
            if sizes.get(ref) not in (None, 1, UNKNOWN_SIZE):
                by_size.setdefault(sizes[ref], []).append(ref)
        pairs += [(same[0], ref) for same in by_size.values() for ref in same[1:]]
    return [(a, b) for a, b in pairs if sizes.get(a) == sizes.get(b) and sizes.get(a) not in (None, 1, UNKNOWN_SIZE)]


def _combined_copies(captured: CapturedGraph, shapes: Shapes, axes: dict[str, OpAxes], component,
                     hidden: set) -> list[Ref]:
    """The new axes of a broadcast (``expand`` / ``repeat`` of a size-1 axis) of a value that holds a
    hidden axis, where a parameter-free sum or mean, or a contraction of two activations, reduces
    that axis's dim and no parameter reads it as features: copies of the hidden state combined again
    (hyper-connections' residual streams, ``x.unsqueeze(2).expand(..., n, ...)`` then collapsed by a
    weighted sum over the n copies; a selective scan's states, read against ``C``). Their
    number is a count of the construction, not of the representation. A product with a size-1 axis
    copies as an expand does (mHC's ``post`` weights spread a block's output over the streams).
    Copies that are never summed (GQA's key/value heads repeated to the query heads, one head's copy
    per query head) are left alone."""
    summed, copies = set(), []
    nodes = {n.name: n for n in captured.graph.nodes}
    for name, ax in axes.items():
        if ax.category == "matmul":
            summed.update(component.get(a) for pair in ax.contract for a in pair
                          if all(param_behind(nodes.get(r[0]), captured.param_nodes) is None for r in pair))
    for node in captured.graph.nodes:
        if node.op != "call_function" or not node.args or not isinstance(node.args[0], torch.fx.Node):
            continue
        name = op_name(node)
        src = node.args[0].name
        shape, out = shapes.get(src), shapes.get(node.name)
        if not shape or not out:
            continue
        if name in ("sum", "mean") and param_behind(node.args[0], captured.param_nodes) is None:
            dims = normalized_args(node).get("dim")
            dims = [dims] if isinstance(dims, int) else list(dims or ())
            summed.update(component.get((src, d % len(shape))) for d in dims)
        elif name in BROADCASTS or name in ELEMENTWISE_BINARY:
            operands = node.args[:1] if name in BROADCASTS else node.args
            for operand in operands:
                shape = shapes.get(value_key(operand))
                if not shape or not any(component.get((operand.name, i)) in hidden for i, n in enumerate(shape) if n > 1):
                    continue
                offset = len(out) - len(shape)
                copies += [(node.name, i) for i, n in enumerate(out) if n > 1 and (i < offset or shape[i - offset] == 1)
                           and component.get((node.name, i)) not in hidden]
    return [ref for ref in copies if component.get(ref) in summed - {None}]


def _parameter_entries_beside_fixed(captured: CapturedGraph, axes: dict[str, OpAxes], labels: AxisLabels) -> list[Ref]:
    """The parts of a concatenation that are a parameter's own values (through layout ops) along an
    axis where another part is fixed: learned entries added to a fixed collection (register tokens
    beside the patches) are a count of it, not a dim of the model's representation, which a sum
    alone leaves undecided."""
    nodes = {n.name: n for n in captured.graph.nodes}
    found = []
    for ax in axes.values():
        if ax.category != "cat":
            continue
        for _, parts in ax.sums:
            if all(labels.decide(ref)[0] for ref in parts):  # no fixed part beside it
                continue
            found += [ref for ref in parts
                      if labels.decide(ref)[0] and param_behind(nodes.get(ref[0]), captured.param_nodes) is not None]
    return found


def _constant_network_axes(captured: CapturedGraph, axes: dict[str, OpAxes], component) -> list[Ref]:
    """The output axes of a contraction of a parameter with a constant buffer (module docstring)
    whose components hold a parameter axis and no axis of a value computed from the inputs."""
    from_inputs = computed_from_inputs(captured)
    constant = reached_from(captured.graph, set(captured.data_buffers)) - from_inputs
    sites = [name for name, ax in axes.items() if ax.category in ("matmul", "conv") and name in constant
             and any(ref[0].split(".")[0] in constant for pair in ax.contract for ref in pair)]
    if not sites:
        return []
    params = set(captured.param_nodes)
    on_data, on_params, refs_of = _on_data(component, from_inputs), set(), {}
    for ref, comp in component.items():
        node = ref[0].split(".")[0]
        if node in params:
            on_params.add(comp)
        if node in sites:
            refs_of.setdefault(node, []).append(ref)
    return [ref for name in sites for ref in refs_of.get(name, ())
            if component[ref] in on_params and component[ref] not in on_data]


def _combined_inside_parameters(captured: CapturedGraph, axes: dict[str, OpAxes], component) -> list[Ref]:
    """The axes a contraction, a softmax or a Fourier transform combines (``OpAxes.mixed``) at a node no
    input reaches, whose components hold no axis of a value computed from the inputs: the inner sizes of
    a computation on parameters (S4D's states, summed into its kernel), as the inner sizes of a
    network on constants are (module docstring). They must be fixed for the rules to hold
    (graph/classify.py); were they width, no value of the model's representation would show it."""
    from_inputs = computed_from_inputs(captured)
    refs = [ref for name, ax in axes.items() if name not in from_inputs for ref in ax.mixed]
    if not refs:
        return []
    on_data = _on_data(component, from_inputs)
    return [ref for ref in refs if ref in component and component[ref] not in on_data]


def _on_data(component, from_inputs: set[str]) -> set:
    """The components that hold an axis of a value computed from the inputs."""
    return {comp for ref, comp in component.items() if ref[0].split(".")[0] in from_inputs}


def _hidden_state_axes(captured: CapturedGraph, shapes: Shapes, component, dense_fan_in: set[Ref]) -> set[Ref]:
    """The last axis of each float input that may be hidden states (module docstring): the model
    also takes integer ids, and a parameter reads that axis as dense features. Whether its size is
    a hidden width is decided once the other seeds are down."""
    if not any(_is_integer(shapes, name) for name in captured.input_nodes):
        return set()
    read = {component[r] for r in dense_fan_in if r in component}
    out = set()
    for name in captured.input_nodes:
        shape = shapes.get(name) or ()
        dtype = shapes.dtype.get(name)
        ref = (name, len(shape) - 1)
        if len(shape) >= 2 and dtype is not None and dtype.is_floating_point and component.get(ref) in read:
            out.add(ref)
    return out


def _is_integer(shapes: Shapes, name: str) -> bool:
    dtype = shapes.dtype.get(name)
    return dtype is not None and not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool)


def _tie_undone_merges(graph: nx.Graph, component, sizes, products) -> tuple[list, bool]:
    """Two splits of one merged axis (same dim, same size) index it the same way (row-major) between
    the places where the products of their trailing factors agree: the runs of factors there are
    products of each other, and a lone factor against a lone factor is the same axis, tied. A merge
    that a later split of the same sizes undoes (``w.reshape(1, out, -1)`` ... ``.reshape_as(w)``, a
    weight standardised over its fan-in) gives back the same axes one to one; an im2col's (channels,
    tap rows, tap columns) column axis split by the model into (heads, head size, taps) gives back
    its taps as the product of the tap rows and columns. Adds the ties; returns the products (for
    the closure) and whether any edge was added."""
    merges: dict[tuple, list] = {}
    for lhs, rhs in products:
        for one, parts in ((lhs, rhs), (rhs, lhs)):
            part_sizes = [sizes.get(r) for r in parts]
            if len(one) == 1 and len(parts) > 1 and one[0] in component:
                merges.setdefault((component[one[0]], sizes.get(one[0])), []).append(list(zip(parts, part_sizes)))
    added, relations = False, []
    for splits in merges.values():
        for i, first in enumerate(splits):
            for other in splits[i + 1:]:
                for a, b in _common_runs(first, other):
                    if len(a) == 1 and len(b) == 1 and not graph.has_edge(a[0], b[0]):
                        graph.add_edge(a[0], b[0])
                        added = True
                    elif len(a) > 1 or len(b) > 1:
                        relations.append((a, b))
    return relations, added


def _common_runs(first, other) -> list:
    """Runs of factors of two row-major splits of one axis (``(ref, size)`` lists) between the
    places, counted from the last factor, where both have the same product behind them. A factor of
    no known size (a grouped conv's group count) pairs only a split of the same sizes, one to one."""
    if None in [size for _, size in first + other]:
        same = [size for _, size in first] == [size for _, size in other]
        return [((a,), (b,)) for (a, _), (b, _) in zip(first, other)] if same else []
    runs, i, j, pa, pb, run_a, run_b = [], len(first), len(other), 1, 1, [], []
    while i > 0 or j > 0:
        if j == 0 or (i > 0 and pa <= pb):
            i -= 1
            run_a.insert(0, first[i][0])
            pa *= first[i][1]
        else:
            j -= 1
            run_b.insert(0, other[j][0])
            pb *= other[j][1]
        if pa == pb and run_a and run_b:
            runs.append((tuple(run_a), tuple(run_b)))
            run_a, run_b = [], []
    return runs


def _tie_rejoined_parts(graph: nx.Graph, component, sums) -> bool:
    """Two partitions whose parts are the same dims, in order, have the same whole: a split that a
    concatenation puts back together (rotary embeddings: ``cat(rotate(x[..., :r]), x[..., r:])``)
    gives back the axis it split. Returns whether any edge was added."""
    wholes: dict[tuple, list] = {}
    for whole, parts in sums:
        if len(parts) > 1 and whole in component and all(p in component for p in parts):
            wholes.setdefault(tuple(component[p] for p in parts), []).append(whole)
    added = False
    for same in wholes.values():
        for whole in same[1:]:
            if not graph.has_edge(same[0], whole):
                graph.add_edge(same[0], whole)
                added = True
    return added


def _close_products(labels: AxisLabels, products):
    """A product of dims, or a sum (a split's or a concatenation's parts), is width-free exactly when
    every factor or part is: spread fixedness both ways."""

    def is_fixed(ref):
        return not labels.decide(ref)[0]

    changed = True
    while changed:
        changed = False
        for lhs, rhs in products:
            for known, other in ((lhs, rhs), (rhs, lhs)):
                if all(is_fixed(r) for r in known):
                    for ref in other:
                        comp = labels.component.get(ref)
                        if comp is not None and comp not in labels.fixed_reason and labels.sizes.get(ref) != 1:
                            labels.fixed_reason[comp] = "a factor of a reshape whose other side is fixed"
                            changed = True
