"""The typed records that flow between sptrace's pipeline stages, all in one place.

    graph    capture -> CapturedGraph; uses -> UseAnalysis (ParamUse, OpAxes); axes -> AxisLabels;
             attention -> AttentionSite; constants -> ForwardConstant; weightnorm -> WeightNormSite;
             blocks -> ColumnBlock; products -> ProductSite; trace gathers ParamFacts -> classify -> ParamRecord
    planning ParamRecord -> Dims -> Rule -> ParamPlan (Layout, ForwardMultiplier)
    apply    ParamPlan -> in-place init, Multiplier (forward hooks), optimizer param groups

Every stage reads and writes only these dataclasses, so each can be driven alone from hand-built
records (tests/graph, tests/planning, tests/apply). The logic that produces them stays in the
stage modules; the few methods here only read a record's own fields (``ParamRecord.fan_in``,
``AxisLabels.decide``, ``Layout``'s index arithmetic). What is left in a stage module on purpose:
``Trace`` (graph/trace.py: the public result, with its report), ``Shapes`` (graph/ops.py: built
from a graph), ``Parametrization`` (apply/parametrize.py: holds hooks) and ``Snapshot``
(apply/transaction.py: copies tensors) carry behaviour, not just data.

Nothing here imports torch at run time (only for type annotations).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

if TYPE_CHECKING:
    import torch
    import torch.fx as fx

# ParamRecord.problem of a parameter the forward never reads (cross-attention without encoder states)
NEVER_USED = "never used by the forward pass"


class SptraceError(ValueError):
    """Raised for input sptrace cannot handle; the message names the parameter or graph node."""


class SptraceWarning(UserWarning):
    """Issued when a call leaves parameters unplanned (library init, plain lr); names them."""


class Space(str, Enum):
    """Type of a vector space (docs/derivations.md §1): dense features have RMS as natural norm, sparse ones l2."""

    DENSE = "dense"
    SPARSE = "sparse"


class Kind(str, Enum):
    """How many of a parameter's fan-in / fan-out grow with width (mup's infshape notion)."""

    MATRIX = "matrix"  # fan-in and fan-out both grow with width (hidden weights)
    VECTOR = "vector"  # exactly one grows (embeddings, input layers, readouts, biases, gains)
    SCALAR = "scalar"  # none grows
    UNCLASSIFIED = "unclassified"  # some use was not understood; see ParamRecord.problem


class Role(str, Enum):
    """The parameter's job, in words; informative, the rules read spaces and width flags."""

    HIDDEN = "hidden"  # dense -> dense, both width
    INPUT = "input"  # dense fixed fan-in -> width fan-out (first layer, patch embedding)
    READOUT = "readout"  # width fan-in -> fixed fan-out (classifier, lm head, token-mixing out)
    EMBEDDING = "embedding"  # sparse index input (token table, position table, class token)
    BIAS = "bias"  # added to activations; input is the constant-1 space (Appendix D)
    GAIN = "gain"  # elementwise scale (norm weight, layer scale): diagonal operator
    SCALAR = "scalar"  # no width dims at all
    FIXED = "fixed"  # a matrix whose fan-in and fan-out are both fixed
    UNKNOWN = "unknown"


# --- graph: what capture, uses and axes hand on -------------------------------------------------
Ref = tuple[str, int]  # one axis of one graph value: (value key, axis); "name.i" for a tuple's i-th
ColumnBlock = tuple[int, int, bool]  # fan-in columns start:stop of one concatenated input, and whether they grow
WIDTH_REASON = "not tied to any input, output, vocabulary or kernel axis"


