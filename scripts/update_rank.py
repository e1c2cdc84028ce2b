"""Size and rank of a model's total update under validate's setup (docs/coverage.md, Gemma 4's k_proj;
docs/validation.md, "Updates that shrink: noise or magnitude"): per width, the update's natural
spectral norm ``op`` and natural Frobenius norm ``F`` (both times sqrt(fan_in / fan_out)), and its
stable rank ``||dW||_F^2 / ||dW||_op^2``, then the slope of each over the widths. A stable rank that
grows like width^a makes ``op`` fall like width^(-a/2) at a fixed ``F``: the update is spread over
more directions, not smaller. ``op`` and ``F`` falling together: the update is smaller.

    OMP_NUM_THREADS=1 python scripts/update_rank.py hf:gemma4 layers.2.self_attn.k_proj.weight \\
        layers.2.self_attn.v_proj.weight [--optimizer sgd] [--widths 64 128 256] [--steps 4] [--seed 0]

sptrace parametrization, reference form, validate's lr for the optimizer, batch 32; names are matched
as suffixes, 2-D parameters only. About 40 s for Gemma 4 on 2 cores.
"""
import argparse
import math

import torch

from sptrace.validation.coord import call_model, first_tensor
from sptrace.validation.models import resolve
from sptrace.validation.slopes import fit_slope
from sptrace.validation.validate import _batches, _factories, validation_lr


def updates(model_name, optimizer, widths, steps, seed, suffixes):
    """{parameter: [(op, F, stable rank) per width]} of the total update after ``steps`` steps."""
    zoo = resolve(model_name).zoo
    batches = _batches(zoo, 32, steps, 0, "real", "cpu")
    make_model, make_opt, _ = _factories("sptrace", zoo, optimizer, validation_lr(optimizer, "reference"), widths,
                                         zoo.example_inputs(device="cpu"), "cpu", {}, "reference")
    sizes = {}
    for width in widths:
        torch.manual_seed(seed)
        model = make_model(width)
        opt = make_opt(model)
        start = {n: p.detach().clone() for n, p in model.named_parameters()
                 if p.dim() == 2 and n.endswith(tuple(suffixes))}
        for x, y in batches:
            opt.zero_grad()
            out = call_model(model, x)
            zoo.loss(out.logits if hasattr(out, "logits") else first_tensor(out), y).backward()
            opt.step()
        for n, p in model.named_parameters():
            if n in start:
                update = (p.detach() - start[n]).double()
                s = torch.linalg.svdvals(update)
                natural = math.sqrt(update.shape[1] / update.shape[0])
                sizes.setdefault(n, []).append((float(s[0]) * natural, float(s.norm()) * natural,
                                                float((s ** 2).sum() / s[0] ** 2)))
    return sizes


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("params", nargs="+")
    ap.add_argument("--optimizer", default="adam")
    ap.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    for name, rows in updates(args.model, args.optimizer, args.widths, args.steps, args.seed, args.params).items():
        op, frob, rank = zip(*rows)
        print(f"{name}: op slope {fit_slope(args.widths, op).slope:+.2f}, F slope {fit_slope(args.widths, frob).slope:+.2f}; "
              + ", ".join(f"width {w}: op {o:.3g} F {f:.3g} stable rank {r:.1f}"
                          for w, o, f, r in zip(args.widths, op, frob, rank)), flush=True)


if __name__ == "__main__":
    main()
