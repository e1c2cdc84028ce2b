"""The paper's Fig. 2 on the digits: sptrace (the paper's muP) keeps feature learning, NTP loses it.

MLP ``3072 -> n -> n -> 1`` (ReLU, no biases, :mod:`experiments.gd_mlp`), full-batch gradient
descent on 200 samples of two classes (:func:`experiments.digits.binary_digits`) with +-1 targets
and loss ``0.5 * mean((f - y)^2)``, set up by ``sptrace.parametrize`` as sptrace and as NTP and
trained by the optimizer it returns (the tests hold its init and lrs to Appendix A's). Per width:
relative feature change of h2 (Eq. 23), relative change of W2 in spectral and Frobenius norm,
final-layer alignment (Eq. 24); log-log slopes against width, fitted over every measured width
(from 16), compared with the predictions (sptrace 0, NTP -1/2; Frobenius -1/2 and -1), plus a fit
``a + b / n`` of each curve (its finite-width correction). docs/measurements.md "Fig. 2" has the
documented run and its verdict."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from models_zoo.data import DIGITS_PATH
from sptrace.types import SptraceError
from sptrace.spectral import alignment, spectral_norm
from sptrace.validation.slopes import SlopeFit, fit_slope

from .digits import ClassSpec, binary_digits
from .fig2_store import RUN_ROUTE, Fig2RunStore, fig2_run_key, file_digest, stored_or_trained
from .gd_mlp import check_parametrization, layer_weights, mlp_forward, parametrized_mlp, train_full_batch
from .plots import plot_fig2
from .results import PathLike, mean_std, write_result

__all__ = ["FIG2_QUANTITIES", "FIG2_DIAGNOSTICS", "FIG2_PREDICTED", "FIG2_ACCEPTANCE", "fig2_measure",
           "fig2_run", "Fig2Result", "run_fig2"]

FIG2_QUANTITIES = ("feature_change", "spectral_change", "alignment", "frobenius_change")
# Fitted and tabulated but not plotted: Eq. 23 with the norms pooled over the batch (a check that
# the bend at small widths is not an artefact of averaging per-sample ratios).
FIG2_DIAGNOSTICS = ("feature_change_pooled",)
# Predicted log-log slopes against width (Sections 5.3 and 6; Table 1 for the Frobenius column).
FIG2_PREDICTED: dict[str, dict[str, float]] = {
    "sptrace": {"feature_change": 0.0, "spectral_change": 0.0, "alignment": 0.0, "frobenius_change": -0.5,
                "feature_change_pooled": 0.0},
    "ntp": {"feature_change": -0.5, "spectral_change": -0.5, "alignment": -0.5, "frobenius_change": -1.0,
            "feature_change_pooled": -0.5},
}
# The quantities whose slopes the reproduction must match within the tolerance.
FIG2_ACCEPTANCE = ("feature_change", "spectral_change")
# Everything one run records: the fitted quantities, the alignment at init and the final loss.
_RECORDED = FIG2_QUANTITIES + FIG2_DIAGNOSTICS + ("alignment_init", "final_loss")


@torch.no_grad()
def fig2_measure(x: Tensor, W0: Sequence[Tensor], W: Sequence[Tensor]) -> dict[str, float]:
    """The four Fig. 2 quantities between initial weights ``W0`` and final weights ``W`` (3 layers).

    ``feature_change`` is Eq. 23 as printed: the mean over samples of ``|h2 - h2^0| / |h2^0|``
    (pre-activations). ``feature_change_pooled`` (``|H2 - H2^0|_F / |H2^0|_F`` over the batch) and
    ``alignment_init`` (Eq. 24 at init) are extra diagnostics, not plotted in the paper."""
    h2_0 = mlp_forward(x, W0, F.relu)[1]
    h2 = mlp_forward(x, W, F.relu)[1]
    feat = ((h2 - h2_0).norm(dim=1) / h2_0.norm(dim=1)).mean()  # Eq. 23: per-sample ratio, then mean
    feat_pooled = (h2 - h2_0).norm() / h2_0.norm()  # ratio of norms over the batch (diagnostic only)
    D = W[1] - W0[1]
    return {
        "feature_change": float(feat),
        "spectral_change": float(spectral_norm(D) / spectral_norm(W0[1])),
        "alignment": float(alignment(W[2], F.relu(h2))),
        "frobenius_change": float(D.norm() / W0[1].norm()),
        "alignment_init": float(alignment(W0[2], F.relu(h2_0))),
        "feature_change_pooled": float(feat_pooled),
    }


def fig2_run(
    x: Tensor,
    y: Tensor,
    width: int,
    param: str,
    steps: int,
    *,
    eta: float = 0.1,
    seed: int = 0,
    project_input: bool = True,
    dtype: torch.dtype = torch.float32,
    device: Union[str, torch.device] = "cpu",
) -> dict[str, float]:
    """One Fig. 2 training run at one width; returns the measured quantities and ``final_loss``.
    The MLP is set up by ``sptrace.parametrize`` on the CPU (the same init on every device,
    :func:`experiments.gd_mlp.parametrized_mlp`), then trained on ``device`` by its optimizer."""
    mlp, opt, xin = parametrized_mlp(x, width, param, eta, seed, project_input=project_input, dtype=dtype)
    mlp.to(device)
    xin = xin.to(device)
    W0 = [W.detach().clone() for W in layer_weights(mlp)]
    hist = train_full_batch(mlp, opt, xin, y.to(dtype).to(device), steps)
    out = fig2_measure(xin, W0, [W.detach() for W in layer_weights(mlp)])
    out["final_loss"] = hist[-1]
    return out


def _fits_json(fits: Optional[dict[str, dict[str, SlopeFit]]]) -> Optional[dict[str, dict[str, Any]]]:
    return None if fits is None else {p: {q: f.to_dict() for q, f in d.items()} for p, d in fits.items()}


@dataclass
class Fig2Result:
    """Result of :func:`run_fig2`. ``raw[param][quantity][seed_index][width_index]`` (``None`` where
    ``seeds_at`` left that seed out at that width; ``seed_counts`` per width); ``mean`` / ``std``
    over seeds per width; ``slopes[param][quantity]`` fits the log of the seed mean against log width
    over ``fit_widths`` (every measured width by default; ``run_fig2(fit_from=...)`` can leave the
    narrowest out); ``slopes_all`` fits every width; ``slopes_wide`` fits widths ``>= wide_from``
    only (a diagnostic of where the curve bends, never the acceptance); ``seed_slopes`` fits each
    seed separately over ``fit_widths`` (its spread shows the noise); ``inverse_width_fit[param][q]``
    is the least-squares ``(a, b)`` of ``mean = a + b / n`` over all widths (``a``: the wide limit,
    ``b / n``: the finite-width correction); ``passed`` is whether every acceptance quantity's
    ``slopes`` entry is within ``tol`` of its prediction for every parametrization."""

    widths: list[int]
    params: list[str]
    seeds: list[int]
    steps: int
    eta: float
    n0: int
    n_samples: int
    classes: tuple[int, int]
    raw: dict[str, dict[str, list[list[float]]]]
    mean: dict[str, dict[str, list[float]]]
    std: dict[str, dict[str, list[float]]]
    slopes: dict[str, dict[str, SlopeFit]]
    slopes_all: dict[str, dict[str, SlopeFit]]
    fit_widths: list[int]
    seed_slopes: dict[str, dict[str, list[float]]]
    predicted: dict[str, dict[str, float]]
    tol: float
    acceptance: tuple[str, ...]
    seconds: float
    project_input: bool = True
    slopes_wide: Optional[dict[str, dict[str, SlopeFit]]] = None
    wide_from: Optional[int] = None
    inverse_width_fit: Optional[dict[str, dict[str, tuple[float, float]]]] = None
    seed_counts: Optional[list[int]] = None

    @property
    def deviations(self) -> dict[str, dict[str, float]]:
        return {p: {q: self.slopes[p][q].slope - self.predicted[p][q] for q in self.slopes[p]} for p in self.params}

    @property
    def passed(self) -> bool:
        return all(abs(self.deviations[p][q]) <= self.tol for p in self.params for q in self.acceptance
                   if q in self.predicted.get(p, {}))

    def _extra_columns(self) -> list[tuple[str, dict[str, dict[str, SlopeFit]]]]:
        """The slopes over all widths and over the wide widths, where their range differs from the fit's."""
        fw = f"{self.fit_widths[0]}–{self.fit_widths[-1]}"
        aw = f"{self.widths[0]}–{self.widths[-1]}"
        cols: list[tuple[str, dict[str, dict[str, SlopeFit]]]] = []
        if fw != aw:
            cols.append((f"slope ({aw})", self.slopes_all))
        if self.slopes_wide is not None and self.wide_from is not None:
            ww = [w for w in self.widths if w >= self.wide_from]
            if ww and f"{ww[0]}–{ww[-1]}" != fw:
                cols.append((f"slope ({ww[0]}–{ww[-1]}, diagnostic)", self.slopes_wide))
        return cols

    def table(self) -> str:
        """Markdown table of measured vs predicted slopes (plus, when they differ from the fit range,
        the slopes over all widths and over the wide widths only)."""
        cols = self._extra_columns()
        head = f"| parametrization | quantity | slope ({self.fit_widths[0]}–{self.fit_widths[-1]}) | predicted | "
        head += "deviation | seed-slope std |" + "".join(f" {c} |" for c, _ in cols)
        lines = [head, "|---|---|---|---|---|---|" + "---|" * len(cols)]
        for p in self.params:
            for q in FIG2_QUANTITIES + FIG2_DIAGNOSTICS:
                if q not in self.slopes[p]:
                    continue
                f, pr, ss = self.slopes[p][q], self.predicted[p][q], self.seed_slopes[p][q]
                sd = mean_std([[v] for v in ss])[1][0] if ss else float("nan")
                flag = " (acceptance)" if q in self.acceptance else (" (diagnostic)" if q in FIG2_DIAGNOSTICS else "")
                row = f"| {p} | {q}{flag} | {f.slope:+.3f} | {pr:+.2f} | {f.slope - pr:+.3f} | {sd:.3f} |"
                lines.append(row + "".join(f" {d[p][q].slope:+.3f} |" for _, d in cols))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "experiment": "fig2", "widths": self.widths, "params": self.params, "seeds": self.seeds,
            "seed_counts": self.seed_counts, "steps": self.steps, "eta": self.eta, "n0": self.n0,
            "n_samples": self.n_samples, "classes": list(self.classes),
            "loss": "0.5 * mean((f - y)^2), full batch", "project_input": self.project_input, "route": RUN_ROUTE,
            "raw": self.raw, "mean": self.mean, "std": self.std, "fit_widths": self.fit_widths,
            "slopes": _fits_json(self.slopes), "slopes_all": _fits_json(self.slopes_all),
            "wide_from": self.wide_from, "slopes_wide": _fits_json(self.slopes_wide),
            "inverse_width_fit": None if self.inverse_width_fit is None else
            {p: {q: {"a": ab[0], "b": ab[1]} for q, ab in d.items()} for p, d in self.inverse_width_fit.items()},
            "seed_slopes": self.seed_slopes, "predicted": self.predicted, "deviations": self.deviations,
            "tol": self.tol, "acceptance": list(self.acceptance), "passed": self.passed, "seconds": self.seconds,
        }

    def write(self, out_dir: PathLike, name: str = "fig2", plot: bool = True) -> dict[str, str]:
        """Write ``{name}.json`` (and ``{name}.png`` when ``plot``) into ``out_dir``; returns the paths."""
        return write_result(self, out_dir, name, plot_fig2 if plot else None)


