"""Render a Trace as a per-parameter table (text / markdown via tabulate) or JSON."""
from __future__ import annotations

import json
from dataclasses import asdict
from enum import Enum
from typing import Mapping, Optional, Sequence

from tabulate import tabulate

from ..types import SptraceError
from .capture import MODEL_ROOT

FORMATS = ("text", "markdown", "json")
COLUMNS = ("name", "shape", "use", "in axes", "out axes", "kind", "role", "space", "fan_in", "fan_out", "width dims")


def render(trace, format: str = "text", columns: Optional[Mapping[str, Mapping[str, str]]] = None,
           warnings: Optional[Sequence[str]] = None, notes: Sequence[str] = ()) -> str:
    """The table of ``trace``'s records. ``columns``: extra per-parameter columns ``{name: {column:
    text}}`` (a later stage's plan, measured norms); ``warnings``: shown instead of the trace's own;
    ``notes``: a later stage's lines under the table (e.g. what each optimizer group's lr became)."""
    columns = columns or {}
    warnings = list(trace.warnings if warnings is None else warnings)
    if format not in FORMATS:
        raise SptraceError(f"unknown report format {format!r}: report(format=...) takes one of {', '.join(FORMATS)}")
    if format == "json":
        return json.dumps(_as_json(trace, columns, warnings, notes), indent=2, default=_jsonable)
    extra = _extra_columns(columns)
    rows = [_row(r, columns.get(r.name, {}), extra) for r in trace.records]
    headers = list(COLUMNS) + extra
    table = tabulate(rows, headers=headers, tablefmt="github" if format == "markdown" else "simple")
    lines = [_title(trace, format), "", table, ""]
    if trace.attention:
        lines += _attention_lines(trace, format)
    if notes:
        lines.append("## Notes" if format == "markdown" else "Notes:")
        lines += [f"- {n}" for n in notes]
    if warnings:
        lines.append("## Warnings" if format == "markdown" else "Warnings:")
        lines += [f"- {w}" for w in warnings]
    return "\n".join(lines).rstrip() + "\n"


def _title(trace, format) -> str:
    s = trace.summary()
    kinds = ", ".join(f"{v} {k}" for k, v in sorted(s["kinds"].items()))
    sizes = ", ".join(map(str, s["width_sizes"]))
    # automatic mode assumes every size the graph does not tie to the data grows: name them, so a fixed one
    # (ALBERT's embedding size) shows (docs/classification.md, "Automatic mode and base=")
    text = (f"sptrace: {s['parameters']} parameters ({kinds}); captured by {s['route']}; width dims: {s['width_mode']}"
            + (f", sizes {sizes} grow" if sizes else ""))
    return f"# {text}" if format == "markdown" else text


def _extra_columns(columns: Mapping[str, Mapping[str, str]]) -> list[str]:
    seen: dict[str, None] = {}
    for cols in columns.values():
        seen.update(dict.fromkeys(cols))
    return list(seen)


def _row(r, extra: Mapping[str, str], extra_columns: Sequence[str]) -> list:
    use = r.uses[0] if r.uses else None
    use_text = f"{use.op}({use.arg})" + (f" +{len(r.uses) - 1}" if len(r.uses) > 1 else "") if use else "-"
    if r.forward_constant is not None:
        use_text += f", {r.forward_constant.text}"
    if r.weight_norm is not None:  # W = g v/|v|: which factor, over which dim
        use_text += f", weight norm's {'v' if r.name == r.weight_norm.v else 'g'} (dim {r.weight_norm.dim})"
    if r.product is not None:  # W = carrier * factor: which factor carries W's rule (docs/rules.md)
        use_text += _product_text(r)
    if r.self_normalized_by is not None:  # W / s(W): the layer's scale is the normaliser's
        use_text += ", / its spectral norm" if r.self_normalized_by.spectral else ", / a norm of itself"
    width = ",".join(str(a) for a in r.width_dims) or "-"
    space = f"{r.input_space.value}->{r.output_space.value}"
    return [
        r.name + (f" (= {', '.join(r.aliases[1:])})" if len(r.aliases) > 1 else ""),
        "x".join(map(str, r.shape)) or "scalar",
        use_text,
        _axes(r.fan_in_axes),
        _axes(r.fan_out_axes) + (f" /g{r.groups}" if r.groups > 1 else ""),
        r.kind.value,
        r.role.value,
        space,
        r.fan_in,
        r.fan_out,
        width,
    ] + [extra.get(c, "") for c in extra_columns]


def _product_text(r) -> str:
    site = r.product
    if r.name == site.carrier:
        return f", W = this * {site.factor}: carries W's rule"
    over = f" (repeated over W's axes {_axes(site.broadcast)})" if site.broadcast else ""
    return f", W = {site.carrier} * this{over}: a width-free gain of W's entries"


def _axes(axes) -> str:
    return "(" + ",".join(map(str, axes)) + ")"


def _attention_lines(trace, format) -> list[str]:
    lines = ["## Attention" if format == "markdown" else "Attention:"]
    for site in trace.attention:
        growth = {True: "grows with width", False: "fixed", None: "growth unknown: pass base= to decide"}[site.head_dim_is_width]
        dim, fix = ("inner product of two activations over a width axis of", "1/width") if site.kind == "product" \
            else ("head_dim", "1/head_dim")
        verdict = {True: "ok", False: f"NOT width-stable (use {fix})", None: "ok if head_dim is fixed"}[site.width_stable]
        scale = f"{site.scale:.4g}" if site.scale is not None else "runtime"
        lines.append(f"- {site.module or MODEL_ROOT} [{site.kind}] {dim} {site.head_dim} ({growth}), "
                     f"scale {scale} ({site.scale_source}): {verdict}")
    return lines + [""]


def _as_json(trace, columns: Mapping[str, Mapping[str, str]], warnings: Sequence[str], notes: Sequence[str]) -> dict:
    return {
        "summary": trace.summary(),
        "parameters": [_record_json(r, columns) for r in trace.records],
        "attention": [dict(asdict(a), width_stable=a.width_stable) for a in trace.attention],
        "warnings": list(warnings),
        **({"notes": list(notes)} if notes else {}),
    }


def _record_json(r, columns) -> dict:
    out = dict(asdict(r), width_dims=list(r.width_dims), fan_in=r.fan_in, fan_out=r.fan_out,
               annotations=dict(columns.get(r.name, {})))
    for key in ("forward_constant", "weight_norm", "product", "self_normalized_by"):  # present only where the forward scales it / it is a factor
        if out[key] is None:
            del out[key]
    if not r.column_blocks:  # present only where a concatenation's blocks feed the fan-in (graph/blocks.py)
        del out["column_blocks"]
    for use in (*out["uses"], *out["secondary_uses"]):  # a use's constant: present only where the forward scales it
        if use["constant"] is None:
            del use["constant"]
    return out


def _jsonable(value):
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    return str(value)
