"""Mixture-of-experts layers: stacked expert parameters (experts x out x in, or experts x in x out)
are a stack of matrices with a fixed group axis, the router is a readout over the experts, and
every parameter is classified, whichever way Hugging Face applies the experts (grouped matmul,
index + bmm, a loop indexing the stack). Each expectation is derived from the architecture: the
expert count and top-k are fixed, the hidden and per-expert intermediate sizes are width."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import sptrace
from tests.external_models import EXPERTS, MOE_MODELS

pytest.importorskip("transformers")

IMPLEMENTATIONS = ("grouped_mm", "batched_mm", "eager")
TOKENS = torch.randint(0, 77, (2, 16), generator=torch.Generator().manual_seed(0))


def _trace(name, implementation, width=64, **kwargs):
    build = MOE_MODELS[name][0]
    return sptrace.trace(build(width, implementation), TOKENS, **kwargs)


def _expert_stacks(traced):
    return [r for r in traced if r.name.endswith(("experts.gate_up_proj", "experts.down_proj"))]


def _routers(traced):
    return [r for r in traced if r.shape[0] == EXPERTS and len(r.shape) == 2 and not r.name.endswith("_bias")]


def check_moe(traced, transposed=False):
    assert not traced.unclassified, [(r.name, r.problem) for r in traced.unclassified]
    stacks = _expert_stacks(traced)
    assert len(stacks) == 2
    # (experts, out, in) as Mixtral stores it; gpt-oss stores (experts, in, out)
    fan_in, fan_out = ((1,), (2,)) if transposed else ((2,), (1,))
    for record in stacks:
        assert (record.kind.value, record.role.value) == ("matrix", "hidden"), record
        assert (record.fan_in_axes, record.fan_out_axes) == (fan_in, fan_out), record
        assert record.uses[0].group_axes == (0,), record.uses[0]
        assert record.width_dims == (1, 2), record.dims  # the expert axis is a fixed count
    (router,) = _routers(traced)
    assert (router.kind.value, router.role.value) == ("vector", "readout"), router
    assert (router.fan_in_axes, router.fan_out_axes, router.width_dims) == ((1,), (0,), (1,))
    assert router.selected_by is not None  # it keeps its init (graph/selection.py)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("name", ["mixtral", "qwen3-moe", "olmoe", "qwen2-moe"])
def test_hf_moe_experts_are_stacked_matrices_and_the_router_a_readout(name, implementation):
    traced = _trace(name, implementation)
    check_moe(traced)
    expected_route = "eager" if implementation == "eager" else "export"  # the loop is data-dependent
    assert traced.route == expected_route


def test_transposed_experts_with_per_expert_biases():
    """gpt-oss: (experts, in, out) stacks; a per-expert bias is looked up by the expert ids and added:
    a table over the (fixed) experts, like an embedding of the expert id."""
    traced = _trace("gpt-oss", "grouped_mm")
    check_moe(traced, transposed=True)
    for record in traced:
        if record.name.endswith("_proj_bias"):
            assert (record.kind.value, record.role.value, record.input_space.value) == ("vector", "embedding", "sparse")
            assert (record.fan_in_axes, record.fan_out_axes, record.width_dims) == ((0,), (1,), (1,))


def test_base_mode_agrees_with_the_graph():
    """With a narrower base, the width dims are those whose size differs: the same as read from the graph."""
    build = MOE_MODELS["mixtral"][0]
    automatic = _trace("mixtral", None)
    based = _trace("mixtral", None, base=build(32))
    for record in automatic:
        other = based[record.name]
        assert (other.kind, other.role, other.width_dims, other.fan_in_axes, other.fan_out_axes) == (
            record.kind, record.role, record.width_dims, record.fan_in_axes, record.fan_out_axes), record.name


# ---------------------------------------------------------------------------------------------
# the same graph properties on hand-written modules


class LoopedExperts(nn.Module):
    """A (experts, n, n) stack applied expert by expert with Python ints (``select``), mixed by a
    softmax router over a top-2 choice."""

    def __init__(self, n, experts=3):
        super().__init__()
        self.inp = nn.Linear(16, n)
        self.router = nn.Linear(n, experts)
        self.stack = nn.Parameter(torch.randn(experts, n, n) / n ** 0.5)
        self.head = nn.Linear(n, 10)

    def forward(self, x):
        h = torch.relu(self.inp(x))
        weights, chosen = torch.topk(torch.softmax(self.router(h), -1), 2, dim=-1)
        mixed = sum(F.linear(h, self.stack[e]) * ((chosen == e).float() * weights).sum(-1, keepdim=True)
                    for e in range(self.stack.shape[0]))
        return self.head(mixed)


@pytest.mark.parametrize("route", ["export", "eager"])
def test_a_stack_picked_by_constant_index_is_a_stack_of_matrices(route):
    traced = sptrace.trace(LoopedExperts(48), torch.randn(5, 16), routes=(route,))
    stack = traced["stack"]
    assert (stack.kind.value, stack.role.value, stack.fan_in_axes, stack.fan_out_axes) == ("matrix", "hidden", (2,), (1,))
    assert stack.uses[0].group_axes == (0,) and stack.width_dims == (1, 2)
    assert traced["router.weight"].role.value == "readout" and traced["router.weight"].width_dims == (1,)


class TableLookup(nn.Module):
    """A raw parameter indexed by token ids (``table[ids]``, aten.index), then a linear head."""

    def __init__(self, n):
        super().__init__()
        self.table = nn.Parameter(torch.randn(50, n))
        self.head = nn.Linear(n, 10)

    def forward(self, ids):
        return self.head(self.table[ids])


def test_a_table_indexed_by_ids_is_an_embedding_with_a_fixed_vocabulary():
    traced = sptrace.trace(TableLookup(64), torch.randint(0, 50, (2, 5)))
    table = traced["table"]
    assert (table.kind.value, table.role.value, table.input_space.value) == ("vector", "embedding", "sparse")
    assert (table.fan_in_axes, table.fan_out_axes, table.width_dims) == ((0,), (1,), (1,))


class TopKSparseCoder(nn.Module):
    """Top-k over *features* (a k-sparse autoencoder): the ranked axis is read by the decoder as
    its fan-in, so it is width, not a count of alternatives."""

    def __init__(self, n):
        super().__init__()
        self.encoder = nn.Linear(16, n)
        self.hidden = nn.Linear(n, n)
        self.decoder = nn.Linear(n, 16)

    def forward(self, x):
        latent = self.hidden(torch.relu(self.encoder(x)))
        values, index = torch.topk(latent, 4, dim=-1)
        return self.decoder(torch.zeros_like(latent).scatter(-1, index, values))


def test_a_ranked_axis_that_a_layer_reads_as_features_stays_width():
    traced = sptrace.trace(TopKSparseCoder(64), torch.randn(3, 16))
    assert traced["hidden.weight"].role.value == "hidden" and traced["hidden.weight"].width_dims == (0, 1)
    assert traced["decoder.weight"].role.value == "readout"


class GroupedMatmulExperts(nn.Module):
    """torch.nn.functional.grouped_mm (aten._grouped_mm, bfloat16 as the kernel requires)."""

    def __init__(self, n, experts=3):
        super().__init__()
        self.inp = nn.Linear(16, n, dtype=torch.bfloat16)
        self.stack = nn.Parameter(torch.randn(experts, n, n, dtype=torch.bfloat16))
        self.head = nn.Linear(n, 10, dtype=torch.bfloat16)

    def forward(self, x, offsets):
        return self.head(F.grouped_mm(self.inp(x), self.stack, offs=offsets))


@pytest.mark.skipif(not hasattr(F, "grouped_mm"), reason="torch.nn.functional.grouped_mm needs torch >= 2.10")
def test_torch_grouped_mm_reads_the_group_axis():
    offsets = torch.tensor([3, 7, 10], dtype=torch.int32)
    traced = sptrace.trace(GroupedMatmulExperts(64), torch.randn(10, 16, dtype=torch.bfloat16), offsets)
    stack = traced["stack"]  # (groups, in, out): grouped_mm's own layout
    assert (stack.kind.value, stack.fan_in_axes, stack.fan_out_axes, stack.uses[0].group_axes) == ("matrix", (1,), (2,), (0,))
    assert stack.width_dims == (1, 2)


def test_experts_fed_rows_of_a_data_dependent_count():
    """JetMoE splits the routed rows per expert with data-dependent sizes (export leaves the row count
    symbolic) and loops over a (experts, out, in) stack, in its MLP and in its attention heads: the
    unknown row count must not hide the contraction."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.JetMoeConfig(hidden_size=64, intermediate_size=64, num_hidden_layers=1, num_key_value_heads=2,
                                    kv_channels=16, num_local_experts=EXPERTS, num_experts_per_tok=2, vocab_size=77,
                                    max_position_embeddings=64, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    traced = sptrace.trace(transformers.JetMoeForCausalLM(cfg), TOKENS)
    assert not traced.unclassified, [(r.name, r.problem) for r in traced.unclassified]
    stacks = [r for r in traced if r.name.endswith(("input_linear.weight", "output_linear.weight"))]
    assert len(stacks) == 4
    for record in stacks:
        assert (record.kind.value, record.fan_in_axes, record.fan_out_axes, record.uses[0].group_axes,
                record.width_dims) == ("matrix", (2,), (1,), (0,), (1, 2)), record.name
    routers = [r for r in traced if r.name.endswith("router.layer.weight")]
    assert len(routers) == 2 and all(r.role.value == "readout" and r.selected_by for r in routers)


