"""Stage 1: capture a torch.fx graph of aten ops from any model.

Routes, tried in order (the first that works wins; why the others failed is recorded):

* ``export``: ``torch.export.export(strict=False)``, training IR, not decomposed to core ATen.
  Non-strict export runs the forward on fake tensors, so no weight is copied.
* ``eager``: runs the model once under a ``TorchDispatchMode`` that records every aten op and
  the identity of the tensors it consumed. It takes the branch the example input takes, so it
  works for graph breaks, data-dependent control flow and cache objects in the outputs.

Both produce the same thing: an ``fx.Graph`` whose ``call_function`` nodes target aten
``OpOverload``s, whose placeholders are parameters, buffers and the user's tensor inputs, and
whose nodes carry ``meta["val"]`` (a tensor or tuple of tensors with the right shapes) and
``meta["nn_module_stack"]``. Later stages read only that.
"""
from __future__ import annotations

import contextlib
import io
import logging
import operator
import sys
import warnings

import torch
import torch.fx as fx
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode

from ..types import CapturedGraph, SptraceError


def capture(model: torch.nn.Module, args: tuple, kwargs: dict, routes=("export", "eager")) -> CapturedGraph:
    args, kwargs = _inputs_on_model_device(model, args, kwargs)
    failures: dict[str, str] = {}
    for route in routes:
        try:
            with _quiet_torch_logs():
                captured = _ROUTES[route](model, args, kwargs)
        except Exception as exc:  # noqa: BLE001 - every failure is recorded and reported
            failures[route] = _short_error(exc)
            continue
        captured.failures = failures
        return captured
    lines = "\n".join(f"  {r}: {msg}" for r, msg in failures.items())
    raise SptraceError(
        f"could not capture a graph of {type(model).__name__} by any route:\n{lines}\n"
        "Check that model(*example_args, **example_kwargs) runs eagerly with these inputs."
    )


# torch's loggers that report, on stderr, a failure the capture records and reports itself: the
# fake-tensor mode logs the traceback of an op whose shapes do not fit (a wrong example input, ~20
# lines), and the symbolic-shapes machinery warns about data-dependent values export cannot follow
# (the eager route takes them). Silenced for the duration of one route, then restored.
QUIET_LOGGERS = ("torch._subclasses.fake_tensor", "torch.fx.experimental.symbolic_shapes")


@contextlib.contextmanager
def _quiet_torch_logs():
    loggers = [logging.getLogger(name) for name in QUIET_LOGGERS]
    before = [logger.disabled for logger in loggers]
    for logger in loggers:
        logger.disabled = True
    try:
        yield
    finally:
        for logger, disabled in zip(loggers, before):
            logger.disabled = disabled