def _inverse_width_fit(widths: Sequence[int], values: Sequence[float]) -> tuple[float, float]:
    """Least-squares ``(a, b)`` of ``values = a + b / width``."""
    u = [1.0 / w for w in widths]
    mu, mv = sum(u) / len(u), sum(values) / len(values)
    suu = sum((x - mu) ** 2 for x in u)
    b = sum((x - mu) * (v - mv) for x, v in zip(u, values)) / suu if suu > 0 else 0.0
    return mv - b * mu, b


def _seed_counts(widths: Sequence[int], n_seeds: int, seeds_at: Optional[Mapping[int, int]]) -> list[int]:
    """How many of the seeds run at each width: all, or the first ``seeds_at[width]``."""
    seeds_at = dict(seeds_at or {})
    unknown = sorted(set(seeds_at) - set(widths))
    if unknown:
        raise SptraceError(f"seeds_at names widths {unknown} that are not among the widths {list(widths)}; "
                           "add them to the widths or drop them from seeds_at")
    for width, k in seeds_at.items():
        if not 1 <= int(k) <= n_seeds:
            raise SptraceError(f"seeds_at[{width}] = {k}: must be between 1 and the number of seeds ({n_seeds})")
    return [int(seeds_at.get(w, n_seeds)) for w in widths]


