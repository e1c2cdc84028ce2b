"""Stable rank of a catalog model's Adam update under validate's setup (docs/coverage.md, Gemma 4's
k_proj): ``||dW||_F^2 / ||dW||_op^2`` of the total update after the validate steps, per width. Adam
fixes ``||dW||_F`` (entries about +-lr), so a stable rank growing like width^a makes the update's
natural norm shrink like width^(-a/2).

    OMP_NUM_THREADS=1 python scripts/update_rank.py hf:gemma4 layers.2.self_attn.k_proj.weight \\
        layers.2.self_attn.v_proj.weight [--widths 64 128 256] [--steps 4]

sptrace parametrization, reference form, validate's Adam lr, batch 32, init seed 0; names are
matched as suffixes. About 40 s for Gemma 4 on 2 cores.
"""
import argparse

import torch

from sptrace.validation.coord import call_model, first_tensor
from sptrace.validation.models import resolve
from sptrace.validation.validate import _batches, _factories, validation_lr


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("params", nargs="+")
    ap.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256])
    ap.add_argument("--steps", type=int, default=4)
    args = ap.parse_args()
    zoo = resolve(args.model).zoo
    batches = _batches(zoo, 32, args.steps, 0, "real", "cpu")
    make_model, make_opt = _factories("sptrace", zoo, "adam", validation_lr("adam", "reference"), args.widths,
                                      zoo.example_inputs(device="cpu"), "cpu", {}, "reference")
    for width in args.widths:
        torch.manual_seed(0)
        model = make_model(width)
        opt = make_opt(model)
        start = {n: p.detach().clone() for n, p in model.named_parameters() if n.endswith(tuple(args.params))}
        for x, y in batches:
            opt.zero_grad()
            out = call_model(model, x)
            zoo.loss(out.logits if hasattr(out, "logits") else first_tensor(out), y).backward()
            opt.step()
        for n, p in model.named_parameters():
            if n in start:
                s = torch.linalg.svdvals((p.detach() - start[n]).double().flatten(1))
                print(f"width {width} {n}: stable rank {float((s ** 2).sum() / s[0] ** 2):.1f}", flush=True)


if __name__ == "__main__":
    main()
