"""Coord-check demonstration (not in the paper: the muP papers' plot, drawn with sptrace's
:func:`sptrace.validation.coord.coord_check`): an MLP on the 8x8 digits with Adam, in SP and in the
paper's muP written by hand (the parametrization sptrace implements, named ``"sptrace"``)."""
from __future__ import annotations

import os
from typing import Any, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

import sptrace

from sptrace.validation.coord import coord_check
from sptrace.validation.jsonio import write_json
from sptrace.validation.plots import plot_coord_check

from .digits import digit_batches
from .results import PathLike

__all__ = ["run_coord_demo"]

_LABELS = {"sp": "SP (PyTorch default init, one Adam lr)",
           "sptrace": "sptrace.parametrize(model, optimizer=\"adam\", lr=lr), its defaults"}


def _demo_mlp(width: int) -> nn.Module:
    """MLP ``64 -> width -> width -> 10`` without biases, PyTorch's default init."""
    m = nn.Sequential()
    m.add_module("fc1", nn.Linear(64, width, bias=False))
    m.add_module("act1", nn.ReLU())
    m.add_module("fc2", nn.Linear(width, width, bias=False))
    m.add_module("act2", nn.ReLU())
    m.add_module("readout", nn.Linear(width, 10, bias=False))
    return m


def _demo_adam(param: str, lr: float):
    """SP: one Adam lr on the model as built. sptrace: the one-line call with ``lr`` (the lr at the
    reference width 256), which re-initialises the model and returns the optimizer."""
    def make(m: nn.Module) -> torch.optim.Optimizer:
        if param == "sp":
            return torch.optim.Adam(m.parameters(), lr=lr)
        return sptrace.parametrize(m, optimizer="adam", lr=lr)
    return make


def run_coord_demo(
    widths: Sequence[int] = (32, 64, 128, 256, 512, 1024),
    *,
    steps: int = 4,
    lr: float = 1e-2,
    batch: int = 64,
    data_path: Optional[PathLike] = None,
    out_dir: Optional[PathLike] = None,
) -> dict[str, Any]:
    """Coord check of an MLP ``64 -> w -> w -> 10`` on the 8x8 digits with Adam, in SP (PyTorch
    default init, one lr) and through the product (``"sptrace"``: ``sptrace.parametrize(model,
    optimizer="adam", lr=lr)`` with its defaults: lr at the reference width, readout at zero). Returns
    ``{"sp": CoordCheck, "sptrace": CoordCheck, "verdicts": {...}}`` and with ``out_dir`` writes
    ``coord_{sp,sptrace}.json`` / ``.png``."""
    batches = digit_batches(batch, steps, data_path)
    out: dict[str, Any] = {"verdicts": {}}
    for param in ("sp", "sptrace"):
        cc = coord_check(_demo_mlp, _demo_adam(param, lr), batches,
                         F.cross_entropy, widths, steps)
        v = cc.verdict(allow_shrink=["rms@*"])
        out[param] = cc
        out["verdicts"][param] = v
        if out_dir is not None:
            write_json({"coord_check": cc.to_dict(), "verdict": v.to_dict()},
                       os.path.join(out_dir, f"coord_{param}.json"))
            plot_coord_check(cc, os.path.join(out_dir, f"coord_{param}.png"),
                             quantities=["rms@0", "delta_rms@1", f"delta_rms@{steps}"], allow_shrink=["rms@*"],
                             title=f"coord check, MLP 64→w→w→10 on digits, {_LABELS[param]}")
    return out