@dataclass
class CapturedGraph:
    """A torch.fx graph of aten ops (graph/capture.py) and what its placeholders are."""

    graph: fx.Graph
    route: str
    failures: dict[str, str]
    param_nodes: dict[str, str]  # placeholder node name -> parameter name (as the route saw it)
    buffer_nodes: dict[str, str]  # placeholder node name -> buffer name
    input_nodes: list[str]  # placeholder node names of the user's tensor inputs
    output_nodes: list[str]  # node names of the tensors the model returns
    state_buffers: frozenset[str] = frozenset()  # read only by a parameter's own normaliser (graph/selfnorm.py)
    normaliser_nodes: dict[str, str] = field(default_factory=dict)  # such a normaliser's nodes -> the param node

    @property
    def data_buffers(self) -> dict[str, str]:
        """The buffers the network reads as data (a coordinate table, a mask), not a reparametrization's
        state: ``<layer>.parametrizations.<tensor>`` (spectral_norm's ``_u``, ``_v``, as wide as the weight;
        read as data they fixed every axis the weight shares with the network: docs/classification.md,
        "Weight reparametrizations") and the older hook's ``weight_u`` / ``weight_v`` (``state_buffers``)."""
        return {node: name for node, name in self.buffer_nodes.items()
                if ".parametrizations." not in f".{name}" and node not in self.state_buffers}


@dataclass
class OpAxes:
    """How the axes of one node's inputs relate to its output's (graph/ops.py's op table)."""

    category: str
    args: dict[str, Any]
    same: list[tuple[Ref, Ref]] = field(default_factory=list)  # an input axis that is an output axis
    contract: list[tuple[Ref, Ref]] = field(default_factory=list)  # two operand axes summed together
    products: list[tuple[tuple[Ref, ...], tuple[Ref, ...]]] = field(default_factory=list)  # reshapes
    # a split or a concatenation: the whole axis and its parts (also in ``same``; a part is its own dim)
    sums: list[tuple[Ref, tuple[Ref, ...]]] = field(default_factory=list)
    fixed: list[tuple[Ref, str]] = field(default_factory=list)  # data axes by construction, and why
    steering: tuple[str, ...] = ()  # inputs that only steer the op (which rows to touch): neither data nor axes
    # operand axes whose index the data picks per row (a grouped matmul's expert axis): each index a block
    blocks: list[Ref] = field(default_factory=list)
    ranked: list[Ref] = field(default_factory=list)  # axes a selection ranks (top-k over a router's experts)
    mixed: list[Ref] = field(default_factory=list)  # input axes each output entry combines (softmax, cumsum)
    # sizes of axes of no tensor that the op introduces (im2col's taps and window counts), by ref
    sizes: dict[Ref, int] = field(default_factory=dict)


@dataclass
class UseAnalysis:
    """Every use of every parameter node (graph/uses.py)."""

    uses: dict[str, list[ParamUse]]  # param node -> uses, in graph order
    problems: dict[str, str]  # param node -> why a use is not understood
    op_axes: dict[str, OpAxes]  # node name -> axis semantics (shared with the axes stage)


@dataclass
class AxisLabels:
    """Which graph axes are fixed, and why (graph/axes.py); every other axis grows with width."""

    component: dict[Ref, int]  # axis -> its connected component of "same dim" ties
    fixed_reason: dict[int, str]  # component -> why it is fixed
    sizes: dict[Ref, int]

    def decide(self, ref: Ref) -> tuple[bool, str]:
        """(is_width, reason) for one axis."""
        if self.sizes.get(ref) == 1:
            return False, "size 1"
        comp = self.component.get(ref)
        if comp is not None and comp in self.fixed_reason:
            return False, self.fixed_reason[comp]
        return True, WIDTH_REASON


@dataclass(frozen=True)
class AttentionSite:
    """Where the graph computes attention logits, with what scale (graph/attention.py)."""

    node: str
    module: str
    kind: str  # "sdpa" (scaled_dot_product_attention), "manual" (matmul, scale, softmax), "product" (no softmax)
    head_dim: int
    head_dim_is_width: Optional[bool]  # None: automatic mode cannot tell (head_dim splits a width dim)
    scale: Optional[float]  # the scale in use; None where it is a runtime value
    scale_source: str
    base_head_dim: Optional[int] = None
    fixed_by_sptrace: bool = False  # parametrize(attention_fix=True) rerouted this site's scale

    @property
    def width_stable(self) -> Optional[bool]:
        """1/sqrt(head_dim) is only width-stable when head_dim is fixed; None when unknown."""
        if self.fixed_by_sptrace:
            return True
        if self.head_dim_is_width is None:
            return None
        if not self.head_dim_is_width or self.scale is None:
            return True
        return math.isclose(self.scale, 1.0 / self.head_dim, rel_tol=1e-6)