class SharedExpertsWeighed(nn.Module):
    """Inkling's router: logits for E routed and S shared experts; the top-k routed logits (``gather``)
    and the shared ones are concatenated and normalised together, and the shared experts' weights
    (a stacked ``(S, n, n)`` parameter, applied by ``bmm``) are the last S of them."""

    def __init__(self, n, routed=4, shared=2, k=2):
        super().__init__()
        self.routed, self.shared_count, self.k = routed, shared, k
        self.inp, self.gate, self.head = nn.Linear(8, n), nn.Linear(n, routed + shared, bias=False), nn.Linear(n, 3)
        self.shared = nn.Parameter(torch.randn(shared, n, n) / n ** 0.5)

    def forward(self, x):
        h = self.inp(x)
        logits = self.gate(h)
        chosen = torch.topk(logits[..., :self.routed], self.k, dim=-1)[1]
        weights = torch.cat([logits[..., :self.routed].gather(-1, chosen), logits[..., -self.shared_count:]], -1)
        gammas = weights.softmax(-1)[..., -self.shared_count:].reshape(-1, self.shared_count, 1).transpose(0, 1)
        out = torch.bmm(h.reshape(1, -1, h.shape[-1]).expand(self.shared_count, -1, -1), self.shared) * gammas
        return self.head(out.sum(0))


