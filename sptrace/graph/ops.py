"""Op semantics: for one graph node, how the axes of its inputs relate to the axes of its output.

Every later analysis reads ops only through :func:`op_axes`, which returns an :class:`~sptrace.types.OpAxes`:

* ``same``: an input axis that *is* an output axis (views, broadcasting, batch axes of a matmul,
  the output axis of a weight);
* ``contract``: two operand axes summed against each other (fan-in of a matmul or conv);
* ``products``: a reshape that merges or splits axes (``prod(lhs) == prod(rhs)``);
* ``fixed``: axes that are data by construction (conv kernel taps, embedding vocabulary).

Axes are named by :data:`~sptrace.types.Ref` = (value key, axis). A value key is a node name, or
``"name.i"`` for the i-th tensor of a node that returns a tuple.

The table covers the aten ops that ``torch.export`` (training IR) and the eager dispatch recorder
emit for ordinary models. An op not in it still gets broadcast ties when its output has the shape
of its first tensor input; a *parameter* reaching an op not in it is reported, never guessed.
"""
from __future__ import annotations

import operator
import string
from typing import Any, Optional

import torch
import torch.fx as fx

from ..types import OpAxes, Ref


# --------------------------------------------------------------------------------------------
# naming and argument normalisation


def op_name(node: fx.Node) -> str:
    target = node.target
    if target is operator.getitem:
        return "getitem"
    if isinstance(target, torch._ops.OpOverload):
        name = target._schema.name.split("::")[-1]
    else:
        name = getattr(target, "__name__", str(target))
    if name.endswith("_") and not name.endswith("__"):
        name = name[:-1]  # in-place variants behave like their functional twins here
    return name


def normalized_args(node: fx.Node) -> dict[str, Any]:
    """Arguments by schema name (aten ops), else by position as 'arg0', 'arg1', ..."""
    target = node.target
    if isinstance(target, torch._ops.OpOverload):
        names = [a.name for a in target._schema.arguments]
        out = dict(zip(names, node.args))
        out.update(node.kwargs)
        return out
    out = {f"arg{i}": a for i, a in enumerate(node.args)}
    out.update(node.kwargs)
    return out


def value_key(value) -> Optional[str]:
    return value.name if isinstance(value, fx.Node) else None


UNKNOWN_SIZE = -1  # a size export left symbolic (rows routed to one expert): never equal to another


def _size(s) -> int:
    try:
        return int(s)
    except (TypeError, RuntimeError):  # an unbacked symbol has no value to read
        return UNKNOWN_SIZE


class Shapes:
    """Shape of every tensor value in the graph, by value key."""

    def __init__(self, graph: fx.Graph):
        self.by_key: dict[str, tuple[int, ...]] = {}
        self.dtype: dict[str, torch.dtype] = {}
        for node in graph.nodes:
            val = node.meta.get("val")
            if isinstance(val, torch.Tensor):
                self._add(node.name, val)
            elif isinstance(val, (tuple, list)):
                for i, item in enumerate(val):
                    if isinstance(item, torch.Tensor):
                        self._add(f"{node.name}.{i}", item)

    def _add(self, key, val):
        self.by_key[key] = tuple(_size(s) for s in val.shape)
        self.dtype[key] = val.dtype

    def get(self, key: Optional[str]) -> Optional[tuple[int, ...]]:
        return None if key is None else self.by_key.get(key)


# --------------------------------------------------------------------------------------------
# tie builders


def _broadcast_ties(out: str, out_shape, inputs: list[tuple[str, tuple[int, ...]]], ax: OpAxes):
    """Right-aligned broadcasting: an input axis of the output's size (>1) is that output axis."""
    for key, shape in inputs:
        offset = len(out_shape) - len(shape)
        for i, size in enumerate(shape):
            j = i + offset
            if 0 <= j < len(out_shape) and size == out_shape[j] and size > 1:
                ax.same.append(((key, i), (out, j)))


def _reshape_groups(src: tuple[int, ...], dst: tuple[int, ...]):
    """Pair up runs of axes with equal products; size-1 axes are dropped."""
    if UNKNOWN_SIZE in src or UNKNOWN_SIZE in dst:
        return []
    src_axes = [i for i, s in enumerate(src) if s != 1]
    dst_axes = [i for i, s in enumerate(dst) if s != 1]
    groups, i, j = [], 0, 0
    while i < len(src_axes) and j < len(dst_axes):
        gi, gj = [src_axes[i]], [dst_axes[j]]
        pi, pj = src[src_axes[i]], dst[dst_axes[j]]
        i, j = i + 1, j + 1
        while pi != pj:
            if pi < pj and i < len(src_axes):
                gi.append(src_axes[i])
                pi *= src[src_axes[i]]
                i += 1
            elif pj < pi and j < len(dst_axes):
                gj.append(dst_axes[j])
                pj *= dst[dst_axes[j]]
                j += 1
            else:
                return groups
        groups.append((tuple(gi), tuple(gj)))
    return groups


def _reshape_ties(src: str, src_shape, out: str, out_shape, ax: OpAxes):
    for gi, gj in _reshape_groups(src_shape, out_shape):
        if len(gi) == 1 and len(gj) == 1:
            ax.same.append(((src, gi[0]), (out, gj[0])))
        else:
            ax.products.append((tuple((src, a) for a in gi), tuple((out, a) for a in gj)))


def _perm_ties(src: str, out: str, perm, ax: OpAxes):
    for j, i in enumerate(perm):
        ax.same.append(((src, i), (out, j)))


def _norm_dim(d: int, rank: int) -> int:
    return d + rank if d < 0 else d


# --------------------------------------------------------------------------------------------
# op families