@dataclass(frozen=True)
class ParamUse:
    """One place where the graph consumes a parameter (or a view of it).

    Axes are the parameter's own axes (as stored), whatever views the graph took of it:
    fan_in_axes are contracted with the op's input, fan_out_axes index the op's output,
    group_axes index independent blocks (conv groups are folded into fan_out_axes instead,
    with `groups` > 1; einsum/bmm batch axes shared with the input land here).
    """

    node: str  # graph node that consumes the parameter
    op: str  # canonical op name: linear, matmul, conv, embedding, norm, mul, add, cat, ...
    arg: str  # which argument: "weight", "bias", "lhs", "rhs", "operand1", ...
    module: str  # module path that owns the call (nn_module_stack), "" for the root
    fan_in_axes: tuple[int, ...]
    fan_out_axes: tuple[int, ...]
    group_axes: tuple[int, ...] = ()
    groups: int = 1
    input_space: Space = Space.DENSE
    role: Role = Role.UNKNOWN
    via: tuple[str, ...] = ()  # view/cast ops between the parameter and this use
    # (parameter axis, node): a softmax / cumsum on the way combined entries along that axis (must be fixed)
    mixed_axes: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True)
class DimDecision:
    """Whether one parameter axis grows with width, and why."""

    axis: int
    size: int
    width: bool
    reason: str  # e.g. "base: 64 -> 128", "contracted with input data axis x.2", "user override"


@dataclass(frozen=True)
class ForwardConstant:
    """A constant the forward multiplies a parameter's use output by before any other parameter
    reads it, whose value is a power of a width dim (graph/constants.py; Gemma's ``embed * sqrt(n)``).
    The rules then hold for the operator ``c * W`` (docs/rules.md, "Constants in the forward")."""

    node: str  # the last mul / div of the chain
    value: float  # c: the product of the constants between the use and the next op
    power: float  # c == n ** power, power in ±1/2, ±1
    size: int  # n at the model's shape
    axis: int  # the parameter axis n is (split 1) or a factor of (n = shape[axis] / split)
    split: int = 1
    module: str = ""  # the module whose forward multiplies (the use's own, or a parent around it)
    # axis -1: n, the k width axes the input is l2-normalised over (graph/l2norm.py); in_init: holds 1/c
    normalised_axes: int = 0
    base_size: Optional[float] = None
    in_init: bool = False

    def dependence(self, shape: Sequence[float], base: bool = False) -> float:
        """c's width dependence n ** power at ``shape`` (the model's, a base's or the reference's)."""
        if self.normalised_axes:
            return (self.base_size if base else self.size) ** self.power
        return (shape[self.axis] / self.split) ** self.power

    @property
    def text(self) -> str:
        power = {0.5: "^1/2", -0.5: "^-1/2", 1.0: "", -1.0: "^-1"}.get(self.power, f"^{self.power:g}")
        factor = f"n{power}" if self.power != -1.0 else "1/n"
        of = f"axis {self.axis}" + (f" / {self.split}" if self.split != 1 else "")
        of = f"l2-normalised over {self.normalised_axes} width ax{'is' if self.normalised_axes == 1 else 'es'}" if self.normalised_axes else of
        return f"forward constant x{self.value:.4g} = {factor}, n = {self.size} ({of})"


