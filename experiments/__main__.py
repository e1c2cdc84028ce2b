"""The paper's experiments from the command line:
``python -m experiments {fig1,fig2,lr,coord,oob} --out DIR [options]`` writes JSON + PNG
(docs/measurements.md and docs/training.md have the documented command lines)."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Callable, Optional, Sequence

from sptrace.types import SptraceError
from sptrace.threads import cpu_threads
from sptrace.validation.jsonio import to_json

from .coord_demo import run_coord_demo
from .fig1 import run_fig1
from .fig2 import run_fig2
from .gd_mlp import PARAMETRIZATIONS
from .lr_sweep import run_lr_sweep
from .out_of_box import ABLATIONS, run_out_of_box, run_transfer

__all__ = ["main"]


def _width_counts(pairs: Sequence[str]) -> dict[int, int]:
    """``["2048=3", "4096=2"]`` -> ``{2048: 3, 4096: 2}``."""
    out = {}
    for pair in pairs:
        w, sep, k = pair.partition("=")
        if not sep or not w.strip().isdigit() or not k.strip().isdigit():
            raise SptraceError(f"--seeds-at {pair!r}: expected WIDTH=K with two integers, e.g. 4096=2")
        out[int(w)] = int(k)
    return out


def _class_groups(specs: Sequence[str]) -> tuple:
    """``["0", "1"]`` -> ``(0, 1)``; a comma list is a group: ``["0,1,2", "5,6"]`` -> ``((0, 1, 2), (5, 6))``."""
    try:
        return tuple(tuple(int(v) for v in c.split(",")) if "," in c else int(c) for c in specs)
    except ValueError as e:
        raise SptraceError(f"--classes {' '.join(specs)}: expected two digits or comma lists of digits, "
                           "e.g. 0 1 or 0,1,2,3,4 5,6,7,8,9") from e


def _add_fig2(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    f2 = sub.add_parser("fig2", help="Fig. 2: sptrace (μP) vs NTP spectral quantities against width")
    f2.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64, 128, 256, 512, 1024])
    f2.add_argument("--steps", type=int, default=4000)
    f2.add_argument("--seeds", type=int, default=10, help="number of seeds (0..N-1); the paper used 10")
    f2.add_argument("--eta", type=float, default=0.1)
    f2.add_argument("--tol", type=float, default=0.1)
    f2.add_argument("--classes", nargs=2, default=["0", "1"], metavar=("NEG", "POS"),
                    help="the two classes (targets -1, +1); a comma list makes a group, e.g. 0,1,2,3,4 5,6,7,8,9")
    f2.add_argument("--fit-from", type=int, default=0,
                    help="fit the acceptance slopes on widths >= this only (default 0: every width)")
    f2.add_argument("--wide-from", type=int, default=64, help="diagnostic fit on widths >= this (0: none)")
    f2.add_argument("--name", default="fig2", help="output file stem (NAME.json, NAME.png)")
    f2.add_argument("--no-project", action="store_true", help="train the full 3072-wide first layer")
    f2.add_argument("--device", default="cpu", help="cpu or cuda (the paper's widths up to 4096 take minutes on a GPU)")
    f2.add_argument("--seeds-at", nargs="+", default=[], metavar="WIDTH=K",
                    help="run only the first K seeds at WIDTH, e.g. 2048=3 4096=2 (wide runs cost n^2 per step)")
    f2.add_argument("--runs", default=None, metavar="FILE.jsonl",
                    help="store of finished runs: reused when they match, new ones appended (resumable)")
    return f2


def _add_others(sub: argparse._SubParsersAction) -> list[argparse.ArgumentParser]:
    f1 = sub.add_parser("fig1", help="Fig. 1: stable rank and alignment of one update against batch size")
    f1.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024])
    f1.add_argument("--width", type=int, default=300)
    f1.add_argument("--trials", type=int, default=10)
    lr = sub.add_parser("lr", help="learning-rate sweep of the Fig. 2 MLP")
    lr.add_argument("--param", default="sptrace", choices=list(PARAMETRIZATIONS))
    lr.add_argument("--widths", type=int, nargs="+", default=[64, 256, 1024])
    lr.add_argument("--log2-lrs", type=float, nargs="+", default=[float(k) for k in range(-6, 5)])
    lr.add_argument("--steps", type=int, default=100)
    lr.add_argument("--seeds", type=int, default=1)
    cd = sub.add_parser("coord", help="coord-check demo: MLP on digits, SP vs sptrace (μP) with Adam")
    cd.add_argument("--widths", type=int, nargs="+", default=[32, 64, 128, 256, 512, 1024])
    cd.add_argument("--steps", type=int, default=4)
    cd.add_argument("--lr", type=float, default=1e-2)
    return [f1, lr, cd, _add_oob(sub)]


def _add_oob(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    ob = sub.add_parser("oob", help="out of the box: the one-line parametrize vs plain Adam, and the lr sweep in "
                                    "the default form vs SP (docs/training.md)")
    ob.add_argument("--models", nargs="+", default=["mlp", "gpt"], choices=["mlp", "gpt"])
    ob.add_argument("--parts", nargs="+", default=["compare", "sweep"], choices=["compare", "sweep", "ablate"],
                    help="compare: one-line call vs plain Adam at --width; sweep: lr sweep over --sweep-widths; "
                         "ablate: the comparison's gap taken apart (experiments.out_of_box.ABLATIONS)")
    ob.add_argument("--width", type=int, default=512)
    ob.add_argument("--steps", type=int, default=200)
    ob.add_argument("--seeds", type=int, default=None,
                    help="seeds 0..N-1 of the comparison (default: per model, experiments.out_of_box.SETTINGS)")
    ob.add_argument("--sweep-widths", type=int, nargs="+", default=[32, 64, 128, 256, 512])
    ob.add_argument("--sweep-log2-lrs", type=int, nargs=2, default=None, metavar=("LO", "HI"),
                    help="lr grid 2**LO .. 2**HI (default: per model, experiments.out_of_box.SETTINGS)")
    ob.add_argument("--sweep-steps", type=int, default=None, help="default: per model (SETTINGS)")
    ob.add_argument("--sweep-seeds", type=int, default=1)
    ob.add_argument("--device", default="cpu", help="where the models train: cpu or cuda")
    return ob


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m experiments", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    for p in [_add_fig2(sub), *_add_others(sub)]:
        p.add_argument("--out", required=True, help="output directory for JSON + PNG")
        p.add_argument("--data", default=None, help="path to digits.npz")
        p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (1 on a busy machine)")
    return ap


def _fig2(a: argparse.Namespace) -> int:
    res = run_fig2(a.widths, steps=a.steps, seeds=range(a.seeds), eta=a.eta, tol=a.tol,
                   classes=_class_groups(a.classes), fit_from=a.fit_from or None, wide_from=a.wide_from or None,
                   project_input=not a.no_project, data_path=a.data, progress=True, device=a.device,
                   seeds_at=_width_counts(a.seeds_at), runs=a.runs)
    paths = res.write(a.out, a.name)
    print(res.table())
    print(f"passed (±{res.tol}) : {res.passed}; {res.seconds:.0f} s; wrote {paths}")
    return 0 if res.passed else 1


def _fig1(a: argparse.Namespace) -> int:
    res = run_fig1(a.batch_sizes, width=a.width, trials=a.trials, data_path=a.data)
    paths = res.write(a.out)
    print(res.table())
    print(f"{res.seconds:.0f} s; wrote {paths}")
    return 0


def _lr(a: argparse.Namespace) -> int:
    res = run_lr_sweep(a.widths, [2.0 ** k for k in a.log2_lrs], param=a.param, steps=a.steps,
                       seeds=range(a.seeds), data_path=a.data)
    paths = res.write(a.out)
    print(json.dumps(to_json(res.best_lr())))
    print(f"{res.seconds:.0f} s; wrote {paths}")
    return 0


def _coord(a: argparse.Namespace) -> int:
    out = run_coord_demo(a.widths, steps=a.steps, lr=a.lr, data_path=a.data, out_dir=a.out)
    for name in ("sp", "sptrace"):
        print(f"{name}: {out['verdicts'][name].summary()}")
    return 0


def _oob(a: argparse.Namespace) -> int:
    """Exit status 1 when an acceptance misses (the one-line call's mean training loss above plain
    Adam's, or the sptrace best lr spreading over more than one factor-2 step)."""
    if a.data is not None:
        raise SptraceError("oob trains on the zoo's shipped data (models_zoo/data); --data does not apply")
    ok = True
    seeds = None if a.seeds is None else range(a.seeds)
    for part, arms, name in (("compare", None, "out_of_box"), ("ablate", ABLATIONS, "out_of_box_ablations")):
        if part in a.parts:
            res = run_out_of_box(a.models, width=a.width, steps=a.steps, seeds=seeds, arms=arms, progress=True,
                                 device=a.device)
            paths = res.write(a.out, name)
            print(res.table())
            ok &= part == "ablate" or all(res.passed(m) for m in res.models)
            print(f"{res.seconds:.0f} s ({res.cpu_seconds:.0f} s CPU); wrote {paths}")
    if "sweep" in a.parts:
        tr = run_transfer(a.models, widths=a.sweep_widths, log2_lrs=a.sweep_log2_lrs, steps=a.sweep_steps,
                          seeds=range(a.sweep_seeds), progress=True, device=a.device)
        paths = tr.write(a.out)
        for m, by_arm in tr.sweeps.items():
            for arm in by_arm:
                print(f"{m} {arm}: training loss per width x lr\n{tr.mean(m, arm).table()}")
        print(tr.summary_table())
        ok &= all(tr.passed(m) for m in tr.sweeps)
        print(f"{tr.seconds:.0f} s ({tr.cpu_seconds:.0f} s CPU); wrote {paths}")
    return 0 if ok else 1


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"fig2": _fig2, "fig1": _fig1, "lr": _lr, "coord": _coord,
                                                              "oob": _oob}


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one experiment; returns the exit status (fig2: 1 when a slope misses its tolerance).
    Raises :class:`sptrace.SptraceError` for arguments it cannot use."""
    a = _parser().parse_args(argv)
    with cpu_threads(a.threads):
        return _COMMANDS[a.cmd](a)


if __name__ == "__main__":  # pragma: no cover
    try:
        raise SystemExit(main())
    except SptraceError as e:
        sys.exit(f"python -m experiments: {e}")
