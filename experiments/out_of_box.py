"""Out of the box: the one-line call ``sptrace.parametrize(model, optimizer="adam")`` against plain
Adam at its default lr, and the lr sweep in the default (reference-width) form against SP
(docs/training.md).

Two experiments on the zoo's MLP (digits) and GPT (Shakespeare), real data only:

* :func:`run_out_of_box`: per model and seed, two fresh models built after the same
  ``torch.manual_seed(seed)`` (so the same library init), trained on the same batches for
  ``steps`` Adam steps. Arm ``"sptrace"``: ``opt = sptrace.parametrize(model, optimizer="adam")``,
  nothing else (Adam's default lr, read as the lr at the reference width 256). Arm ``"adam"``:
  ``torch.optim.Adam(model.parameters())`` (library init, default lr). Recorded: the training loss
  (mean of the last ``tail`` steps), a held-out loss, and fingerprints of the initial weights and
  of the batches, so a reader can check both arms started from the same model and saw the same data.
* :func:`run_transfer`: the lr sweep over factor-2 steps at widths spanning 16x, under
  ``sptrace.parametrize(model, optimizer="adam", lr=lr)`` (the default form: lr is the lr at
  width 256) and under SP (``torch.optim.Adam(model.parameters(), lr=lr)``), with the best lr per
  width and how far it moves.

Both are :func:`sptrace.validation.transfer.lr_sweep` with ``make_optimizer`` (one training loop,
one divergence rule): the out-of-box comparison is a sweep of one width and one lr per arm.
"""
from __future__ import annotations

import hashlib
import inspect
import math
import os
import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional, Sequence

import torch

import models_zoo
import sptrace
from sptrace.types import SptraceError
from sptrace.validation.jsonio import write_json
from sptrace.validation.transfer import SweepData, SweepResult, log2_grid, lr_sweep

from .results import PathLike

__all__ = ["ADAM_DEFAULT_LR", "ARMS", "ABLATIONS", "SETTINGS", "ZooSetting", "one_line", "plain_adam", "zoo_data",
           "run_out_of_box", "run_transfer", "OutOfBoxResult", "TransferResult"]

ADAM_DEFAULT_LR = float(inspect.signature(torch.optim.Adam).parameters["lr"].default)  # 1e-3
SWEEP_ARMS = ("sptrace", "sp")  # the lr sweep


@dataclass(frozen=True)
class ZooSetting:
    """How one zoo model is trained here: the training batch, the held-out set (``eval_batches`` of
    ``eval_batch_size`` from the ``val`` split, drawn with a fixed seed so every seed and arm is
    judged on the same examples), and the sweep's defaults (chosen to keep the full experiment near
    25 CPU-minutes at one thread; docs/training.md)."""

    batch_size: int
    eval_batch_size: int
    eval_batches: int
    sweep_steps: int
    sweep_log2_lrs: tuple[int, int]
    seeds: int
    sweep_eval_batches: int = 1


SETTINGS: dict[str, ZooSetting] = {
    # digits: 1500 training images, 297 held out; one eval batch of 297 is the whole val split
    "mlp": ZooSetting(batch_size=64, eval_batch_size=297, eval_batches=1, sweep_steps=200, sweep_log2_lrs=(-14, -5),
                      seeds=8),
    # Shakespeare: 8 windows x 64 characters per step; eval on 16 x 16 windows (16k characters)
    "gpt": ZooSetting(batch_size=8, eval_batch_size=16, eval_batches=16, sweep_steps=100, sweep_log2_lrs=(-11, -4),
                      seeds=2, sweep_eval_batches=2),
}
EVAL_SEED = 10_000


# ------------------------------------------------------------------------------------ the two arms


def one_line(model: torch.nn.Module, lr: Optional[float] = None) -> torch.optim.Optimizer:
    """The front door, as a user writes it: without ``lr`` the exact one-line call."""
    if lr is None:
        return sptrace.parametrize(model, optimizer="adam")
    return sptrace.parametrize(model, optimizer="adam", lr=lr)


