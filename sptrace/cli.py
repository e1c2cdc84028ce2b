"""``python -m sptrace report MODEL`` (and ``validate``): the command line."""
from __future__ import annotations

import argparse
import sys

from .graph.report import FORMATS
from .types import SptraceError
from .validation.models import resolve


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="sptrace", description="Width-stable training from the traced graph.")
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="trace MODEL and print the per-parameter table")
    rep.add_argument("model", help="a zoo name (see `python -m models_zoo`) or module:factory")
    rep.add_argument("--width", type=int, default=None, help="width to build the model at")
    rep.add_argument("--base-width", type=int, default=None, help="decide width dims against this narrower build")
    rep.add_argument("--format", choices=FORMATS, default="text")
    rep.add_argument("--optimizer", default=None, help="also plan init and lr for this optimizer (adam, sgd, spectral)")
    rep.add_argument("--strict", action="store_true", help="fail when a parameter cannot be classified")
    val = sub.add_parser("validate", help="coord-check MODEL under sptrace and the baselines across widths")
    val.add_argument("model", help="a zoo name or module:factory")
    val.add_argument("--widths", type=int, nargs="+", default=None, help="widths (default: the zoo's coord widths)")
    val.add_argument("--optimizer", default="adam", help="adam, adamw, sgd or spectral")
    val.add_argument("--steps", type=int, default=4)
    val.add_argument("--lr", type=float, default=None, help="lr at the narrowest width (default per optimizer)")
    val.add_argument("--batch-size", type=int, default=32)
    val.add_argument("--device", default="cpu", help="cpu or cuda")
    val.add_argument("--out", default=None, help="folder for the JSON result and the PNG plots")
    val.add_argument("--baselines", nargs="*", default=None,
                     help="sp and/or ntp (default: both; sp only for the spectral optimizer: NTP has none)")
    val.add_argument("--seeds", type=int, default=3, help="init seeds averaged per width")
    val.add_argument("--no-zero-readout", action="store_true",
                     help="keep the rule's readout init (see docs/validation.md)")
    val.add_argument("--no-spectral", action="store_true", help="skip per-parameter spectral norms (faster)")
    val.add_argument("--tol", type=float, default=0.25)
    args = parser.parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except SptraceError as exc:
        print(f"sptrace: error: {exc}", file=sys.stderr)
        return 2


def _report(args) -> int:
    from .graph.trace import trace

    source = resolve(args.model)
    width = args.width or source.default_width
    model, example_args, example_kwargs = source.build(width)
    base = source.build(args.base_width)[0] if args.base_width else None
    result = trace(model, *example_args, base=base, strict=args.strict, **example_kwargs)
    if args.optimizer:
        from .apply.parametrize import annotate_plan

        annotate_plan(result, model, optimizer=args.optimizer)
    print(result.report(args.format), end="")
    return 0


def _validate(args) -> int:
    from .validation.validate import validate

    parametrizations = None if args.baselines is None else ("sptrace", *args.baselines)
    result = validate(
        args.model, args.widths, optimizer=args.optimizer, steps=args.steps, lr=args.lr, batch_size=args.batch_size,
        parametrizations=parametrizations, device=args.device, out=args.out, tol=args.tol,
        progress=sys.stderr.isatty(), spectral=not args.no_spectral, n_seeds=args.seeds,
        zero_readout=not args.no_zero_readout,
    )
    print(result.summary())
    for path in result.files:
        print(f"wrote {path}")
    return 0 if result.passed else 1


_COMMANDS = {"report": _report, "validate": _validate}
