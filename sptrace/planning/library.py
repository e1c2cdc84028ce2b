"""How a library's own init scales with width: what the base form divides out.

The base form (docs/derivations.md §6) keeps the library's init at the base shapes and scales it
by the rule's width ratio over the library's own width ratio. The library's ratio is read from a
law (how its default std depends on a weight's shape), from a number, or from a measured ratio per
parameter (:func:`sptrace.parametrize` with ``library_init="auto"`` matches the model's tensors
against the base's, using :func:`library_candidates`).
"""
from __future__ import annotations

import math
import statistics
from typing import Any, Mapping, Optional, Sequence

from ..types import ParamRecord, Role, Space, SptraceError

__all__ = ["LIBRARY_LAWS", "WIDTH_LAW", "library_std_ratio", "library_ratios", "library_candidates", "detect_laws", "drawn_with"]

# How a library's default init std depends on a weight's shape (``torch.nn.init`` names): the
# candidates that the base form matches against a real base model's tensors.
LIBRARY_LAWS = ("torch", "fan_out", "fan_avg", "in1", "constant")
# A std of 1/sqrt(width) for every weight, whatever its layout: what a hand-written init reads off the
# model's width (``torch.randn(d, 3, heads, head_dim) * d ** -0.5``), where a shape law reads fans from
# torch's layout convention (docs/parametrize.md, "What lr means"). Read off one model only
# (:func:`detect_laws`), never matched against a base model's tensors.
WIDTH_LAW = "width"


def library_std_ratio(record: ParamRecord, library_init: Any = "torch") -> float:
    """std(library default at the model shape) / std(library default at the base shape).

    ``"torch"``: PyTorch's defaults: weights of ≥2 dims (Linear, Conv, ConvTranspose, MHA) have
    std ∝ 1/sqrt(fan_in), fan_in = shape[1] * prod(shape[2:])
    (``torch.nn.init._calculate_fan_in_and_fan_out``); embedding tables (N(0,1)), norm weights (1)
    and 1-D tensors are width-independent. ``"fan_out"``: kaiming ``mode="fan_out"`` (torchvision's
    and timm's ResNets and MobileNets), fan_out = shape[0] * prod(shape[2:]). ``"fan_avg"``: xavier,
    (fan_in + fan_out) / 2 (timm's MLP-Mixer). ``"in1"``: std ∝ 1/sqrt(shape[1]) alone, PyTorch's
    ``nn.Bilinear`` (U(±1/sqrt(in1_features)) for its ``(out, in1, in2)`` weight and its bias), which
    the fan-in law would read as falling with in2 too. ``"constant"``: every std is width-independent
    (HF models: N(0, initializer_range)). A float: that ratio.
    """
    if isinstance(library_init, (int, float)):
        return float(library_init)
    if library_init not in (*LIBRARY_LAWS, WIDTH_LAW):
        raise SptraceError(f"library_init must be one of {', '.join(LIBRARY_LAWS)} or a float, got {library_init!r}")
    if library_init == "constant":
        return 1.0
    if record.base_shape is None or not _shape_dependent(record):
        return 1.0
    if library_init == WIDTH_LAW:  # every width axis is scaled alike at the reference (planning/reference.py)
        axis = next(iter(record.width_dims), None)
        return 1.0 if axis is None else math.sqrt(record.base_shape[axis] / record.shape[axis])
    fan = _LAW_FANS[library_init]
    return math.sqrt(fan(record.base_shape) / fan(record.shape))


def _fan_in(shape) -> int:
    return shape[1] * math.prod(shape[2:])


def _fan_out(shape) -> int:
    return shape[0] * math.prod(shape[2:])


_LAW_FANS = {
    "torch": _fan_in,
    "fan_out": _fan_out,
    "fan_avg": lambda shape: (_fan_in(shape) + _fan_out(shape)) / 2,
    "in1": lambda shape: shape[1],
}


