"""Log-log slopes of measured quantities against width, and width-stability verdicts (docs/derivations.md §7).

A quantity that scales like ``width**s`` has slope ``s``. Width-stable training (Desideratum 1,
Condition 2) wants every output RMS, output-change RMS and natural spectral norm to have slope 0;
:func:`verdict` turns a table of slopes into pass / fail per module with the worst offenders named.

Degenerate data are reported, never silently dropped:

* a NaN or infinite value at any width is a failure (training diverged or the measure broke);
* a negative value is a failure (these quantities are norms);
* all values zero: the quantity is identically zero (e.g. a zero-initialised readout at init);
  the fit reports slope 0 with ``status="zero"``, which passes;
* zero at some widths but not others: failure (``status="partial-zero"``), since no power law fits.

A fit of a mean over init seeds can carry each seed's own slope (``SlopeFit.seed_slopes``, the seeds
being the same at every width); their spread over √n is the slope's standard error, which the verdict
shows and uses to mark a check its seeds have not decided (docs/validation.md, "Seeds and the ± of a
slope"). It never changes pass or fail.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Mapping, Optional, Sequence, Union

from ..types import SptraceError
from .jsonio import to_json

__all__ = ["SlopeFit", "fit_slope", "fit_slopes", "standard_error", "Check", "ModuleVerdict", "Verdict", "verdict",
           "undecided_within", "seeds_to_decide"]

# Student's t, two-sided 95 % (the 0.975 quantile), by degrees of freedom 1-30; normal beyond.
_T_975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
          2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
          2.045, 2.042)


# Beyond this many, an estimate of the seeds that would decide a check is shown as "many more".
MAX_SEEDS_SHOWN = 100


def seeds_to_decide(n_seeds: int, se: float, margin: float) -> Optional[int]:
    """The fewest seeds at which a slope ``margin`` from its band's edge, with standard error ``se`` at
    ``n_seeds`` seeds, would be decided (:func:`undecided_within` at that count), if the seeds' spread
    holds (the standard error falls like 1/√n); None beyond :data:`MAX_SEEDS_SHOWN`."""
    return next((n for n in range(n_seeds + 1, MAX_SEEDS_SHOWN + 1)
                 if abs(margin) >= undecided_within(n) * se * math.sqrt(n_seeds / n)), None)


def undecided_within(n_seeds: int) -> float:
    """How many standard errors from its band's edge a slope of ``n_seeds`` seeds must lie to be decided
    (closer: the check keeps its pass or fail, marked as not decided by its seeds): the 95 % two-sided
    quantile of Student's t with n - 1 degrees of freedom, since the standard error is itself estimated
    from the n seeds' slopes (4.30 at 3 seeds, 2.36 at 8, 1.96 for many). docs/validation.md, "Seeds
    and the ± of a slope"."""
    return _T_975[n_seeds - 2] if 2 <= n_seeds <= len(_T_975) + 1 else 1.96


