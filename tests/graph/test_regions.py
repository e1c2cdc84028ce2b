"""Higher-order regions: a block inside ``torch.no_grad()`` / ``torch.autocast()`` is exported as a
subgraph called through ``wrap_with_set_grad_enabled`` / ``wrap_with_autocast``; capture splices it
into the graph, so the parameters used inside are classified as if the block were written inline."""
import pytest
import torch
import torch.nn as nn

import sptrace
from sptrace.graph.capture import REGIONS


class Regions(nn.Module):
    """input -> hidden under autocast -> hidden under no_grad (with a nested autocast) -> readout."""

    def __init__(self, n, regions=True):
        super().__init__()
        self.regions = regions
        self.inp, self.mid, self.side, self.inner = nn.Linear(16, n), nn.Linear(n, n), nn.Linear(n, n), nn.Linear(n, n)
        self.norm = nn.LayerNorm(n)
        self.head = nn.Linear(n, 10)

    def forward(self, x):
        h = torch.relu(self.inp(x))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.regions):
            h = self.mid(h)
        h = h.float()
        with torch.set_grad_enabled(not self.regions):
            g = self.side(h)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.regions):
                g = self.norm(self.inner(g).float())
        return self.head(h + g)


def _summary(traced):
    return {r.name: (r.kind, r.role, r.fan_in_axes, r.fan_out_axes, r.width_dims) for r in traced}


def test_parameters_inside_no_grad_and_autocast_are_classified_as_inline():
    x = torch.randn(3, 16)
    traced = sptrace.trace(Regions(64), x, routes=("export",))
    assert not traced.unclassified, [(r.name, r.problem) for r in traced.unclassified]
    assert not [n for n in traced.graph.nodes if getattr(n.target, "__name__", "") in REGIONS]
    assert _summary(traced) == _summary(sptrace.trace(Regions(64, regions=False), x, routes=("export",)))
    assert traced["mid.weight"].role.value == "hidden" and traced["norm.weight"].role.value == "gain"
    assert traced["inner.weight"].uses[0].module == "inner"  # module paths survive the splice


def test_rwkv_in_eval_mode_rescales_its_weights_under_no_grad():
    """RWKV divides two weights per block in place under torch.no_grad() when it leaves training
    mode (``_rescale_layers``): those weights are classified like the others of their kind."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.RwkvConfig(hidden_size=64, attention_hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                  vocab_size=77, context_length=64, rescale_every=1)
    model = transformers.RwkvForCausalLM(cfg).eval()
    traced = sptrace.trace(model, torch.randint(0, 77, (2, 8)), routes=("export",))
    assert not traced.unclassified, [(r.name, r.problem) for r in traced.unclassified]
    for block in (0, 1):
        for name in (f"rwkv.blocks.{block}.attention.output.weight", f"rwkv.blocks.{block}.feed_forward.value.weight"):
            assert (traced[name].kind.value, traced[name].role.value, traced[name].width_dims) == ("matrix", "hidden", (0, 1))


class Checkpointed(nn.Module):
    """Blocks under a reentrant activation checkpoint (Hugging Face's gradient checkpointing default
    in older releases): its forward runs the block under no_grad, a region capture inlines."""

    def __init__(self, n=32):
        super().__init__()
        self.emb = nn.Embedding(30, n)
        self.blocks = nn.ModuleList([nn.Sequential(nn.LayerNorm(n), nn.Linear(n, 2 * n), nn.GELU(), nn.Linear(2 * n, n))
                                     for _ in range(2)])
        self.head = nn.Linear(n, 30)

    def forward(self, ids):
        h = self.emb(ids)
        for block in self.blocks:
            h = h + torch.utils.checkpoint.checkpoint(block, h, use_reentrant=True)
        return self.head(h)


def test_the_model_output_is_read_off_the_graph_after_regions_are_inlined():
    """The export signature named the output by a getitem of a region that inlining replaced: the
    readout's output axis was tied to nothing, and the head planned as a hidden matrix whose fan-out
    (the 30-token vocabulary) grows."""
    traced = sptrace.trace(Checkpointed(), torch.randint(0, 30, (2, 5)), routes=("export",))
    assert traced.captured.output_nodes == [next(n for n in traced.graph.nodes if n.op == "output").args[0][0].name]
    assert (traced["head.weight"].role.value, traced["head.weight"].width_dims) == ("readout", (1,))
    assert traced["head.bias"].width_dims == ()
