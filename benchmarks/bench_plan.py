"""Plan cost on the meta device (a script, not a test).

(a) ``sptrace.plan(model, base=base, delta=delta)`` on HF GPT-2 configs (12 layers, head_dim 64)
    built on meta at widths 256, 1024 and 4096, base 256, delta 512: the time of one call
    (first, and the median of ``--repeat``), the number of graph captures it made (counted by
    wrapping ``sptrace.graph.trace.capture`` from outside), and, as the baseline in the same
    process, the time of ``sptrace.trace(model)`` alone (one capture, no base). Requirements: one
    capture per call; plan time flat in width (ratio 4096 / 256 near 1); plan / trace near 1.
(b) ``sptrace.plan`` of Llama configs on meta (``LlamaForCausalLM``, random config, nothing
    downloaded): 7B (hidden 4096, 32 layers) and 70B (hidden 8192, 80 layers, 8 KV heads), each in
    a fresh subprocess: wall time of the call and the process's peak resident memory (ru_maxrss)
    above what it held after building the model on meta, and how many blocks the trace did not
    capture (graph/repeats.py: copied from a kept block). Requirement: 70B under 10 s and 1 GB.

Usage:  .venv/bin/python benchmarks/bench_plan.py [--repeat 3] [--only widths|llama]
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import time
import warnings

import torch

import sptrace
from bench_trace import timed  # (first call, median of the following calls)
from sptrace.graph import trace as trace_module

LLAMA = {
    "7B": dict(hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
               num_key_value_heads=32),
    "70B": dict(hidden_size=8192, intermediate_size=28672, num_hidden_layers=80, num_attention_heads=64,
                num_key_value_heads=8),
}


def counting_captures():
    calls = []
    original = trace_module.capture

    def counted(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    trace_module.capture = counted
    return calls


def gpt2_on_meta(width):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(n_embd=width, n_head=width // 64, use_cache=False)
    with torch.device("meta"):
        return GPT2LMHeadModel(cfg)


def bench_widths(repeat, widths=(256, 1024, 4096)):
    ids = torch.randint(0, 50257, (1, 64))
    base, delta = gpt2_on_meta(256), gpt2_on_meta(512)
    calls = counting_captures()
    rows = []
    for width in widths:
        model = gpt2_on_meta(width)
        _, trace_median, _ = timed(lambda: sptrace.trace(model, ids), repeat)
        calls.clear()
        first, median, plan = timed(lambda: sptrace.plan(model, "adam", lr=1e-3, example_inputs=ids, base=base,
                                                         delta=delta), repeat)
        captures = len(calls) / (repeat + 1)
        rows.append((width, sum(p.numel() for p in model.parameters()), first, median, trace_median, captures))
    print("(a) sptrace.plan(model, base=GPT-2 at 256, delta=at 512), HF GPT-2 on meta, 12 layers, head_dim 64")
    print("    | width | parameters | plan first | plan median | trace alone (median) | plan / trace | captures per plan |")
    print("    |---|---|---|---|---|---|---|")
    for width, n, first, median, trace_median, captures in rows:
        print(f"    | {width} | {n / 1e6:.1f}M | {first:.2f} s | {median:.2f} s | {trace_median:.2f} s | "
              f"{median / trace_median:.2f} | {captures:g} |")
    print(f"    plan time ratio width {widths[-1]} / {widths[0]}: {rows[-1][3] / rows[0][3]:.2f}")


def plan_llama(size):
    """In this process (a fresh one): build the config on meta, plan it, print JSON."""
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=32000, max_position_embeddings=4096, use_cache=False, **LLAMA[size])
    with torch.device("meta"):
        model = LlamaForCausalLM(cfg)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ids = torch.randint(0, 32000, (1, 16))
    t = time.perf_counter()
    plan = sptrace.plan(model, "adamw", lr=3e-4, example_inputs=ids)
    took = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"size": size, "parameters": sum(p.numel() for p in model.parameters()), "seconds": took,
                      "rss_before_kb": before, "rss_peak_kb": after, "groups": len(plan.param_groups(model)),
                      "unclassified": len(plan.trace.unclassified),
                      "elided": sum(len(r.elided) for r in plan.trace.repeats)}))


def bench_llama():
    print("(b) sptrace.plan of a Llama config on meta (reference form, AdamW), each in a fresh process")
    print("    | config | parameters | plan | peak RSS above the built model | peak RSS | groups | unclassified | "
          "blocks not captured (copied) |")
    print("    |---|---|---|---|---|---|---|---|")
    for size in LLAMA:
        out = subprocess.run([sys.executable, __file__, "--llama", size], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"    | {size} | {r['parameters'] / 1e9:.2f}B | {r['seconds']:.1f} s | "
              f"{(r['rss_peak_kb'] - r['rss_before_kb']) / 1024:.0f} MB | {r['rss_peak_kb'] / 1024:.0f} MB | "
              f"{r['groups']} | {r['unclassified']} | {r['elided']} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--only", choices=("widths", "llama"))
    parser.add_argument("--llama", choices=tuple(LLAMA), help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    if args.llama:
        plan_llama(args.llama)
        return
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"torch threads {torch.get_num_threads()}")
    if args.only in (None, "widths"):
        bench_widths(args.repeat)
    if args.only in (None, "llama"):
        bench_llama()


if __name__ == "__main__":
    main()