def _short_error(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return first[:400]


def _inputs_on_model_device(model, args, kwargs):
    """Meta models are traced with meta inputs; otherwise inputs are used as given."""
    devices = {p.device.type for p in model.parameters()}
    if devices != {"meta"}:
        return args, kwargs
    to_meta = lambda t: t.to("meta") if isinstance(t, torch.Tensor) else t  # noqa: E731
    return pytree.tree_map(to_meta, args), pytree.tree_map(to_meta, kwargs)


# ---------------------------------------------------------------------------------------------
# route 1: torch.export


class _TensorOutputs(torch.nn.Module):
    """Exports see only the tensors a model returns: cache objects and other non-pytree outputs
    (HF's DynamicCache) would otherwise make export fail."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, *args, **kwargs):
        out = self.model(*args, **kwargs)
        return tuple(t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor))


@contextlib.contextmanager
def _lean_export():
    """Switch off two things export does for the graph's later users that sptrace never needs:
    it only reads ``ep.graph``, never runs the module or reads ``node.meta["stack_trace"]``.

    * a Python stack trace recorded on every node (about a fifth of export's time on GPT-2);
    * Python code generated for the graph module after every pass (lazy graph modules generate
      it only when the module is first run; about an eighth).

    Both are torch-internal switches; where a torch version lacks one, export runs as usual.
    """
    with contextlib.ExitStack() as stack:
        config = fx.config
        before = getattr(config, "do_not_emit_stack_traces", None)
        if before is not None:
            config.do_not_emit_stack_traces = True
            stack.callback(setattr, config, "do_not_emit_stack_traces", before)
        try:
            from torch.fx._lazy_graph_module import _use_lazy_graph_module
        except ImportError:
            pass
        else:
            stack.enter_context(_use_lazy_graph_module(True))
        yield


@contextlib.contextmanager
def _no_partial_graph_printout():
    """A failed export prints its partial graph to stderr (once per attempt, hundreds of lines on a
    real model); the failure is already in ``trace.failures`` and the eager route follows, so only
    that printout is dropped: anything else written to stderr meanwhile is passed on."""
    buffer = io.StringIO()
    partial = ""
    try:
        with contextlib.redirect_stderr(buffer):
            yield
    except Exception as exc:
        partial = str(getattr(exc, "partial_fx_graph", "") or "")
        raise
    finally:
        text = buffer.getvalue()
        if partial:
            text = text.replace(partial + "\n", "")
        if text:
            sys.stderr.write(text)


def _capture_export(model, args, kwargs) -> CapturedGraph:
    from torch.export.graph_signature import InputKind, OutputKind

    with _lean_export(), _no_partial_graph_printout(), warnings.catch_warnings():
        # RNN modules re-point their _flat_weights during export, which export undoes afterwards
        warnings.filterwarnings("ignore", message="The tensor attributes .* were assigned during export")
        ep = torch.export.export(_TensorOutputs(model), tuple(args), kwargs=dict(kwargs), strict=False)
        ep = _decompose_recurrent(ep)
    _inline_regions(ep.graph_module)
    sig = ep.graph_signature
    unwrap = lambda target: target[len("model."):]  # noqa: E731
    params, buffers, inputs = {}, {}, []
    for spec in sig.input_specs:
        name = spec.arg.name
        if spec.kind == InputKind.PARAMETER:
            params[name] = unwrap(spec.target)
        elif spec.kind in (InputKind.BUFFER, InputKind.CONSTANT_TENSOR):
            buffers[name] = unwrap(spec.target) if spec.target.startswith("model.") else spec.target
            _keep_scalar(ep.graph, name, ep.state_dict.get(spec.target, ep.constants.get(spec.target)))
        elif spec.kind == InputKind.USER_INPUT and _is_tensor_node(ep.graph, name):
            inputs.append(name)
    # read off the output node, not the signature's names: inlining a region replaced the getitem
    # nodes those names may point at (a model whose forward ends inside a no_grad region, such as a
    # reentrant activation checkpoint)
    returned = next(n for n in ep.graph.nodes if n.op == "output").args[0]
    outputs = [arg.name for spec, arg in zip(sig.output_specs, returned)
               if spec.kind == OutputKind.USER_OUTPUT and isinstance(arg, fx.Node)]
    for node in ep.graph.nodes:
        stack = node.meta.get("nn_module_stack")
        if stack:
            node.meta["nn_module_stack"] = {k: (_unwrap_path(path), cls) for k, (path, cls) in stack.items()}
    # only the graph is kept: no stage reads the ExportedProgram, and keeping it would keep its
    # state_dict (every parameter) and its other objects alive as long as the trace
    return CapturedGraph(ep.graph, "export", {}, params, buffers, inputs, outputs)


SCALAR_VALUE = "sptrace_value"  # node.meta key: the value of a one-element constant (graph/constants.py)
UNKNOWN_SCALAR = "sptrace_value_unknown"  # node.meta key: a one-element constant on meta, whose value no one knows


def _keep_scalar(graph: fx.Graph, name, value) -> None:
    """Remember the value of a one-element float constant (a buffer, a tensor made in the forward):
    graph/constants.py reads it where it multiplies a parameter's output. A meta tensor has no value:
    it is marked unknown (the trace then warns); a fake tensor is left alone."""
    if not isinstance(value, torch.Tensor) or value.numel() != 1 or not value.dtype.is_floating_point:
        return
    meta = value.device.type == "meta"
    if not meta and type(value) is not torch.Tensor and not isinstance(value, torch.nn.Parameter):
        return
    node = name if isinstance(name, fx.Node) else next((n for n in graph.nodes if n.name == name), None)
    if node is not None and meta:
        node.meta[UNKNOWN_SCALAR] = True
    elif node is not None:
        node.meta[SCALAR_VALUE] = float(value.detach().reshape(()).item())


def _decompose_recurrent(ep):
    """``aten.lstm`` / ``gru`` / ``rnn_*`` take every weight in one list argument and their
    ``*_cell`` forms hide the weights behind one op: decompose them (torch's own decompositions)
    into the linear ops and gate arithmetic the later stages read."""
    from torch._decomp import decomposition_table

    aten = torch.ops.aten
    layers = {aten.lstm.input, aten.gru.input, aten.rnn_tanh.input, aten.rnn_relu.input}
    cells = {aten.lstm_cell.default, aten.gru_cell.default, aten.rnn_tanh_cell.default, aten.rnn_relu_cell.default}
    present = {node.target for node in ep.graph.nodes} & (layers | cells)
    if not present:
        return ep
    table = {op: decomposition_table[op] for op in present & layers if op in decomposition_table}
    # the cells are composite ops that recent export keeps whole (older export decomposed them itself)
    composite = getattr(torch.export, "default_decompositions", None)
    if present & cells and composite is not None:
        every = composite()
        table.update({op: every[op] for op in present & cells})
    return ep.run_decompositions(table) if table else ep


# higher-order ops export wraps a `torch.no_grad()` / `torch.autocast()` block in: the block's own
# graph is a submodule argument, the tensors it reads follow it
REGIONS = ("wrap_with_set_grad_enabled", "wrap_with_autocast")


def _inline_regions(module: fx.GraphModule) -> None:
    """Splice every no_grad / autocast region's subgraph into the graph in place of its call, so
    the later stages see the ops inside it like any other (nested regions first). What the region
    changes (gradient mode, compute dtype) does not change which axes an op relates; the dtype
    casts autocast inserts are recorded inside the subgraph as ops of their own."""
    graph = module.graph
    for node in list(graph.nodes):
        if node.op != "call_function" or getattr(node.target, "__name__", "") not in REGIONS:
            continue
        position = next(i for i, a in enumerate(node.args) if isinstance(a, fx.Node) and a.op == "get_attr")
        body = getattr(module, node.args[position].target)
        _inline_regions(body)
        env = dict(zip([n for n in body.graph.nodes if n.op == "placeholder"], node.args[position + 1:]))
        results = ()
        with graph.inserting_before(node):
            for inner in body.graph.nodes:
                if inner.op == "output":
                    results = fx.node.map_arg(inner.args[0], env.__getitem__)
                elif inner.op != "placeholder":
                    env[inner] = graph.node_copy(inner, env.__getitem__)
                    env[inner].meta.setdefault("nn_module_stack", node.meta.get("nn_module_stack", {}))
        for user in list(node.users):  # getitem(region, i)
            user.replace_all_uses_with(results[user.args[1]])
            graph.erase_node(user)
        attr = node.args[position]
        graph.erase_node(node)
        if not attr.users:
            graph.erase_node(attr)


def _unwrap_path(path: str) -> str:
    """Paths inside the _TensorOutputs wrapper start with 'model'; give the user's own path."""
    path = _clean_module_path(path)
    return path[len("model."):] if path.startswith("model.") else ("" if path == "model" else path)


def _is_tensor_node(graph: fx.Graph, name: str) -> bool:
    node = next(n for n in graph.nodes if n.name == name)
    return isinstance(node.meta.get("val"), torch.Tensor)


# ---------------------------------------------------------------------------------------------
# route 2: eager dispatch recorder


class _Recorder(TorchDispatchMode):
    """Records each aten op as an fx node, keyed by the identity of the tensors it touches."""

    def __init__(self, graph: fx.Graph, known: dict[int, fx.Node], module_stack: list):
        super().__init__()
        self.graph, self.known, self.module_stack = graph, known, module_stack
        self.keep_alive: list = []  # ids stay unique only while the tensors live

    def node_for(self, value):
        if isinstance(value, torch.Tensor):
            if id(value) not in self.known:
                node = self.graph.placeholder(f"const_{len(self.known)}")
                node.meta["val"] = _meta_like(value)
                node.meta["sptrace_constant"] = True
                _keep_scalar(self.graph, node, value)
                self._remember(value, node)
            return self.known[id(value)]
        return value

    def _remember(self, tensor, node):
        self.known[id(tensor)] = node
        self.keep_alive.append(tensor)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        node_args = pytree.tree_map(self.node_for, args)
        node_kwargs = pytree.tree_map(self.node_for, kwargs)
        node = self.graph.call_function(func, tuple(node_args), dict(node_kwargs))
        node.meta["nn_module_stack"] = {f"m{i}": (path, cls) for i, (path, cls) in enumerate(self.module_stack)}
        node.meta["val"] = pytree.tree_map(_meta_like, out)
        if isinstance(out, torch.Tensor):
            self._remember(out, node)
        elif isinstance(out, (tuple, list)):
            for i, item in enumerate(out):
                if isinstance(item, torch.Tensor):
                    item_node = self.graph.call_function(operator.getitem, (node, i))
                    item_node.meta.update(val=node.meta["val"][i], nn_module_stack=node.meta["nn_module_stack"])
                    self._remember(item, item_node)
        return out


def _meta_like(value):
    if isinstance(value, torch.Tensor):
        return torch.empty(value.shape, dtype=value.dtype, device="meta")
    return value


def _capture_eager(model, args, kwargs) -> CapturedGraph:
    graph = fx.Graph()
    known: dict[int, fx.Node] = {}
    params, buffers, inputs = {}, {}, []
    for name, p in model.named_parameters(remove_duplicate=True):
        node = graph.placeholder(_safe(f"p_{name}"))
        node.meta["val"] = _meta_like(p)
        known[id(p)] = node
        params[node.name] = name
    for name, b in model.named_buffers(remove_duplicate=True):
        node = graph.placeholder(_safe(f"b_{name}"))
        node.meta["val"] = _meta_like(b)
        _keep_scalar(graph, node, b)
        known[id(b)] = node
        buffers[node.name] = name
    for i, leaf in enumerate(pytree.tree_leaves((args, kwargs))):
        if isinstance(leaf, torch.Tensor) and id(leaf) not in known:
            node = graph.placeholder(f"input_{i}")
            node.meta["val"] = _meta_like(leaf)
            known[id(leaf)] = node
            inputs.append(node.name)

    stack: list = []
    names = {id(m): n for n, m in model.named_modules(remove_duplicate=False)}
    recorder = _Recorder(graph, known, stack)
    recorder.keep_alive.extend(pytree.tree_leaves((args, kwargs)))

    def push(module, _args):
        if id(module) in names:
            stack.append((names[id(module)], f"{type(module).__module__}.{type(module).__qualname__}"))

    def pop(module, _args, _out):
        if id(module) in names and stack:
            stack.pop()

    saved_buffers = {n: b.detach().clone() for n, b in model.named_buffers() if b.device.type != "meta"}
    handles = [
        torch.nn.modules.module.register_module_forward_pre_hook(push),
        torch.nn.modules.module.register_module_forward_hook(pop),
    ]
    try:
        # grad stays enabled: under no_grad PyTorch takes fused inference paths
        # (_transformer_encoder_layer_fwd) that hide the parameters' uses; so do oneDNN's and
        # cuDNN's fused recurrent kernels (mkldnn_rnn_layer, _cudnn_rnn), off for this one forward
        with torch.enable_grad(), _no_fused_backends(), recorder:
            out = model(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
        _restore_buffers(model, saved_buffers)
    out_nodes = [known[id(t)] for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor) and id(t) in known]
    graph.output(tuple(out_nodes))
    outputs = [n.name for n in out_nodes]
    return CapturedGraph(graph, "eager", {}, params, buffers, inputs, outputs)


def _no_fused_backends():
    stack = contextlib.ExitStack()
    # torch >= 2.13 warns about Intel-GPU TF32 whenever the oneDNN flags are set, on any machine
    stack.enter_context(warnings.catch_warnings())
    warnings.filterwarnings("ignore", message=".*TF32 acceleration on top of oneDNN.*")
    stack.enter_context(torch.backends.mkldnn.flags(enabled=False))
    stack.enter_context(torch.backends.cudnn.flags(enabled=False))
    return stack


def _restore_buffers(model, saved):
    """The recorded forward runs in the model's mode; running stats it updated are put back."""
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name in saved:
                buf.copy_(saved[name])


def _safe(name: str) -> str:
    return name.replace(".", "_")


_ROUTES = {"export": _capture_export, "eager": _capture_eager}


# ---------------------------------------------------------------------------------------------
# the module path, read by later stages


def reached_from(graph: fx.Graph, roots: set[str]) -> set[str]:
    """Names of the nodes computed from any of ``roots`` (the roots included)."""
    seen = set(roots)
    for node in graph.nodes:
        if node.name not in seen and any(n.name in seen for n in node.all_input_nodes):
            seen.add(node.name)
    return seen


def computed_from_inputs(captured: CapturedGraph) -> set[str]:
    """Names of the nodes whose value is computed from the model's inputs (activations, not constants)."""
    return reached_from(captured.graph, set(captured.input_nodes))


MODEL_ROOT = "<root>"  # how reports name the model itself, where a module path is empty


def module_path(node: fx.Node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return ""
    path = list(stack.values())[-1][0]
    return _clean_module_path(path)


def within(path: str, owner: str) -> bool:
    """Whether the dotted module path ``path`` is ``owner`` or a module inside it."""
    return path == owner or path.startswith(owner + ".")


def _clean_module_path(path: str) -> str:
    """export writes paths as 'layers.0.attn' or "L['self'].layers[0]"; normalise to dotted."""
    if path.startswith("L['self']"):
        path = path[len("L['self']"):].lstrip(".")
        path = path.replace("[", ".").replace("]", "").replace("'", "")
    return path.strip(".")
