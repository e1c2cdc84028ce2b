"""``python -m sptrace report | validate | transfer``: the command line, one front end for every
subcommand."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Optional, Sequence

from .graph.report import FORMATS
from .types import SptraceError
from .validation.models import PARAMETRIZATIONS, require_data, resolve, source_of


MODEL_HELP = ("a zoo name (see `python -m models_zoo`), hf:<model_type> or timm:<model_name> (built from its config "
              "at a small width, random weights), or module:factory")
OPTION_KINDS = ("a build option of a zoo model, a config field of an hf: type (set over the shrunk config, e.g. "
                "norm_topk_prob=true), a constructor argument of a timm: model, a keyword argument of a module:factory")
OPTION_HELP = f"key=value (repeatable): {OPTION_KINDS}"
DATA_HELP = ("train on this zoo model's batches and loss (mlp, cnn, gpt, vit, mixer): how a module:factory is "
             "{verb}; the model must take those inputs")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="sptrace", description="Width-stable training from the traced graph.")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_report(sub)
    _add_validate(sub)
    _add_transfer(sub)
    args = parser.parse_args(argv)
    try:
        return _COMMANDS[args.command](args)
    except SptraceError as exc:
        print(f"sptrace: error: {exc}", file=sys.stderr)
        return 2


def _add_report(sub: Any) -> None:
    rep = sub.add_parser("report", help="trace MODEL and print the per-parameter table")
    rep.add_argument("model", help=MODEL_HELP)
    rep.add_argument("--width", type=int, default=None, help="width to build the model at")
    rep.add_argument("--base-width", type=int, default=None, help="decide width dims against this narrower build")
    rep.add_argument("--format", choices=FORMATS, default="text")
    rep.add_argument("--optimizer", default=None, help="also plan init and lr for this optimizer (adam, sgd, spectral)")
    rep.add_argument("--strict", action="store_true", help="fail when a parameter cannot be classified")


def _add_validate(sub: Any) -> None:
    val = sub.add_parser("validate", help="coord-check MODEL under sptrace and the baselines across widths")
    val.add_argument("model", help=MODEL_HELP)
    val.add_argument("--widths", type=int, nargs="+", default=None,
                     help="widths (default: the zoo's coord widths; hf: and timm: 64 128 256, quick; for SGD on "
                          "an hf: attention LM use 128 256 512 1024: docs/validation.md, narrow widths)")
    val.add_argument("--optimizer", default="adam", help="adam, adamw, sgd or spectral")
    val.add_argument("--steps", type=int, default=4)
    val.add_argument("--lr", type=float, default=None,
                     help="lr at the reference width (base form: the narrowest width); default per optimizer")
    val.add_argument("--batch-size", type=int, default=32)
    val.add_argument("--device", default="cpu", help="cpu or cuda")
    val.add_argument("--out", default=None, help="folder for the JSON result and the PNG plots")
    val.add_argument("--baselines", nargs="*", default=None,
                     help="sp and/or ntp (default: both; sp only for the spectral optimizer: NTP has none)")
    val.add_argument("--seeds", type=int, default=3, help="init seeds averaged per width")
    val.add_argument("--form", choices=("reference", "base"), default="reference",
                     help="parametrize's form: reference (no base, the default call) or base (base= the narrowest width)")
    val.add_argument("--attention-fix", action="store_true",
                     help="validate parametrize(attention_fix=True): the scale 1/head_dim where head_dim grows")
    val.add_argument("--no-spectral", action="store_true", help="skip per-parameter spectral norms (faster)")
    val.add_argument("--tol", type=float, default=0.25)
    val.add_argument("--dtype", choices=("float32", "float64"), default=None,
                     help="train and measure in this precision (default: the model's own, float32); float64 "
                          "measures updates far below a float32 ulp of their weights (docs/validation.md)")
    val.add_argument("--option", action="append", default=[], help=OPTION_HELP)
    val.add_argument("--data", default=None, help=DATA_HELP.format(verb="validated"))


def _add_transfer(sub: Any) -> None:
    from .apply.parametrize import OPTIMIZERS
    from .validation.transfer_results import METRICS

    tr = sub.add_parser("transfer", help="lr-transfer sweep of MODEL under sptrace and the baselines")
    tr.add_argument("model", help=MODEL_HELP)
    tr.add_argument("--widths", type=int, nargs="+", required=True)
    tr.add_argument("--log2-lrs", type=float, nargs=2, metavar=("LO", "HI"), required=True,
                    help="the factor-2 lr grid 2**LO .. 2**HI")
    tr.add_argument("--optimizer", default="adam", choices=sorted(OPTIMIZERS))
    tr.add_argument("--steps", type=int, default=100)
    tr.add_argument("--batch-size", type=int, default=32)
    tr.add_argument("--eval-batches", type=int, default=8)
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--device", default="cpu")
    tr.add_argument("--threads", type=int, default=None)
    tr.add_argument("--metric", default="train", choices=METRICS)
    tr.add_argument("--parametrizations", nargs="+", default=["sptrace", "sp"], choices=PARAMETRIZATIONS)
    tr.add_argument("--option", action="append", default=[], help=OPTION_HELP)
    tr.add_argument("--data", default=None, help=DATA_HELP.format(verb="swept"))
    tr.add_argument("--out", default=None, help="directory for the JSON and PNGs")
    tr.add_argument("--stem", default=None)
    tr.add_argument("--progress", action="store_true")


def _report(args) -> int:
    from .graph.trace import trace

    source = resolve(args.model)
    width = args.width or source.default_width
    model, example_args, example_kwargs = source.build(width)
    base = source.build(args.base_width)[0] if args.base_width else None
    result = trace(model, *example_args, base=base, strict=args.strict, **example_kwargs)
    if args.optimizer:
        from .apply.parametrize import plan_report

        print(plan_report(result, model, optimizer=args.optimizer, format=args.format), end="")
    else:
        print(result.report(args.format), end="")
    return 0


def _validate(args) -> int:
    from .validation.validate import validate

    parametrizations = None if args.baselines is None else ("sptrace", *args.baselines)
    require_data(source_of(args.model, args.data), "validate", "--data")
    result = validate(
        args.model, args.widths, optimizer=args.optimizer, steps=args.steps, lr=args.lr, batch_size=args.batch_size,
        parametrizations=parametrizations, device=args.device, out=args.out, tol=args.tol,
        progress=sys.stderr.isatty(), spectral=not args.no_spectral, n_seeds=args.seeds,
        form=args.form, build_options=dict(_parse_option(o) for o in args.option), dtype=args.dtype,
        attention_fix=args.attention_fix, data=args.data,
    )
    print(result.summary())
    for path in result.files:
        print(f"wrote {path}")
    return 0 if result.passed else 1


def _parse_option(text: str) -> tuple[str, Any]:
    """``key=value`` with the value read as a bool, None, int, float or else a string."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise SptraceError(f"--option wants key=value ({OPTION_KINDS}), got {text!r}")
    low = value.lower()
    if low in ("true", "false"):
        return key, low == "true"
    if low == "none":
        return key, None
    for conv in (int, float):
        try:
            return key, conv(value)
        except ValueError:
            pass
    return key, value


def _transfer(args) -> int:
    from .validation.transfer import compare, log2_grid

    options = dict(_parse_option(o) for o in args.option)
    source = source_of(args.model, args.data)
    require_data(source, "transfer", "--data")
    result = compare(source, args.widths, log2_grid(*args.log2_lrs), args.optimizer,
                     parametrizations=args.parametrizations, steps=args.steps, batch_size=args.batch_size,
                     eval_batches=args.eval_batches, seed=args.seed, device=args.device, threads=args.threads,
                     metric=args.metric, build_options=options, progress=args.progress)
    for name, r in result.results.items():
        print(f"## {name} ({r.seconds:.0f} s)\n{r.summary()}\n\n{r.table()}\n")
    if args.out:
        first = next(iter(result.results.values()))
        suffix = "".join(f"-{k}{v}" for k, v in sorted(options.items()))
        stem = args.stem or f"{first.model}{suffix}-{args.optimizer}-lr-transfer"
        print(result.save(os.path.join(args.out, f"{stem}.json")))
        for path in result.plot(args.out, stem=stem):
            print(path)
    return 0


_COMMANDS = {"report": _report, "validate": _validate, "transfer": _transfer}
