"""Power iteration vs ``torch.linalg.matrix_norm(ord=2)`` (an SVD): time and relative error.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_spectral_norm.py [--size 4096] [--batch 64 256 256]
        [--iters 10 20] [--repeats 3] [--threads N] [--device cpu|cuda] [--json out.json]

Three kinds of matrix, because power iteration's accuracy depends on the gap between the top two
singular values, not on the size:

* ``gaussian``: i.i.d. N(0, 1/n) (a weight at init). No gap at the top of the spectrum: the worst
  case; the estimate converges like 1/k, so 10-20 iterations give a few per cent low.
* ``init+update``: a Gaussian plus a rank-4 update of spectral norm ~1.5x its own (a weight after
  training under Condition 1): a clear gap, fast convergence.
* ``update``: rank-8 with decaying singular values (a gradient / Delta W, stable rank ~1-2).

Warm start: the matrix is perturbed by a small relative step (1e-3 in Frobenius norm, like one
optimizer step) and power iteration restarts from the previous call's ``v``. Every figure comes from
the same process; times are the best of ``--repeats`` runs (the machine may be shared; the best
run is the least disturbed one), and a kernel that takes longer than 5 s is run only once.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from sptrace.spectral import power_iteration  # noqa: E402


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timeit(fn, device: torch.device, repeats: int, budget_s: float = 5.0, warmup: bool = True) -> tuple[float, object]:
    if warmup:
        fn()
        _sync(device)
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - t0)
        if times[-1] > budget_s:
            break
    return min(times), out


def make(kind: str, shape: tuple[int, ...], g: torch.Generator, device: torch.device) -> torch.Tensor:
    *batch, m, n = shape
    W = torch.randn(*batch, m, n, generator=g) / math.sqrt(n)
    if kind == "gaussian":
        pass
    elif kind == "init+update":
        r = 4
        U = torch.linalg.qr(torch.randn(*batch, m, r, generator=g))[0]
        V = torch.linalg.qr(torch.randn(*batch, n, r, generator=g))[0]
        s = torch.tensor([3.0, 2.0, 1.5, 1.0]) * (1 + math.sqrt(m / n))
        W = W + (U * s) @ V.mT
    elif kind == "update":
        r = 8
        U = torch.linalg.qr(torch.randn(*batch, m, r, generator=g))[0]
        V = torch.linalg.qr(torch.randn(*batch, n, r, generator=g))[0]
        s = 0.5 ** torch.arange(r, dtype=torch.float32)
        W = (U * s) @ V.mT
    else:
        raise ValueError(kind)
    return W.to(device)


def bench(kind: str, shape: tuple[int, ...], iters: list[int], repeats: int, device: torch.device,
          g: torch.Generator) -> dict:
    A = make(kind, shape, g, device)
    big = max(shape) >= 2048
    t_exact, exact = timeit(lambda: torch.linalg.matrix_norm(A, ord=2), device, 1 if big else repeats, warmup=not big)
    exact = exact.double()
    # a nearby matrix: one small optimizer-like step later
    step = torch.randn(A.shape, generator=g).to(device)
    B = A + 1e-3 * step * (A.norm(dim=(-2, -1), keepdim=True) / step.norm(dim=(-2, -1), keepdim=True))
    exact_b = torch.linalg.matrix_norm(B, ord=2).double()
    row = {"kind": kind, "shape": list(shape), "exact_s": t_exact, "runs": []}
    for k in iters:
        t_cold, r_cold = timeit(lambda: power_iteration(A, k), device, repeats)
        prev = power_iteration(A, k)
        t_warm, r_warm = timeit(lambda: power_iteration(B, k, v0=prev.v), device, repeats)
        err_cold = float(((exact - r_cold.sigma.double()).abs() / exact).max())
        err_warm = float(((exact_b - r_warm.sigma.double()).abs() / exact_b).max())
        row["runs"].append({"iters": k, "cold_s": t_cold, "warm_s": t_warm, "speedup": t_exact / t_cold,
                            "rel_err_cold": err_cold, "rel_err_warm": err_warm})
    # tolerance mode: iterations to reach a relative change below 1e-4, cold and warm
    cold = power_iteration(A, tol=1e-4, iters=3000)
    warm = power_iteration(B, tol=1e-4, iters=3000, v0=cold.v)
    t_def, dflt = timeit(lambda: power_iteration(A, tol=1e-6, iters=1000), device, max(1, repeats // 3))
    row["spectral_norm_default"] = {  # what spectral_norm(method="auto"/"power") runs
        "iters": dflt.iters, "converged": dflt.converged, "s": t_def, "speedup": t_exact / t_def,
        "rel_err": float(((exact - dflt.sigma.double()).abs() / exact).max()),
    }
    row["tol_1e-4"] = {
        "iters_cold": cold.iters, "iters_warm": warm.iters,
        "rel_err_cold": float(((exact - cold.sigma.double()).abs() / exact).max()),
        "rel_err_warm": float(((exact_b - warm.sigma.double()).abs() / exact_b).max()),
    }
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--batch", type=int, nargs=3, default=[64, 256, 256], metavar=("B", "M", "N"))
    ap.add_argument("--iters", type=int, nargs="+", default=[10, 20])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--kinds", nargs="+", default=["gaussian", "init+update", "update"])
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    g = torch.Generator().manual_seed(0)
    print(f"torch {torch.__version__}, device {device}, threads {torch.get_num_threads()}")
    rows = []
    for shape in [(a.size, a.size), tuple(a.batch)]:
        for kind in a.kinds:
            row = bench(kind, shape, a.iters, a.repeats, device, g)
            rows.append(row)
            shp = "x".join(map(str, shape))
            print(f"\n{shp} {kind}: matrix_norm(ord=2) {row['exact_s'] * 1e3:.1f} ms")
            for r in row["runs"]:
                print(f"  power {r['iters']:>3} it: cold {r['cold_s'] * 1e3:8.2f} ms (x{r['speedup']:.0f} faster, "
                      f"rel err {r['rel_err_cold']:.1e}) | warm {r['warm_s'] * 1e3:8.2f} ms "
                      f"(rel err {r['rel_err_warm']:.1e})")
            d = row["spectral_norm_default"]
            print(f"  spectral_norm default (tol 1e-6, <= 1000 it): {d['iters']} it, {d['s'] * 1e3:.1f} ms "
                  f"(x{d['speedup']:.0f} faster), rel err {d['rel_err']:.1e}")
            t = row["tol_1e-4"]
            print(f"  tol 1e-4: {t['iters_cold']} it cold (rel err {t['rel_err_cold']:.1e}), "
                  f"{t['iters_warm']} it warm (rel err {t['rel_err_warm']:.1e})")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"torch": torch.__version__, "device": str(device), "threads": torch.get_num_threads(),
                       "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