ELEMENTWISE_BINARY = {
    "add", "sub", "rsub", "mul", "div", "true_divide", "floor_divide", "pow", "maximum", "minimum",
    "where", "masked_fill", "clamp", "clamp_min", "clamp_max", "addcmul", "addcdiv", "lerp", "eq",
    "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor", "bitwise_and",
    "bitwise_or", "bitwise_not", "remainder", "fmod", "atan2", "hypot", "copysign", "xlogy",
    "copy", "fill", "masked_scatter", "float_power", "mse_loss", "smooth_l1_loss", "l1_loss",
    "complex", "polar",  # torch.complex(real, imag), torch.polar(abs, angle): two real tensors entry by entry
}
ELEMENTWISE_UNARY = {
    "relu", "relu6", "gelu", "silu", "sigmoid", "tanh", "exp", "exp2", "expm1", "log", "log1p",
    "log2", "neg", "abs", "sqrt", "rsqrt", "reciprocal", "sin", "cos", "erf", "erfinv", "softplus",
    "leaky_relu", "elu", "celu", "selu", "hardtanh", "hardswish", "hardsigmoid", "mish", "square",
    "sign", "dropout", "native_dropout", "alpha_dropout", "feature_dropout", "_to_copy", "to",
    "clone", "contiguous", "detach", "alias", "lift_fresh_copy", "zeros_like", "ones_like",
    "empty_like", "full_like", "rand_like", "randn_like", "bernoulli", "softmax", "_softmax",
    "log_softmax", "_log_softmax", "tril", "triu", "nan_to_num", "logit", "glu_backward", "round",
    "floor", "ceil", "trunc", "frac", "logical_not", "isnan", "isinf", "type_as", "_conj",
    "positive", "cumsum", "cumprod", "roll", "flip", "dropout_", "threshold", "prelu", "gelu_",
    "_assert_tensor_metadata", "_functional_assert_async", "sort", "topk", "real", "imag", "conj", "conj_physical",
    "resolve_conj", "resolve_neg", "angle", "zero",  # zero: x.zero_() of a slice (Swin V2 zeroes the key's part of its qkv bias)
}
# Elementwise in shape, but each output entry mixes entries along an axis: fine on activations,
# never a way to carry a parameter's own axes to a use.
MIXING = {"cumsum", "cumprod", "logcumsumexp", "softmax", "_softmax", "log_softmax", "_log_softmax", "sort", "topk"}
# the mixing ops that combine entries along one axis only and leave the others alone
MIXING_ALONG = {"cumsum", "cumprod", "logcumsumexp", "softmax", "_softmax", "log_softmax", "_log_softmax"}
RESHAPES = {
    "view", "_unsafe_view", "reshape", "_reshape_alias", "flatten", "unflatten", "view_as",
    "reshape_as", "squeeze", "unsqueeze", "expand", "expand_as", "broadcast_to", "expand_copy",
    "view_copy", "squeeze_copy", "unsqueeze_copy", "repeat", "tile", "_unsafe_view_copy",
}
PERMUTES = {"t", "transpose", "permute", "swapaxes", "swapdims", "movedim", "numpy_T", "mT", "adjoint"}
# ops that cut or pad a tensor along its axes and keep its rank: output axis i is input axis i
SLICES_AND_PADS = {"slice", "narrow", "constant_pad_nd", "pad", "slice_copy", "alias_copy", "as_strided"}
# Fourier transforms keep the rank: a transformed axis holds the frequencies of the positions (or
# features) it had, a different size of the same dim, fixed exactly when they are (a Fourier neural
# operator's modes cut from a rfft of the grid); the other axes pass through
FOURIER = {
    "fft_fft", "fft_ifft", "fft_rfft", "fft_irfft", "fft_hfft", "fft_ihfft", "fft_fft2", "fft_ifft2", "fft_rfft2",
    "fft_irfft2", "fft_hfft2", "fft_ihfft2", "fft_fftn", "fft_ifftn", "fft_rfftn", "fft_irfftn", "fft_hfftn",
    "fft_ihfftn", "fft_fftshift", "fft_ifftshift", "_fft_r2c", "_fft_c2r", "_fft_c2c",
}
# the dims each transforms when none are given (the n-dim ones and the shifts: the last len(s), else all)
FOURIER_DIMS = {**{n: -1 for n in ("fft_fft", "fft_ifft", "fft_rfft", "fft_irfft", "fft_hfft", "fft_ihfft")},
                **{n: (-2, -1) for n in ("fft_fft2", "fft_ifft2", "fft_rfft2", "fft_irfft2", "fft_hfft2", "fft_ihfft2")}}
# the cuts among them whose constant bounds say which part of the axis they keep (tiling_slices reads them)
BOUNDED_SLICES = {"slice", "slice_copy", "narrow", "narrow_copy"}
SPLITS = {"split", "split_with_sizes", "chunk", "unbind", "tensor_split", "unsafe_split"}
# ops that pass a tensor's values on unchanged up to layout (a parameter seen through them is still its entries)
SHAPE_OPS = {"view", "_unsafe_view", "reshape", "transpose", "permute", "t", "expand", "clone", "contiguous",
             "unsqueeze", "squeeze", "_to_copy", "to", "alias", "flatten", "unflatten", "repeat", "expand_copy",
             "view_copy"}
REDUCTIONS = {
    "sum", "mean", "amax", "amin", "max", "min", "var", "std", "norm", "linalg_vector_norm",
    "logsumexp", "prod", "argmax", "argmin", "all", "any", "var_mean", "std_mean", "nansum",
}
NORMS_LAST = {"layer_norm", "native_layer_norm", "rms_norm", "_fused_rms_norm"}
NORMS_CHANNEL = {
    "batch_norm", "native_batch_norm", "_native_batch_norm_legit", "_native_batch_norm_legit_functional",
    "_native_batch_norm_legit_no_training", "instance_norm", "group_norm", "native_group_norm",
    "cudnn_batch_norm", "_batch_norm_impl_index", "_batch_norm_with_update", "_batch_norm_no_update",
}
POOLS = {
    "avg_pool1d", "avg_pool2d", "avg_pool3d", "max_pool1d", "max_pool2d", "max_pool3d",
    "max_pool2d_with_indices", "max_pool3d_with_indices", "adaptive_avg_pool1d", "adaptive_avg_pool2d",
    "adaptive_avg_pool3d", "_adaptive_avg_pool2d", "_adaptive_avg_pool3d", "adaptive_max_pool2d",
    "upsample_nearest2d", "upsample_bilinear2d", "_upsample_nearest_exact2d", "upsample_nearest1d",
    "pixel_shuffle", "pixel_unshuffle", "upsample_bicubic2d", "_upsample_bicubic2d_aa", "_upsample_bilinear2d_aa",
    "upsample_linear1d", "upsample_trilinear3d", "upsample_nearest3d", "_upsample_nearest_exact1d",
    "_upsample_nearest_exact3d",
}
# matmuls whose weight holds one matrix per group, the group of each input row chosen by the data
# (torch.nn.functional.grouped_mm, and Hugging Face's fallback op for the same contract)
GROUPED_MATMULS = {"_grouped_mm", "grouped_mm", "grouped_mm_fallback"}
# ops that rank entries along one axis and return positions on it: (argument, its default); max and
# min rank only along a dim given (``probs.max(-1)``, a top-1 router's choice), else they reduce to a scalar
RANKINGS = {"topk": ("dim", -1), "sort": ("dim", -1), "argsort": ("dim", -1), "kthvalue": ("dim", -1),
            "msort": (None, 0), "multinomial": (None, -1), "argmax": ("dim", None), "argmin": ("dim", None),
            "max": ("dim", None), "min": ("dim", None)}
MATMULS = {"mm", "bmm", "matmul", "addmm", "baddbmm", "dot", "mv", "addmv", "einsum", "linear", "_addmm_activation",
           "bilinear", "cosine_similarity"}
CONVS = {
    "convolution", "_convolution", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
    "conv_transpose3d", "cudnn_convolution", "mkldnn_convolution", "conv_tbc",
}
EMBEDDINGS = {"embedding", "embedding_bag", "_embedding_bag", "_embedding_bag_forward_only"}
CREATIONS = {
    "arange", "zeros", "ones", "full", "empty", "randn", "rand", "randint", "scalar_tensor", "eye",
    "linspace", "logspace", "empty_strided", "new_zeros", "new_ones", "new_empty", "new_full",
    "_local_scalar_dense", "item", "sym_size", "sym_numel", "sym_stride", "lift_fresh", "tensor",
    "sym_constrain_range_for_size", "_assert_scalar", "sym_storage_offset", "scalar",
}

# grids the graph makes itself (positions, frequencies): a constant, as a buffer is, where they only
# scale or shift a parameter (uses.py). Zeros stay data (an unrolled RNN's state, ``decay * h0``), as
# do random draws (a noise input) and ``eye`` (``g * eye`` is a gain on the identity)
CONSTANT_CREATIONS = {"arange", "linspace", "logspace"}

# creations whose tensor input gives only a shape, dtype and device (``p.new_zeros(size)``: Mamba's
# base model makes its zero state from a parameter this way): no entry of it reaches the output
SHAPE_READERS = {"new_zeros", "new_ones", "new_empty", "new_full"}


# ops that copy their first input along new or size-1 axes
BROADCASTS = {"expand", "expand_as", "broadcast_to", "expand_copy", "repeat", "tile"}
# ops whose output holds entries of their first input unchanged (moved, cut, copied or picked): the
# values of an index tensor seen through them still index the same range (index_reads)
VALUE_KEEPING = (RESHAPES | PERMUTES | SPLITS | {"slice", "slice_copy", "narrow", "select", "alias", "alias_copy",
                                                 "clone", "contiguous", "_to_copy", "to", "detach", "lift_fresh_copy",
                                                 "index", "_unsafe_index", "gather", "index_select"})
