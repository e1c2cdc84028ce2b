"""What the graph stages hand on: capture, uses, axes, attention, the per-parameter facts and records
(sptrace/types's docstring has the flow)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional, Sequence

if TYPE_CHECKING:
    import torch
    import torch.fx as fx

from .base import Kind, Role, Space


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
    constant: Optional["ForwardConstant"] = None  # c ~ n^p on its output or activation (graph/constants.py)


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
    """A weight the forward divides by a number computed from itself, or by one per row (``F.normalize(W,
    dim=-1)``; graph/selfnorm.py): ``node`` does
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