@dataclass(frozen=True)
class SelfNormSite:
    """A weight the forward divides by a scalar computed from itself (graph/selfnorm.py): ``node`` does
    the division; ``spectral`` when that scalar is a power-iteration estimate of its spectral norm
    (``u . (W v)``, torch's spectral_norm), so that the weight the layer uses has spectral norm 1."""

    node: str
    spectral: bool


@dataclass(frozen=True)
class WeightNormSite:
    """A weight computed as ``W = g * v / ||v||`` by a ``_weight_norm`` / ``_weight_norm_interface`` node
    (``torch.nn.utils.parametrizations.weight_norm``, the older ``torch.nn.utils.weight_norm`` hook): the
    norm is over every axis of ``v`` but ``dim`` (0: per output channel; -1: the whole tensor), and
    ``g`` holds one norm per slice along ``dim`` (graph/weightnorm.py; docs/rules.md "Weight norm")."""

    node: str
    v: str  # the direction's parameter name: W's axes, classified as the layer's weight
    g: str  # the per-slice norms' parameter name
    dim: int


@dataclass(frozen=True)
class ProductSite:
    """``W = carrier * factor`` entrywise (``node``: an aten ``mul``; efficient-KAN's ``spline_weight *
    spline_scaler[..., None]``): the carrier has W's axes; the factor's axis j is W's ``axes[j]`` and it is
    repeated along W's ``broadcast`` axes (graph/products.py; docs/rules.md "Products of parameters")."""

    node: str
    carrier: str
    factor: str
    axes: tuple[int, ...]
    broadcast: tuple[int, ...]


@dataclass
class ParamFacts:
    """What the graph says about one distinct tensor, before classification (graph/classify.py)."""

    name: str
    aliases: tuple[str, ...]
    tensor: torch.Tensor
    uses: list[ParamUse]
    problem: Optional[str]
    forward_constant: Optional[ForwardConstant] = None  # of the primary use (graph/constants.py)


@dataclass
class ParamRecord:
    """Everything sptrace knows about one distinct parameter tensor."""

    name: str
    aliases: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str
    requires_grad: bool
    uses: tuple[ParamUse, ...]
    kind: Kind
    role: Role
    input_space: Space
    output_space: Space
    fan_in_axes: tuple[int, ...]
    fan_out_axes: tuple[int, ...]
    groups: int
    dims: tuple[DimDecision, ...]
    base_shape: Optional[tuple[int, ...]] = None  # the same parameter's shape in the base model
    base_groups: Optional[int] = None
    problem: Optional[str] = None  # why it is unclassified (names the node and op)
    secondary_uses: tuple[ParamUse, ...] = ()  # uses whose axes disagree with the primary one (ties)
    selected_by: Optional[str] = None  # a top-k / argmax / sort node its output reaches (a router)
    normalized_by: Optional[str] = None  # a node that normalises its output (it cannot start at zero)
    forward_constant: Optional[ForwardConstant] = None  # the use's output x c ~ n^p: the rules hold for c * W
    weight_norm: Optional[WeightNormSite] = None  # v or g of a weight-normed layer (graph/weightnorm.py)
    product: Optional[ProductSite] = None  # a factor of an entrywise product of parameters (graph/products.py)
    self_normalized_by: Optional[SelfNormSite] = None  # divided by a scalar of itself (graph/selfnorm.py)
    column_blocks: tuple[ColumnBlock, ...] = ()  # its fan-in read from a concatenation (graph/blocks.py)

    @property
    def width_dims(self) -> tuple[int, ...]:
        return tuple(d.axis for d in self.dims if d.width)

    @staticmethod
    def _block(axes: tuple[int, ...], shape: tuple[int, ...], groups: int) -> int:
        """Product of `axes`; axis 0 holds every group of a grouped conv, so it is divided. A
        reference-width shape (planning/reference.py) may hold fractional sizes: true division then."""
        size = math.prod(shape[a] for a in axes)
        if 0 not in axes:
            return size
        return size // groups if isinstance(size, int) and isinstance(groups, int) else size / groups

    @property
    def fan_in(self) -> int:
        """Fan-in of one block (transposed grouped convs: in_channels / groups x kernel area)."""
        return self._block(self.fan_in_axes, self.shape, self.groups)

    @property
    def fan_out(self) -> int:
        """Fan-out of one block (grouped convs: out_channels / groups)."""
        return self._block(self.fan_out_axes, self.shape, self.groups)

    @property
    def groups_grow(self) -> bool:
        """Whether the number of groups grows with width: groups of one input channel each
        (depthwise: the channels on axis 0 grow, the per-group fan-in axis 1 is fixed). A grouped
        conv whose per-group channels grow (ResNeXt's 32) or a stack of experts keeps its count."""
        width = set(self.width_dims)
        return self.groups > 1 and 0 in width and (len(self.shape) < 2 or 1 not in width)

    @property
    def fan_in_is_width(self) -> bool:
        return any(a in self.width_dims for a in self.fan_in_axes)

    @property
    def fan_out_is_width(self) -> bool:
        return any(a in self.width_dims for a in self.fan_out_axes)

    @property
    def base_fan_in(self) -> Optional[int]:
        if self.base_shape is None:
            return None
        return self._block(self.fan_in_axes, self.base_shape, self.base_groups or self.groups)

    @property
    def base_fan_out(self) -> Optional[int]:
        if self.base_shape is None:
            return None
        return self._block(self.fan_out_axes, self.base_shape, self.base_groups or self.groups)

    @property
    def classified(self) -> bool:
        return self.kind is not Kind.UNCLASSIFIED