def test_shared_expert_count_is_fixed():
    """The shared experts' count is a fixed number of alternatives: the top-k's k is an argument
    (fixed), a ``gather`` by the top-k's positions has their count, so the concatenation of the
    chosen and the shared logits is a sum of fixed parts, and its last S entries weigh the shared
    experts. (Since splits and concatenations are sums, the count was taken for width.)"""
    traced = sptrace.trace(SharedExpertsWeighed(64), torch.randn(5, 8))
    assert traced["shared"].width_dims == (1, 2)
    assert traced["gate.weight"].width_dims == (1,)


class HashRoutedExperts(nn.Module):
    """DeepSeek-V4's hash routing: which experts a token goes to is a fixed table looked up by its
    id (``tid2eid[ids]``, a buffer), not a top-k of the router's scores; the router's scores
    (``sqrt(softplus(logits))``) are gathered at those expert ids and weigh the chosen experts,
    whose stacked weights are picked by the same ids. No ranking reaches the router."""

    def __init__(self, n, vocab=77, experts=4, k=2):
        super().__init__()
        self.embed = nn.Embedding(vocab, n)
        self.gate = nn.Linear(n, experts, bias=False)
        self.register_buffer("tid2eid", torch.randint(0, experts, (vocab, k), generator=torch.Generator().manual_seed(0)))
        self.stack = nn.Parameter(torch.randn(experts, n, n) / n ** 0.5)
        self.head = nn.Linear(n, vocab)

    def forward(self, ids):
        h = self.embed(ids).flatten(0, 1)
        scores = F.softplus(self.gate(h)).sqrt()
        chosen = self.tid2eid[ids.flatten()]
        weights = scores.gather(1, chosen)
        weights = weights / weights.sum(-1, keepdim=True)
        out = torch.einsum("tkij,tj->tki", self.stack[chosen], h)
        return self.head((out * weights.unsqueeze(-1)).sum(1))