# rankings whose result is a (values, indices) pair: the indices are positions on the ranked axis
RANKED_PAIRS = {"topk", "sort", "kthvalue", "max", "min"}
# ops that return positions on the ranked axis as their one output
RANKED_POSITIONS = {"argsort", "argmax", "argmin", "multinomial"}


def index_reads(node: fx.Node, shapes: Shapes) -> list[tuple[str, Ref]]:
    """(index tensor, axis) pairs: the integer values of that tensor are positions on that axis (a
    gather's or an index's looked-up axis, an embedding's vocabulary, a one-hot's classes, the bins
    of a histogram that counts the integers 0 .. bins - 1, a scatter's target axis). Boolean masks
    select by shape, not by value, and are left out; whether a histogram's input holds integers (a
    cast of them: CPU's ``histc`` takes floats) is for the caller to follow."""
    if node.op != "call_function":
        return []
    name = op_name(node)
    args = normalized_args(node)
    found = []

    def read(index, ref):
        key = value_key(index)
        dtype = shapes.dtype.get(key)
        if key is not None and dtype is not None and not (dtype.is_complex or dtype == torch.bool):
            found.append((key, ref))

    src = value_key(node.args[0]) if node.args else None
    src_shape = shapes.get(src)
    if name in ("gather", "index_select", "scatter", "scatter_add", "scatter_reduce", "index_add", "index_copy",
                "index_fill") and src_shape and len(node.args) > 2 and isinstance(node.args[1], int):
        read(node.args[2], (src, _norm_dim(node.args[1], len(src_shape))))
    elif name in ("index", "_unsafe_index", "index_put", "_unsafe_index_put") and src_shape and len(node.args) > 1:
        for p, index in enumerate(node.args[1]):
            if index is not None and p < len(src_shape):
                read(index, (src, p))
    elif name in EMBEDDINGS:
        read(args.get("indices", args.get("input")), (value_key(args.get("weight")), 0))
    elif name == "one_hot" and shapes.get(node.name):
        read(node.args[0], (node.name, len(shapes.get(node.name)) - 1))
    elif name == "histc" and shapes.get(node.name):
        bins, low, high = args.get("bins", 100), args.get("min", 0), args.get("max", 0)
        if isinstance(bins, int) and low == 0 and high == bins - 1:
            read(node.args[0], (node.name, 0))
    return found


def param_behind(node: Optional[fx.Node], param_nodes) -> Optional[str]:
    """The parameter placeholder ``node`` is, or shows through :data:`SHAPE_OPS` (the eager route
    writes an einsum as permutes, views and a bmm; a register token is expanded to the batch), else None."""
    while isinstance(node, fx.Node):
        if node.name in param_nodes:
            return node.name
        if op_name(node) not in SHAPE_OPS or len(node.all_input_nodes) != 1:
            return None
        node = node.all_input_nodes[0]
    return None


def op_axes(node: fx.Node, shapes: Shapes) -> OpAxes:
    name = op_name(node)
    args = normalized_args(node)
    ax = OpAxes(category="other", args=args)
    out = node.name
    out_shape = shapes.get(out)
    builder = _BUILDERS.get(name)
    if builder is None:
        for family, fn in _FAMILIES:
            if name in family:
                builder = fn
                break
    if builder is None and "scaled_dot_product" in name:
        builder = _attention
    if builder is None:
        return _unknown(node, shapes, ax)
    builder(node, name, args, ax, shapes, out, out_shape)
    if name in RANKINGS:
        _ranked_axis(node, name, args, ax, shapes)
    if name in MIXING_ALONG:
        src, shape = value_key(node.args[0]), shapes.get(value_key(node.args[0]))
        if shape:
            ax.mixed.append((src, _norm_dim(int(args.get("dim", -1)), len(shape))))
    if name in FOURIER:
        _fourier_dims(node, name, args, ax, shapes)
    return ax


def _fourier_dims(node, name, args, ax, shapes):
    """A Fourier transform combines the entries along the axes it transforms (``dim``; aten's
    ``_fft_*`` take a list) and leaves the others alone, as a softmax does along its axis."""
    src, shape = value_key(node.args[0]), shapes.get(value_key(node.args[0]))
    if not shape:
        return
    dims = args.get("dim", FOURIER_DIMS.get(name))
    if dims is None:  # fftn / fftshift: the last len(s) axes, or every axis
        s = args.get("s")
        dims = range(len(shape) - len(s), len(shape)) if isinstance(s, (list, tuple)) else range(len(shape))
    for d in ([dims] if isinstance(dims, int) else dims):
        ax.mixed.append((src, _norm_dim(int(d), len(shape))))


def _ranked_axis(node, name, args, ax, shapes):
    """The axis a top-k / sort / argmax ranks holds the alternatives it chooses among (an MoE
    router's experts); the axes stage decides whether that is a fixed count (docs/classification.md)."""
    src = value_key(node.args[0])
    src_shape = shapes.get(src)
    arg, default = RANKINGS[name]
    dim = args.get(arg, default) if arg else default
    if src_shape and dim is not None:
        ax.ranked.append((src, _norm_dim(int(dim), len(src_shape))))
    if name == "topk" and src_shape and dim is not None:  # its k results along that axis: a literal count
        axis = _norm_dim(int(dim), len(src_shape))
        for key in (f"{node.name}.0", f"{node.name}.1"):
            shape = shapes.get(key)
            if shape and len(shape) > axis and shape[axis] > 1:
                ax.fixed.append(((key, axis), f"the k = {shape[axis]} results of a top-k (an argument)"))


def _tensor_inputs(node: fx.Node, shapes: Shapes):
    """(key, shape) of every tensor in args/kwargs, nested lists included, in order."""
    found = []

    def visit(v):
        if isinstance(v, fx.Node):
            shape = shapes.get(v.name)
            if shape is not None:
                found.append((v.name, shape))
        elif isinstance(v, (list, tuple)):
            for item in v:
                visit(item)

    visit(list(node.args) + list(node.kwargs.values()))
    return found


def _unknown(node, shapes, ax):
    ax.category = "unknown"
    inputs = _tensor_inputs(node, shapes)
    out_shape = shapes.get(node.name)
    if inputs and out_shape is not None and inputs[0][1] == out_shape:
        _broadcast_ties(node.name, out_shape, inputs, ax)
    return ax


# ops whose second tensor only lends its shape or dtype: it steers the op, it is not an operand
SHAPE_DONORS = {"expand_as", "view_as", "reshape_as", "type_as"}


def _shape_donor(node, name, ax):
    if name in SHAPE_DONORS and len(node.args) > 1 and isinstance(node.args[1], fx.Node):
        ax.steering = (node.args[1].name,)


def _elementwise(node, name, args, ax, shapes, out, out_shape):
    _shape_donor(node, name, ax)
    binary = name in ELEMENTWISE_BINARY
    ax.category = "elementwise" if binary else "passthrough"
    out_key = out if out_shape is not None else f"{out}.0"
    out_shape = out_shape if out_shape is not None else shapes.get(out_key)
    if out_shape is not None:  # a shape donor (type_as's dtype source) is no operand: no axis of it is tied
        operands = [(key, shape) for key, shape in _tensor_inputs(node, shapes) if key not in ax.steering]
        _broadcast_ties(out_key, out_shape, operands, ax)


def _prelu(node, name, args, ax, shapes, out, out_shape):
    """prelu(x, weight): one slope per channel, the weight's axis 0 is the input's axis 1."""
    ax.category = "elementwise"
    src, weight = value_key(node.args[0]), value_key(node.args[1])
    src_shape, weight_shape = shapes.get(src), shapes.get(weight)
    if src_shape is None or out_shape is None:
        return
    _broadcast_ties(out, out_shape, [(src, src_shape)], ax)
    if weight_shape and weight_shape[0] > 1 and len(out_shape) >= 2:
        ax.same.append(((weight, 0), (out, 1)))