# --- planning: what the rules prescribe and the plan hands to apply ---------------------------------
@dataclass(frozen=True)
class Layout:
    """How to view a tensor as a stack of ``fan_out x fan_in`` matrices.

    ``groups`` splits axis 0 into ``groups`` contiguous chunks (grouped / depthwise conv: axis 0
    holds every group, docs/classification.md); ``group_axes`` are further independent-block axes
    (einsum / bmm batch axes shared by input and output). Axes in none of the three tuples are
    treated as block axes too (they are size 1 in practice, e.g. the leading 1 of a position table).
    """

    fan_out_axes: tuple[int, ...]
    fan_in_axes: tuple[int, ...]
    group_axes: tuple[int, ...] = ()
    groups: int = 1

    @classmethod
    def default(cls, shape: Sequence[int]) -> "Layout":
        """PyTorch's convention: axis 0 is fan-out, the rest fan-in; a 1-D tensor is ``n x 1``."""
        nd = len(shape)
        if nd == 0:
            return cls((), ())
        return cls((0,), tuple(range(1, nd)))

    @classmethod
    def from_record(cls, record: ParamRecord) -> "Layout":
        """The record's primary-use axes; the default layout when the record is unclassified."""
        if not record.classified:
            return cls.default(record.shape)
        group_axes = record.uses[0].group_axes if record.uses else ()
        layout = cls(tuple(record.fan_out_axes), tuple(record.fan_in_axes), tuple(group_axes), record.groups)
        layout.check(record.shape, record.name)
        return layout

    @classmethod
    def coerce(cls, value: Any, shape: Sequence[int]) -> "Layout":
        """Accept a Layout, a dict from :meth:`to_dict`, or None (the default for ``shape``)."""
        if value is None:
            return cls.default(shape)
        if isinstance(value, Layout):
            return value
        if isinstance(value, Mapping):
            return cls(
                tuple(value.get("fan_out_axes", ())), tuple(value.get("fan_in_axes", ())),
                tuple(value.get("group_axes", ())), int(value.get("groups", 1)),
            )
        raise SptraceError(f"layout must be a Layout, a dict from Layout.to_dict() or None, got {value!r}")

    def to_dict(self) -> dict:
        """Plain tuples and ints only, so it survives ``torch.load(weights_only=True)``."""
        return {
            "fan_out_axes": tuple(self.fan_out_axes), "fan_in_axes": tuple(self.fan_in_axes),
            "group_axes": tuple(self.group_axes), "groups": int(self.groups),
        }

    def check(self, shape: Sequence[int], name: str = "tensor") -> None:
        nd = len(shape)
        axes = list(self.fan_out_axes) + list(self.fan_in_axes) + list(self.group_axes)
        if any(a < 0 or a >= nd for a in axes) or len(set(axes)) != len(axes):
            raise SptraceError(f"{name}: layout {self} does not fit shape {tuple(shape)}")
        if self.groups > 1:
            if 0 in self.group_axes or 0 not in (self.fan_out_axes + self.fan_in_axes):
                raise SptraceError(f"{name}: groups={self.groups} but axis 0 is not a fan axis ({self})")
            if shape[0] % self.groups:
                raise SptraceError(f"{name}: axis 0 of size {shape[0]} is not divisible by groups={self.groups}")

    def _plan(self, shape: Sequence[int]):
        """(split shape, permutation, (B, fan_out, fan_in)) for a tensor of ``shape``."""
        shape = tuple(int(s) for s in shape)
        self.check(shape)
        g = self.groups
        if g > 1:
            split = (g, shape[0] // g) + shape[1:]
            shift = 1
            batch = [0]
        else:
            split, shift, batch = shape, 0, []
        used = set(self.fan_out_axes) | set(self.fan_in_axes) | set(self.group_axes)
        batch += [a + shift for a in self.group_axes]
        batch += [a + shift for a in range(len(shape)) if a not in used]
        fo = [a + shift for a in self.fan_out_axes]
        fi = [a + shift for a in self.fan_in_axes]
        perm = batch + fo + fi
        blocks = math.prod([split[a] for a in batch])
        fan_out = math.prod([split[a] for a in fo])
        fan_in = math.prod([split[a] for a in fi])
        return split, perm, (blocks, fan_out, fan_in)

    def block_shape(self, shape: Sequence[int]) -> tuple[int, int, int]:
        """``(blocks, fan_out, fan_in)`` of a tensor of ``shape`` under this layout."""
        return self._plan(shape)[2]


@dataclass(frozen=True)
class Dims:
    """The numbers a rule reads, for one block of one parameter (at the model or the base shapes)."""

    fan_in: int
    fan_out: int
    d_in: int  # effective: fan_in if the input space is dense, else 1
    d_out: int  # effective: fan_out if the output space is dense, else 1
    blocks: int  # independent blocks: conv groups x einsum/bmm group axes
    fan_in_w: float  # block fan-in counting width axes only (fixed axes such as a kernel set to 1)
    fan_out_w: float  # block fan-out counting width axes only
    fan_in_width: bool
    fan_out_width: bool
    sparse_in: bool


@dataclass(frozen=True)
class Rule:
    """What the rules prescribe for one parameter under one optimizer family.

    Fields:
        optimizer, parametrization, form: the family, ``"sptrace"|"sp"|"ntp"``,
            ``"absolute"|"base"``.
        dims: the model-shape :class:`Dims`; ``base_dims`` at the base shapes (base form only).
        target_spectral_W, target_spectral_dW: Condition 2 in raw spectral norm per block,
            ``sqrt(d_out/d_in)`` (absolute values in both forms: a Θ target for diagnostics).
        init_kind: ``"gaussian"`` (use ``init_std``), ``"orthogonal"`` / ``"spectral"`` (use
            ``init_target``), ``"zeros"``, ``"ones"``, ``"scale"`` (multiply the library-default
            values in place by ``init_scale``), ``"keep"`` (leave them).
        init_std: the Gaussian std of the absolute rule (``None`` where it does not apply).
        init_target: raw spectral norm per block for orthogonal / Eq. 16 init (``None`` where it
            does not apply).
        init_scale: factor for ``"scale"`` (1.0 otherwise).
        lr_multiplier: the group lr is ``lr * lr_multiplier``.
        weight_decay_multiplier: the group weight decay is ``weight_decay * this``.
        spectral_scale: :class:`~sptrace.optim.SpectralSGD`'s per-parameter factor (1.0 for other
            families): the update is ``-lr * spectral_scale * orthogonalise(buffer)``; for the
            ``"sign"`` update it is the per-entry step.
        update: how SpectralSGD treats the tensor: ``"column"`` (sparse input: each one-hot
            input's column normalised), ``"orthogonal"`` (blocks orthogonalised; a
            block with one row or column is l2-normalised, which is its exact polar factor) or
            ``"sign"`` (diagonal operators and scalars).
        citation: paper section / docs/derivations.md item each number comes from.
        eps_multiplier: the group's Adam ε is the optimizer's ε times this: the size of the
            parameter's gradient under the rules, η_Adam / η_SGD (docs/rules.md "Adam's ε").
    """

    optimizer: str
    parametrization: str
    form: str
    dims: Dims
    base_dims: Optional[Dims]
    target_spectral_W: float
    target_spectral_dW: float
    init_kind: str
    init_std: Optional[float]
    init_target: Optional[float]
    init_scale: float
    lr_multiplier: float
    weight_decay_multiplier: float
    spectral_scale: float
    update: str
    citation: str
    eps_multiplier: float = 1.0


@dataclass(frozen=True)
class ForwardMultiplier:
    """Multiply the tensor by ``multiplier`` in this use: a tied readout's secondary use (docs/derivations.md
    §5), or a spectral-normed layer's own (docs/rules.md "Self-normalised weights")."""

    use: ParamUse
    multiplier: float
    what: str = "tied readout input"
    columns: tuple[tuple[int, int], ...] = ()  # "fixed input columns": the input's slices it scales


@dataclass(frozen=True)
class ParamPlan:
    """What to do with one parameter.

    ``init`` is one of ``"gaussian"`` (``init_std``), ``"orthogonal"`` / ``"spectral"``
    (``init_target``: raw spectral norm per block of ``layout``), ``"zeros"``, ``"ones"``,
    ``"scale"`` (multiply the current values by ``init_scale``) or ``"keep"``; run it with
    ``sptrace.apply.init.apply_init(param, p.init, std=p.init_std, target=p.init_target,
    scale=p.init_scale, layout=p.layout)``. ``lr = global_lr * lr_multiplier``; ``weight_decay`` is
    the group's (already multiplied). ``spectral_scale``, ``update`` and ``layout`` are for
    :class:`sptrace.optim.SpectralSGD`.
    """

    name: str
    aliases: tuple[str, ...]
    optimizer: str
    parametrization: str
    form: str
    trainable: bool
    classified: bool
    init: str
    init_std: Optional[float]
    init_target: Optional[float]
    init_scale: float
    layout: Layout
    lr: float
    global_lr: float
    lr_multiplier: float
    weight_decay: float
    spectral_scale: float
    update: str
    forward_multipliers: tuple[ForwardMultiplier, ...]
    citation: str
    warning: Optional[str] = None
    rule: Optional[Rule] = field(default=None, repr=False, compare=False)
    lr_note: str = ""  # what the lr became and why, in one line
    eps_multiplier: float = 1.0  # the group's Adam ε = the optimizer's ε x this (Rule.eps_multiplier)
    norm_of: Optional[str] = None  # init "norm": this v's norms over every axis but norm_dim, after its init
    norm_dim: int = 0
    fixed_columns: tuple[tuple[int, int], ...] = ()  # fan-in slices read x a forward multiplier:
    column_scale: float = 1.0  # their values x this after the init (docs/rules.md "Column blocks")


# --- apply: what parametrize installed -----------------------------------------------------------
@dataclass(frozen=True)
class Multiplier:
    """One forward multiplier that sptrace installed, for the report."""

    module: str
    what: str  # "tied readout input" | "spectral-normed layer input" | "attention scale" | "fixed input columns"
    value: float
    reason: str
    columns: tuple[tuple[int, int], ...] = ()  # "fixed input columns": the slices of the last input axis
