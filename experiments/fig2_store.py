"""A store of finished Fig. 2 runs (:class:`Fig2RunStore`): a long reproduction can be interrupted,
extended to wider widths or more seeds, and refitted without training again."""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch

from sptrace.types import SptraceError
from sptrace.validation.jsonio import from_json_float, to_json

from .digits import ClassSpec, class_group
from .results import PathLike

__all__ = ["RUN_ROUTE", "Fig2RunStore", "fig2_run_key", "file_digest", "stored_or_trained"]


def file_digest(path: PathLike) -> str:
    """The first 16 hex digits of the file's sha256: names the data a run was trained on."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


class Fig2RunStore:
    """Finished Fig. 2 runs in a JSON-lines file, one record ``{"key": ..., "result": ...}`` per run.

    A record is keyed by everything that determines its numbers (:func:`fig2_run_key`); the device
    is recorded, not keyed: the init is drawn on the CPU. JSON lines rather than one JSON document
    because a run is minutes long: one line appended per run survives a kill between runs."""

    def __init__(self, path: PathLike):
        self.path = Path(path)
        self._runs: dict[str, dict[str, float]] = {}
        if self.path.exists():
            for n, line in enumerate(self.path.read_text().splitlines(), 1):
                if line.strip():
                    self._read_line(n, line)

    def _read_line(self, n: int, line: str) -> None:
        try:
            rec = json.loads(line)
            self._runs[self._key(rec["key"])] = {q: from_json_float(v) for q, v in rec["result"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise SptraceError(f"{self.path}:{n} is not a Fig. 2 run record ({e}); "
                               "fix or delete that line (or pass another run store)") from e

    @staticmethod
    def _key(key: dict[str, Any]) -> str:
        return json.dumps(key, sort_keys=True)

    def __len__(self) -> int:
        return len(self._runs)

    def get(self, key: dict[str, Any]) -> Optional[dict[str, float]]:
        return self._runs.get(self._key(key))

    def put(self, key: dict[str, Any], result: dict[str, float], **info: Any) -> None:
        """Record ``result`` under ``key`` (``info``: what else to note, not keyed) and append it to the file."""
        self._runs[self._key(key)] = result
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            fh.write(json.dumps(to_json({"key": key, "result": result, **info}), sort_keys=True) + "\n")


# How a run's init and learning rates were made, keyed so that runs of another route (the earlier
# hand-typed constants drew other random numbers from the same seeds) are never taken for these.
RUN_ROUTE = "sptrace.parametrize"


def fig2_run_key(data_digest: str, classes: tuple[ClassSpec, ClassSpec], n_samples: int, seed: int,
                 param: str, width: int, steps: int, eta: float, project_input: bool) -> dict[str, Any]:
    """The :class:`Fig2RunStore` key of one run (data seed ``seed``, init seed ``10_000 + seed``)."""
    return {"data": data_digest, "classes": [list(class_group(c)) for c in classes], "n_samples": n_samples,
            "data_seed": seed, "init_seed": 10_000 + seed, "param": param, "width": width, "steps": steps,
            "eta": eta, "project_input": project_input, "route": RUN_ROUTE}


def stored_or_trained(store: Optional[Fig2RunStore], key: dict[str, Any], device: Union[str, torch.device],
                      train: Callable[[], dict[str, float]]) -> dict[str, float]:
    """The stored result of ``key``, or ``train()``'s (then stored, with its time and device)."""
    result = store.get(key) if store is not None else None
    if result is None:
        t0 = time.perf_counter()
        result = train()
        if store is not None:
            store.put(key, result, seconds=round(time.perf_counter() - t0, 1), device=str(device),
                      torch=torch.__version__)
    return result
