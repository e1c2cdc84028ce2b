"""Where the graph computes attention logits, with what scale, and whether head_dim grows.

q·k of aligned vectors grows like head_dim, so the usual 1/sqrt(head_dim) keeps logits Θ(1)
only while head_dim is fixed (docs/derivations.md §5); μP uses 1/head_dim when head_dim grows with
width.

In automatic mode a head_dim is one factor of a width dim split into heads × head_dim, and one
graph cannot tell which factor grows: the sites report "unknown", and the plan is derived under
the hypothesis that head_dim is the fixed one (:func:`assume_fixed_head_dims`; docs/rules.md,
"Parameters applied per attention head"). ``sptrace.trace`` applies it on the axis labels, before
the deciders; ``base=`` or ``width_overrides`` decide otherwise.
"""
from __future__ import annotations

import math
from dataclasses import replace
from typing import Callable, Optional

import torch.fx as fx

from ..types import AttentionSite, AxisLabels, CapturedGraph, OpAxes, ParamUse, Ref
from .axes import parameter_axes
from .capture import MODEL_ROOT, computed_from_inputs, module_path
from .ops import EMBEDDINGS, SHAPE_OPS, Shapes, op_name, param_behind
from .values import scalar_constant, unit_vector_of

SCALE_OPS = {"mul", "div", "true_divide"}
MATMULS = {"matmul", "bmm", "einsum", "mm", "baddbmm"}
# the reason automatic mode gives a head_dim it takes as fixed (the sites still report "unknown")
ASSUMED = "head_dim of attention, taken as fixed"


def with_base(sites: list[AttentionSite], base_sites: list[AttentionSite],
              delta_sites: Optional[list[AttentionSite]] = None) -> list[AttentionSite]:
    """Base mode: head_dim grows exactly when it differs from the base model's (or the delta
    model's from the base's), site by site: the k-th site of a kind in a module is the base's k-th
    there. A site the base's own capture does not list (a product over an axis only the base shows to
    grow, :func:`find_attention`) keeps what the labels said."""
    base_by, delta_by = dict(zip(_site_keys(base_sites), base_sites)), dict(zip(_site_keys(delta_sites or []),
                                                                                delta_sites or []))
    out = []
    for key, s in zip(_site_keys(sites), sites):
        b, d = base_by.get(key), delta_by.get(key, s)
        out.append(s if b is None else replace(s, head_dim_is_width=b.head_dim != s.head_dim or b.head_dim != d.head_dim,
                                               base_head_dim=b.head_dim))
    return out


def _site_keys(sites: list[AttentionSite]) -> list[tuple[str, str, int]]:
    seen: dict[tuple[str, str], int] = {}
    keys = []
    for s in sites:
        k = seen[(s.module, s.kind)] = seen.get((s.module, s.kind), -1) + 1
        keys.append((s.module, s.kind, k))
    return keys


def find_attention(captured: CapturedGraph, shapes: Shapes, axes: dict[str, OpAxes], labels: AxisLabels,
                   base_shapes: Optional[dict] = None) -> list[AttentionSite]:
    """Attention logits (kind "sdpa", "manual") and the other inner products of two activations over a
    width axis (kind "product"): one law, so one list (docs/classification.md "Attention").
    ``base_shapes`` ({parameter: (shape, groups)} of the base model): which axes grow, for the products."""
    sites, data = [], computed_from_inputs(captured)
    grows = _product_axis_grows(captured, shapes, axes, labels, base_shapes)
    for node in captured.graph.nodes:
        ax = axes.get(node.name)
        if ax is None:
            continue
        if ax.category == "attention":
            site = _sdpa_site(node, ax, shapes, labels)
        elif op_name(node) in MATMULS and ax.contract:
            site = _manual_site(node, ax, shapes, labels, captured) or _product_site(node, ax, shapes, data, grows)
        else:
            site = None
        if site is not None:
            sites.append(site)
    return sites