def plain_adam(model: torch.nn.Module, lr: Optional[float] = None) -> torch.optim.Optimizer:
    """Standard practice: the library init and one global lr (without ``lr``, Adam's default)."""
    if lr is None:
        return torch.optim.Adam(model.parameters())
    return torch.optim.Adam(model.parameters(), lr=lr)


Make = Callable[[torch.nn.Module], torch.optim.Optimizer]

# The out-of-box comparison: the literal one-line call and plain Adam, both without an lr.
ARMS: dict[str, Make] = {"sptrace": one_line, "adam": plain_adam}

# What the comparison's gap is made of (docs/training.md, "Why"): each variant changes one thing.
# At width 512 the one-line call halves the hidden and readout lrs (reference width 256) and zeroes
# the readouts; "lr=2e-3" gives the hidden layers plain Adam's 1e-3 again.
ABLATIONS: dict[str, Make] = {
    "sptrace": one_line,
    "sptrace zero_readout=False": lambda m: sptrace.parametrize(m, optimizer="adam", zero_readout=False),
    "sptrace lr=2e-3": lambda m: sptrace.parametrize(m, optimizer="adam", lr=2e-3),
    "sptrace lr=2e-3 zero_readout=False": lambda m: sptrace.parametrize(m, optimizer="adam", lr=2e-3,
                                                                        zero_readout=False),
    "adam": plain_adam,
    "adam lr=5e-4": lambda m: plain_adam(m, 5e-4),
}


def fingerprint(tensors: Sequence[torch.Tensor]) -> str:
    """A short hash of the tensors' values (equal iff bit-identical, for practical purposes)."""
    h = hashlib.sha1()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


def zoo_data(name: str, steps: int, seed: int, setting: Optional[ZooSetting] = None,
             eval_batches: Optional[int] = None, device: str = "cpu") -> SweepData:
    """The zoo model's real training batches (``steps`` of them, drawn with ``seed``) and its
    held-out batches (fixed seed, ``val`` split), on ``device``: one :class:`SweepData` every arm shares."""
    spec = models_zoo.get(name)
    s = setting or SETTINGS[name]
    train = list(spec.batches(s.batch_size, seed=seed, split="train", steps=steps, device=device))
    n_val = s.eval_batches if eval_batches is None else eval_batches
    val = list(spec.batches(s.eval_batch_size, seed=EVAL_SEED, split="val", steps=n_val, device=device))
    return SweepData(train, val, spec.loss)


# ------------------------------------------------------------------------------- out of the box