def _renorm_rows(node, name, args, ax, shapes, out, out_shape):
    """embedding_renorm_(weight, ids, max_norm, p) (nn.Embedding(max_norm=...)): rescales the rows
    about to be looked up, in place; the table keeps its axes, the ids are not an input to them."""
    ax.category = "passthrough"
    src = value_key(node.args[0])
    ax.steering = (value_key(node.args[1]),)
    src_shape = shapes.get(src)
    if src_shape is not None and out_shape is not None:
        _broadcast_ties(out, out_shape, [(src, src_shape)], ax)


def _reshape(node, name, args, ax, shapes, out, out_shape):
    ax.category = "passthrough"
    _shape_donor(node, name, ax)
    src = value_key(node.args[0])
    src_shape = shapes.get(src)
    if src_shape is None or out_shape is None:
        return
    if name in BROADCASTS:
        _broadcast_ties(out, out_shape, [(src, src_shape)], ax)
        if name in ("repeat", "tile"):  # tiled axes keep their identity though their size changes
            offset = len(out_shape) - len(src_shape)
            ax.same.extend(((src, i), (out, i + offset)) for i, s in enumerate(src_shape) if s > 1)
        return
    _reshape_ties(src, src_shape, out, out_shape, ax)


def _permute(node, name, args, ax, shapes, out, out_shape):
    ax.category = "passthrough"
    src = value_key(node.args[0])
    src_shape = shapes.get(src)
    if src_shape is None:
        return
    rank = len(src_shape)
    perm = list(range(rank))
    if name in ("t", "numpy_T") or (name == "mT" or name == "adjoint"):
        perm = perm[::-1] if name in ("t", "numpy_T") else perm[:-2] + [rank - 1, rank - 2]
    elif name in ("transpose", "swapaxes", "swapdims"):
        a, b = (_norm_dim(int(d), rank) for d in node.args[1:3])
        perm[a], perm[b] = perm[b], perm[a]
    elif name == "permute":
        perm = [_norm_dim(int(d), rank) for d in node.args[1]]
    elif name == "movedim":
        src_dims = node.args[1] if isinstance(node.args[1], (list, tuple)) else [node.args[1]]
        dst_dims = node.args[2] if isinstance(node.args[2], (list, tuple)) else [node.args[2]]
        src_dims = [_norm_dim(int(d), rank) for d in src_dims]
        dst_dims = [_norm_dim(int(d), rank) for d in dst_dims]
        rest = [d for d in range(rank) if d not in src_dims]
        perm = [None] * rank
        for s, d in zip(src_dims, dst_dims):
            perm[d] = s
        it = iter(rest)
        perm = [p if p is not None else next(it) for p in perm]
    if rank <= 1 and name in ("t", "numpy_T"):
        perm = list(range(rank))
    _perm_ties(src, out, perm, ax)


def _same_rank(node, name, args, ax, shapes, out, out_shape):
    """Slices, pads, pools and resizes keep every axis (a sliced or pooled axis is the same dim)."""
    ax.category = "passthrough"
    src = value_key(node.args[0])
    src_shape = shapes.get(src)
    out_key = out if out_shape is not None else f"{out}.0"
    out_shape = shapes.get(out_key)
    if src_shape is None or out_shape is None or len(src_shape) != len(out_shape):
        return
    ax.same.extend(((src, i), (out_key, i)) for i in range(len(src_shape)) if src_shape[i] > 1 and out_shape[i] > 1)


def _fourier(node, name, args, ax, shapes, out, out_shape):
    """A Fourier transform ties its axes as :func:`_same_rank` does, but every output entry mixes the
    entries along the transformed axes (``OpAxes.mixed``, :func:`_fourier_dims`): a parameter seen
    through it (a long-convolution filter, ``rfft(kernel)`` over its positions) keeps its other axes,
    and the transformed ones must be a fixed count (docs/classification.md, "Ties through ops")."""
    _same_rank(node, name, args, ax, shapes, out, out_shape)
    ax.category = "fourier"


def _grid_sample(node, name, args, ax, shapes, out, out_shape):
    """grid_sampler(x (N, C, *spatial), grid (N, *spatial', d)): resamples the spatial axes where the
    grid points; batch and channels pass through."""
    ax.category = "passthrough"
    src, grid = value_key(node.args[0]), node.args[1]
    if shapes.get(src) is None or out_shape is None:
        return
    ax.same.extend(((src, i), (out, i)) for i in (0, 1) if out_shape[i] > 1)
    ax.steering = (value_key(grid),)


def _unfold(node, name, args, ax, shapes, out, out_shape):
    """x.unfold(dim, size, step): windows sliding along ``dim`` (a halo attention's key windows, a
    median pool's). Their count takes ``dim``'s place and their ``size`` taps are a new last axis; the
    other axes pass through. Count and taps are parts of the axis they slide over (it spans
    (count - 1) * step + size of it), as a split's parts are of its whole (``OpAxes.sums``): fixed
    exactly when it is, so windows over positions are positions and their taps a count. The count is
    listed in ``same`` too, for following a parameter's axes, as a split's parts are."""
    ax.category = "passthrough"
    src = value_key(node.args[0])
    src_shape = shapes.get(src)
    if src_shape is None or out_shape is None or len(out_shape) != len(src_shape) + 1:
        return
    dim = _norm_dim(int(args.get("dimension", args.get("arg1", 0))), len(src_shape))
    ax.same.extend(((src, i), (out, i)) for i in range(len(src_shape)) if src_shape[i] > 1 and out_shape[i] > 1)
    if src_shape[dim] > 1 and out_shape[-1] > 1:  # one tap per window: the count is the axis itself, a pool's
        ax.sums.append(((src, dim), tuple((out, i) for i in (dim, len(src_shape)) if out_shape[i] > 1)))


def _im2col(node, name, args, ax, shapes, out, out_shape):
    """``F.unfold`` / ``nn.Unfold`` (aten ``im2col``): (N, C, *spatial) -> (N, C * prod(kernel), L),
    and its inverse ``F.fold`` / ``nn.Fold`` (``col2im``): (N, C * prod(kernel), L) -> (N, C, *output).
    N passes through. The column axis is a merge (``OpAxes.products``) of C and one tap axis per
    spatial dim: C keeps what it was (width channels stay width, an image's colours data) and the
    taps are a count, the kernel's size (an argument of the op, as a conv's kernel axes are). L is
    the product of the per-dim window counts, and along each spatial dim the windows and their taps
    are parts of the axis they slide over (a sum, as ``Tensor.unfold``'s, see :func:`_unfold`), so
    L is fixed exactly when the positions are, and a fold's output positions exactly when its
    windows are. The taps and counts are axes of no tensor: keys ``<node>#taps`` / ``<node>#windows``,
    one axis per spatial dim (as a grouped conv's ``#groups``)."""
    ax.category = "passthrough"
    src = value_key(node.args[0])
    src_shape = shapes.get(src)
    kernel = [int(k) for k in args.get("kernel_size", ())]
    if src_shape is None or out_shape is None or not kernel:
        return
    cols, spatial = (src, src_shape), (out, out_shape)  # the (N, C*K, L) side and the (N, C, *spatial) side
    if name == "im2col":
        cols, spatial = spatial, cols
    batch = len(spatial[1]) - len(kernel) - 1  # 1 with a batch axis, 0 without
    if len(cols[1]) != batch + 2 or batch < 0:
        return
    if batch and spatial[1][0] > 1:
        ax.same.append(((src, 0), (out, 0)))
    ax.sizes.update({(f"{node.name}#taps", d): k for d, k in enumerate(kernel)})  # splits of the column axis meet them
    taps = [(f"{node.name}#taps", d) for d, k in enumerate(kernel) if k > 1]
    ax.fixed.extend((ref, f"the kernel taps of an {name} (size {kernel[ref[1]]}, an argument)") for ref in taps)
    channels = [(spatial[0], batch)] if spatial[1][batch] > 1 else []
    if channels and not taps:
        ax.same.append(((src, batch), (out, batch)))
    elif cols[1][batch] > 1:
        ax.products.append((((cols[0], batch),), tuple(channels + taps)))
    counts = _window_counts(spatial[1][batch + 1:], kernel, args)  # [] where export left a size symbolic
    ax.sizes.update({(f"{node.name}#windows", d): n for d, n in enumerate(counts)})
    windows = [(f"{node.name}#windows", d) for d, n in enumerate(counts) if n > 1]
    if cols[1][batch + 1] > 1 and windows:
        ax.products.append((((cols[0], batch + 1),), tuple(windows)))
    for d, n in enumerate(counts):
        parts = tuple(ref for ref in ((f"{node.name}#windows", d), (f"{node.name}#taps", d)) if ref in windows + taps)
        if spatial[1][batch + 1 + d] > 1 and parts:
            ax.sums.append(((spatial[0], batch + 1 + d), parts))