def test_a_router_gathered_at_the_experts_ids_is_a_readout_over_the_experts():
    """The ids that gather the router's scores also pick the experts' stack: the scores' axis and the
    stack's expert axis are indexed by the same integers, so they are one dim, the fixed expert
    count (graph/axes.py, docs/classification.md "Width dims"). Before, nothing tied the router's
    out axis to anything and automatic mode took it for width (a hidden matrix whose fan-out grows)."""
    traced = sptrace.trace(HashRoutedExperts(64), TOKENS)
    assert not traced.unclassified, [(r.name, r.problem) for r in traced.unclassified]
    assert traced["stack"].width_dims == (1, 2)
    gate = traced["gate.weight"]
    assert (gate.kind.value, gate.role.value, gate.width_dims) == ("vector", "readout", (1,)), gate.dims


def test_ids_that_index_axes_of_other_sizes_tie_nothing():
    """The same ids indexing an axis of another size (a table longer than the expert count) say only
    that the ids fit both: the sizes differ, no tie, and the router's out axis stays as before."""

    class Longer(HashRoutedExperts):
        def __init__(self, n):
            super().__init__(n)
            self.extra = nn.Parameter(torch.randn(6, n))

        def forward(self, ids):
            h = self.embed(ids).flatten(0, 1)
            chosen = self.tid2eid[ids.flatten()]
            picked = F.softplus(self.gate(h)).gather(1, chosen)
            return self.head(self.extra[chosen].sum(1) * picked.sum(-1, keepdim=True))

    traced = sptrace.trace(Longer(64), TOKENS)
    assert traced["extra"].width_dims == (1,)  # its 6 rows: picked by ids, a lookup table
    assert traced["gate.weight"].width_dims == (0, 1)


class HashRoutedGroupedExperts(nn.Module):
    """Hugging Face's grouped-matmul experts behind a hash router: the rows are sorted by expert id,
    the ids counted per expert (``histc`` over 0 .. E - 1, on floats as CPU's kernel takes them) and
    cumulated into ``grouped_mm``'s offsets, one per group."""

    def __init__(self, n, vocab=77, experts=4, k=2):
        super().__init__()
        self.k, self.experts = k, experts
        self.embed = nn.Embedding(vocab, n, dtype=torch.bfloat16)
        self.gate = nn.Linear(n, experts, bias=False, dtype=torch.bfloat16)
        self.register_buffer("tid2eid", torch.randint(0, experts, (vocab, k), generator=torch.Generator().manual_seed(0)))
        self.stack = nn.Parameter(torch.randn(experts, n, n, dtype=torch.bfloat16) / n ** 0.5)
        self.head = nn.Linear(n, vocab, dtype=torch.bfloat16)

    def forward(self, ids):
        h = self.embed(ids).flatten(0, 1)
        chosen = self.tid2eid[ids.flatten()]
        weights = F.softplus(self.gate(h)).sqrt().gather(1, chosen)
        ids_sorted, order = chosen.reshape(-1).sort()
        offsets = torch.histc(ids_sorted.float(), self.experts, 0, self.experts - 1).cumsum(0).to(torch.int32)
        out = F.grouped_mm(h[order // self.k], self.stack, offs=offsets) * weights.reshape(-1)[order, None]
        return self.head(out)


@pytest.mark.skipif(not hasattr(F, "grouped_mm"), reason="torch.nn.functional.grouped_mm needs torch >= 2.10")
def test_a_router_gathered_at_ids_that_count_a_grouped_matmul_s_rows_is_a_readout():
    traced = sptrace.trace(HashRoutedGroupedExperts(64), TOKENS)
    assert traced["stack"].width_dims == (1, 2)
    gate = traced["gate.weight"]
    assert (gate.kind.value, gate.role.value, gate.width_dims) == ("vector", "readout", (1,)), gate.dims


def test_a_sparsemixer_router_ranked_by_max_is_a_readout_over_the_experts():
    """PhiMoE's sparsemixer picks each token's experts with ``scores.max(dim=-1)`` (no top-k): max along a
    dim ranks like a top-1 (graph/ops.py RANKINGS). Read as a reduction, the expert count was a width
    axis, the router a weight at the library's init, and validate failed under Adam (its nat@0 +0.50)."""
    from sptrace.validation import catalog

    traced = sptrace.trace(catalog.hf_model("phimoe", 64), TOKENS)
    routers = [r for r in traced if r.name.endswith("mlp.router.weight")]
    assert len(routers) == catalog.LAYERS
    for router in routers:
        assert (router.role.value, router.width_dims, router.shape[0]) == ("readout", (1,), catalog.EXPERTS), router
        assert "max" in router.selected_by
