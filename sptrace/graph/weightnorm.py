"""Weight-normed layers: ``W = g * v / ||v||``, seen from the graph.

``torch.nn.utils.parametrizations.weight_norm`` and the older ``torch.nn.utils.weight_norm`` hook both
compute the layer's weight with ``aten._weight_norm(v, g, dim)`` (the export route) or
``aten._weight_norm_interface(v, g, dim)`` (what the eager route records), whatever module wraps it
(HF wav2vec2's ``pos_conv_embed.conv``, every conv of EnCodec / DAC / HiFi-GAN-style vocoders). The
norm is over every axis of ``v`` but ``dim`` (0 by default: one norm per output channel; -1: the whole
tensor), and ``g`` holds one value per slice along ``dim``.

The uses stage (graph/uses.py) lets the op through as it does a standardisation: ``v`` is classified by
the layer's use of ``W`` (same axes), and ``g`` is the gain of the slices. This pass names the pair on
both records (``ParamRecord.weight_norm``) so that the plan can give ``g`` its rule and init from ``v``'s
(planning/weightnorm.py; docs/rules.md "Weight norm").
"""
from __future__ import annotations

from dataclasses import replace

from ..types import CapturedGraph, ParamRecord, WeightNormSite
from .ops import WEIGHT_NORMS, normalized_args, op_name, param_behind

__all__ = ["mark_weight_norms"]


def mark_weight_norms(captured: CapturedGraph, records: list[ParamRecord]) -> list[ParamRecord]:
    """``records`` with ``weight_norm`` set on the v and g of every weight-norm node whose two operands
    are parameters (through views); the first such node of a parameter counts."""
    sites: dict[str, WeightNormSite] = {}
    for node in captured.graph.nodes:
        if node.op != "call_function" or op_name(node) not in WEIGHT_NORMS:
            continue
        args = normalized_args(node)
        v, g = (param_behind(args.get(a), captured.param_nodes) for a in ("v", "g"))
        if v is None or g is None or v == g:
            continue
        site = WeightNormSite(node.name, captured.param_nodes[v], captured.param_nodes[g], int(args.get("dim", 0)))
        for name in (site.v, site.g):
            sites.setdefault(name, site)
    if not sites:
        return records
    out = []
    for record in records:
        site = next((sites[a] for a in record.aliases if a in sites), None)
        out.append(replace(record, weight_norm=_named(site, record)) if site is not None else record)
    return out


def _named(site: WeightNormSite, record: ParamRecord) -> WeightNormSite:
    """The site under the record's first name (the graph may name a tied tensor by another alias)."""
    if site.v in record.aliases:
        return replace(site, v=record.name)
    return replace(site, g=record.name)
