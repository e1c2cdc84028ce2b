"""Peak memory of a plan applied to a ~1B-parameter model sharded over 2 CPU processes (a script).

The zoo GPT (width 2048, 20 layers, float32: 1.0B parameters, 4.0 GB) is planned once on meta in
this process; each of 2 processes (gloo) loads the plan, builds the model on meta (its overhead:
peak RSS so far, ``ru_maxrss``), shards every block and the root with FSDP2's ``fully_shard``,
``to_empty``, ``plan.init_`` (each rank its own shards), ``plan.install`` and
``plan.param_groups``, and reports its peak RSS. Requirement: peak <= 1.1 x (overhead + its
shard's bytes): no rank ever holds the full model. ``--unsharded`` adds the same steps in one
process without sharding (peak / (overhead + the whole model)).

Usage:  .venv/bin/python benchmarks/bench_sharded_init.py [--width 2048] [--layers 20] [--unsharded]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import socket
import tempfile
import time
import warnings

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import models_zoo
import sptrace

SPEC = models_zoo.get("gpt")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def apply(plan_dict, width, layers, shard: bool) -> dict:
    """Build on meta, (shard,) materialise, initialise; the memory and time it took."""
    plan = sptrace.load_plan(plan_dict)
    with torch.device("meta"):
        model = SPEC.build(width, n_layer=layers)
    overhead = peak_mb()
    t = time.perf_counter()
    if shard:
        from torch.distributed.fsdp import fully_shard

        for block in model.transformer.h:
            fully_shard(block)
        fully_shard(model)
    model.to_empty(device="cpu")
    torch.manual_seed(0)
    plan.init_(model)
    plan.install(model)
    groups = plan.param_groups(model)
    local = sum((p.to_local() if hasattr(p, "to_local") else p).numel() * p.element_size()
                for p in model.parameters()) / 2**20
    return {"overhead_mb": overhead, "params_mb": local, "peak_mb": peak_mb(), "seconds": time.perf_counter() - t,
            "groups": len(groups)}


def worker(rank, port, out, plan_dict, width, layers):
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        result = apply(plan_dict, width, layers, shard=True)
        with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
            json.dump(result, f)
    finally:
        dist.destroy_process_group()


def unsharded_worker(_rank, out, plan_dict, width, layers):
    torch.set_num_threads(1)
    with open(os.path.join(out, "unsharded.json"), "w") as f:
        json.dump(apply(plan_dict, width, layers, shard=False), f)


def line(name, r):
    ratio = r["peak_mb"] / (r["overhead_mb"] + r["params_mb"])
    return (f"    | {name} | {r['overhead_mb']:.0f} MB | {r['params_mb']:.0f} MB | {r['peak_mb']:.0f} MB | "
            f"**{ratio:.3f}** | {r['seconds']:.1f} s |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--layers", type=int, default=20)
    parser.add_argument("--unsharded", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    with torch.device("meta"):
        model = SPEC.build(args.width, n_layer=args.layers)
    n = sum(p.numel() for p in model.parameters())
    plan = sptrace.plan(model, "adamw", lr=3e-4, example_inputs=SPEC.example_inputs()).to_dict()
    print(f"torch {torch.__version__}; zoo GPT width {args.width}, {args.layers} layers: {n / 1e9:.2f}B parameters, "
          f"{n * 4 / 2**30:.2f} GiB float32")
    print("    | process | overhead (peak before) | its parameters | peak after init | peak / (overhead + parameters) | time |")
    print("    |---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as out:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        mp.spawn(worker, args=(port, out, plan, args.width, args.layers), nprocs=2)
        for rank in range(2):
            with open(os.path.join(out, f"rank{rank}.json")) as f:
                print(line(f"FSDP2 rank {rank} of 2", json.load(f)))
        if args.unsharded:
            mp.spawn(unsharded_worker, args=(out, plan, args.width, args.layers), nprocs=1)
            with open(os.path.join(out, "unsharded.json")) as f:
                print(line("one process, unsharded", json.load(f)))


if __name__ == "__main__":
    main()
