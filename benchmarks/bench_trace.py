"""Trace cost benchmark (a script, not a test).

(a) HF GPT-2 small (124M, ``GPT2Config()`` defaults, random weights) on CPU: time to trace vs the
    time to construct the model, in the same process.
(b) The same architecture built on meta at width 256 and 4096: the trace time must not grow with
    width (export runs on fake tensors; sptrace's analysis is per graph node, not per weight).
(c) The eager route on meta (a pure-torch stack, since HF GPT-2 calls ``.item()`` which meta
    cannot answer): width 256 vs 4096.

Usage:  .venv/bin/python benchmarks/bench_trace.py [--repeat 3]
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import time
import warnings

import torch
from torch import nn

import sptrace


def timed(fn, repeat):
    """(first call, median of the following `repeat` calls), in seconds."""
    t = time.perf_counter()
    out = fn()
    first = time.perf_counter() - t
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return first, statistics.median(times) if times else first, out


def gpt2_config(width=None, layers=None):
    from transformers import GPT2Config

    cfg = GPT2Config()
    if width is not None:
        cfg.n_embd, cfg.n_head = width, width // 64  # head_dim 64, as GPT-2 small
    if layers is not None:
        cfg.n_layer = layers
    cfg.use_cache = False
    return cfg


def bench_gpt2_small(repeat):
    from transformers import GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = gpt2_config()
    t = time.perf_counter()
    model = GPT2LMHeadModel(cfg)
    build = time.perf_counter() - t
    n = sum(p.numel() for p in model.parameters())
    ids = torch.randint(0, cfg.vocab_size, (1, 64))
    first, median, tr = timed(lambda: sptrace.trace(model, ids), repeat)
    print(f"(a) GPT-2 small, {n / 1e6:.1f}M parameters, CPU, ids (1, 64), route {tr.route}, {len(tr)} records, "
          f"{len(tr.unclassified)} unclassified")
    print(f"    construct {build:.2f} s | trace first {first:.2f} s, median of {repeat} {median:.2f} s "
          f"| trace/construct {median / build:.2f} (first call {first / build:.2f})")
    return build, first, median


def bench_gpt2_meta(repeat, widths=(256, 4096)):
    from transformers import GPT2LMHeadModel

    ids = torch.randint(0, 50257, (1, 64))
    rows = []
    for width in widths:
        with torch.device("meta"):
            model = GPT2LMHeadModel(gpt2_config(width))
        n = sum(p.numel() for p in model.parameters())
        first, median, tr = timed(lambda: sptrace.trace(model, ids), repeat)
        rows.append((width, n, first, median, f"{tr.route}, {len(tr.unclassified)} unclassified"))
    print("(b) GPT-2 (12 layers, head_dim 64) on meta, default routes")
    for width, n, first, median, route in rows:
        print(f"    width {width:5d}: {n / 1e6:8.1f}M parameters, route {route}, trace first {first:.2f} s, "
              f"median {median:.2f} s")
    ratio = rows[-1][3] / rows[0][3]
    print(f"    trace time ratio width {widths[-1]} / {widths[0]}: {ratio:.2f}")
    return rows, ratio


class EncoderStack(nn.Module):
    def __init__(self, width, layers=4, vocab=1000):
        super().__init__()
        self.emb = nn.Embedding(vocab, width)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(width, width // 64, 4 * width, dropout=0.0, batch_first=True)
            for _ in range(layers))
        self.head = nn.Linear(width, vocab)

    def forward(self, ids):
        h = self.emb(ids)
        for layer in self.layers:
            h = layer(h)
        return self.head(h)


def bench_eager_meta(repeat, widths=(256, 4096)):
    ids = torch.randint(0, 1000, (1, 64))
    rows = []
    for width in widths:
        with torch.device("meta"):
            model = EncoderStack(width)
        first, median, tr = timed(lambda: sptrace.trace(model, ids, routes=("eager",)), repeat)
        rows.append((width, sum(p.numel() for p in model.parameters()), first, median, len(tr.unclassified)))
    print("(c) 4 nn.TransformerEncoderLayer on meta, eager route")
    for width, n, first, median, unclassified in rows:
        print(f"    width {width:5d}: {n / 1e6:8.1f}M parameters, {unclassified} unclassified, "
              f"trace first {first:.3f} s, median {median:.3f} s")
    ratio = rows[-1][3] / rows[0][3]
    print(f"    trace time ratio width {widths[-1]} / {widths[0]}: {ratio:.2f}")
    return rows, ratio


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}")
    bench_gpt2_small(args.repeat)
    bench_gpt2_meta(args.repeat)
    bench_eager_meta(args.repeat)


if __name__ == "__main__":
    main()