def _product_axis_grows(captured, shapes, axes, labels: AxisLabels, base_shapes) -> Callable[[Ref], bool]:
    """Whether a product's contracted axis grows. Automatic mode takes for width every axis no data
    fixes, a head_dim of attention whose softmax lies past a concatenation (gpt-oss's sinks) or a state
    size (Mamba-2's ``C @ B``) too, so it counts only an axis a layer also reads as fan-in or an
    embedding looks up. With a base, the axis grows where a parameter axis tied to it has another
    size there (the similarity of two towers' outputs, which no layer reads)."""
    if base_shapes is None:
        read = _read_by_weights(captured, shapes, axes, labels)
        return lambda ref: labels.decide(ref)[0] and labels.component.get(ref) in read
    tied = parameter_axes(captured, labels)

    def grows(ref: Ref) -> bool:
        size = (shapes.get(ref[0]) or ())[ref[1]]
        return any(base_shapes[name][0][axis] != size
                   for name, axis in tied.get(labels.component.get(ref), []) if name in base_shapes)

    return grows


def _sdpa_site(node, ax: OpAxes, shapes, labels) -> Optional[AttentionSite]:
    q = node.args[0]
    q_shape = shapes.get(q.name) if isinstance(q, fx.Node) else None
    if not q_shape:
        return None
    head_dim = q_shape[-1]
    explicit = ax.args.get("scale")
    scale = float(explicit) if isinstance(explicit, (int, float)) else 1.0 / math.sqrt(head_dim)
    source = "explicit scale=" if isinstance(explicit, (int, float)) else "sdpa default 1/sqrt(head_dim)"
    return AttentionSite(node.name, module_path(node), "sdpa", head_dim, _grows(labels, (q.name, len(q_shape) - 1)), scale, source)


def _grows(labels: AxisLabels, ref) -> Optional[bool]:
    """A fixed head axis is known; a width one may be a fixed-size split of a width dim: unknown.
    So is one that automatic mode only takes to be fixed (:func:`assume_fixed_head_dims`)."""
    is_width, reason = labels.decide(ref)
    return None if is_width or reason.startswith(ASSUMED) else False


def assume_fixed_head_dims(captured: CapturedGraph, shapes: Shapes, axes: dict[str, OpAxes],
                           labels: AxisLabels, param_uses: Optional[dict[str, list[ParamUse]]] = None) -> list[str]:
    """Automatic mode: every head_dim that splits a width dim into heads × head_dim is taken to be
    the fixed factor, the heads the growing one; returns the attention modules concerned.

    One graph cannot tell which factor grows, but the plan must be derived under one hypothesis
    for the whole model, and sptrace already keeps the model's ``1/sqrt(head_dim)`` logit scale in
    automatic mode, which is width-stable only while head_dim is fixed (docs/derivations.md §5).
    A parameter applied per head over head_dim (Qwen3's and Gemma 3's ``q_norm`` / ``k_norm``
    gains) is then a fixed vector shared by a growing number of heads (what ``base=`` decides for
    a model scaled the way LLM families are, head_dim fixed), not a width vector. Called on the
    axis labels before the deciders read them; a head_dim the graph already fixes is left alone.
    ``param_uses`` (``UseAnalysis.uses``) adds parameters stored per head (XLNet's (width, heads, head
    size) projections: :func:`_assume_fixed_per_head_sides`)."""
    where, all_heads = [], set()
    products = [p for ax in axes.values() for p in ax.products]
    for node in captured.graph.nodes:
        ax = axes.get(node.name)
        if ax is None:
            continue
        refs = _head_dim_refs(node, ax, shapes, captured)
        heads = _head_comps(refs, shapes, labels, products)
        all_heads |= heads
        for ref in refs:
            comp = labels.component.get(ref)
            if comp is None or not labels.decide(ref)[0] or not _splits_width(labels, products, comp, heads, batch_merged=True):
                continue
            labels.fixed_reason[comp] = (f"{ASSUMED} at {module_path(node) or MODEL_ROOT} (heads grow; automatic mode "
                                         "cannot tell: pass base= to decide)")
            where.append(module_path(node))
        where += _assume_fixed_blocks(node, ax, labels, products, captured)
    where += _assume_fixed_per_head_sides(param_uses or {}, labels, all_heads)
    return list(dict.fromkeys(where))


