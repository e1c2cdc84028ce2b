"""The rollback that makes ``parametrize`` one transaction: a failed call leaves every parameter
bit-identical and every init mark as it was."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import torch

from ..threads import cpu_threads

__all__ = ["Snapshot", "INIT_MARK"]

INIT_MARK = "_sptrace_init"  # attribute on a parameter: the init sptrace last gave it


@dataclass
class Snapshot:
    """Copies of the tensors a call will change, and every parameter's init mark."""

    values: dict[int, torch.Tensor]
    marks: dict[int, tuple]

    @classmethod
    def take(cls, model: torch.nn.Module, changing: Iterable[torch.Tensor]) -> "Snapshot":
        """Copying is memory-bound, so it runs on one CPU thread: hardly slower on an idle machine,
        and several times faster where cores are shared (see :func:`sptrace.threads.cpu_threads`)."""
        with cpu_threads(1):
            values = {id(t): t.detach().clone() for t in changing}
        marks = {id(p): getattr(p, INIT_MARK) for p in model.parameters() if hasattr(p, INIT_MARK)}
        return cls(values, marks)

    def restore(self, model: torch.nn.Module) -> None:
        with torch.no_grad():
            for p in model.parameters():
                if id(p) in self.values:
                    p.copy_(self.values[id(p)])
                if id(p) in self.marks:
                    setattr(p, INIT_MARK, self.marks[id(p)])
                elif hasattr(p, INIT_MARK):
                    delattr(p, INIT_MARK)
