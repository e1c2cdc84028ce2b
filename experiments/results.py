"""What every experiment's result shares: the mean and std over seeds, and writing the result as
JSON (sptrace's NaN-safe writer) with its plot next to it."""
from __future__ import annotations

import math
import os
from typing import Any, Callable, Optional, Protocol, Sequence, Union

from sptrace.validation.jsonio import write_json

__all__ = ["PathLike", "mean_std", "write_result"]

PathLike = Union[str, "os.PathLike[str]"]


class _Result(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


def mean_std(rows: Sequence[Sequence[Optional[float]]]) -> tuple[list[float], list[float]]:
    """Mean and (population) std over seeds per column; ``None`` marks a column that seed did not run."""
    cols = [[v for v in c if v is not None] for c in zip(*rows)]
    mean = [sum(c) / len(c) for c in cols]
    std = [math.sqrt(sum((v - m) ** 2 for v in c) / len(c)) for c, m in zip(cols, mean)]
    return mean, std


def write_result(result: _Result, out_dir: PathLike, name: str,
                 plot: Optional[Callable[[Any, str], str]] = None) -> dict[str, str]:
    """``{name}.json`` and, with a plot function, ``{name}.png`` in ``out_dir``; returns the paths."""
    paths = {"json": write_json(result.to_dict(), os.path.join(out_dir, f"{name}.json"))}
    if plot is not None:
        paths["png"] = plot(result, os.path.join(out_dir, f"{name}.png"))
    return paths