def _assume_fixed_per_head_sides(param_uses: dict[str, list[ParamUse]], labels: AxisLabels, heads: set) -> list[str]:
    """A parameter stored per head (XLNet's ``q``, ``k``, ``v``, ``o``, ``r`` of shape (width, heads,
    head size), applied by ``einsum("ibh,hnd->ibnd")`` and ``einsum("ibnd,hnd->ibh")``): the split of
    the width into heads × head size is in the parameter's shape, not in a reshape of an activation,
    so on the export route no product relates them and :func:`_splits_width` finds nothing. The
    graph still shows it: one side of a use (the parameter's fan-in axes, or its fan-out axes) holds
    an attention site's heads axis beside exactly one other width axis, its size per head. That one
    is taken as fixed, the same hypothesis as for a head_dim cut by a reshape (the value head size
    too, which no q @ k^T contracts). A linear's or a conv's weight has one width axis per side, and
    a stack of experts' sides hold no heads axis: neither is touched."""
    where = []
    for key, found in param_uses.items() if heads else ():
        for use in found:
            for side in (use.fan_in_axes, use.fan_out_axes):
                refs = [(key, a) for a in side if labels.sizes.get((key, a), 1) > 1 and labels.decide((key, a))[0]
                        and (key, a) in labels.component]
                inside = [r for r in refs if labels.component[r] in heads]
                others = [r for r in refs if labels.component[r] not in heads]
                if len(inside) != 1 or len(others) != 1:
                    continue
                labels.fixed_reason[labels.component[others[0]]] = (
                    f"{ASSUMED} at {use.module or MODEL_ROOT} (a parameter stored per head, its size per head beside "
                    "the heads; heads grow; automatic mode cannot tell: pass base= to decide)")
                where.append(use.module)
    return where


def _assume_fixed_blocks(node: fx.Node, ax: OpAxes, labels: AxisLabels, products, captured: CapturedGraph) -> list[str]:
    """A parameter applied per head: a matmul whose parameter operand contracts the head_dim of an
    activation split into heads × head_dim (RecurrentGemma's block-diagonal gates, ``baddbmm`` of
    ``(H, B·S, D)`` by a ``(H, D, D)`` weight). The same hypothesis as attention's: the block
    (fan-in, and a fan-out merged back with the heads into the width) is fixed, the heads grow."""
    if op_name(node) not in MATMULS or not ax.contract:
        return []
    fixed, operands = [], {a.name: a for a in node.all_input_nodes}
    for pair in ax.contract:
        params = [ref for ref in pair if param_behind(operands.get(ref[0]), captured.param_nodes) is not None]
        acts = [ref for ref in pair if ref not in params]
        if len(params) != 1 or len(acts) != 1:
            continue
        heads = _head_comps(acts, {acts[0][0]: _sizes_of(labels, acts[0][0])}, labels, products)
        comp = labels.component.get(acts[0])
        if comp is None or not labels.decide(acts[0])[0] or not _splits_width(labels, products, comp, heads):
            continue
        fixed.append(comp)
        key = param_behind(operands.get(params[0][0]), captured.param_nodes)
        for axis in range(len(_sizes_of(labels, key))):
            other = labels.component.get((key, axis))
            if other is not None and other != comp and other not in heads and labels.decide((key, axis))[0] \
                    and _splits_width(labels, products, other, heads):
                fixed.append(other)
    for comp in fixed:
        labels.fixed_reason[comp] = (f"{ASSUMED} at {module_path(node) or MODEL_ROOT} (a parameter applied per head; "
                                     "heads grow; automatic mode cannot tell: pass base= to decide)")
    return [module_path(node)] if fixed else []


def _sizes_of(labels: AxisLabels, key: str) -> tuple:
    """The sizes of ``key``'s axes as the labels know them."""
    n = 1 + max((axis for k, axis in labels.sizes if k == key), default=-1)
    return tuple(labels.sizes.get((key, axis), 1) for axis in range(n))


