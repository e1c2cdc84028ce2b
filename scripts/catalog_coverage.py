"""Coverage of the Hugging Face and timm catalogs: every HF causal-LM model type and one timm model
per family, built from its config with random weights on the meta device (HF at width 64, timm as
timm defines it), traced by ``sptrace.trace``, and, for a sample that holds every distinct cause,
coord-checked by ``sptrace.validation.validate.validate`` on CPU. docs/coverage.md quotes its output.

    OMP_NUM_THREADS=1 python scripts/catalog_coverage.py scan --catalog hf --out coverage
    OMP_NUM_THREADS=1 python scripts/catalog_coverage.py scan --catalog timm --out coverage   # needs timm
    OMP_NUM_THREADS=1 python scripts/catalog_coverage.py scan --catalog hf-base --out coverage  # AutoModel
    OMP_NUM_THREADS=1 python scripts/catalog_coverage.py validate --catalog hf --out coverage  # the sample
    python scripts/catalog_coverage.py render --out coverage                                   # table + JSON

Each stage appends one JSON line per model to ``OUT/<stage>-<catalog>.jsonl`` as it goes, and skips
models already there, so an interrupted scan resumes. A model that fails to build is told apart by
where it fails: the library's own default config (``library``), the config shrunk to the small
width (``shrink``), or sptrace (``sptrace``: the capture or the classification raised).

``hf-base`` is every Hugging Face base-model type (``AutoModel``: encoders, encoder-decoders, vision
and audio backbones), the types that are not causal LMs first. Its inputs are the ones sptrace
infers for ``parametrize(model)`` (``sptrace.apply.inputs.resolve_example_inputs``, its fallbacks
tried where the first do not run: images, video and audio of the config's size, decoder ids for an
encoder-decoder). A type given no inputs is one the one-line call asks for inputs.
"""
import argparse
import json
import os
import re
import signal
import sys
import time
import warnings
from collections import Counter, defaultdict
from datetime import datetime, timezone

import torch

# this checkout's sptrace, not the one the environment has installed (an editable install of another
# checkout): a scan of an exported commit (git archive) measures that commit
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import sptrace  # noqa: E402
from sptrace.apply.inputs import resolve_example_inputs, with_encoder_states  # noqa: E402
from sptrace.types import NEVER_USED, SptraceError  # noqa: E402
from sptrace.validation import catalog  # noqa: E402

HF_WIDTH = 64
CATALOGS = ("hf", "timm", "hf-base")
TOKENS = 16  # the text every Hugging Face model is traced on: 2 × TOKENS ids
LONG_TOKENS = 512  # the second trace, where the first leaves parameters unreached
VALIDATE = dict(widths=[64, 128, 256], optimizer="adam", steps=4, batch_size=8)


class Timeout(BaseException):
    """The per-model limit: not an Exception, so that no ``except Exception`` on the way (a capture
    route that fails over to the next, the model's own forward) takes it for the model's failure."""


class NoInputs(Exception):
    """Neither sptrace nor the scan knows inputs for the model: a limit of the scan."""


def _alarm(*_):
    raise Timeout()


def cause(problem: str) -> str:
    """An unclassified parameter's problem without the names that differ between models: the op
    and what sptrace says about it."""
    text = re.sub(r"^node '[^']*' \(([^)]*)\): ", r"\1: ", problem)
    text = re.sub(r"combined with .*? before any activation", "combined with other parameters before any activation", text)
    text = text.split("; sptrace cannot tell")[0].split(". It is ")[0]
    text = re.sub(r"argument 'arg\d+'", "argument 'argN'", text)
    return re.sub(r"parameter '[^']*'", "a parameter", text)


def causes(row: dict) -> dict:
    """``{cause: parameters}`` of a scanned row, the causes normalised again (rows keep what the
    scan wrote; :func:`cause` may have learnt since)."""
    merged = defaultdict(list)
    for key, params in (row.get("causes") or {}).items():
        merged[cause(key)] += params
    return dict(merged)


def entries(name: str) -> dict:
    """``{entry: how to build it}``: HF model types, or timm families (one model each)."""
    if name == "hf":
        return {f"hf:{t}": t for t in catalog.hf_model_types()}
    if name == "hf-base":
        causal = set(catalog.hf_model_types())
        types = catalog.hf_model_types(base=True)
        return {f"hf-base:{t}": t for t in sorted(types, key=lambda t: t in causal)}
    return {f"timm:{model}": family for family, model in catalog.timm_families().items()}


