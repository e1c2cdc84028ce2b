"""Coord-check every zoo model under every optimizer and write a markdown table + plots.

    python scripts/validation_report.py --device cpu --out docs/img/validation-cpu
    python scripts/validation_report.py --device cuda --scale gpu --out $OUT/validation-gpu

The table lists, per model and optimizer, the verdict and the worst slope of sptrace and of the
baselines (standard parametrization, NTP). docs/validation.md quotes its output.
"""
import argparse
import os
import time
import warnings

from sptrace.validation.validate import validate

CONFIGS = {  # scale -> model -> (widths, build options, batch size)
    "cpu": {
        "mlp": ((64, 128, 256, 512), {}, 16),
        "cnn": ((64, 128, 256, 512), {}, 8),
        "mixer": ((64, 128, 256, 512), {}, 8),
        "gpt": ((64, 128, 256, 512), {"n_layer": 1}, 8),
        "vit": ((64, 128, 256, 512), {"depth": 1}, 8),
    },
    "gpu": {
        "mlp": ((256, 512, 1024, 2048, 4096), {}, 64),
        "cnn": ((64, 128, 256, 512, 1024), {}, 32),
        "mixer": ((128, 256, 512, 1024, 2048), {}, 32),
        "gpt": ((128, 256, 512, 1024, 2048), {}, 32),
        "vit": ((128, 256, 512, 1024, 2048), {}, 32),
    },
}


def worst(run) -> str:
    """The update slope (delta_rms) farthest from 0, and its module."""
    checks = [c for m in run.verdict.modules.values() for c in m.checks.values() if c.quantity.startswith("delta")]
    if not checks:
        return "-"
    bad = max(checks, key=lambda c: c.excess)
    return f"{bad.slope:+.2f} ({bad.module})"


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--scale", choices=sorted(CONFIGS), default="cpu")
    parser.add_argument("--optimizers", nargs="+", default=["adam", "sgd", "spectral"])
    parser.add_argument("--models", nargs="+", default=None)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    os.makedirs(args.out, exist_ok=True)
    rows = ["| model | optimizer | widths | sptrace | SP | NTP | seconds |", "|---|---|---|---|---|---|---|"]
    for name, (widths, options, batch) in CONFIGS[args.scale].items():
        if args.models and name not in args.models:
            continue
        for optimizer in args.optimizers:
            started = time.time()
            baselines = ("sptrace", "sp") if optimizer == "spectral" else ("sptrace", "sp", "ntp")
            result = validate(name, widths, optimizer, steps=args.steps, batch_size=batch, device=args.device,
                              build_options=options, out=args.out, parametrizations=baselines, spectral=name == "mlp",
                              n_seeds=args.seeds)
            cells = []
            for p in ("sptrace", "sp", "ntp"):
                run = result.runs.get(p)
                cells.append("-" if run is None else f"{'PASS' if run.verdict.passed else 'FAIL'} worst {worst(run)}")
            rows.append(f"| {name} | {optimizer} | {widths[0]}-{widths[-1]} | " + " | ".join(cells)
                        + f" | {time.time() - started:.0f} |")
            print(rows[-1], flush=True)
    table = "\n".join(rows) + "\n"
    with open(os.path.join(args.out, "table.md"), "w") as fh:
        fh.write(table)
    print(table)


if __name__ == "__main__":
    main()
