"""Runs of identical blocks: capture three of them, copy the records to the others.

A deep model is mostly a ``ModuleList`` (or ``Sequential``) of blocks of one class, and
``torch.export``'s cost is linear in the number of ops it traces (about 0.1 s per Llama-7B
block on this project's CPU, docs/benchmarks.md). Where a container's children form a *run*
(at least :data:`MIN_RUN` children, one class, the same parameter and buffer names, shapes,
dtypes and ``requires_grad``, the same submodule names and classes, and no tensor shared with
anything outside the child), the graph is captured with only three of them in the container
(the first, the second and the last, under their own names), and every elided child (the third
to the second-to-last) gets the records and attention sites of the second, renamed.

That is only done where it is *shown* to give the graph the full capture would: the model's own
forward is run twice on the meta device (no weight is read or copied; a materialised model is
run through ``torch.func.functional_call`` with meta stand-ins), once whole and once with the
container cut to the three children, under a dispatch mode that records every aten op with its
arguments (parameters by name relative to their block, tensors by which op produced them,
scalars by value) and which module ran it. The shortcut is taken only if

* every middle child (the second to the second-to-last) ran exactly once and recorded the same
  ops as the second, reading only its own parameters, the previous child's results and the same
  tensors from outside the run;
* nothing outside a middle child (another op, another child, the model's outputs) read what it
  computed, except the next child;
* the cut run is the whole run with the middle children collapsed into one: the same ops outside
  the run, in the same order, reading the same tensors, and the three kept children recorded what
  they recorded in the whole run.

Anything else (a per-layer scale or window, a different mask per layer, a layer that reads an
earlier layer's output, a forward that fails on meta or indexes the container by position, a
data-dependent scalar inside a block) falls back to the full capture. The Trace's graph then holds
the three kept children only: ``Trace.repeats`` lists each run and its elided children, and the
records' and sites' ``node`` fields of an elided child name the second child's nodes.
"""
from __future__ import annotations

import contextlib
import dataclasses
import re
import warnings
from dataclasses import dataclass
from enum import Enum
from typing import Any, Iterator, Optional

import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from .capture import within

__all__ = ["MIN_RUN", "Run", "MetaScalars", "block_signature", "repeated_runs", "truncated", "renamed"]

MIN_RUN = 4  # with three children kept, a shorter run saves nothing


@dataclass(frozen=True)
class Run:
    """A container whose children are identical blocks; ``keys`` are all its child names in order."""

    container: str
    keys: tuple[str, ...]

    @property
    def kept(self) -> tuple[str, ...]:
        return (self.keys[0], self.keys[1], self.keys[-1])

    @property
    def elided(self) -> tuple[str, ...]:
        return self.keys[2:-1]

    def path(self, key: str) -> str:
        return f"{self.container}.{key}" if self.container else key