def build(entry: str, device: str = "meta", tokens: int = TOKENS):
    """The model and the example inputs to try, ``[((args, kwargs), where they come from)]``, on
    ``device``; SptraceError says where a build fails. Hugging Face causal LMs get 2 × ``tokens``
    ids, and encoder states where sptrace's own automatic inputs add them (a decoder with
    cross-attention: ``sptrace.apply.inputs.with_encoder_states``); base models what
    :func:`base_inputs` gives."""
    library, _, arch = entry.partition(":")
    with torch.device(device):
        if library == "hf":
            model = catalog.hf_model(arch, HF_WIDTH)
            inputs = with_encoder_states(model, (torch.randint(0, catalog.models_zoo.data.VOCAB_SIZE, (2, tokens)),), {})
        elif library == "hf-base":
            model = catalog.hf_base_model(arch, HF_WIDTH)
        else:
            model = catalog.timm_model(arch)
            inputs = ((torch.zeros(2, *model.pretrained_cfg.get("input_size", (3, 224, 224))),), {})
    if library == "hf-base":  # as a user calls it: outside the device context, on the model's device
        return model, base_inputs(model)
    return model, [(inputs, "scan")]


def base_inputs(model) -> list:
    """What ``parametrize(model)`` would trace on (``resolve_example_inputs`` and its fallbacks);
    NoInputs where there is nothing."""
    tries = []
    try:
        found = resolve_example_inputs(model)
    except SptraceError as exc:
        found, why = None, _one_line(exc)
    while found is not None:
        tries.append(((found.args, found.kwargs), "sptrace: " + found.source.split(" (")[0]))
        found = found.fallback
    if not tries:
        raise NoInputs(why)
    return tries


def trace_tried(model, tries: list, row: dict):
    """``sptrace.trace`` on the first inputs the model is captured on (as ``parametrize`` moves to
    its fallback); the row says which. The last capture's error where none is."""
    for i, ((args, kwargs), where) in enumerate(tries):
        try:
            result = sptrace.trace(model, *args, **kwargs)
        except SptraceError as exc:
            if i + 1 == len(tries) or not str(exc).startswith("could not capture"):
                raise
            continue
        row["inputs"], row["kwargs"] = where, sorted(kwargs)
        return result


def default_builds(entry: str) -> bool:
    """Whether the library's own default config builds (on meta): tells a library failure from ours."""
    import transformers

    library, _, arch = entry.partition(":")
    auto = transformers.AutoModel if library == "hf-base" else transformers.AutoModelForCausalLM
    try:
        with torch.device("meta"):
            auto.from_config(transformers.AutoConfig.for_model(arch))
        return True
    except Exception:
        return False


def scan_one(entry: str) -> dict:
    row = {"entry": entry}
    started = time.time()
    try:
        model, inputs = build(entry)
    except NoInputs as exc:
        row.update(built="yes", captured=False, route=None, no_inputs=True, error=f"no inputs: {_one_line(exc)}")
        return row
    except SptraceError as exc:
        row["built"] = "shrink" if entry.startswith("hf") and default_builds(entry) else "library"
        row["build_error"] = _one_line(exc)
        return row
    row["built"] = "yes"
    row["parameters"] = sum(p.numel() for p in model.parameters())
    try:
        result = trace_tried(model, inputs, row)
    except SptraceError as exc:
        row["meta_error"] = _one_line(exc)
        result = _trace_on_cpu(entry, row)
    except Exception as exc:  # a crash inside sptrace: a bug to report, not a model property
        row.update(captured=False, route=None, error=f"sptrace crashed: {type(exc).__name__}: {_one_line(exc)}")
        return row
    if result is None:
        return row
    unreached = [r.name for r in result.unclassified if r.problem == NEVER_USED]
    if unreached and entry.startswith("hf:"):
        row["unreached_at_16"] = len(unreached)
        longer = _longer_text(entry, row)
        if longer is not None:
            result = longer
    causes = defaultdict(list)
    for record in result.unclassified:
        causes[cause(record.problem or "no reason given")].append(record.name)
    row.update(captured=True, route=result.route + (" (cpu)" if row.get("on_cpu") else "")
               + (f" ({row['tokens']} tokens)" if row.get("tokens") else ""), capture_failures=result.failures, tensors=len(result.records),
               unclassified=len(result.unclassified), causes=dict(causes), seconds=round(time.time() - started, 1))
    return row


def _longer_text(entry: str, row: dict):
    """Parameters only a longer text reaches (a compressed or chunked attention that needs a whole
    block of tokens): the same model traced on 2 × :data:`LONG_TOKENS` ids, on the device the
    first trace worked on; that trace where it reaches more, else None."""
    model, inputs = build(entry, "cpu" if row.get("on_cpu") else "meta", LONG_TOKENS)
    try:
        result = trace_tried(model, inputs, row)
    except Exception as exc:  # noqa: BLE001 - the first trace stands; say why the longer one did not
        row["long_error"] = f"{type(exc).__name__}: {_one_line(exc)}"
        return None
    if sum(r.problem == NEVER_USED for r in result.unclassified) >= row["unreached_at_16"]:
        return None
    row["tokens"] = LONG_TOKENS
    return result