def _paired_weights(records: Sequence[ParamRecord]) -> dict[str, ParamRecord]:
    """bias name -> the weight consumed by the same graph node (linear / conv / addmm); not the gain of a
    weight computed from parameters there (a weight norm's g comes before its v: W = g v/|v|)."""
    by_node: dict[str, ParamRecord] = {}
    for r in records:
        if r.classified and r.role not in (Role.BIAS, Role.GAIN, Role.SCALAR):
            for u in r.uses:
                by_node.setdefault(u.node, r)
    return {
        r.name: by_node[r.uses[0].node]
        for r in records
        if r.classified and r.role is Role.BIAS and r.uses and r.uses[0].node in by_node
    }


def _law_of(record: ParamRecord, library_init: Any) -> Any:
    """The law (or ratio) ``library_init`` gives this record; ``None`` when a mapping lacks it."""
    if not isinstance(library_init, Mapping):
        return library_init
    return next((library_init[n] for n in (record.name, *record.aliases) if n in library_init), None)


def _ratio(record: ParamRecord, library_init: Any, paired: Mapping[str, ParamRecord]) -> Optional[float]:
    """std(library init at model) / std(at base) for one record (see :func:`library_std_ratio`).

    ``library_init`` may map names to laws or measured ratios (a name it lacks: PyTorch's law). A
    bias without a measured ratio takes its weight's law (bias ~ U(±1/sqrt(weight fan-in))).
    """
    law = _law_of(record, library_init)
    if record.role is Role.BIAS and record.name in paired and not isinstance(law, (int, float)):
        weight = paired[record.name]
        weight_law = _law_of(weight, library_init)
        weight_law = law if weight_law is None else weight_law
        return library_std_ratio(weight, "torch" if weight_law is None else weight_law) \
            if weight.base_shape is not None else 1.0
    return library_std_ratio(record, "torch" if law is None else law)


def library_ratios(records: Sequence[ParamRecord], library_init: Any) -> dict[str, float]:
    """{name: library std ratio} of every classified record, for :func:`sptrace.planning.plan.plan`.

    ``library_init``: a law of :data:`LIBRARY_LAWS`, a float, or a mapping name -> law or measured
    ratio (names it lacks fall back to PyTorch's law). A bias takes the ratio of the weight consumed by
    the same graph node, as μP's ``rescale_linear_bias``.
    """
    records = list(records)
    paired = _paired_weights(records)
    return {r.name: _ratio(r, library_init, paired) for r in records if r.classified}


def library_candidates(records: Sequence[ParamRecord], base_stds: Optional[Mapping[str, float]] = None
                       ) -> dict[str, list[float]]:
    """Per classified record with a base shape, its std ratio (model / base) under each library
    init law (:data:`LIBRARY_LAWS`; a bias under its weight's), for matching measured ratios to;
    ``base_stds`` (the base model's tensors' stds) may add a table's row law (:func:`_row_law`)."""
    records = list(records)
    paired = _paired_weights(records)
    base_stds = base_stds or {}
    return {
        r.name: sorted({_ratio(r, law, paired) for law in LIBRARY_LAWS} | _row_law(r, base_stds.get(r.name)))
        for r in records if r.classified and r.base_shape is not None
    }


# how close a table's std at the base must be to 1/sqrt(row length) (Gaussian) or 1/sqrt(3 row length)
# (uniform, PyTorch's bound) to be read as drawn with it: a 64-entry class token's sample std is within
# 30 % of its law's in 99.7 % of draws (sd 8.8 %); the two laws' windows do not overlap (sqrt(3) apart)
_ROW_LAW_TOLERANCE = 0.3


def _row_law(record: ParamRecord, base_std: Optional[float]) -> set[float]:
    """The std ratio of a table read by sparse input (a feature tokenizer's per-feature bias, a class
    token) that its module drew with std ∝ 1/sqrt(row length), as rtdl's FT-Transformer does
    (U(±1/sqrt(d_token))): a candidate beside the width-free N(0, 1) every law gives a table, offered
    only where the base's table has that std (the measured ratio alone, on a 64-entry class token,
    reads a width-free table as this law in 5 % of seeds at base 64 against 128; docs/rules.md,
    "Tables drawn with 1/sqrt(width)")."""
    if (record.role is not Role.EMBEDDING or record.input_space is not Space.SPARSE or not record.fan_out_is_width
            or not base_std or not math.isfinite(base_std)):
        return set()
    row = record.base_fan_out
    if not any(abs(math.log(base_std * math.sqrt(k * row))) < math.log1p(_ROW_LAW_TOLERANCE) for k in (1, 3)):
        return set()
    return {math.sqrt(row / record.fan_out)}


