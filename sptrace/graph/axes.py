"""Stage 3a: which tensor axes grow with width (automatic mode, docs/derivations.md §3).

Every axis of every value in the graph is a vertex; an op that says two axes are the same dim
(a view, a broadcast, a contraction, the output axis of a weight) joins them with an edge
(networkx finds the connected components). A component is *fixed* when it holds an axis that the
data decides: an input axis, an output axis, an embedding's vocabulary, a conv kernel tap, a
one-hot class axis. Reshapes that merge or split axes relate components by products: the merged
axis is fixed exactly when all its parts are. Everything else is width.

Output axes are seeds only where no parameter contracts them as a dense fan-in, and where their
size is not that of such a hidden axis: the hidden states (and pooled projections of them) that a
headless encoder returns are width, the logits of a classifier are not. The axis a top-k / sort /
argmax ranks is a seed on the same condition: the alternatives it chooses among (a router's
experts) are a count, unless a parameter reads them as features (top-k sparse activations).
"""
from __future__ import annotations

import networkx as nx

from ..types import AxisLabels, CapturedGraph, OpAxes, Ref
from .ops import Shapes


def label_axes(captured: CapturedGraph, shapes: Shapes, axes: dict[str, OpAxes], dense_fan_in: set[Ref]) -> AxisLabels:
    sizes = {(key, i): s for key, shape in shapes.by_key.items() for i, s in enumerate(shape)}
    graph = nx.Graph()
    graph.add_nodes_from(sizes)
    for ax in axes.values():
        for a, b in ax.same + ax.contract:
            if sizes.get(a) != 1 and sizes.get(b) != 1:
                graph.add_edge(a, b)
        for lhs, rhs in ax.products:
            graph.add_nodes_from(lhs + rhs)
    component = {ref: i for i, comp in enumerate(nx.connected_components(graph)) for ref in comp}
    if _tie_undone_merges(graph, component, sizes, [p for ax in axes.values() for p in ax.products]):
        component = {ref: i for i, comp in enumerate(nx.connected_components(graph)) for ref in comp}
    labels = AxisLabels(component, {}, sizes)

    def seed(ref: Ref, reason: str):
        if ref in component and sizes.get(ref) != 1:
            labels.fixed_reason.setdefault(component[ref], reason)

    for name in captured.input_nodes:
        for i, size in enumerate(shapes.get(name) or ()):
            if i > 0:
                seed((name, i), f"tied to input {name!r} axis {i} (size {size})")
    for ax in axes.values():
        for ref, reason in ax.fixed:
            seed(ref, reason)
    hidden_refs = [r for r in dense_fan_in if r in component and labels.decide(r)[0]]
    hidden = {component[r] for r in hidden_refs}
    hidden_sizes = {sizes[r] for r in hidden_refs}
    for name in captured.output_nodes:
        for i, size in enumerate(shapes.get(name) or ()):
            if i > 0 and component.get((name, i)) not in hidden and size not in hidden_sizes:
                seed((name, i), f"tied to output {name!r} axis {i} (size {size})")
    for ax in axes.values():
        for ref in ax.ranked:
            if component.get(ref) not in hidden:
                seed(ref, f"alternatives ranked by a selection (size {sizes.get(ref)}: a router's experts)")
    _close_products(labels, [p for ax in axes.values() for p in ax.products])
    return labels


def _tie_undone_merges(graph: nx.Graph, component, sizes, products) -> bool:
    """A merge of axes that a later split of the same sizes undoes (``w.reshape(1, out, -1)`` ...
    ``.reshape_as(w)``, a weight standardised over its fan-in) gives back the same axes: tie the
    parts one to one. Returns whether any edge was added."""
    merges: dict[tuple, list] = {}
    for lhs, rhs in products:
        for one, parts in ((lhs, rhs), (rhs, lhs)):
            if len(one) == 1 and len(parts) > 1 and one[0] in component:
                key = (component[one[0]], tuple(sizes.get(r) for r in parts))
                merges.setdefault(key, []).append(parts)
    added = False
    for same_split in merges.values():
        for parts in same_split[1:]:
            for a, b in zip(same_split[0], parts):
                if not graph.has_edge(a, b):
                    graph.add_edge(a, b)
                    added = True
    return added


def _close_products(labels: AxisLabels, products):
    """A product of dims is width-free exactly when every factor is: spread fixedness both ways."""

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