def _fit_indices(widths: Sequence[int], fit_from: Optional[int]) -> list[int]:
    """Indices of the widths the acceptance slopes are fitted on (``>= fit_from``; all by default)."""
    keep = [i for i, w in enumerate(widths) if fit_from is None or w >= fit_from]
    if len(keep) < 2 and fit_from is None:
        raise SptraceError(f"widths {list(widths)}: a slope needs at least two widths; pass more widths")
    if len(keep) < 2:
        raise SptraceError(f"fit_from={fit_from} leaves fewer than two of the widths {list(widths)} to fit; "
                           "lower it or add wider widths")
    return keep


@dataclass(frozen=True)
class _RunSpec:
    """What every run of one :func:`run_fig2` call shares."""

    steps: int
    eta: float
    n_samples: int
    classes: tuple[ClassSpec, ClassSpec]
    project_input: bool
    device: Union[str, torch.device]
    digest: str


def _seed_rows(spec: _RunSpec, seed_index: int, seed: int, x: Tensor, y: Tensor, param: str,
               widths: Sequence[int], counts: Sequence[int], store: Optional[Fig2RunStore],
               progress: bool) -> dict[str, list[Optional[float]]]:
    """One seed's row per recorded quantity over the widths (``None`` where that seed does not run)."""
    rows: dict[str, list[Optional[float]]] = {q: [] for q in _RECORDED}
    for w, k in zip(widths, counts):
        if seed_index >= k:
            for q in _RECORDED:
                rows[q].append(None)
            continue
        key = fig2_run_key(spec.digest, spec.classes, spec.n_samples, seed, param, w, spec.steps, spec.eta,
                           spec.project_input)
        r = stored_or_trained(store, key, spec.device, lambda: fig2_run(
            x, y, w, param, spec.steps, eta=spec.eta, seed=10_000 + seed, project_input=spec.project_input,
            device=spec.device))
        for q in _RECORDED:
            rows[q].append(r[q])
        if progress:
            print(f"fig2 seed={seed} {param} width={w}: " + ", ".join(f"{q}={r[q]:.4g}" for q in _RECORDED),
                  flush=True)
    return rows


