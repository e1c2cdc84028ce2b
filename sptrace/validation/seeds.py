"""How the coord check's runs become its records: one run's ``Rows`` per (width, seed); their mean
over the seeds (:func:`mean_rows`), lined up across the widths (:func:`merge_widths`), and each
seed's own series kept beside the mean (:class:`PerSeed`, :func:`seed_series`; docs/validation.md,
"Seeds and the ± of a slope")."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

__all__ = ["Rows", "SeedSeries", "PerSeed", "mean_rows", "seed_series", "merge_widths"]

Rows = dict[str, dict[str, float]]  # {module or parameter: {quantity: value}} of one run
SeedSeries = dict[str, dict[str, list[list[float]]]]  # {name: {quantity: [one seed's values per width, per seed]}}


@dataclass
class PerSeed:
    """Each init seed's own values, which :func:`coord_check` averages into its records.

    ``records[name][quantity][i]`` (and ``param_records``) is seed ``seeds[i]``'s value at each of the
    check's widths, for every (name, quantity) of the averaged records but ``"grad64"`` (the first
    seed's only). Their mean over the seeds is the averaged record; for ``"ulps"``, their max. The
    seeds are the same at every width, so each seed's values have a slope of their own, and the
    spread of those slopes is a slope's standard error (:meth:`CoordCheck.slopes`,
    docs/validation.md "Seeds and the ± of a slope")."""

    seeds: list[int]
    records: SeedSeries = field(default_factory=dict)
    param_records: SeedSeries = field(default_factory=dict)


def mean_rows(rows: Sequence[Rows]) -> Rows:
    """Mean over seeds of each (name, quantity) that every seed recorded; ``grad64``, recorded by
    the first seed only, is that seed's; ``ulps`` is the largest over the seeds."""
    common = [k for k in rows[0] if all(k in r for r in rows[1:])]

    def merged(k: str, q: str) -> float:
        if q == "grad64":
            return float(rows[0][k][q])
        values = [float(r[k][q]) for r in rows]
        return max(values) if q == "ulps" else sum(values) / len(values)

    return {k: {q: merged(k, q) for q in rows[0][k] if q == "grad64" or all(q in r[k] for r in rows[1:])}
            for k in common}


def seed_series(merged: Mapping[str, Mapping[str, Any]], rows_by_width: Sequence[Sequence[Rows]]) -> SeedSeries:
    """Each seed's values per width (``rows_by_width[width][seed]``) of every (name, quantity) that
    ``merged`` (the means, :func:`mean_rows` then :func:`merge_widths`) kept, but the first seed's
    ``grad64``: every seed recorded those at every width."""
    n = len(rows_by_width[0]) if rows_by_width else 0
    return {k: {q: [[float(rows[i][k][q]) for rows in rows_by_width] for i in range(n)] for q in qs if q != "grad64"}
            for k, qs in merged.items()}


def merge_widths(rows: Sequence[Rows]) -> tuple[dict[str, dict[str, list[float]]], list[str]]:
    """``{name: {quantity: value per width}}`` of what every width recorded, and the names dropped."""
    if not rows:
        return {}, []
    common = [k for k in rows[0] if all(k in r for r in rows[1:])]
    dropped = sorted({k for r in rows for k in r} - set(common))
    out: dict[str, dict[str, list[float]]] = {}
    for k in common:
        qs = [q for q in rows[0][k] if all(q in r[k] for r in rows[1:])]
        out[k] = {q: [float(r[k][q]) for r in rows] for q in qs}
    return out, dropped