def _window_counts(sizes, kernel, args) -> list[int]:
    """Windows of an im2col along each spatial dim (torch.nn.Unfold's formula)."""
    if UNKNOWN_SIZE in sizes:
        return []
    def per_dim(key, default):
        val = args.get(key, default)
        return [int(v) for v in val] if isinstance(val, (list, tuple)) else [int(val)] * len(kernel)
    dil, pad, stride = per_dim("dilation", 1), per_dim("padding", 0), per_dim("stride", 1)
    return [(s + 2 * p - d * (k - 1) - 1) // st + 1 for s, k, d, p, st in zip(sizes, kernel, dil, pad, stride)]


def _select(node, name, args, ax, shapes, out, out_shape):
    ax.category = "passthrough"
    src = value_key(node.args[0])
    src_shape = shapes.get(src)
    if src_shape is None:
        return
    dim = _norm_dim(int(node.args[1]), len(src_shape))
    kept = [i for i in range(len(src_shape)) if i != dim]
    ax.same.extend(((src, i), (out, j)) for j, i in enumerate(kept) if src_shape[i] > 1)


def _split(node, name, args, ax, shapes, out, out_shape):
    ax.category = "passthrough"
    src = value_key(node.args[0])
    src_shape = shapes.get(src)
    if src_shape is None:
        return
    val = node.meta.get("val") or ()
    parts = []
    for i in range(len(val)):
        shape = shapes.get(f"{out}.{i}")
        if shape is None:
            continue
        if name == "unbind":
            dim = _norm_dim(int(args.get("dim", 0)), len(src_shape))
            kept = [a for a in range(len(src_shape)) if a != dim]
            ax.same.extend(((src, a), (f"{out}.{i}", j)) for j, a in enumerate(kept) if src_shape[a] > 1)
        else:
            ax.same.extend(((src, a), (f"{out}.{i}", a)) for a in range(len(src_shape)) if shape[a] > 1)
            parts.append((f"{out}.{i}", shape))
    if name == "unbind" and len(val) > 1:  # one graph value per entry: their number is the graph's own
        ax.fixed.append(((src, _norm_dim(int(args.get("dim", 0)), len(src_shape))),
                         f"unbound into its {len(val)} entries, one value each: a count"))
    _partition(ax, src, src_shape, parts)


def _partition(ax: OpAxes, whole: str, whole_shape, parts: list) -> None:
    """The axis along which ``parts`` (value key, shape) split ``whole`` (or are concatenated into
    it): each part is a dim of its own, the whole their sum (``OpAxes.sums``)."""
    for a, size in enumerate(whole_shape):
        pieces = tuple((key, a) for key, shape in parts if a < len(shape) and 1 < shape[a] != size)
        if not pieces and size > 1 and len(parts) > 1 and all(a < len(shape) and shape[a] == 1 for _, shape in parts):
            # every part one entry (Funnel's per-segment scores split into "same" and "different"):
            # the whole is their count, a sum of fixed parts
            pieces = tuple((key, a) for key, _ in parts)
        if pieces:
            ax.sums.append(((whole, a), pieces))


def tiling_slices(graph: fx.Graph, shapes: Shapes) -> list[tuple[Ref, tuple[Ref, ...]]]:
    """Slices of one value along one axis that, together, cover that axis once (a fused projection
    cut into q, k and v: ``qkv[..., :a]``, ``qkv[..., a:b]``, ``qkv[..., b:]``) split it as a
    ``split`` would: (whole, parts in order), the same sum a split records (``OpAxes.sums``). Each
    slice is its own node, so only the graph sees the partition. A slice without its complement (a
    position table cut to the sequence, ``wpe[:T]``) is left tied to the whole, as are axes where
    the slices overlap, repeat or leave a gap: those are not parts of a sum."""
    groups: dict[Ref, list] = {}
    for node in graph.nodes:
        piece = _slice_bounds(node, shapes)
        if piece is not None and piece[2] < piece[3] and node.users:  # unread or empty: no part of anything
            src, axis, start, stop = piece
            groups.setdefault((src, axis), []).append((start, stop, node.name))
    found = []
    for (src, axis), pieces in groups.items():
        pieces.sort()
        size = shapes.get(src)[axis]
        starts = [start for start, _, _ in pieces]
        stops = [stop for _, stop, _ in pieces]
        if len(pieces) < 2 or starts != [0] + stops[:-1] or stops[-1] != size:
            continue
        parts = tuple((name, axis) for _, _, name in pieces if shapes.get(name)[axis] > 1)
        if parts:
            found.append(((src, axis), parts))
    return found


def _slice_bounds(node: fx.Node, shapes: Shapes) -> Optional[tuple[str, int, int, int]]:
    """(source, axis, start, stop) of a step-1 slice or narrow with constant bounds, else None."""
    if node.op != "call_function" or op_name(node) not in BOUNDED_SLICES or not isinstance(node.args[0], fx.Node):
        return None
    args = normalized_args(node)
    src = node.args[0].name
    shape, out_shape = shapes.get(src), shapes.get(node.name)
    dim = args.get("dim", 0)
    if shape is None or out_shape is None or len(shape) != len(out_shape) or not isinstance(dim, int):
        return None
    axis = _norm_dim(dim, len(shape))
    if UNKNOWN_SIZE in (shape[axis], out_shape[axis]):  # a data-dependent size: no bounds to read
        return None
    if op_name(node).startswith("narrow"):
        start, length = args.get("start"), args.get("length")
        if not isinstance(start, int) or not isinstance(length, int):
            return None
        start = start + shape[axis] if start < 0 else start
        stop = start + length
    else:
        start, stop, step = args.get("start"), args.get("end"), args.get("step", 1)
        if any(v is not None and not isinstance(v, int) for v in (start, stop, step)) or step not in (None, 1):
            return None
        start, stop, _ = slice(start, stop).indices(shape[axis])
    if stop - start != out_shape[axis]:
        return None
    return src, axis, start, stop


def _getitem(node, name, args, ax, shapes, out, out_shape):
    ax.category = "passthrough"
    src, index = node.args[0], node.args[1]
    if not isinstance(src, fx.Node) or not isinstance(index, int):
        return
    key = f"{src.name}.{index}"
    shape = shapes.get(key)
    if shape is None:
        return
    ax.same.extend(((key, a), (out, a)) for a in range(len(shape)) if shape[a] > 1)


def _reduction(node, name, args, ax, shapes, out, out_shape):
    ax.category = "passthrough"
    src = value_key(node.args[0])
    src_shape = shapes.get(src)
    if src_shape is None:
        return
    out_key, out_shape = (out, out_shape) if out_shape is not None else (f"{out}.0", shapes.get(f"{out}.0"))
    if out_shape is None:
        return
    dims = args.get("dim", args.get("dims"))
    rank = len(src_shape)
    if dims is None or dims == []:
        dims = list(range(rank)) if len(out_shape) < rank or not out_shape else []
    dims = [dims] if isinstance(dims, int) else list(dims)
    dims = {_norm_dim(int(d), rank) for d in dims}
    kept = [i for i in range(rank) if i not in dims]
    if len(out_shape) == rank:  # keepdim
        ax.same.extend(((src, i), (out_key, i)) for i in kept if src_shape[i] > 1)
    elif len(out_shape) == len(kept):
        ax.same.extend(((src, i), (out_key, j)) for j, i in enumerate(kept) if src_shape[i] > 1)


def _cat(node, name, args, ax, shapes, out, out_shape):
    ax.category = "cat"
    tensors = node.args[0]
    dim = int(args.get("dim", 0))
    if out_shape is None:
        return
    rank = len(out_shape)
    dim = _norm_dim(dim, rank)  # the output's rank: a stack's dim counts its new axis too
    for t in tensors:
        shape = shapes.get(value_key(t))
        if shape is None:
            continue
        if name == "stack":
            mapping = [a if a < dim else a + 1 for a in range(len(shape))]
        else:
            mapping = list(range(len(shape)))
        ax.same.extend(((t.name, a), (out, mapping[a])) for a in range(len(shape)) if shape[a] > 1 and a < len(mapping))
    if name == "stack":
        # the new axis is a concatenation of one size-1 slot per tensor, and a size-1 part is no width:
        # a count of the construction (lags, q/k/v, the layers of a scalar mix), fixed as the same
        # values cat'ed after an unsqueeze are (docs/classification.md, "Splits and concatenations")
        ax.fixed.append(((out, dim), f"a stack of {len(tensors)} tensors (a count of the construction)"))
    else:
        parts = [(t.name, shapes.get(value_key(t))) for t in tensors]
        _partition(ax, out, out_shape, [(key, shape) for key, shape in parts if shape is not None and len(shape) == rank])


def _matmul_ties(a: str, a_shape, b: str, b_shape, out: str, out_shape, ax: OpAxes):
    """torch.matmul semantics, including 1-D operands and broadcast batch axes."""
    if len(a_shape) == 1:
        ax.contract.append(((a, 0), (b, len(b_shape) - 2 if len(b_shape) > 1 else 0)))
    else:
        ax.contract.append(((a, len(a_shape) - 1), (b, max(len(b_shape) - 2, 0))))
    if out_shape is None:
        return
    r = len(out_shape)
    if len(a_shape) >= 2:
        ax.same.append(((a, len(a_shape) - 2), (out, r - (2 if len(b_shape) >= 2 else 1))))
    if len(b_shape) >= 2:
        ax.same.append(((b, len(b_shape) - 1), (out, r - 1)))
    batch_rank = r - (len(a_shape) >= 2) - (len(b_shape) >= 2)
    for key, shape in ((a, a_shape), (b, b_shape)):
        batch = shape[:-2] if len(shape) >= 2 else ()
        offset = batch_rank - len(batch)
        for i, size in enumerate(batch):
            if size > 1 and out_shape[i + offset] == size:
                ax.same.append(((key, i), (out, i + offset)))


def _matmul(node, name, args, ax, shapes, out, out_shape):
    ax.category = "matmul"
    if name == "einsum":
        return _einsum(node, args, ax, shapes, out, out_shape)
    if name == "bilinear":
        return _bilinear(args, ax, shapes, out, out_shape)
    if name == "cosine_similarity":
        return _cosine_similarity(args, ax, shapes, out, out_shape)
    if name == "linear":
        x, w, b = args.get("input"), args.get("weight"), args.get("bias")
        xs, ws = shapes.get(value_key(x)), shapes.get(value_key(w))
        if xs is None or ws is None:
            return
        if len(ws) == 2 and out_shape is not None:  # y = x W^T: W is (out, in)
            ax.contract.append(((x.name, len(xs) - 1), (w.name, 1)))
            ax.same.extend(((x.name, i), (out, i)) for i in range(len(xs) - 1) if xs[i] > 1)
            ax.same.append(((w.name, 0), (out, len(out_shape) - 1)))
        if b is not None and out_shape is not None:
            _broadcast_ties(out, out_shape, [(b.name, shapes.get(b.name))], ax)
        return
    if name in ("addmm", "baddbmm", "addmv", "_addmm_activation"):
        bias, a, b = args.get("self", args.get("input")), args.get("mat1", args.get("batch1", args.get("mat"))), args.get("mat2", args.get("batch2", args.get("vec")))
        if bias is not None and isinstance(bias, fx.Node) and out_shape is not None:
            _broadcast_ties(out, out_shape, [(bias.name, shapes.get(bias.name))], ax)
    else:
        a, b = node.args[0], node.args[1]
    sa, sb = shapes.get(value_key(a)), shapes.get(value_key(b))
    if sa is None or sb is None:
        return
    _matmul_ties(a.name, sa, b.name, sb, out, out_shape, ax)


def _bilinear(args, ax, shapes, out, out_shape):
    """nn.Bilinear: y[..., k] = x1[..., i] W[k, i, j] x2[..., j] + b[k], the einsum
    '...i,kij,...j->...k': W contracts both inputs' last axes, so both are its fan-in."""
    x1, x2, w, b = (args.get(k) for k in ("input1", "input2", "weight", "bias"))
    s1, s2 = shapes.get(value_key(x1)), shapes.get(value_key(x2))
    if s1 is None or s2 is None or out_shape is None:
        return
    where = {"i": [(x1.name, len(s1) - 1), (w.name, 1)], "j": [(x2.name, len(s2) - 1), (w.name, 2)], "k": [(w.name, 0)]}
    for x, shape in ((x1, s1), (x2, s2)):  # the batch axes: labels 0, 1, ... of the output's
        for a in range(len(shape) - 1):
            if shape[a] > 1:
                where.setdefault(a, []).append((x.name, a))
    _tie_labels(where, [*range(len(out_shape) - 1), "k"], ax, out)
    if b is not None:
        _broadcast_ties(out, out_shape, [(b.name, shapes.get(b.name))], ax)


def _cosine_similarity(args, ax, shapes, out, out_shape):
    """cosine_similarity(x1, x2, dim): the inputs broadcast against each other, their ``dim`` axes
    contracted (a dot product of the normalised vectors), that axis gone from the output: an einsum
    whose labels are the broadcast positions."""
    x1, x2 = args.get("x1"), args.get("x2")
    s1, s2 = shapes.get(value_key(x1)), shapes.get(value_key(x2))
    if s1 is None or s2 is None or out_shape is None:
        return
    rank = max(len(s1), len(s2))
    dim = _norm_dim(args.get("dim", 1), rank)
    where: dict[int, list[Ref]] = {}
    for x, shape in ((x1, s1), (x2, s2)):
        for i, size in enumerate(shape):
            position = i + rank - len(shape)
            if size > 1 or position == dim:
                where.setdefault(position, []).append((x.name, i))
    _tie_labels(where, [p for p in range(rank) if p != dim], ax, out)


def _grouped_matmul(node, name, args, ax, shapes, out, out_shape):
    """grouped_mm(x (S, K), w (G, K, N), offs (G,)) -> (S, N): the rows of group g (up to offs[g])
    go through w[g]. w's axis 0 indexes independent blocks, one per group, which the data picks row
    by row (an MoE's experts): a count of blocks by construction, like a vocabulary. (G, M, K) x
    (G, K, N) is a bmm; other operand ranks group along a contracted axis and stay unknown."""
    ax.category = "matmul"
    a, b = node.args[0], node.args[1]
    sa, sb = shapes.get(value_key(a)), shapes.get(value_key(b))
    if sa is None or sb is None or out_shape is None:
        return
    if len(sa) == 3 and len(sb) == 3:
        _matmul_ties(a.name, sa, b.name, sb, out, out_shape, ax)
    elif len(sa) == 2 and len(sb) == 3:
        ax.contract.append(((a.name, 1), (b.name, 1)))
        ax.same.extend([((a.name, 0), (out, 0)), ((b.name, 2), (out, 1))])
        ax.blocks.append((b.name, 0))
        ax.fixed.append(((b.name, 0), "group axis of a grouped matmul (one block per group the data picks)"))
    else:
        ax.category = "unknown"


def _einsum(node, args, ax, shapes, out, out_shape):
    equation = args.get("equation", node.args[0]).replace(" ", "")
    operands = list(args.get("tensors", node.args[1]))
    lhs, _, rhs = equation.partition("->")
    terms = lhs.split(",")
    shapes_in = [shapes.get(value_key(t)) for t in operands]
    if any(s is None for s in shapes_in) or out_shape is None:
        return
    spare = iter(c for c in string.ascii_letters if c not in equation)
    ell = [next(spare) for _ in range(max(len(s) for s in shapes_in))]

    def expand(term, rank):
        if "..." not in term:
            return term
        n = rank - (len(term) - 3)
        return term.replace("...", "".join(ell[len(ell) - n:]))

    terms = [expand(t, len(s)) for t, s in zip(terms, shapes_in)]
    if not rhs and "->" not in equation:
        letters = "".join(terms)
        rhs = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    rhs = expand(rhs, len(out_shape))
    where: dict[str, list[Ref]] = {}
    for t, term in zip(operands, terms):
        for i, c in enumerate(term):
            where.setdefault(c, []).append((t.name, i))
    _tie_labels(where, list(rhs), ax, out)


def _tie_labels(where: dict, out_labels: list, ax: OpAxes, out: str) -> None:
    """Einsum's rule: operand axes under one label are summed together, or are the output axis of
    that label."""
    for label, refs in where.items():
        if label in out_labels:
            ax.same.extend((r, (out, out_labels.index(label))) for r in refs)
        else:
            ax.contract.extend((refs[0], r) for r in refs[1:])


def _trilinear(node, name, args, ax, shapes, out, out_shape):
    """aten._trilinear (nn.Bilinear on the eager route): each input gets size-1 axes inserted at its
    ``expand`` positions, the three are multiplied with broadcasting and summed over ``sumdim``: an
    einsum whose labels are the positions (size-1 axes broadcast and tie nothing)."""
    ax.category = "matmul"
    inputs = [args.get(k) for k in ("i1", "i2", "i3")]
    expands = [set(args.get(k, ())) for k in ("expand1", "expand2", "expand3")]
    shapes_in = [shapes.get(value_key(x)) for x in inputs]
    if any(s is None for s in shapes_in) or out_shape is None:
        return
    positions = range(len(shapes_in[0]) + len(expands[0]))
    summed = set(args.get("sumdim", ()))
    where: dict[int, list[Ref]] = {}
    for x, shape, expand in zip(inputs, shapes_in, expands):
        for i, p in enumerate(p for p in positions if p not in expand):
            if shape[i] > 1:
                where.setdefault(p, []).append((x.name, i))
    _tie_labels(where, [p for p in positions if p not in summed], ax, out)


def _conv(node, name, args, ax, shapes, out, out_shape):
    ax.category = "conv"
    x, w, b = args.get("input"), args.get("weight"), args.get("bias")
    xs, ws = shapes.get(value_key(x)), shapes.get(value_key(w))
    if xs is None or ws is None or out_shape is None:
        return
    transposed = bool(args.get("transposed", False)) or name.startswith("conv_transpose")
    groups = int(args.get("groups", 1) or 1)
    ax.args["groups"], ax.args["transposed"] = groups, transposed
    ax.same.append(((x.name, 0), (out, 0)))
    for i in range(2, len(xs)):
        ax.same.append(((x.name, i), (out, i)))
        ax.fixed.append(((w.name, i), "conv kernel axis"))
    if groups == 1:
        w_in, w_out = (0, 1) if transposed else (1, 0)
        ax.contract.append(((x.name, 1), (w.name, w_in)))
        ax.same.append(((w.name, w_out), (out, 1)))
    elif not transposed:  # weight (out, in/g, k...): channels = groups x per-group channels
        group = (f"{node.name}#groups", 0)
        ax.products.append((((x.name, 1),), (group, (w.name, 1))))
        ax.products.append((((w.name, 0),), (group, (f"{node.name}#out_per_group", 0))))
        ax.same.append(((w.name, 0), (out, 1)))
    else:  # transposed weight (in, out/g, k...)
        group = (f"{node.name}#groups", 0)
        ax.same.append(((x.name, 1), (w.name, 0)))
        ax.products.append((((w.name, 0),), (group, (f"{node.name}#in_per_group", 0))))
        ax.products.append((((out, 1),), (group, (w.name, 1))))
    if b is not None:
        ax.same.append(((b.name, 0), (out, 1)))


def _embedding(node, name, args, ax, shapes, out, out_shape):
    ax.category = "embedding"
    w, idx = args.get("weight"), args.get("indices", args.get("input"))
    ws, idxs = shapes.get(value_key(w)), shapes.get(value_key(idx))
    if ws is None or idxs is None:
        return
    out_key = out if out_shape is not None else f"{out}.0"
    out_shape = shapes.get(out_key)
    if out_shape is None:
        return
    ax.fixed.append(((w.name, 0), "embedding index axis (vocabulary)"))
    ax.same.append(((w.name, len(ws) - 1), (out_key, len(out_shape) - 1)))
    if name == "embedding":
        ax.same.extend(((idx.name, i), (out_key, i)) for i in range(len(idxs)) if idxs[i] > 1)
    elif len(idxs) == 2:  # embedding_bag: one bag per row
        ax.same.append(((idx.name, 0), (out_key, 0)))


def _as_real(node, name, args, ax, shapes, out, out_shape):
    """view_as_real (..., ) -> (..., 2) and view_as_complex (..., 2) -> (...): the real and imaginary
    parts are a trailing axis of size 2; the other axes pass through."""
    ax.category = "passthrough"
    src = value_key(node.args[0])
    src_shape = shapes.get(src)
    if src_shape is None or out_shape is None:
        return
    ax.same.extend(((src, i), (out, i)) for i in range(min(len(src_shape), len(out_shape)))
                   if src_shape[i] > 1 and src_shape[i] == out_shape[i])
    parts = (out, len(out_shape) - 1) if name == "view_as_real" else (src, len(src_shape) - 1)
    ax.fixed.append((parts, "the real and imaginary parts of a complex tensor"))


def _index(node, name, args, ax, shapes, out, out_shape):
    """x[idx] / index_select / gather: the indexed axis of x is looked up, like an embedding."""
    ax.category = "index"
    src = value_key(node.args[0])
    src_shape = shapes.get(src)
    if src_shape is None or out_shape is None:
        return
    if name in ("index_select", "gather"):
        dim = _norm_dim(int(node.args[1]), len(src_shape))
        index = node.args[2]
        ax.args["indexed_axes"] = (dim,)
        ax.same.extend(((src, a), (out, a)) for a in range(len(src_shape)) if a != dim and src_shape[a] > 1 and a < len(out_shape) and out_shape[a] == src_shape[a])
        idx_shape = shapes.get(value_key(index))
        if idx_shape is not None and name == "index_select" and idx_shape and idx_shape[0] > 1:
            ax.same.append(((index.name, 0), (out, dim)))
        if idx_shape is not None and name == "gather" and len(idx_shape) > dim and idx_shape[dim] > 1:
            ax.same.append(((index.name, dim), (out, dim)))  # one output entry per picked position
        return
    indices = node.args[1]
    positions = [i for i, t in enumerate(indices) if t is not None]
    ax.args["indexed_axes"] = tuple(positions)
    first = positions[0] if positions else 0
    if positions != list(range(first, first + len(positions))):
        return  # indexed axes apart: the index's axes go first (not followed)
    # one run of indexed axes (``w[ids]``, or ``table[:, idx]``: LeViT's attention biases): the axes
    # before it keep their place, the index's axes take the run's, the axes after it follow
    ax.same.extend(((src, a), (out, a)) for a in range(first) if src_shape[a] > 1)
    idx_shape = shapes.get(value_key(indices[first])) or ()
    if shapes.dtype.get(value_key(indices[first])) == torch.bool:
        # ``x[mask]`` (the tokens a router sends to one expert): the mask's axes become one axis of the
        # picked entries, whose count the data decides; the axes after them follow
        covered = len(idx_shape)
        ax.same.extend(((src, a), (out, a - covered + 1)) for a in range(first + covered, len(src_shape))
                       if src_shape[a] > 1)
        return
    ax.same.extend(((indices[first].name, i), (out, first + i)) for i in range(len(idx_shape)) if idx_shape[i] > 1)
    rest = range(first + len(positions), len(src_shape))
    offset = len(idx_shape) - len(positions)
    ax.same.extend(((src, a), (out, a + offset)) for a in rest if src_shape[a] > 1)


def _index_put(node, name, args, ax, shapes, out, out_shape):
    """``x[mask] = token`` (index_put): ``self`` with ``values`` written where the indices say, a
    value placed into the data as ``where``'s operands are (a mask token: wav2vec2's and HuBERT's
    ``masked_spec_embed`` put at the masked frames). ``self``'s axes pass through; ``values``
    broadcasts, right-aligned, against the axes the indices leave (a bool mask covers as many
    leading axes as it has, any other index one)."""
    ax.category = "elementwise"
    src, values = node.args[0], args.get("values")
    ss, vs = shapes.get(value_key(src)), shapes.get(value_key(values))
    if ss is None or out_shape is None:
        return
    ax.same.extend(((src.name, i), (out, i)) for i in range(len(ss)) if ss[i] > 1)
    covered = sum(len(shapes.get(value_key(i)) or ()) if shapes.dtype.get(value_key(i)) == torch.bool else 1
                  for i in args.get("indices") or ())
    left = range(covered, len(ss))
    if vs is None or not isinstance(values, fx.Node):
        return
    for j, a in zip(range(len(vs) - 1, -1, -1), reversed(left)):
        if vs[j] == ss[a] > 1:
            ax.same.append(((values.name, j), (out, a)))


def _norm(node, name, args, ax, shapes, out, out_shape):
    ax.category = "norm"
    x = args.get("input")
    xs = shapes.get(value_key(x))
    out_key = out if out_shape is not None else f"{out}.0"
    out_shape = shapes.get(out_key)
    if xs is None or out_shape is None:
        return
    ax.same.extend(((x.name, i), (out_key, i)) for i in range(len(xs)) if xs[i] > 1)
    channel_args = ("weight", "bias", "running_mean", "running_var")
    for arg in channel_args:
        p = args.get(arg)
        ps = shapes.get(value_key(p))
        if ps is None:
            continue
        if name in NORMS_LAST:  # gains cover the trailing normalized_shape axes
            offset = len(xs) - len(ps)
            ax.same.extend(((p.name, i), (x.name, i + offset)) for i in range(len(ps)) if ps[i] > 1)
        elif len(ps) == 1:
            ax.same.append(((p.name, 0), (x.name, 1)))


WEIGHT_NORMS = {"_weight_norm", "_weight_norm_interface"}


def _weight_norm(node, name, args, ax, shapes, out, out_shape):
    """``W = g * v / ||v||`` (the norm over every axis of v but ``dim``; -1: all of them): W has v's axes,
    and g's axis ``dim`` is W's (graph/weightnorm.py). The interface op returns (W, norms)."""
    ax.category = "weight_norm"
    v, g = args.get("v"), args.get("g")
    vs, gs = shapes.get(value_key(v)), shapes.get(value_key(g))
    out_key = out if out_shape is not None else f"{out}.0"
    if vs is None or shapes.get(out_key) is None:
        return
    ax.same.extend(((v.name, i), (out_key, i)) for i in range(len(vs)) if vs[i] > 1)
    dim = int(args.get("dim", 0))
    if gs is not None and 0 <= dim < len(gs) == len(vs) and gs[dim] > 1:
        ax.same.append(((g.name, dim), (out_key, dim)))


def _attention(node, name, args, ax, shapes, out, out_shape):
    ax.category = "attention"
    q, k, v = (node.args[i] for i in range(3))
    qs, ks, vs = (shapes.get(value_key(t)) for t in (q, k, v))
    out_key = out if out_shape is not None else f"{out}.0"
    out_shape = shapes.get(out_key)
    if None in (qs, ks, vs) or out_shape is None:
        return
    r = len(qs)
    ax.contract.append(((q.name, r - 1), (k.name, r - 1)))
    ax.same.append(((k.name, r - 2), (v.name, r - 2)))
    ax.same.extend(((q.name, i), (out_key, i)) for i in range(r - 1) if qs[i] > 1)
    ax.same.append(((v.name, r - 1), (out_key, r - 1)))
    for i in range(r - 2):
        for t, s in ((k, ks), (v, vs)):
            if s[i] == qs[i] and s[i] > 1:
                ax.same.append(((t.name, i), (q.name, i)))
    mask = args.get("attn_mask")
    mask_shape = shapes.get(value_key(mask))
    if mask_shape is not None:
        scores = tuple(qs[:-1]) + (ks[-2],)
        offset = len(scores) - len(mask_shape)
        for i, size in enumerate(mask_shape):
            j = i + offset
            ref = (q.name, j) if j < r - 1 else (k.name, r - 2)
            if size > 1 and size == scores[j]:
                ax.same.append(((mask.name, i), ref))


def _one_hot(node, name, args, ax, shapes, out, out_shape):
    ax.category = "one_hot"
    src = value_key(node.args[0])
    src_shape = shapes.get(src)
    if src_shape is None or out_shape is None:
        return
    ax.same.extend(((src, i), (out, i)) for i in range(len(src_shape)) if src_shape[i] > 1)
    ax.fixed.append(((out, len(out_shape) - 1), "one-hot class axis"))


def _creation(node, name, args, ax, shapes, out, out_shape):
    ax.category = "creation"


_BUILDERS = {
    "getitem": _getitem,
    "index_put": _index_put,
    "_unsafe_index_put": _index_put,
    "select": _select,
    "cat": _cat,
    "concat": _cat,
    "concatenate": _cat,
    "stack": _cat,
    "index": _index,
    "_unsafe_index": _index,
    "index_select": _index,
    "gather": _index,
    "one_hot": _one_hot,
    "prelu": _prelu,
    "_prelu_kernel": _prelu,
    "embedding_renorm": _renorm_rows,
    "grid_sampler": _grid_sample,
    "grid_sampler_2d": _grid_sample,
    "grid_sampler_3d": _grid_sample,
    "unfold": _unfold,
    "_trilinear": _trilinear,
    "im2col": _im2col,
    "col2im": _im2col,
    "_weight_norm": _weight_norm,
    "_weight_norm_interface": _weight_norm,
    "view_as_real": _as_real,
    "view_as_complex": _as_real,
}
_FAMILIES = [
    (ELEMENTWISE_BINARY | ELEMENTWISE_UNARY, _elementwise),
    (RESHAPES, _reshape),
    (PERMUTES, _permute),
    (SLICES_AND_PADS | POOLS, _same_rank),
    (FOURIER, _fourier),
    (SPLITS, _split),
    (REDUCTIONS, _reduction),
    (MATMULS, _matmul),
    (GROUPED_MATMULS, _grouped_matmul),
    (CONVS, _conv),
    (EMBEDDINGS, _embedding),
    (NORMS_LAST | NORMS_CHANNEL, _norm),
    (CREATIONS, _creation),
]
