"""``python -m sptrace report MODEL`` (and ``validate``): the command line."""
from __future__ import annotations

import argparse
import sys

from .models import resolve
from .report import FORMATS
from .types import SptraceError


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
    args = parser.parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except SptraceError as exc:
        print(f"sptrace: error: {exc}", file=sys.stderr)
        return 2


def _report(args) -> int:
    from .trace import trace

    source = resolve(args.model)
    width = args.width or source.default_width
    model, example_args, example_kwargs = source.build(width)
    base = source.build(args.base_width)[0] if args.base_width else None
    result = trace(model, *example_args, base=base, strict=args.strict, **example_kwargs)
    if args.optimizer:
        from .parametrize import annotate_plan

        annotate_plan(result, model, optimizer=args.optimizer)
    print(result.report(args.format), end="")
    return 0


_COMMANDS = {"report": _report}