def _head_dim_refs(node: fx.Node, ax: OpAxes, shapes: Shapes, captured: CapturedGraph) -> list:
    """The head_dim axes of an attention site: q's, k's and v's last for SDPA, the contracted
    axes of a manual q @ k^T that reaches a softmax."""
    if ax.category == "attention":
        return [(a.name, len(shapes.get(a.name)) - 1) for a in node.args[:3]
                if isinstance(a, fx.Node) and shapes.get(a.name)]
    if op_name(node) in MATMULS and ax.contract and _scales_to_softmax(node) is not None:
        pair = ax.contract[0]
        return [] if any(ref[0] in captured.param_nodes for ref in pair) else list(pair)
    return []


def _head_comps(refs, shapes: Shapes, labels: AxisLabels, products) -> set:
    """The components of the width axes (size > 1) that the site's q, k, v carry beside head_dim
    (their heads), with the parts of an axis that merges batch and heads (``b * h``): the heads
    factor must be one of them. A packed projection's q/k/v axis (timm's ``reshape(b, n, 3, h, d)``)
    is a part of the split too but reaches no operand, so one head (h = 1) is not taken for a
    split of the width into heads: head_dim is then the whole width."""
    comps = set()
    for key, axis in refs:
        for i in range(len(shapes.get(key) or ())):
            ref = (key, i)
            if i != axis and labels.sizes.get(ref, 1) > 1 and labels.decide(ref)[0] and ref in labels.component:
                comps.add(labels.component[ref])
    for lhs, rhs in products:
        for whole, parts in ((lhs, rhs), (rhs, lhs)):
            if len(whole) == 1 and labels.component.get(whole[0]) in comps:
                comps.update(labels.component[r] for r in parts if r in labels.component)
    return comps


def _splits_width(labels: AxisLabels, products, comp: int, heads_comps: set, batch_merged: bool = False) -> bool:
    """Whether a reshape splits a width axis into a part in ``comp`` and another width part of size
    > 1 outside it, in ``heads_comps`` (the heads). With ``batch_merged`` (an attention site's
    head_dim) the split side may hold more axes: ``(B, C) -> (B * heads, head_dim)`` merges the
    heads into the batch (BoTNet, HaloNet, fairseq), and q carries the merged axis beside head_dim
    as its heads. A matrix applied per block keeps the one-axis split: its block axis can come from a
    regrouping (DeepSeek-V4's ``(heads, head_dim) -> (groups, heads * head_dim / groups)``, whose
    per-group size grows with the heads)."""
    for lhs, rhs in products:
        for whole, parts in ((lhs, rhs), (rhs, lhs)):
            if (len(whole) != 1 and not batch_merged) or not any(labels.decide(ref)[0] for ref in whole):
                continue
            inside = [r for r in parts if labels.component.get(r) == comp]
            heads = [r for r in parts if labels.component.get(r) != comp and labels.component.get(r) in heads_comps
                     and labels.sizes.get(r, 1) > 1 and labels.decide(r)[0]]
            if inside and heads:
                return True
    return False


def _manual_site(node, ax: OpAxes, shapes, labels, captured) -> Optional[AttentionSite]:
    """A matmul of two activations whose result reaches a softmax; the scale may be applied to q
    (or k) before the matmul or to the logits after it."""
    (left, right) = ax.contract[0]
    if left[0] in captured.param_nodes or right[0] in captured.param_nodes:
        return None
    after = _scales_to_softmax(node)
    if after is None:
        return None
    scale, sources = 1.0, []
    for operand in (node.all_input_nodes):
        factor = _upstream_scale(operand)
        if factor is not None:
            scale, sources = scale * factor, sources + [f"{op_name(operand)} of an operand"]
    for factor, name in after:
        scale, sources = scale * factor, sources + [f"{name} by a constant"]
    head_dim = shapes.get(left[0])[left[1]]
    source = " and ".join(sources) if sources else "no scale"
    return AttentionSite(node.name, module_path(node), "manual", head_dim, _grows(labels, left), scale, source)