def _trace_on_cpu(entry: str, row: dict):
    """Where the meta capture fails, the model built on CPU: its own forward first (a failure there
    is the model's, not sptrace's), then the trace; None when neither gives a trace."""
    model, inputs = build(entry, "cpu") if entry.startswith("hf") else _timm_on_cpu(entry)
    runs, failure = [], None
    for (args, kwargs), where in inputs:
        try:
            with torch.no_grad():
                model(*args, **kwargs)
            runs.append(((args, kwargs), where))
        except Exception as exc:
            failure = failure or f"{type(exc).__name__}: {_one_line(exc)}"
    if not runs:
        row.update(captured=False, route=None, error=f"the model's own forward fails: {failure}", forward_fails=True)
        return None
    try:
        result = trace_tried(model, runs, row)
    except SptraceError as exc:
        row.update(captured=False, route=None, error=_one_line(exc))
        return None
    row["on_cpu"] = True
    return result


def _timm_on_cpu(entry: str):
    model = catalog.timm_model(entry.partition(":")[2])
    return model, [(((torch.randn(1, *model.pretrained_cfg.get("input_size", (3, 224, 224))),), {}), "scan")]


def validate_one(entry: str, n_seeds: int) -> dict:
    from sptrace.validation.validate import validate

    result = validate(entry, **VALIDATE, n_seeds=n_seeds, spectral=True)
    return {"entry": entry, "n_seeds": n_seeds, "passed": result.passed,
            "baselines": {k: r.verdict.passed for k, r in result.runs.items() if k != "sptrace"},
            "summary": result.summary()}


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:600]


def commit() -> str:
    """The sptrace commit scanned (rows from several runs say which each came from)."""
    import subprocess

    here = os.path.dirname(os.path.abspath(sptrace.__file__))
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("SPTRACE_COMMIT", "unknown")


def run(stage: str, names: list, out: str, timeout: int, work) -> None:
    path = os.path.join(out, f"{stage}.jsonl")
    done = {r["entry"] for r in read(path)}
    scanned = os.environ.get("SPTRACE_COMMIT") or commit()
    signal.signal(signal.SIGALRM, _alarm)
    for entry in names:
        if entry in done:
            continue
        signal.alarm(timeout)
        started = time.time()
        try:
            row = work(entry)
        except Timeout:
            row = {"entry": entry, "timeout": timeout}
        except Exception as exc:
            row = {"entry": entry, "error": f"{type(exc).__name__}: {_one_line(exc)}"}
        finally:
            signal.alarm(0)
        row["seconds"] = round(time.time() - started, 1)
        row["commit"] = scanned
        with open(path, "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{entry}: {row.get('unclassified', row.get('passed', row.get('built')))} ({row['seconds']} s)",
              flush=True)


def read(path: str) -> list:
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def sample(rows: list) -> list:
    """For each distinct cause (and fully classified, as a control), the smallest model showing it."""
    best: dict = {}
    for row in rows:
        if not row.get("captured") or not row["entry"].startswith(("hf:", "hf-base:", "timm:")):
            continue
        for key in causes(row) or {"fully classified": []}:
            kind = (row["entry"].partition(":")[0], key)
            if kind not in best or row["parameters"] < best[kind]["parameters"]:
                best[kind] = row
    return sorted({r["entry"] for r in best.values()})


def status(row: dict) -> str:
    if "timeout" in row:
        return f"timed out ({row['timeout']} s)"
    if row.get("built") != "yes":
        return f"not built ({row.get('built', 'error')})"
    if not row.get("captured"):
        if row.get("no_inputs"):
            return "no inputs (scan limit)"
        return "forward fails" if row.get("forward_fails") else "not captured"
    return "fully classified" if not row["unclassified"] else "partly classified"


def totals(rows: list) -> dict:
    captured = [r for r in rows if r.get("captured")]
    exported = [r for r in captured if r["route"].startswith("export")]
    full = lambda rs: sum(1 for r in rs if not r["unclassified"])  # noqa: E731
    return {
        "entries": len(rows), "built": sum(1 for r in rows if r.get("built") == "yes"),
        "captured": len(captured), "captured_by_export": len(exported),
        "fully_classified": full(captured), "fully_classified_of_exported": full(exported),
        "percent_fully_classified": round(100 * full(captured) / max(1, len(captured)), 1),
        "percent_fully_classified_of_exported": round(100 * full(exported) / max(1, len(exported)), 1),
        "status": dict(Counter(status(r) for r in rows)),
    }