# How close a weight's std must be to a law's own std at its shape to be read as that law.
_LAW_TOLERANCE = 0.15
_CONSTANT_MARGIN = 0.05
# How close weights of two fan-ins must be to the fitted constant to count as sharing it (one std drawn
# twice: a weight of 1000 or more entries drawn from N(0, s) has a sample std within ~2 % of s).
_SHARED_TOLERANCE = 0.05


def _default_std(law: str, shape) -> float:
    """The std ``torch.nn.init`` gives a weight of ``shape`` under ``law``: PyTorch's Linear / Conv
    default kaiming_uniform(a=sqrt(5)) is U(±1/sqrt(fan_in)) and nn.Bilinear's U(±1/sqrt(in1)), each
    1/sqrt(3 · its law's fan); kaiming_normal(mode="fan_out", nonlinearity="relu") is sqrt(2/fan_out);
    xavier (gain 1) sqrt(2/(fan_in + fan_out)), i.e. sqrt(1/fan_avg)."""
    fan = _LAW_FANS[law](shape)
    if law in ("torch", "in1"):
        return 1.0 / math.sqrt(3 * fan)
    return math.sqrt((2.0 if law == "fan_out" else 1.0) / fan)


def detect_laws(records: Sequence[ParamRecord], stds: Mapping[str, float],
                means: Optional[Mapping[str, float]] = None, width: Optional[int] = None) -> dict[str, str]:
    """The library law each weight was drawn by, read from the weights' own stds (no base model
    needed; ``stds``: name -> measured std; ``means``: name -> measured mean).

    Per weight the shape laws (:data:`LIBRARY_LAWS`) predict an absolute std; ``"constant"`` (HF's
    initializer_range) predicts one std shared by every weight. One weight alone cannot tell them
    apart where they happen to agree (0.02 is PyTorch's std at fan-in 833), so the law is chosen
    for the model first: the one whose predictions the weights fit best (mean |log| error; the
    constant is fitted (the median), so it must win by a margin and needs two distinct fan-ins).
    Where that law misses some weight by more than 15 %, a shape law times a fitted gain that fits
    every weight is taken instead (:func:`_with_a_gain`).
    A weight that is off its model's law by more than 15% and within 15% of another's takes that
    one (timm's ViT: a fixed 0.02 for linears, PyTorch's law for the patch conv).

    Every shape law draws centred values. A weight whose mean is larger than its std (U(0, b): √3
    stds) was drawn by none of them but by its module's own code, with width-free bounds (Funnel
    Transformer's relative-attention kernel and segment table, U(0, initializer_range)): constant.
    Read by the fan-in law instead, its std was taken to fall like 1/sqrt(width) and the plan made
    it grow as much (`nat@0` +0.41 over widths 64-512).

    ``width``: the model's width (planning.reference.model_width). A std shared by weights of
    several fan-ins that is ``1/sqrt(width)`` is a law in width, not a constant: Switch Transformers
    draws every expert matrix, ``wi`` (d -> 4d) and ``wo`` (4d -> d) alike, from N(0, 1/d_model)
    (and k, v, o too); read as a width-free constant, those stds, which fall like 1/sqrt(width), were
    scaled by the rule's ratio once more (docs/parametrize.md, "What lr means"). It is the law
    :data:`WIDTH_LAW` a weight of any layout may take: a hand-written ``(d, 3, heads, head_dim)``
    projection drawn with std ``d^-1/2`` has a fan-in of ``3d`` in torch's convention, and read by the
    fan-in law its std was taken to fall like ``(3d)^-1/2``: right in width, but the other weights of the
    model voted for a constant at some widths and its init grew (`nat@0` -0.34 over 64-512).

    A weight whose std is 1 (within 5 %) was drawn from N(0, 1), ``torch.randn``'s, whose scale is
    width-free, as an embedding table's: constant (cosine-classifier prototypes
    ``nn.Parameter(torch.randn(classes, d))`` beside nn.Linear layers took a different law at each width)."""
    measured = [r for r in records if _has_law(r) and stds.get(r.name, 0.0) > 0 and math.isfinite(stds[r.name])]
    shared = math.log1p(_SHARED_TOLERANCE)
    own = {r.name for r in measured
           if abs((means or {}).get(r.name, 0.0)) > stds[r.name] or abs(math.log(stds[r.name])) <= shared}
    weights = [r for r in measured if r.name not in own]
    if not weights:
        return dict.fromkeys(own, "constant")
    logs = {r.name: math.log(stds[r.name]) for r in weights}
    tolerance = math.log1p(_LAW_TOLERANCE)
    constant = statistics.median(logs.values())  # robust: a few weights by another law do not move it
    laws_here = LIBRARY_LAWS + ((WIDTH_LAW,) if width else ())
    predicted = {law: {r.name: _predicted_log_std(law, r.shape, constant, width) for r in weights} for law in laws_here}
    errors = {law: [abs(logs[n] - p) for n, p in predicted[law].items()] for law in laws_here}
    # A constant is told from a fan-in law only by weights of different fan-ins that share its std: the
    # ones it fits must have two fan-ins. Else a few weights drawn by the model's own code (a hand-written
    # (E, d, 4d) expert stack, N(0, 1/d)), far off every law, outvote the nn.Linear weights that fit
    # PyTorch's law exactly and that a fitted constant matches only by sharing one fan-in (docs/parametrize.md).
    # Sharing it means within sampling noise (5 %), not the 15 % a law is allowed: PyTorch's Linear std at fan-in
    # d, 1/sqrt(3d), is 1/sqrt(4d) (a hand-drawn (E, 4d, d) expert, N(0, 1/(4d))) times sqrt(4/3) = 1.155, so
    # 15 % let the sample noise decide, seed by seed (docs/parametrize.md).
    backed = len({_fan_in(r.shape) for r in weights if abs(logs[r.name] - constant) <= shared}) >= 2
    if width and abs(constant + 0.5 * math.log(width)) <= shared:  # 1/sqrt(width): a law in width
        backed = False
    if not backed:
        errors["constant"] = [math.inf]
    # The constant is fitted, so it must fit better by a margin: where most weights share one
    # fan-in, a fitted constant matches them exactly whatever the law (the zoo GPT at width 32).
    model_law = min(laws_here, key=lambda law: statistics.fmean(errors[law]) + _CONSTANT_MARGIN * (law == "constant"))
    if any(e > tolerance for e in errors[model_law]):
        model_law, gain = _with_a_gain(logs, predicted, tolerance) or (model_law, 0.0)
        predicted[model_law] = {n: p + gain for n, p in predicted[model_law].items()}
    laws = {}
    # Nor may one weight take an unbacked constant: the fitted median is a middle weight's own std, which
    # it then matched exactly (a hand-drawn N(0, 1/d) matrix between two nn.Linear read as constant at
    # widths 128 and 512, xavier at 64 and 256: its init scaled by sqrt(256/d) at every other width).
    laws_for_one = tuple(law for law in laws_here if backed or law != "constant")
    for r in weights:
        laws[r.name] = _law_of_one({law: abs(logs[r.name] - predicted[law][r.name]) for law in laws_for_one},
                                   model_law, tolerance, shared)
    return {**laws, **dict.fromkeys(own, "constant")}