def _product_site(node, ax: OpAxes, shapes, data: set, grows: Callable[[Ref], bool]) -> Optional[AttentionSite]:
    """A matmul of two activations over a width axis (``grows``: :func:`_product_axis_grows`) that
    reaches no softmax (DLRM's feature interactions ``Z @ Z^T``, a similarity head): like attention
    logits, its entries grow like sqrt(width) at init and like width once the operands align, so it
    needs 1/width (docs/derivations.md §5). Not where both operands are unit vectors along that axis
    (CLIP's ``x / x.norm()``, ``F.normalize``): a cosine is bounded."""
    (left, right) = ax.contract[0]
    operands = {n.name: n for n in node.all_input_nodes}
    if not all(ref[0] in operands and ref[0] in data for ref in (left, right)):
        return None
    if not all(grows(ref) for ref in (left, right)):
        return None
    if all(unit_vector_of(operands[ref[0]]) is not None for ref in (left, right)):
        return None
    scale, sources = 1.0, []
    for operand in node.all_input_nodes:
        factor = _upstream_scale(operand)
        if factor is not None:
            scale, sources = scale * factor, sources + [f"{op_name(operand)} of an operand"]
    factor = _downstream_scale(node)
    if factor is not None:
        scale, sources = scale * factor, sources + ["a constant factor after it"]
    width = shapes.get(left[0])[left[1]]
    return AttentionSite(node.name, module_path(node), "product", width, True, scale,
                         " and ".join(sources) if sources else "no scale")


def _read_by_weights(captured: CapturedGraph, shapes: Shapes, axes: dict[str, OpAxes], labels: AxisLabels) -> set:
    """The components of the activation axes a weight contracts (the fan-ins of the model's layers)
    and of the features an embedding table looks up."""
    nodes, read = {n.name: n for n in captured.graph.nodes}, set()
    for name, ax in axes.items():
        features = (name, len(shapes.get(name) or ()) - 1)
        if op_name(nodes[name]) in EMBEDDINGS and features in labels.component:
            read.add(labels.component[features])
        for pair in ax.contract:
            for data_ref, weight_ref in (pair, pair[::-1]):
                if param_behind(nodes.get(weight_ref[0]), captured.param_nodes) and data_ref in labels.component:
                    read.add(labels.component[data_ref])
    return read


def _downstream_scale(node: fx.Node) -> Optional[float]:
    """The first constant factor applied to a matmul's result (through single users and views)."""
    for user in _single_users(node):
        factor = _scale_factor(user)
        if factor is not None or op_name(user) not in SHAPE_OPS:
            return factor
    return None


def _single_users(node: fx.Node, most: int = 6):
    """The nodes after ``node`` while each value has one user (at most ``most``)."""
    for _ in range(most):
        users = list(node.users)
        if len(users) != 1:
            return
        node = users[0]
        yield node


def _scales_to_softmax(node: fx.Node) -> Optional[list[tuple[float, str]]]:
    """The constant factors between a matmul and the softmax its result reaches through single
    users (at most 6 ops); ``None`` where it reaches none."""
    factors = []
    for user in _single_users(node):
        name = op_name(user)
        if name in ("softmax", "_softmax", "_safe_softmax"):
            return factors
        factor = _scale_factor(user)
        if factor is not None:
            factors.append((factor, name))
    return None


def _scale_factor(node: fx.Node) -> Optional[float]:
    name = op_name(node)
    if name not in SCALE_OPS or len(node.args) < 2:
        return None
    value = scalar_constant(node.args[1]) if name != "mul" else (scalar_constant(node.args[1]) or scalar_constant(node.args[0]))
    if value is None or value == 0:
        return None
    return value if name == "mul" else 1.0 / value


def _upstream_scale(node: fx.Node) -> Optional[float]:
    """q * c, then views, then the matmul: the factor c."""
    for _ in range(6):
        if node.op != "call_function":
            return None
        factor = _scale_factor(node)
        if factor is not None:
            return factor
        if op_name(node) not in SHAPE_OPS or not node.all_input_nodes:
            return None
        node = node.all_input_nodes[0]
    return None
