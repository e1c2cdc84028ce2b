"""Parameters the inputs never reach, classified from an identical sibling that they do reach.

A container (``ModuleList``, ``ModuleDict``, ``Sequential``) whose children are identical (the same
class, parameter and buffer names, shapes, dtypes and ``requires_grad``, and the same submodules:
:func:`graph.repeats.block_signature`) holds blocks of one role. Where the forward picks which child
runs from the data, a small example batch may reach only some of them: the experts of a
mixture-of-experts layer written as one module per expert (Switch Transformers, NLLB-MoE, most
hand-written MoE code) get only the tokens the router sends them, so on two short sequences some
get none. Their parameters would be left out of the plan, and which ones would change with the init.
Each such parameter gets the record of the same parameter in the nearest identical sibling that the
forward reached, renamed (every field that holds a module path; node names stay the sibling's).

Only a parameter held by its own child alone is copied: a tensor tied to one outside the child is
used as that other module uses it, which its sibling's record does not say.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..types import NEVER_USED, AttentionSite, ParamRecord
from .capture import within
from .repeats import block_signature, renamed

__all__ = ["Copied", "from_identical_siblings"]

CONTAINERS = (torch.nn.ModuleList, torch.nn.ModuleDict, torch.nn.Sequential)


@dataclass(frozen=True)
class Copied:
    """The records and attention sites after the copy, and which child each copied one came from."""

    records: list[ParamRecord]
    attention: list[AttentionSite]
    sources: dict[str, str]  # unreached child's module path -> the reached sibling's


def from_identical_siblings(model: torch.nn.Module, records: list[ParamRecord],
                            attention: list[AttentionSite]) -> Optional[Copied]:
    """The records with every never-reached parameter of an identical sibling's child copied from
    that sibling (module docstring); ``None`` where there is none to copy."""
    by_name = {r.name: r for r in records}
    unreached = {r.name for r in records if r.problem == NEVER_USED and len(r.aliases) <= 1}
    if not unreached:
        return None
    sources: dict[str, tuple[str, bool]] = {}  # child path -> (sibling path, whether the container is the root)
    for container_path, container in model.named_modules():
        if isinstance(container, CONTAINERS):
            sources.update(_sibling_sources(container_path, container, by_name, unreached))
    if not sources:
        return None
    copied = []
    for record in records:
        child = next((c for c in sources if record.name in unreached and record.name.startswith(c + ".")), None)
        source = by_name.get(sources[child][0] + record.name[len(child):]) if child else None
        copied.append(record if source is None else renamed(source, sources[child][0], child, sources[child][1]))
    sites = list(attention)
    for child, (sibling, root) in sources.items():
        sites += [renamed(s, sibling, child, root) for s in attention
                  if within(s.module, sibling)]
    return Copied(copied, sites, {child: sibling for child, (sibling, _) in sources.items()})


def _sibling_sources(container_path: str, container: torch.nn.Module, by_name: dict[str, ParamRecord],
                     unreached: set[str]) -> dict[str, tuple[str, bool]]:
    """Each child of ``container`` with an unreached parameter -> its nearest identical reached sibling."""
    path = lambda key: f"{container_path}.{key}" if container_path else key  # noqa: E731
    children = [(path(key), child) for key, child in container._modules.items() if child is not None]
    reached = [(i, p, block_signature(c)) for i, (p, c) in enumerate(children) if _reached(p, c, by_name)]
    found = {}
    for i, (child_path, child) in enumerate(children):
        names = [f"{child_path}.{n}" for n, _ in child.named_parameters()]
        if not any(n in unreached for n in names):
            continue
        signature = block_signature(child)
        candidates = [(abs(i - j), p) for j, p, s in reached if s == signature and p != child_path]
        if candidates:
            found[child_path] = (min(candidates)[1], not container_path)
    return found


def _reached(child_path: str, child: torch.nn.Module, by_name: dict[str, ParamRecord]) -> bool:
    """Every parameter of the child has a record of its own that the forward reached."""
    records = [by_name.get(f"{child_path}.{n}") for n, _ in child.named_parameters(remove_duplicate=False)]
    return bool(records) and all(r is not None and r.problem != NEVER_USED for r in records)