@dataclass
class OutOfBoxResult:
    """One row per (model, seed, arm): ``train`` (mean loss of the last ``tail`` steps), ``val``
    (held-out loss after training), ``initial`` (loss of the first batch before any step),
    ``init_fp`` / ``data_fp`` (fingerprints of the library init before the arm's optimizer is made,
    and of the training batches), ``seconds``. ``lr_notes``: per model, what each group's lr became
    under the one-line call (``opt.sptrace.lr_notes``)."""

    width: int
    steps: int
    tail: int
    seeds: dict[str, list[int]]  # per model
    arms: list[str] = field(default_factory=lambda: list(ARMS))
    runs: list[dict] = field(default_factory=list)
    lr_notes: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process's CPU time (wall time on a shared machine says little)

    @property
    def models(self) -> list[str]:
        return list(dict.fromkeys(r["model"] for r in self.runs))

    def values(self, model: str, arm: str, key: str = "train") -> list[float]:
        """``key`` of every seed's run of ``model`` under ``arm``, in seed order."""
        return [r[key] for r in self.runs if r["model"] == model and r["arm"] == arm]

    def mean(self, model: str, arm: str, key: str = "train") -> float:
        vals = self.values(model, arm, key)
        return sum(vals) / len(vals) if vals else float("nan")

    def passed(self, model: str, key: str = "train") -> bool:
        """The acceptance: the one-line call's mean loss over seeds is at most plain Adam's."""
        return self.mean(model, "sptrace", key) <= self.mean(model, "adam", key)

    def table(self) -> str:
        """Markdown: per model and arm, the mean ± std over seeds, the mean difference to plain
        Adam (negative: better) and on how many seeds the arm is at most plain Adam's loss."""
        rows = ["| model | arm | width | steps | seeds | train loss | held-out loss | train − Adam | held-out − Adam"
                " | seeds ≤ Adam (train / held-out) |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for m in self.models:
            n = len(self.seeds[m])
            for arm in self.arms:
                diffs = [[a - b for a, b in zip(self.values(m, arm, k), self.values(m, "adam", k))]
                         for k in ("train", "val")]
                cells = [_mean_std(self.values(m, arm, k)) for k in ("train", "val")]
                cells += [f"{sum(d) / len(d):+.4f}" if d and arm != "adam" else "-" for d in diffs]
                wins = "-" if arm == "adam" else " / ".join(f"{sum(v <= 0 for v in d)}/{n}" for d in diffs)
                rows.append(f"| {m} | {arm} | {self.width} | {self.steps} | {n} | " + " | ".join(cells)
                            + f" | {wins} |")
        return "\n".join(rows)

    def to_dict(self) -> dict[str, Any]:
        return {"experiment": "out_of_box", "width": self.width, "steps": self.steps, "tail": self.tail,
                "seeds": self.seeds, "adam_default_lr": ADAM_DEFAULT_LR, "runs": self.runs,
                "arms": self.arms, "lr_notes": self.lr_notes, "seconds": self.seconds, "cpu_seconds": self.cpu_seconds,
                "passed": {m: {k: self.passed(m, k) for k in ("train", "val")} for m in self.models
                           if "sptrace" in self.arms and "adam" in self.arms}}

    def write(self, out_dir: PathLike, name: str = "out_of_box") -> dict[str, str]:
        return {"json": write_json(self.to_dict(), os.path.join(out_dir, f"{name}.json"))}


def _mean_std(vals: Sequence[float]) -> str:
    if not vals:
        return "-"
    m = sum(vals) / len(vals)
    sd = math.sqrt(sum((v - m) ** 2 for v in vals) / len(vals))
    return f"{m:.4f} ± {sd:.4f}"


def _recording(make: Callable[[torch.nn.Module], torch.optim.Optimizer], seen: dict) -> Callable:
    """``make_optimizer`` for lr_sweep that records the initial weights' fingerprint (the model as
    built, before ``make`` touches it), ignores the sweep's lr label and keeps the optimizer."""
    def make_optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
        seen["init_fp"] = fingerprint([p for _, p in sorted(model.state_dict().items())])
        seen["opt"] = make(model)
        return seen["opt"]
    return make_optimizer


def _arm_run(name: str, arm: str, make: Make, width: int, seed: int, data: SweepData, steps: int, tail: int,
             device: str = "cpu") -> dict:
    """One arm of one seed: a one-width, one-lr lr_sweep whose optimizer is the arm's own call."""
    spec, seen = models_zoo.get(name), {}
    # No run is called diverged here (inf factors): the comparison reads the losses as they are.
    res = lr_sweep(spec.build, [width], [ADAM_DEFAULT_LR], "adam", data=data, make_optimizer=_recording(make, seen),
                   parametrization=arm, steps=steps, tail=tail, seed=seed, abort_factor=math.inf,
                   divergence_margin=math.inf, device=device)
    notes = list(getattr(getattr(seen["opt"], "sptrace", None), "lr_notes", []))
    return {"model": name, "seed": seed, "arm": arm, "width": width, "train": res.train_loss[0][0],
            "val": res.val_loss[0][0], "initial": res.initial_loss[0][0], "init_fp": seen["init_fp"],
            "data_fp": fingerprint([t for _, t in data.train]), "seconds": res.seconds,
            "lrs": sorted({g["lr"] for g in seen["opt"].param_groups}), "lr_notes": notes}


def run_out_of_box(models: Sequence[str] = ("mlp", "gpt"), *, width: int = 512, steps: int = 200,
                   seeds: Optional[Sequence[int]] = None, tail: int = 20, arms: Optional[dict[str, Make]] = None,
                   progress: bool = False, device: str = "cpu") -> OutOfBoxResult:
    """Per model and seed, every arm (default :data:`ARMS`: the one-line call and plain Adam;
    :data:`ABLATIONS` takes the gap apart) on the same init and batches. ``seeds``: default
    ``range(SETTINGS[model].seeds)``. ``device``: where the models train (the init is drawn on the
    CPU, so both arms start from the same weights on any device)."""
    started, cpu = time.time(), time.process_time()
    arms = dict(ARMS if arms is None else arms)
    res = OutOfBoxResult(width=width, steps=steps, tail=tail, seeds={}, arms=list(arms))
    for name in models:
        res.seeds[name] = list(range(SETTINGS[name].seeds) if seeds is None else seeds)
        for seed in res.seeds[name]:
            data = zoo_data(name, steps, seed, device=device)
            for arm, make in arms.items():
                run = _arm_run(name, arm, make, width, seed, data, steps, tail, device)
                if arm == "sptrace":
                    res.lr_notes[name] = run["lr_notes"]
                res.runs.append({k: v for k, v in run.items() if k != "lr_notes"})
                if progress:
                    print(f"oob {name} w={width} seed={seed} {arm}: train {run['train']:.4f} val {run['val']:.4f} "
                          f"({run['seconds']:.0f} s)", file=sys.stderr, flush=True)
    res.seconds, res.cpu_seconds = time.time() - started, time.process_time() - cpu
    return res


# ------------------------------------------------------------------------------------- lr sweep


@dataclass
class TransferResult:
    """Per model and arm (``"sptrace"``, ``"sp"``), the seeds' sweeps and their mean
    (:class:`SweepResult`; a cell is ``inf`` when any seed diverged). ``max_shift``: the acceptance
    bound on the sptrace arm's best-lr spread (log2 max/min over widths), in factor-2 steps."""

    sweeps: dict[str, dict[str, list[SweepResult]]]
    max_shift: float = 1.0
    seconds: float = 0.0
    cpu_seconds: float = 0.0

    def mean(self, model: str, arm: str) -> SweepResult:
        runs = self.sweeps[model][arm]
        grids = {key: [[_mean([getattr(r, key)[i][j] for r in runs]) for j in range(len(runs[0].lrs))]
                       for i in range(len(runs[0].widths))] for key in ("train_loss", "val_loss", "initial_loss")}
        diverged = [[any(r.diverged[i][j] for r in runs) for j in range(len(runs[0].lrs))]
                    for i in range(len(runs[0].widths))]
        return replace(runs[0], diverged=diverged, seconds=sum(r.seconds for r in runs), **grids)

    def passed(self, model: str, metric: str = "train") -> bool:
        d = self.mean(model, "sptrace").drift(metric)
        return not d.undefined and not d.at_edge and d.spread <= self.max_shift

    def summary_table(self, metric: str = "train") -> str:
        """Markdown: best log2 lr per width, its spread and end-to-end shift, per model and arm."""
        rows = ["| model | arm | widths | best log2 lr per width | spread | shift narrowest→widest | on grid edge |",
                "|---|---|---|---|---:|---:|---|"]
        for m, arms in self.sweeps.items():
            for arm in arms:
                r = self.mean(m, arm)
                d = r.drift(metric)
                best = ", ".join(f"{math.log2(v):g}" if math.isfinite(v) else "all div" for v in d.best_lr.values())
                rows.append(f"| {m} | {arm} | {r.widths[0]}–{r.widths[-1]} | {best} | {d.spread:g} | "
                            f"{d.end_to_end:+g} | {d.at_edge or '-'} |")
        return "\n".join(rows)

    def to_dict(self) -> dict[str, Any]:
        return {"experiment": "out_of_box_transfer", "max_shift": self.max_shift, "seconds": self.seconds,
                "cpu_seconds": self.cpu_seconds,
                "passed": {m: self.passed(m) for m in self.sweeps},
                "mean": {m: {a: self.mean(m, a).to_dict() for a in arms} for m, arms in self.sweeps.items()},
                "seeds": {m: {a: [r.to_dict() for r in rs] for a, rs in arms.items()}
                          for m, arms in self.sweeps.items()}}

    def write(self, out_dir: PathLike, name: str = "out_of_box_transfer", plot: bool = True) -> dict[str, str]:
        paths = {"json": write_json(self.to_dict(), os.path.join(out_dir, f"{name}.json"))}
        if plot:
            for m, arms in self.sweeps.items():
                for arm in arms:
                    paths[f"{m}-{arm}"] = self.mean(m, arm).plot(os.path.join(out_dir, f"{name}-{m}-{arm}.png"))
        return paths


def _mean(vals: Sequence[float]) -> float:
    return sum(vals) / len(vals) if all(math.isfinite(v) for v in vals) else float("inf")


def _plan_keys(opt: torch.optim.Optimizer) -> dict[str, tuple]:
    return {p.name: (p.init, p.init_std, p.init_target, p.init_scale, p.lr_multiplier) for p in opt.sptrace.plans}


def _sweep_arm(name: str, arm: str) -> tuple[Callable[[int], torch.nn.Module], Callable]:
    """``(build, make_optimizer)`` of one sweep arm. SP: the library model and plain Adam at lr.
    sptrace: the model is parametrized by the one-line call as it is built, so the sweep snapshots
    those weights and restores them before every lr; each lr's ``parametrize(..., lr=lr)`` then
    finds every init already applied and changes only the groups. It must plan exactly what the
    first call planned, or the run would not be the user's call: checked on every run (a mismatch
    raises: the law detection of ``library_init="auto"`` once read the GPT at width 32 differently
    after its readout was zeroed)."""
    spec = models_zoo.get(name)
    if arm == "sp":
        return spec.build, plain_adam
    first: dict[int, dict[str, tuple]] = {}

    def build(width: int) -> torch.nn.Module:
        model = spec.build(width)
        first[id(model)] = _plan_keys(one_line(model))
        return model

    def make_optimizer(model: torch.nn.Module, lr: float) -> torch.optim.Optimizer:
        opt = one_line(model, lr)
        if _plan_keys(opt) != first.get(id(model)):
            diff = sorted(k for k, v in _plan_keys(opt).items() if first.get(id(model), {}).get(k) != v)
            raise SptraceError(f"{name}: parametrize planned {diff[:3]} differently on the restored model than on "
                               "the fresh one; this sweep would not train the one-line call")
        return opt
    return build, make_optimizer


def run_transfer(models: Sequence[str] = ("mlp", "gpt"), *, widths: Sequence[int] = (32, 64, 128, 256, 512),
                 log2_lrs: Optional[tuple[int, int]] = None, steps: Optional[int] = None,
                 seeds: Sequence[int] = (0,), max_shift: float = 1.0, progress: bool = False,
                 device: str = "cpu") -> TransferResult:
    """The lr sweep in the default form (sptrace) and SP, per model on the same batches and seeds.
    ``log2_lrs`` and ``steps``: the grid ``2**lo .. 2**hi`` and the run length (default: the
    model's :data:`SETTINGS`)."""
    started, cpu = time.time(), time.process_time()
    sweeps: dict[str, dict[str, list[SweepResult]]] = {}
    for name in models:
        s = SETTINGS[name]
        lo, hi = log2_lrs or s.sweep_log2_lrs
        n_steps = steps or s.sweep_steps
        sweeps[name] = {arm: [] for arm in SWEEP_ARMS}
        for seed in seeds:
            data = zoo_data(name, n_steps, seed, eval_batches=s.sweep_eval_batches, device=device)
            for arm in SWEEP_ARMS:
                build, make = _sweep_arm(name, arm)
                r = lr_sweep(build, widths, log2_grid(lo, hi), "adam", data=data, make_optimizer=make,
                             parametrization=arm, steps=n_steps, tail=max(1, n_steps // 10), seed=seed,
                             progress=progress, device=device)
                sweeps[name][arm].append(replace(r, model=name, base_width=None))
                if progress:
                    print(f"sweep {name} {arm} seed={seed}: {r.drift().summary()} ({r.seconds:.0f} s)",
                          file=sys.stderr, flush=True)
    return TransferResult(sweeps, max_shift=max_shift, seconds=time.time() - started,
                          cpu_seconds=time.process_time() - cpu)
