"""Results as JSON files: one writer and one reader for every result sptrace and its experiments
save. JSON has no NaN or infinity, and a diverged run has both: they are written as the strings
``"nan"``, ``"inf"`` and ``"-inf"`` (valid JSON that keeps the kind) and read back by ``float``."""
from __future__ import annotations

import json
import math
import os
from typing import Any, Union

__all__ = ["to_json", "from_json_float", "write_json", "read_json"]

PathLike = Union[str, "os.PathLike[str]"]


def to_json(value: Any) -> Any:
    """``value`` with every non-finite float as a string, mapping keys as strings, tuples as lists."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def from_json_float(value: Union[float, str, None]) -> float:
    """A float written by :func:`to_json` (``None``, a missing value, reads as NaN)."""
    return float("nan") if value is None else float(value)


def write_json(data: Any, path: PathLike) -> str:
    """Write ``to_json(data)`` to ``path`` (folders made as needed); returns the path."""
    path = os.fspath(path)
    if os.path.dirname(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(to_json(data), fh, indent=1)
        fh.write("\n")
    return path


def read_json(path: PathLike) -> Any:
    with open(path) as fh:
        return json.load(fh)