def render(out: str) -> str:
    """Markdown: totals, the causes with their models, then one row per model."""
    lines, report = [], {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "catalogs": {}}
    verdicts = {r["entry"]: r for c in CATALOGS for r in read(os.path.join(out, f"validate-{c}.jsonl"))}
    for name in CATALOGS:
        rows = read(os.path.join(out, f"scan-{name}.jsonl"))
        if not rows:
            continue
        t = totals(rows)
        report["catalogs"][name] = {"totals": t, "rows": rows}
        lines += [f"### {name}: {t['fully_classified']} of {t['captured']} captured fully classified "
                  f"({t['percent_fully_classified']} %)", "",
                  f"{t['entries']} entries, {t['built']} built, {t['captured']} captured "
                  f"({t['captured_by_export']} by torch.export: {t['fully_classified_of_exported']} fully classified, "
                  f"{t['percent_fully_classified_of_exported']} %). "
                  + ", ".join(f"{k}: {v}" for k, v in sorted(t["status"].items()))
                  + ". Scanned on sptrace " + ", ".join(f"{c} ({n} models)" for c, n in Counter(
                      r.get("commit", "?") for r in rows).most_common()) + ".", ""]
        lines += _cause_table(rows) + [""] + _model_table(rows, verdicts) + [""]
    report["validate"] = list(verdicts.values())
    if verdicts:
        lines += _validate_table(verdicts)
    with open(os.path.join(out, "coverage.json"), "w") as f:
        json.dump(report, f, indent=1)
    text = "\n".join(lines)
    with open(os.path.join(out, "coverage.md"), "w") as f:
        f.write(text)
    return text


def _cause_table(rows: list) -> list:
    by_cause = defaultdict(list)
    for row in rows:
        for key, params in causes(row).items():
            by_cause[key].append(f"{row['entry']} ({len(params)})")
    lines = ["| cause (op: what sptrace reports) | models (unclassified tensors) |", "|---|---|"]
    for key, models in sorted(by_cause.items(), key=lambda kv: -len(kv[1])):
        lines.append(f"| {_cell(key)} | {len(models)}: {', '.join(models)} |")
    return lines


def _model_table(rows: list, verdicts: dict) -> list:
    lines = ["| model | status | route | inputs | unclassified / tensors | causes | validate (adam) | commit |",
             "|---|---|---|---|---|---|---|---|"]
    for row in sorted(rows, key=lambda r: r["entry"]):
        why = row.get("build_error") or row.get("error") or "; ".join(causes(row))
        verdict = verdicts.get(row["entry"])
        judged = "-" if verdict is None else _verdict(verdict)
        counts = f"{row['unclassified']} / {row['tensors']}" if row.get("captured") else "-"
        lines.append(f"| {row['entry']} | {status(row)} | {row.get('route') or '-'} | {row.get('inputs', '-')} | {counts} | {_cell(why)} | {judged} "
                     f"| {row.get('commit', '?')} |")
    return lines


def _validate_table(verdicts: dict) -> list:
    settings = ", ".join(f"{k} {v}" for k, v in VALIDATE.items())
    lines = [f"### validate sample ({settings})", "", "| model | seeds | verdict | sptrace's worst slopes | commit |",
             "|---|---|---|---|---|"]
    for entry, row in sorted(verdicts.items()):
        worst = row["summary"].splitlines()[1].split("Exactly zero")[0].strip() if "summary" in row else "-"
        lines.append(f"| {entry} | {row.get('n_seeds', '-')} | {_verdict(row)} | {_cell(worst, 300)} "
                     f"| {row.get('commit', '?')} |")
    return lines + [""]


def _verdict(row: dict) -> str:
    if "passed" not in row:
        return _cell(row.get("error", f"timed out ({row.get('timeout')} s)"))
    base = ", ".join(f"{k} {'passes' if v else 'fails'}" for k, v in row["baselines"].items())
    return f"sptrace {'passes' if row['passed'] else 'fails'}; {base}"


def _cell(text: str, limit: int = 160) -> str:
    text = text.replace("|", "\\|")
    return text if len(text) <= limit else text[:limit] + "…"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage", choices=("scan", "validate", "render"))
    parser.add_argument("--catalog", choices=CATALOGS, default="hf")
    parser.add_argument("--out", default="coverage")
    parser.add_argument("--only", nargs="*", default=None, help="these entries only (hf:TYPE, timm:NAME)")
    parser.add_argument("--timeout", type=int, default=180, help="seconds per model")
    parser.add_argument("--seeds", type=int, default=2, help="validate: init seeds averaged per width")
    args = parser.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    if args.stage == "scan":
        names = args.only or list(entries(args.catalog))
        run(f"scan-{args.catalog}", names, args.out, args.timeout, scan_one)
    elif args.stage == "validate":
        rows = read(os.path.join(args.out, f"scan-{args.catalog}.jsonl"))
        run(f"validate-{args.catalog}", args.only or sample(rows), args.out, args.timeout,
            lambda entry: validate_one(entry, args.seeds))
    print(render(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