@dataclass
class SlopeFit:
    """Least-squares fit of ``log(value) = slope * log(width) + intercept``.

    ``status``: ``"ok"``, ``"zero"`` (all values exactly 0: slope reported as 0), ``"nonfinite"``,
    ``"negative"``, ``"partial-zero"`` (the last three are failures, slope NaN). ``r2`` is the
    coefficient of determination of the fit (1 for an exact power law; NaN when undefined).
    ``message`` says what went wrong, naming the widths. ``seed_slopes``: where ``values`` are a mean
    over init seeds, each seed's own slope (NaN where that seed's fit failed); empty otherwise.
    """

    slope: float
    intercept: float
    r2: float
    widths: list[float]
    values: list[float]
    status: str = "ok"
    message: str = ""
    seed_slopes: list[float] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "zero")

    @property
    def se(self) -> Optional[float]:
        """The slope's standard error over the seeds (:func:`standard_error` of ``seed_slopes``)."""
        return standard_error(self.seed_slopes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (non-finite values as the strings "nan", "inf", "-inf")."""
        return to_json(asdict(self))


def fit_slope(widths: Sequence[float], values: Sequence[float]) -> SlopeFit:
    """Fit the log-log slope of ``values`` against ``widths`` (at least two distinct widths)."""
    ws = [float(w) for w in widths]
    vs = [float(v) for v in values]
    if len(ws) != len(vs):
        raise SptraceError(f"fit_slope: {len(ws)} widths but {len(vs)} values; pass one value per width")
    if len(set(ws)) < 2:
        raise SptraceError(f"fit_slope: widths {ws} hold fewer than two distinct widths; a slope needs two")
    if any(not (w > 0 and math.isfinite(w)) for w in ws):
        raise SptraceError(f"fit_slope: widths must be positive and finite, got {ws}")
    nan = float("nan")
    bad = [w for w, v in zip(ws, vs) if not math.isfinite(v)]
    if bad:
        kinds = sorted({str(v) for v in vs if not math.isfinite(v)})
        return SlopeFit(nan, nan, nan, ws, vs, "nonfinite",
                        f"{'/'.join(kinds)} at width{'s' if len(bad) > 1 else ''} {_fmt_ws(bad)}")
    neg = [w for w, v in zip(ws, vs) if v < 0]
    if neg:
        return SlopeFit(nan, nan, nan, ws, vs, "negative", f"negative value at width {_fmt_ws(neg)}")
    zeros = [w for w, v in zip(ws, vs) if v == 0]
    if len(zeros) == len(vs):
        return SlopeFit(0.0, -math.inf, nan, ws, vs, "zero", "identically zero at every width")
    if zeros:
        return SlopeFit(nan, nan, nan, ws, vs, "partial-zero",
                        f"exactly zero at width {_fmt_ws(zeros)} but not at the others")
    x = [math.log(w) for w in ws]
    y = [math.log(v) for v in vs]
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxx = sum((a - mx) ** 2 for a in x)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    slope = sxy / sxx
    intercept = my - slope * mx
    ss_res = sum((b - (slope * a + intercept)) ** 2 for a, b in zip(x, y))
    ss_tot = sum((b - my) ** 2 for b in y)
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if ss_res == 0 else nan)
    return SlopeFit(slope, intercept, r2, ws, vs)


def standard_error(seed_slopes: Sequence[float]) -> Optional[float]:
    """The sample standard deviation of the seeds' own slopes over √n: the standard error of their
    mean, taken for that of the slope of the seeds' mean values. Each seed's slope is fitted to its
    own values at every width, so what a seed shares across the widths (one init that is large
    everywhere) cancels in its slope; widths treated as independent would count it as scatter.
    ``None`` for fewer than two seeds or a seed whose fit failed (NaN)."""
    if len(seed_slopes) < 2 or not all(math.isfinite(x) for x in seed_slopes):
        return None
    return statistics.stdev(seed_slopes) / math.sqrt(len(seed_slopes))


def _fmt_ws(ws: Iterable[float]) -> str:
    return ", ".join(str(int(w)) if float(w).is_integer() else str(w) for w in ws)


def fit_slopes(
    widths: Sequence[float],
    records: Mapping[str, Mapping[str, Sequence[float]]],
    quantities: Optional[Iterable[str]] = None,
    seed_records: Optional[Mapping[str, Mapping[str, Sequence[Sequence[float]]]]] = None,
) -> dict[str, dict[str, SlopeFit]]:
    """``{name: {quantity: SlopeFit}}`` for a ``records[name][quantity] -> values per width`` table;
    with ``seed_records[name][quantity]`` (each seed's values per width, two seeds or more) each fit
    carries the seeds' own slopes."""
    qs = None if quantities is None else list(quantities)
    out: dict[str, dict[str, SlopeFit]] = {}
    for name, rec in records.items():
        fits = {q: fit_slope(widths, vals) for q, vals in rec.items() if qs is None or q in qs}
        for q, fit in fits.items():
            seeds = (seed_records or {}).get(name, {}).get(q, ())
            if len(seeds) > 1:
                fit.seed_slopes = [fit_slope(widths, values).slope for values in seeds]
        if fits:
            out[name] = fits
    return out


@dataclass
class Check:
    """One (module, quantity) judged: ``status`` is ``"pass"``, ``"shrinks-allowed"``, ``"zero"`` (exactly
    zero at every width, e.g. a zero-initialised readout at init: passes, reported), ``"grows"``,
    ``"shrinks"`` or ``"invalid"`` (NaN / inf / negative / partly zero; see ``message``).

    ``se``: the slope's standard error over its ``n_seeds`` init seeds (None for one seed);
    ``undecided``: a ``"pass"``, ``"grows"`` or ``"shrinks"`` whose slope lies within
    :func:`undecided_within` standard errors (Student's t at 95 %) of the band edge that decides it: the
    seeds have not settled which side it is on; ``seeds_to_decide`` then estimates how many would, if the
    seeds' spread holds (:func:`seeds_to_decide`). The status, and so ``passed``, are the slope's alone."""

    module: str
    quantity: str
    slope: float
    expected: float
    status: str
    message: str = ""
    se: Optional[float] = None
    n_seeds: int = 1
    undecided: bool = False
    seeds_to_decide: Optional[int] = None

    @property
    def passed(self) -> bool:
        return self.status in ("pass", "shrinks-allowed", "zero")

    def shown(self) -> str:
        """``slope -0.66 ± 0.14``, ± the standard error where there is one, and whether the seeds decided it."""
        text = f"slope {self.slope:+.2f}" + ("" if self.se is None else f" ± {self.se:.2f}")
        if self.undecided:
            more = self.seeds_to_decide
            estimate = f"about {more} may settle it" if more else f"more than {MAX_SEEDS_SHOWN} may be needed"
            text += f" (not decided at {self.n_seeds} seeds: {estimate})"
        return text

    @property
    def excess(self) -> float:
        """How far beyond the tolerance band the slope lies (inf for invalid fits)."""
        return math.inf if not math.isfinite(self.slope) else abs(self.slope - self.expected)


@dataclass
class ModuleVerdict:
    module: str
    passed: bool
    checks: dict[str, Check] = field(default_factory=dict)


@dataclass
class Verdict:
    """Overall result of :func:`verdict`: ``passed``, per-module verdicts, and ``worst``: the failing
    checks, worst first (invalid fits, then by distance of the slope from its expectation)."""

    passed: bool
    tol: float
    modules: dict[str, ModuleVerdict]
    worst: list[Check]
    # module -> why its output change could not be measured (not judged on that quantity)
    unmeasured: dict[str, str] = field(default_factory=dict)
    # the entries of ``modules`` that are parameters (natural spectral norms, Condition 2), not module outputs
    params: list[str] = field(default_factory=list)
    # the dtype the coord check trained and measured in ("" when not known: slopes given by hand)
    precision: str = ""

    def _counted(self) -> str:
        n_par = len(self.params)
        n_mod = len(self.modules) - n_par
        return f"{n_mod} modules" + (f" and {n_par} parameters" if n_par else "")

    @property
    def close_passes(self) -> list[Check]:
        """The passing checks the seeds have not decided (``Check.undecided``), closest to the edge first."""
        close = [c for m in self.modules.values() for c in m.checks.values() if c.passed and c.undecided]
        return sorted(close, key=lambda c: -abs(c.slope - c.expected))

    def summary(self, top: int = 5) -> str:
        n_fail = sum(not m.passed for m in self.modules.values())
        where = f" (measured in {self.precision})" if self.precision else ""
        if self.passed:
            head = f"PASS{where}: {self._counted()}, every slope within ±{self.tol:g} of its expectation"
        else:
            parts = []
            for c in self.worst[:top]:
                what = c.message if c.status == "invalid" else c.shown()
                parts.append(f"{c.module} [{c.quantity}] {c.status}: {what}")
            head = (f"FAIL{where}: {n_fail}/{len(self.modules)} of {self._counted()}; worst: " + "; ".join(parts)
                    + _and_more(len(self.worst), top))
        close = self.close_passes
        if close:
            shown = "; ".join(f"{c.module} [{c.quantity}] slope {c.slope:+.2f} ± {c.se:.2f}" for c in close[:top])
            head += (f". Passing within {undecided_within(close[0].n_seeds):.2f} standard errors of the edge "
                     f"(not decided at {close[0].n_seeds} seeds): {shown}" + _and_more(len(close), top))
        zeros = [f"{c.module} [{c.quantity}]" for m in self.modules.values() for c in m.checks.values()
                 if c.status == "zero"]
        if zeros:
            head += f". Exactly zero at every width (passes): {', '.join(zeros[:top])}" + _and_more(len(zeros), top)
        if not self.unmeasured:
            return head
        shown = "; ".join(f"{k} ({why})" for k, why in list(self.unmeasured.items())[:top])
        return (f"{head}. Not judged ({len(self.unmeasured)}, with the reason): {shown}"
                + _and_more(len(self.unmeasured), top))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (non-finite values as the strings "nan", "inf", "-inf")."""
        return to_json({
            "passed": self.passed,
            "tol": self.tol,
            "summary": self.summary(),
            "modules": {k: {"passed": m.passed, "checks": {q: asdict(c) for q, c in m.checks.items()}}
                        for k, m in self.modules.items()},
            "worst": [asdict(c) for c in self.worst],
            "unmeasured": self.unmeasured,
            "params": self.params,
            "precision": self.precision,
        })


def _and_more(total: int, shown: int) -> str:
    return f"; ... and {total - shown} more" if total > shown else ""


def matches(quantity: str, patterns: Union[bool, Iterable[str]]) -> bool:
    """``True`` matches everything; otherwise exact names or prefixes ending in ``*``."""
    if isinstance(patterns, bool):
        return patterns
    for p in patterns:
        if p == quantity or (p.endswith("*") and quantity.startswith(p[:-1])):
            return True
    return False


def verdict(
    slopes: Mapping[str, Mapping[str, Union[SlopeFit, float]]],
    tol: float = 0.25,
    *,
    expected: Optional[Mapping[str, float]] = None,
    allow_shrink: Union[bool, Iterable[str]] = (),
    unmeasured: Optional[Mapping[str, str]] = None,
    allow_shrink_for: Optional[Mapping[str, Union[bool, Iterable[str]]]] = None,
    params: Iterable[str] = (),
    expected_for: Optional[Mapping[str, Mapping[str, float]]] = None,
    precision: str = "",
) -> Verdict:
    """Judge ``slopes[module][quantity]`` (a :class:`SlopeFit` or a plain float).

    A check fails when the slope exceeds its expectation (``expected[quantity]``, default 0) by more
    than ``tol`` ("grows"), or falls more than ``tol`` below it ("shrinks"; Desideratum 1 wants
    Theta(1), so vanishing updates fail too) unless the quantity is in ``allow_shrink`` (a list of
    quantity names, ``"prefix*"`` patterns, or ``True`` for all; e.g. ``allow_shrink=["rms@0"]``
    accepts outputs at init that shrink with width). NaN / inf / negative / partly zero fits fail
    as "invalid". A module passes when all of its checks pass; the verdict passes when all modules do.
    ``allow_shrink_for[module]`` adds shrink allowances for that entry only; ``params`` names the
    entries that are parameters (their natural spectral norms), so that the summary counts them apart.
    ``expected_for[module][quantity]`` overrides the expectation for one entry (a module whose output
    the forward multiplies by a width power outside it, :func:`sptrace.validation.coord.scaled_outside`).
    ``precision``: the dtype the slopes were measured in, shown in the summary.
    """
    per_name = dict(allow_shrink_for or {})
    exp = dict(expected or {})
    modules: dict[str, ModuleVerdict] = {}
    failing: list[Check] = []
    for module, fits in slopes.items():
        mv = ModuleVerdict(module, True)
        for q, fit in fits.items():
            e = float((expected_for or {}).get(module, {}).get(q, exp.get(q, 0.0)))
            if isinstance(fit, SlopeFit):
                s, ok, msg = fit.slope, fit.ok, fit.message
            else:
                s = float(fit)
                ok = math.isfinite(s)
                msg = "" if ok else f"slope is {s}"
            allowed = matches(q, allow_shrink) or matches(q, per_name.get(module, ()))
            if not ok:
                c = Check(module, q, s, e, "invalid", msg)
            elif s - e > tol:
                c = Check(module, q, s, e, "grows", f"slope {s:+.3f} > {e:+.2f} + {tol:g}")
            elif s - e < -tol:
                status = "shrinks-allowed" if allowed else "shrinks"
                c = Check(module, q, s, e, status, f"slope {s:+.3f} < {e:+.2f} - {tol:g}")
            else:
                zero = isinstance(fit, SlopeFit) and fit.status == "zero"
                c = Check(module, q, s, e, "zero" if zero else "pass", msg)
            if isinstance(fit, SlopeFit) and fit.se is not None:
                c.se, c.n_seeds = fit.se, len(fit.seed_slopes)
                # the signed distance to the edge that decides the check (positive inside the band); an
                # allowed shrink has no lower edge
                margin = min(e + tol - s, math.inf if allowed else s - (e - tol))
                c.undecided = c.status in ("pass", "grows", "shrinks") and abs(margin) < undecided_within(c.n_seeds) * fit.se
                if c.undecided:
                    c.seeds_to_decide = seeds_to_decide(c.n_seeds, fit.se, margin)
            mv.checks[q] = c
            if not c.passed:
                mv.passed = False
                failing.append(c)
        modules[module] = mv
    failing.sort(key=lambda c: (c.status != "invalid", -c.excess))
    return Verdict(passed=not failing, tol=tol, modules=modules, worst=failing, unmeasured=dict(unmeasured or {}),
                   params=[p for p in params if p in modules], precision=precision)