def _law_of_one(gaps: Mapping[str, float], model_law: str, tolerance: float, shared: float) -> str:
    """One weight's law from its |log| gaps to each law's prediction: the model's, unless the weight is
    off it by more than the tolerance and within it of another (the constant within ``shared``: a std
    shared, as above), or another fits it within sampling noise (``shared``) where the model's is off by
    twice that. A (heads, head_dim, d) projection drawn with std d^-1/2 is 15 % off "in1"
    (1/sqrt(3 head_dim)) at width 64, inside or outside the tolerance as the sample fell: on some seeds it
    kept "in1" and its init doubled at width 64 only (docs/parametrize.md)."""
    nearest = min(gaps, key=gaps.get)
    near = shared if nearest == "constant" else tolerance
    off = gaps[model_law] > tolerance and gaps[nearest] < near
    exact = gaps[nearest] <= shared and gaps[model_law] > 2 * shared
    return nearest if off or exact else model_law


def _predicted_log_std(law: str, shape, constant: float, width: Optional[int]) -> float:
    """log of the std ``law`` gives a weight of ``shape``: the fitted ``constant``, ``1/sqrt(width)``
    under the width law, else the shape law's (:func:`_default_std`)."""
    if law == "constant":
        return constant
    return -0.5 * math.log(width) if law == WIDTH_LAW else math.log(_default_std(law, shape))