class MetaScalars(TorchDispatchMode):
    """Answers ``.item()`` of a meta tensor with zero (False), which meta cannot answer: a model
    on meta that branches on its data (Hugging Face's mask helpers check for packed sequences) then
    runs one branch to the end. Only shapes are read from such a run."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default and args[0].device.type == "meta":
            return False if args[0].dtype == torch.bool else 0
        return func(*args, **(kwargs or {}))


# ---------------------------------------------------------------------------------------------
# candidates: the structure alone


def block_signature(module: torch.nn.Module) -> tuple:
    """What makes two blocks identical: class, parameters and buffers (name, shape, dtype,
    requires_grad), and submodules (name, class)."""
    tensors = lambda items: tuple((n, tuple(t.shape), t.dtype, t.requires_grad) for n, t in items)  # noqa: E731
    return (type(module), tensors(module.named_parameters(remove_duplicate=False)),
            tensors(module.named_buffers(remove_duplicate=False)),
            tuple((n, type(m)) for n, m in module.named_modules(remove_duplicate=False)))


def _candidates(model: torch.nn.Module) -> list[Run]:
    owners: dict[int, set[str]] = {}  # tensor id -> the paths of every module that holds it
    for path, module in model.named_modules(remove_duplicate=False):
        for tensor in list(module._parameters.values()) + list(module._buffers.values()):
            if tensor is not None:
                owners.setdefault(id(tensor), set()).add(path)
    runs: list[Run] = []
    for path, container in model.named_modules():
        if not isinstance(container, (torch.nn.ModuleList, torch.nn.Sequential)):
            continue
        if any(path == r.container or path.startswith(r.path(k) + ".") or path == r.path(k)
               for r in runs for k in r.keys):
            continue  # inside a run already found: its kept children are captured whole
        children = list(container._modules.items())
        if len(children) < MIN_RUN or any(c is None for _, c in children):
            continue
        if len({id(c) for _, c in children}) != len(children):
            continue
        first = block_signature(children[0][1])
        if any(block_signature(c) != first for _, c in children[1:]):
            continue
        run = Run(path, tuple(k for k, _ in children))
        if all(_owned(run.path(k), child, owners) for k, child in children):
            runs.append(run)
    return runs


def _owned(prefix: str, child: torch.nn.Module, owners) -> bool:
    """No tensor of ``child`` is held by a module outside it (a tie across blocks or to the root)."""
    return all(all(within(p, prefix) for p in owners[id(t)]) for t in list(child.parameters()) + list(child.buffers()))


@contextlib.contextmanager
def truncated(runs: list[Run], *models: Optional[torch.nn.Module]) -> Iterator[None]:
    """Each run's container holds only its three kept children (under their own names) for the
    duration, in every model given (the model, its base and its delta share the paths)."""
    saved = []
    try:
        for model in models:
            if model is None:
                continue
            for run in runs:
                container = model.get_submodule(run.container) if run.container else model
                saved.append((container, container._modules))
                container._modules = {k: container._modules[k] for k in run.kept}
        yield
    finally:
        for container, modules in reversed(saved):
            container._modules = modules


# ---------------------------------------------------------------------------------------------
# the check: the model's forward on meta, whole and cut


class _Invalid(Exception):
    pass


class _OpRecorder(TorchDispatchMode):
    """Every aten op as a comparable entry, filed under the run child that ran it or the outside."""

    def __init__(self, prefixes: list[tuple[str, ...]], blocks: dict[int, tuple[int, int, int]], state: dict[int, tuple],
                 names: dict[int, str], inputs: list):
        super().__init__()
        # prefixes[run][position]: the module path of the child at that position in this forward
        self.prefixes, self.blocks, self.state, self.names = prefixes, blocks, state, names
        self.active: Optional[tuple[int, int, int]] = None  # (run, position, count) of the child running
        self.stack: list[int] = []
        self.entered: dict[tuple[int, int], int] = {}
        self.ops: dict[tuple[int, int], list] = {}
        self.outer: list = []
        self.made: dict[int, tuple] = {id(t): ("in", i) for i, t in enumerate(inputs)}
        self.alive: list = list(inputs)
        self.bad: set[int] = set()  # runs shown not to repeat

    # module hooks
    def push(self, module, _args):
        self.stack.append(id(module))
        where = self.blocks.get(id(module))
        if where is None:
            return
        r, pos, n = where
        if self.active is not None:
            self.bad.update({r, self.active[0]})
            return
        self.active = where
        self.entered[(r, pos)] = self.entered.get((r, pos), 0) + 1
        self.outer.append(("block", r, _role(pos, n)))

    def pop(self, module, _args, _out):
        if self.stack:
            self.stack.pop()
        if self.active is not None and self.blocks.get(id(module)) == self.active:
            self.active = None

    def _token(self, value):
        if isinstance(value, torch.Tensor):
            key = id(value)
            if key in self.state:
                owner, rel = self.state[key]
                if owner is None:
                    return ("state", rel)
                if self.active is None or owner != self.active[:2]:
                    self.bad.add(owner[0])  # a child's parameter read outside it
                return ("own", rel)
            made = self.made.get(key)
            if made is None:  # a constant made outside the recorded ops: compared by what it is
                return ("tensor", tuple(value.shape), value.dtype, value.device.type)
            if made[0] == "block":
                _, r, pos, n, i, k = made
                if self.active is not None and self.active[0] == r:
                    if pos == self.active[1]:
                        return ("local", i, k)
                    if pos != self.active[1] - 1:
                        self.bad.add(r)  # reads a child other than the previous one
                    return ("previous", i, k)
                if 0 < pos < n - 1:
                    self.bad.add(r)  # a middle child's result read outside the run
                return ("run", r, _role(pos, n), i, k)
            return made
        if value is None or isinstance(value, (bool, int, float, str, torch.dtype, torch.device, torch.layout,
                                               torch.memory_format)):
            return value
        return ("object", id(value))

    def _tokens(self, value):
        """Nested lists and dicts of arguments as nested tuples of tokens (a cheap pytree)."""
        if isinstance(value, (tuple, list)):
            return tuple(self._tokens(v) for v in value)
        if isinstance(value, dict):
            return tuple((k, self._tokens(v)) for k, v in value.items())
        return self._token(value)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func is torch.ops.aten._local_scalar_dense.default and args[0].device.type == "meta":
            if self.active is not None:
                self.bad.add(self.active[0])  # data-dependent inside a child: export would not follow it
            out = False if args[0].dtype == torch.bool else 0
        else:
            out = func(*args, **kwargs)
        path = self._relative_path()
        outs = list(out) if isinstance(out, (tuple, list)) else [out]
        entry = (func, path, self._tokens(args), self._tokens(kwargs),
                 tuple((tuple(t.shape), t.dtype) if isinstance(t, torch.Tensor) else self._token(t) for t in outs))
        if self.active is not None:
            r, pos, n = self.active
            ops = self.ops.setdefault((r, pos), [])
            origin = lambda k: ("block", r, pos, n, len(ops), k)  # noqa: E731
            ops.append(entry)
        else:
            index = len(self.outer)
            origin = lambda k: ("outer", index, k)  # noqa: E731
            self.outer.append(entry)
        for k, t in enumerate(outs):
            if isinstance(t, torch.Tensor):
                self.made[id(t)] = origin(k)
                self.alive.append(t)
        return out

    def _relative_path(self) -> str:
        path = next((self.names[m] for m in reversed(self.stack) if m in self.names), "")
        if self.active is None:
            return path
        prefix = self.prefixes[self.active[0]][self.active[1]]
        return path[len(prefix):] if within(path, prefix) else path


def _role(pos: int, n: int) -> str:
    return "first" if pos == 0 else "last" if pos == n - 1 else "middle"


def _recorded(model, runs: list[Run], args, kwargs, cut: bool) -> Optional[_OpRecorder]:
    """One forward of ``model`` on meta (cut to the kept children where ``cut``), recorded."""
    params = dict(model.named_parameters())
    buffers = dict(model.named_buffers())
    on_meta = all(t.device.type == "meta" for t in [*params.values(), *buffers.values()])
    stand_in = {n: t if on_meta else torch.empty_like(t, device="meta").requires_grad_(t.requires_grad)
                for n, t in params.items()}
    stand_in.update({n: t if on_meta else torch.empty_like(t, device="meta") for n, t in buffers.items()})
    blocks, state = {}, {}
    kept_keys = [run.kept if cut else run.keys for run in runs]
    for r, (run, keys) in enumerate(zip(runs, kept_keys)):
        container = model.get_submodule(run.container) if run.container else model
        for pos, key in enumerate(keys):
            blocks[id(container._modules[key])] = (r, pos, len(keys))
            for name in [*dict(container._modules[key].named_parameters()), *dict(container._modules[key].named_buffers())]:
                full = f"{run.path(key)}.{name}"
                if full in stand_in:
                    state[id(stand_in[full])] = ((r, pos), name)
    for name, t in stand_in.items():
        state.setdefault(id(t), (None, name))
    to_meta = lambda t: t.to("meta") if isinstance(t, torch.Tensor) else t  # noqa: E731
    args, kwargs = pytree.tree_map(to_meta, args), pytree.tree_map(to_meta, kwargs)
    names = {id(m): n for n, m in model.named_modules(remove_duplicate=False)}
    prefixes = [tuple(run.path(k) for k in keys) for run, keys in zip(runs, kept_keys)]
    recorder = _OpRecorder(prefixes, blocks, state, names, [t for t in pytree.tree_leaves((args, kwargs))
                                                        if isinstance(t, torch.Tensor)])
    recorder.alive.extend(stand_in.values())
    handles = [torch.nn.modules.module.register_module_forward_pre_hook(recorder.push),
               torch.nn.modules.module.register_module_forward_hook(recorder.pop)]
    saved = _module_state(model)
    try:
        with warnings.catch_warnings(), torch.random.fork_rng(devices=[]), recorder:
            warnings.simplefilter("ignore")
            if on_meta:
                out = model(*args, **kwargs)
            else:
                out = torch.func.functional_call(model, stand_in, args, kwargs, strict=False)
    except Exception:  # noqa: BLE001 - a forward that does not run on meta: no shortcut, the full capture decides
        return None
    finally:
        for h in handles:
            h.remove()
        _restore_module_state(saved)
    recorder.outer.append(("outputs", tuple(recorder._token(t) for t in pytree.tree_leaves(out)
                                            if isinstance(t, torch.Tensor))))
    return recorder


def _module_state(model) -> list:
    """Every module's attributes and tensor tables, so that a forward that caches something (a
    meta tensor, a flag) leaves the model as it was."""
    return [(m, dict(m.__dict__), dict(m._parameters), dict(m._buffers), dict(m._modules))
            for m in model.modules()]


def _restore_module_state(saved) -> None:
    for module, attributes, params, buffers, modules in saved:
        for table, before in ((module._parameters, params), (module._buffers, buffers), (module._modules, modules)):
            if table is not before and (table.keys() != before.keys() or any(table[k] is not before[k] for k in before)):
                table.clear()
                table.update(before)
        if module.__dict__.keys() != attributes.keys() or any(module.__dict__[k] is not v for k, v in attributes.items()):
            module.__dict__.clear()
            module.__dict__.update(attributes)


def repeated_runs(model, args, kwargs) -> list[Run]:
    """The runs of ``model`` whose elided children the cut capture may stand for (see the module
    docstring); ``[]`` where none qualifies or the check cannot tell."""
    runs = _candidates(model)
    if not runs:
        return []
    whole = _recorded(model, runs, args, kwargs, cut=False)
    if whole is None:
        return []
    good = [r for r in range(len(runs)) if r not in whole.bad and _repeats(whole, r, runs[r])]
    if not good:
        return []
    if len(good) < len(runs):
        runs = [runs[r] for r in good]
        whole = _recorded(model, runs, args, kwargs, cut=False)
        if whole is None or whole.bad or not all(_repeats(whole, r, run) for r, run in enumerate(runs)):
            return []
    with truncated(runs, model):
        cut = _recorded(model, runs, args, kwargs, cut=True)
    if cut is None or cut.bad or not _same_as_collapsed(whole, cut, runs):
        return []
    return runs


def _repeats(rec: _OpRecorder, r: int, run: Run) -> bool:
    n = len(run.keys)
    if any(rec.entered.get((r, pos)) != 1 for pos in range(n)):
        return False
    middle = rec.ops.get((r, 1))
    return all(rec.ops.get((r, pos)) == middle for pos in range(2, n - 1))


def _same_as_collapsed(whole: _OpRecorder, cut: _OpRecorder, runs: list[Run]) -> bool:
    for r, run in enumerate(runs):
        n = len(run.keys)
        if any(cut.entered.get((r, pos)) != 1 for pos in range(3)):
            return False
    kept = [i for i, item in enumerate(whole.outer)
            if not (item[0] == "block" and item[2] == "middle" and i and whole.outer[i - 1] == item)]
    if len(kept) != len(cut.outer):
        return False
    # an outside op's index in the cut stream is its index in the whole one less the collapsed markers
    fix = _renumbering(dict(enumerate(kept)))
    for r, run in enumerate(runs):
        n = len(run.keys)
        if [fix(cut.ops.get((r, p))) for p in range(3)] != [whole.ops.get((r, p)) for p in (0, 1, n - 1)]:
            return False
    return [whole.outer[i] for i in kept] == fix(cut.outer)


def _renumbering(index: dict[int, int]):
    """A function that rewrites every ("outer", i, k) token inside a recorded entry (nested
    tuples and lists) to ("outer", index[i], k)."""
    def fix(value):
        if isinstance(value, list):
            return [fix(v) for v in value]
        if isinstance(value, tuple):
            if len(value) == 3 and value[0] == "outer" and isinstance(value[1], int):
                return ("outer", index.get(value[1], -1), value[2])
            return tuple(fix(v) for v in value)
        return value
    return fix


# ---------------------------------------------------------------------------------------------
# renaming a kept child's records for an elided one


def renamed(value: Any, old: str, new: str, root: bool) -> Any:
    """``value`` (a record, a use, a site, a string, or tuples and lists of them) with the module
    path ``old`` replaced by ``new``: exactly in name fields, as a whole dotted path in free text.
    Node names are left alone (they name nodes of the captured graph)."""
    pattern = re.compile(r"(?<![\w.])" + re.escape(old) + (r"(?=\.[A-Za-z_])" if root else r"(?![\w])"))

    def rename(v, field: str = ""):
        if isinstance(v, Enum):
            return v
        if isinstance(v, str):
            if field in ("node", "selected_by", "normalized_by"):
                return v
            if within(v, old):
                return new + v[len(old):]
            return pattern.sub(new, v)
        if isinstance(v, tuple):
            return tuple(rename(x, field) for x in v)
        if isinstance(v, list):
            return [rename(x, field) for x in v]
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            changes = {f.name: rename(getattr(v, f.name), f.name) for f in dataclasses.fields(v)}
            return dataclasses.replace(v, **changes)
        return v

    return rename(value)