def _fit_curves(raw: dict[str, dict[str, list[list[Optional[float]]]]], widths: list[int], keep: list[int],
                wide_from: Optional[int]) -> dict[str, Any]:
    """Means, stds and every slope fit of :class:`Fig2Result` from the raw measurements."""
    params = list(raw)
    fit_widths = [widths[i] for i in keep]
    wide = [i for i, w in enumerate(widths) if wide_from is not None and w >= wide_from]
    out: dict[str, Any] = {k: {p: {} for p in params} for k in (
        "mean", "std", "slopes", "slopes_all", "seed_slopes", "inverse_width_fit")}
    out["slopes_wide"] = {p: {} for p in params} if len(wide) >= 2 else None
    for p in params:
        for q in _RECORDED:
            out["mean"][p][q], out["std"][p][q] = mean_std(raw[p][q])
        for q in FIG2_QUANTITIES + FIG2_DIAGNOSTICS:
            mean = out["mean"][p][q]
            out["slopes"][p][q] = fit_slope(fit_widths, [mean[i] for i in keep])
            out["slopes_all"][p][q] = fit_slope(widths, mean)
            out["seed_slopes"][p][q] = [fit_slope(fit_widths, [row[i] for i in keep]).slope for row in raw[p][q]
                                        if all(row[i] is not None for i in keep)]
            if out["slopes_wide"] is not None:
                out["slopes_wide"][p][q] = fit_slope([widths[i] for i in wide], [mean[i] for i in wide])
            out["inverse_width_fit"][p][q] = _inverse_width_fit(widths, mean)
    out["fit_widths"] = fit_widths
    out["wide_from"] = wide_from if out["slopes_wide"] is not None else None
    return out