def _with_a_gain(logs: Mapping[str, float], predicted: Mapping[str, Mapping[str, float]],
                 tolerance: float) -> Optional[tuple[str, float]]:
    """A shape law times a gain of its own that fits every weight within 15 % where no law as drawn
    does: ``(law, log gain)``, the best fitting such law, else ``None``. Funnel Transformer draws its
    linears from N(0, 1/(fan_in + fan_out)), xavier times 1/sqrt(2), which scales with width as
    xavier does; as drawn, each law misses them by 20 % or more and the fitted constant read them as
    width-free. Only a gain that fits all of them counts: with a few weights sharing one fan-in, a
    gain fits those whatever the law (timm's ViT at width 256: PyTorch's law times 0.55 fits its four
    linears of fan-in 256, where the constant 0.02 is the law)."""
    found = []
    for law in (law for law in LIBRARY_LAWS if law != "constant"):
        gain = statistics.median(logs[n] - p for n, p in predicted[law].items())
        errors = [abs(logs[n] - p - gain) for n, p in predicted[law].items()]
        if all(e < tolerance for e in errors):
            found.append((statistics.fmean(errors), law, gain))
    return min(found)[1:] if found else None


# A declared std (a config's initializer_range) is the library's law only where some weight was drawn
# with it: a weight of 1000 or more entries drawn from N(0, s) has a sample std within ~2 % of s.
_DECLARED_TOLERANCE = 0.05


def drawn_with(records: Sequence[ParamRecord], stds: Mapping[str, float], std: float) -> bool:
    """Whether some weight with a shape law has its std within 5 % of ``std``: the library drew it
    with that constant. A Hugging Face config names an ``initializer_range`` that its ``_init_weights``
    need not use for every weight: Funnel Transformer draws its linears from N(0, 1/(fan_in + fan_out))
    (its ``initializer_std`` left None), 0.088 at width 64 and 0.031 at 512 against a range of 0.1, and
    its relative-attention tensors from U(0, 0.1). Read as a constant law, the linears' std, which
    already falls like 1/sqrt(width), was scaled by the rule's ratio once more (docs/validation.md)."""
    if not (isinstance(std, (int, float)) and std > 0):
        return False
    tolerance = math.log1p(_DECLARED_TOLERANCE)
    return any(abs(math.log(stds[r.name] / std)) < tolerance for r in records
               if _has_law(r) and stds.get(r.name, 0.0) > 0 and math.isfinite(stds[r.name]))


def _has_law(record: ParamRecord) -> bool:
    return record.classified and _shape_dependent(record) and min(_fan_in(record.shape), _fan_out(record.shape)) >= 1


def _shape_dependent(record: ParamRecord) -> bool:
    """Only dense-input weights of 2+ dims have a library std that depends on their shape: embedding
    tables (N(0,1)), norm gains (1), biases and scalars are width-independent."""
    return (len(record.shape) >= 2 and record.input_space is not Space.SPARSE
            and record.role not in (Role.BIAS, Role.GAIN, Role.SCALAR, Role.EMBEDDING))
