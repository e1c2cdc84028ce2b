"""One CPU-thread limiter for the whole package."""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch

__all__ = ["cpu_threads"]


@contextlib.contextmanager
def cpu_threads(n: Optional[int], *, active: bool = True) -> Iterator[None]:
    """Run the enclosed CPU work with ``n`` intra-op threads, restored afterwards (``None`` or
    ``active=False``: leave them alone).

    For work that gains little from threads and loses much when cores are shared, where threads
    spin-wait on each other: LAPACK factorisations (measured on a loaded 2-core machine, eigvalsh
    of a 512 x 512 Gram took 7-8 s with 2 threads and 0.02 s with 1; the exact SVD of a 256 x 256
    matrix 81 ms with 2 threads and 9 ms with 1) and memory-bound copies (parametrize's rollback
    copy of GPT-2 small's 124M parameters, same machine: 0.8-1.2 s with 2 threads, 0.15-0.37 s
    with 1). GPU work is unaffected.
    """
    before = torch.get_num_threads()
    if n is None or not active or n == before:
        yield
        return
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)