def run_fig2(
    widths: Sequence[int] = (16, 32, 64, 128, 256, 512, 1024),
    *,
    steps: int = 4000,
    seeds: Sequence[int] = tuple(range(10)),
    params: Sequence[str] = ("sptrace", "ntp"),
    eta: float = 0.1,
    n_samples: int = 200,
    classes: tuple[ClassSpec, ClassSpec] = (0, 1),
    tol: float = 0.1,
    fit_from: Optional[int] = None,
    wide_from: Optional[int] = 64,
    project_input: bool = True,
    data_path: Optional[PathLike] = None,
    out_dir: Optional[PathLike] = None,
    progress: bool = False,
    device: Union[str, torch.device] = "cpu",
    seeds_at: Optional[Mapping[int, int]] = None,
    runs: Optional[Union[PathLike, Fig2RunStore]] = None,
) -> Fig2Result:
    """Reproduce Fig. 2: for each seed (data subset and init), parametrization and width, train the
    MLP for ``steps`` full-batch GD steps and measure the four quantities; fit slopes of the seed
    means against width. The acceptance fit covers every measured width unless ``fit_from`` leaves
    the narrower ones out (then they are still measured, plotted and fitted in ``slopes_all``);
    ``wide_from`` adds a diagnostic fit over widths ``>= wide_from`` (``slopes_wide``).

    Defaults follow Appendix A where the CPU allows: classes 0 and 1 (CIFAR-10's classes 0 and 1
    are the paper's airplane and automobile), 200 samples, eta = 0.1, 10 seeds (trials), widths
    from 16; 4000 steps instead of 10^4 (every width is below the paper's 0.01 training loss on
    average by then); the default widths stop at 1024 (the paper: 4096, which the documented run
    reaches with ``seeds_at``). With ``out_dir`` also writes ``fig2.json`` and ``fig2.png``.

    ``seeds_at`` runs only the first ``k`` seeds at the widths it names (``{4096: 2}``): a wide run
    costs ``n^2`` per step while its seed-to-seed spread shrinks, so the mean there needs fewer
    seeds; the means are then over different seed counts (``seed_counts``), and ``seed_slopes``
    only covers the seeds that ran at every fitted width. ``runs`` (a path or a
    :class:`~experiments.fig2_store.Fig2RunStore`) reuses finished runs and records new ones as they finish."""
    t0 = time.perf_counter()
    widths, seeds = [int(w) for w in widths], list(seeds)
    for p in params:
        check_parametrization(p)  # an unknown one fails before any training
    counts = _seed_counts(widths, len(seeds), seeds_at)
    keep = _fit_indices(widths, fit_from)
    store = Fig2RunStore(runs) if runs is not None and not isinstance(runs, Fig2RunStore) else runs
    spec = _RunSpec(steps, eta, n_samples, tuple(classes), project_input, device,
                    file_digest(data_path if data_path is not None else DIGITS_PATH))
    raw: dict[str, dict[str, list[list[Optional[float]]]]] = {p: {q: [] for q in _RECORDED} for p in params}
    n0 = 0
    for i, s in enumerate(seeds):
        x, y = binary_digits(n_samples, classes, seed=s, path=data_path)
        n0 = x.shape[1]
        for p in params:
            for q, row in _seed_rows(spec, i, s, x, y, p, widths, counts, store, progress).items():
                raw[p][q].append(row)
    res = Fig2Result(
        widths=widths, params=list(params), seeds=seeds, steps=steps, eta=eta, n0=n0, n_samples=n_samples,
        classes=tuple(classes), raw=raw, tol=tol, acceptance=FIG2_ACCEPTANCE, project_input=project_input,
        predicted={p: dict(FIG2_PREDICTED[p]) for p in params if p in FIG2_PREDICTED}, seed_counts=counts,
        seconds=time.perf_counter() - t0, **_fit_curves(raw, widths, keep, wide_from))
    if out_dir is not None:
        res.write(out_dir)
    return res
