"""How a readout starts: at zero (μP's readout_zero_init), at its rule's init, or, for a router, near zero.

A readout (dense, width fan-in, fixed fan-out) reads a width-n input into a fixed number of outputs.
Its output change on a fixed input is ``W₀·Δx + ΔW·x``: the update ``ΔW·x`` is Θ(1) under
Condition 2, while ``W₀·Δx`` (the init reading its input's change) shrinks like n^-1/2 until Δx aligns
with W₀ (docs/derivations.md §5). Starting at zero removes that finite-width term (docs/parametrize.md
"Zero readouts").

A router (a readout whose output reaches a top-k / argmax / sort before the next parameter,
``record.selected_by``, graph/selection.py) cannot start at exactly zero: all-zero logits tie every
expert. Under ``zero_readout="auto"`` it starts at :data:`ROUTER_INIT_SCALE` times the readout rule's
init instead, and so does its bias, if it has one (docs/rules.md, "Mixture-of-experts layers"). The
scale's reason, measured there:

* ``W₀·Δx`` is then 10⁻³ of what it is at the full init, where under SGD it is 8-21x the router's own
  update at step 3 (width 64: Mixtral, Qwen3-MoE) and about equal to it only at 75-100 steps. At 10⁻³
  it is under 1 % of Mixtral's update from step 3 on (widths 64 and 512). The coord check is the same
  for every scale <= 10⁻² and fails at 10⁻¹ (Mixtral SGD, router slope -0.31); 10⁻³ keeps a decade
  from that edge.
* the logits stay distinct: floating point is relative, so logits 10⁻³ smaller keep their relative
  spacing and top-k ties stay as rare as at the full init in fp32 and bf16. The init logits are then
  of order 10⁻⁴ (2-7·10⁻⁴ at widths 512-64 in the reference form), above fp16's smallest normal
  (6·10⁻⁵) up to width ~7000: a half-precision router's logits belong in fp32 (Hugging Face's MoE
  routers take their softmax in fp32).
* a router's bias is scaled with it, else the library's bias (gpt-oss: N(0, 0.02²)) would rank the
  experts alike for every token at init.
"""
from __future__ import annotations

import math
from collections import defaultdict
from typing import Iterable, Optional, Union

from ..types import ParamRecord, Role, Space

__all__ = ["ROUTER_INIT_SCALE", "C_ROUTER", "C_ZERO", "is_readout", "readout_start", "router_init", "router_note",
           "spared_factors"]

ROUTER_INIT_SCALE = 1e-3
C_ZERO = "readout zero init (μP readout_zero_init; docs/parametrize.md \"Zero readouts\")"
_ROUTER_TAG = "router (a readout feeding top-k, or its bias) near zero"
C_ROUTER = (_ROUTER_TAG + ": its rule's init x{scale:g}, as zero logits would tie top-k; the init's "
            "width^-1/2 share of the logits' change is gone (docs/rules.md \"Mixture-of-experts layers\")")


def is_readout(record: ParamRecord) -> bool:
    """Dense input, width fan-in, fixed fan-out."""
    return (
        record.classified and record.input_space is Space.DENSE
        and record.fan_in_is_width and not record.fan_out_is_width
    )


def readout_start(record: ParamRecord, zero_readout: Union[bool, str]) -> Optional[str]:
    """``"zeros"``, ``"router"`` (near zero) or ``None`` (the rule's init) for ``zero_readout`` True /
    "auto" / False: True zeroes every readout, "auto" zeroes readouts, starts routers near zero and
    leaves a readout whose output is normalised (``record.normalized_by``: all-zero would normalise to
    0/0) at its rule's init, False leaves every readout at its rule's init. Under "auto" a router's bias (a bias whose fixed-size
    output reaches the selection) starts near zero with it: the logits start at ROUTER_INIT_SCALE of
    what the rules give them, so the library's bias (gpt-oss: N(0, 0.02²)) does not outweigh the
    token-dependent part and send every token to the same experts."""
    if zero_readout is False:
        return None
    if is_readout(record):
        if record.weight_norm is not None:  # v of W = g v/|v|: a zero v is 0/0; g starts at zero instead (weightnorm.py)
            return None
        if record.self_normalized_by is not None:  # W / sigma(W) (spectral norm): a zero W is 0/0
            return None
        if zero_readout is True:
            return "zeros"
        if record.selected_by is not None:
            return "router"
        # normalised right after (CLIP's projections): zero would make its normalised output 0/0
        return None if record.normalized_by is not None else "zeros"
    router_bias = (record.classified and record.role is Role.BIAS and record.selected_by is not None
                   and not record.fan_out_is_width)
    return "router" if zero_readout == "auto" and router_bias else None


def router_init(init):
    """A rules ``_Init`` times :data:`ROUTER_INIT_SCALE`: the Gaussian std or spectral target, or the
    scale of the library's values (a "keep" becomes a "scale")."""
    cite = C_ROUTER.format(scale=ROUTER_INIT_SCALE)
    if init.kind in ("gaussian", "orthogonal", "spectral"):
        return init.but(cite, std=init.std and init.std * ROUTER_INIT_SCALE,
                        target=init.target and init.target * ROUTER_INIT_SCALE)
    if init.kind in ("keep", "scale"):
        return init.but(cite, kind="scale", scale=init.scale * ROUTER_INIT_SCALE)
    return init


def router_note(citation: str) -> str:
    """What a report's init column adds for a plan whose init :func:`router_init` made: why it is small."""
    return f" (router: x{ROUTER_INIT_SCALE:g}, near zero; zero logits tie top-k)" if _ROUTER_TAG in citation else ""


def spared_factors(records: Iterable[ParamRecord], zero_readout: Union[bool, str]) -> set[str]:
    """The readouts that keep their rule's init because another parameter they are multiplied with
    entrywise into one operand (``W = A * B``, an efficient-KAN layer's ``spline_weight * spline_scaler``:
    the same graph node and argument, reached through a ``mul``) already starts at zero. Zeroing every
    factor of a product is a saddle: each factor's gradient is the product's times the others, all zero,
    so none of them ever moves (measured: the KAN readout's spline weight and scaler had a gradient of
    exactly zero in float64 at every step). The factor with the most entries starts at zero (ties: the
    first by name), which zeroes the product as μP's readout_zero_init asks; the others keep their
    rule's init, so its gradient is not zero (docs/parametrize.md "Zero readouts")."""
    operands = defaultdict(list)
    for r in records:
        if readout_start(r, zero_readout) != "zeros":
            continue
        for key in {(u.node, u.arg) for u in r.uses if "mul" in u.via}:
            operands[key].append(r)
    spared = set()
    for factors in operands.values():
        if len({r.name for r in factors}) < 2:
            continue
        zeroed = max(sorted(factors, key=lambda r: r.name), key=lambda r: math.prod(r.shape))
        spared.update(r.name for r in factors if r.name != zeroed.name)
    return spared

