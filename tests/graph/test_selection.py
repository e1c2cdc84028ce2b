"""graph/selection.py: a readout whose output reaches top-k (a router) is marked; others are not. A
readout whose output is normalised before anything else joins it is marked ``normalized_by`` and keeps
its rule's init under zero_readout="auto" (zero would normalise to 0/0)."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import sptrace
from sptrace.planning.readouts import ROUTER_INIT_SCALE


class TopKMoE(nn.Module):
    """A router (n -> experts) whose logits pick 2 experts, two experts, and a readout head."""

    def __init__(self, n, experts=4, classes=10):
        super().__init__()
        self.inp = nn.Linear(16, n)
        self.router = nn.Linear(n, experts)
        self.experts = nn.ModuleList(nn.Linear(n, n) for _ in range(experts))
        self.head = nn.Linear(n, classes)

    def forward(self, x):
        h = torch.relu(self.inp(x))
        gates = torch.softmax(self.router(h), dim=-1)
        weight, index = torch.topk(gates, 2, dim=-1)
        mixed = sum(weight[:, k:k + 1] * torch.stack([e(h) for e in self.experts], 1)[torch.arange(len(h)), index[:, k]]
                    for k in range(2))
        return self.head(torch.relu(mixed))


# The expert count is read from the graph (the axis top-k ranks, graph/axes.py) and from a base model
# alike (tests/graph/test_moe.py has the Hugging Face MoE layers).
@pytest.mark.parametrize("with_base", [False, True])
def test_a_router_feeding_topk_is_marked_and_the_head_is_not(with_base):
    traced = sptrace.trace(TopKMoE(64), torch.randn(4, 16), base=TopKMoE(32) if with_base else None)
    assert traced["router.weight"].role.value == "readout" and traced["router.weight"].selected_by
    assert "topk" in traced["router.weight"].selected_by
    assert traced["head.weight"].role.value == "readout" and traced["head.weight"].selected_by is None
    assert traced["inp.weight"].selected_by is None  # the walk stops at the next parameter's op


def test_zero_readout_auto_zeroes_the_head_and_starts_the_router_near_zero():
    torch.manual_seed(0)
    model = TopKMoE(64)
    sptrace.parametrize(model, "adam", example_inputs=(torch.randn(4, 16),), base=TopKMoE(32))
    assert not model.head.weight.any()
    assert model.router.weight.std() > 0  # zero logits would tie every expert in top-k
    torch.manual_seed(0)
    forced = TopKMoE(64)
    sptrace.parametrize(forced, "adam", example_inputs=(torch.randn(4, 16),), base=TopKMoE(32), zero_readout=True)
    assert not forced.router.weight.any()
    torch.manual_seed(0)
    off = TopKMoE(64)
    sptrace.parametrize(off, "adam", example_inputs=(torch.randn(4, 16),), base=TopKMoE(32), zero_readout=False)
    assert off.head.weight.any()
    # "auto" starts the router near zero: the readout rule's init x ROUTER_INIT_SCALE (planning/readouts.py)
    assert torch.allclose(model.router.weight, off.router.weight * ROUTER_INIT_SCALE, rtol=1e-5, atol=0)



class TopOneMoE(nn.Module):
    """A Switch-style top-1 router written by hand: ``probs.max(-1)`` picks each row's expert (values
    and indices, no top-k), and each expert of a ModuleList runs on the rows that chose it."""

    def __init__(self, n, experts=4, classes=10):
        super().__init__()
        self.inp = nn.Linear(16, n)
        self.router = nn.Linear(n, experts, bias=False)
        self.experts = nn.ModuleList(nn.Linear(n, n) for _ in range(experts))
        self.head = nn.Linear(n, classes)

    def forward(self, x):
        h = torch.relu(self.inp(x))
        weight, choice = self.router(h).softmax(-1).max(-1)
        mixed = sum(torch.where((choice == e)[:, None], expert(h), 0.0) for e, expert in enumerate(self.experts))
        return self.head(torch.relu(mixed * weight[:, None]))


def test_a_top_one_router_by_max_along_a_dim_ranks_a_fixed_count_of_experts():
    # max / min along a dim return (values, indices) like top-1 (graph/ops.py RANKINGS); as a reduction
    # the 4 experts were read as a width axis: a hidden weight kept at the library init (nat@0 +0.45)
    traced = sptrace.trace(TopOneMoE(64), torch.randn(4, 16))
    router = traced["router.weight"]
    assert [d.width for d in router.dims] == [False, True], router.dims
    assert router.role.value == "readout" and router.selected_by
    torch.manual_seed(0)
    model = TopOneMoE(64)
    sptrace.parametrize(model, "adam", example_inputs=(torch.randn(4, 16),))
    assert 0 < model.router.weight.std() < 1e-3 and not model.head.weight.any()


class TwoTowers(nn.Module):
    """CLIP's head: each tower projects to a fixed embedding size, the embeddings are normalised
    (``z / z.norm()``, or ``F.normalize``) and their cosine similarities scaled by a learned temperature.
    The embeddings are returned, so their size is the data's (a seed, graph/axes.py)."""

    def __init__(self, n, embed=12, functional=False):
        super().__init__()
        self.a, self.b = nn.Linear(10, n), nn.Linear(6, 2 * n)
        self.proj_a, self.proj_b = nn.Linear(n, embed, bias=False), nn.Linear(2 * n, embed, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(2.6592))
        self.functional = functional

    def _norm(self, z):
        return F.normalize(z, dim=-1) if self.functional else z / z.pow(2).sum(-1, keepdim=True).pow(0.5)

    def forward(self, x, y):
        za = self._norm(self.proj_a(torch.relu(self.a(x))))
        zb = self._norm(self.proj_b(torch.relu(self.b(y))))
        return self.logit_scale.exp() * za @ zb.t(), za, zb  # CLIPModel returns the embeddings too


class NormedHead(nn.Module):
    """A projection head ending in a norm layer (SimSiam's BatchNorm, a LayerNorm), and a readout whose
    output is added to another activation before a norm (not zero at init: not marked)."""

    def __init__(self, n, norm="batch"):
        super().__init__()
        self.inp, self.proj, self.side = nn.Linear(10, n), nn.Linear(n, 8), nn.Linear(n, 8)
        self.norm = nn.BatchNorm1d(8, affine=False) if norm == "batch" else nn.LayerNorm(8)

    def forward(self, x):
        h = torch.relu(self.inp(x))
        return self.norm(self.proj(h)), nn.functional.layer_norm(self.side(h) + x[:, :8], (8,))


@pytest.mark.parametrize("functional", [False, True])
@pytest.mark.parametrize("routes", [("export",), ("eager",)])
def test_a_normalised_readout_is_marked_and_keeps_its_init(functional, routes):
    inputs = (torch.randn(4, 10), torch.randn(4, 6))
    traced = sptrace.trace(TwoTowers(64, functional=functional), *inputs, routes=routes)
    for name in ("proj_a.weight", "proj_b.weight"):
        assert traced[name].role.value == "readout" and traced[name].normalized_by and traced[name].selected_by is None
    assert traced["a.weight"].normalized_by is None  # the walk stops at the next parameter's op
    torch.manual_seed(0)
    model = TwoTowers(64, functional=functional)
    opt = sptrace.parametrize(model, "sgd", lr=0.1, example_inputs=inputs)
    assert model.proj_a.weight.any() and model.proj_b.weight.any()  # zero would normalise to 0/0
    loss = model(*inputs)[0].logsumexp(-1).mean()
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and all(torch.isfinite(p).all() for p in model.parameters())
    forced = TwoTowers(64, functional=functional)
    sptrace.parametrize(forced, "sgd", lr=0.1, example_inputs=inputs, zero_readout=True)
    assert not forced.proj_a.weight.any()  # True zeroes every readout, as documented


@pytest.mark.parametrize("norm", ["batch", "layer"])
def test_a_readout_under_a_norm_layer_is_marked_and_one_beside_an_activation_is_not(norm):
    traced = sptrace.trace(NormedHead(64, norm), torch.randn(4, 10))
    assert traced["proj.weight"].role.value == "readout" and traced["proj.weight"].normalized_by
    assert traced["side.weight"].role.value == "readout" and traced["side.weight"].normalized_by is None


class Prototypes(torch.nn.Module):
    """A cosine classifier: the features' cosine similarity with 10 learned prototypes, scaled."""

    def __init__(self, n):
        super().__init__()
        self.body = torch.nn.Linear(16, n)
        self.protos = torch.nn.Parameter(torch.randn(10, n))

    def forward(self, x):
        features = torch.relu(self.body(x)).unsqueeze(1)
        return 10 * torch.nn.functional.cosine_similarity(features, self.protos.unsqueeze(0), dim=-1)


def test_prototypes_read_by_cosine_similarity_are_a_normalised_readout():
    """cosine_similarity contracts its inputs' ``dim`` axes, each normalised: the prototypes are a
    readout (fan-in the features, fan-out the classes) whose use normalises them, so they keep their
    init (at zero the similarity is 0/0). Export keeps the op whole (the eager route decomposes it
    into a norm clamped by ``clamp_min``, not understood: unclassified there)."""
    x = torch.randn(4, 16)
    protos = sptrace.trace(Prototypes(64), x, routes=("export",))["protos"]
    assert (protos.kind.value, protos.role.value, protos.fan_in_axes, protos.fan_out_axes) == ("vector", "readout", (1,), (0,))
    assert protos.normalized_by is not None
    torch.manual_seed(0)
    model = Prototypes(64)
    opt = sptrace.parametrize(model, "adam", example_inputs=(x,))
    assert model.protos.any()
    loss = model(x).logsumexp(-1).mean()
    loss.backward()
    opt.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())


class CosineHead(torch.nn.Module):
    """A projection to 8 features, returned, and compared by cosine similarity with 4 fixed anchors
    (the returned embedding's size is the data's, as in :class:`TwoTowers`)."""

    def __init__(self, n):
        super().__init__()
        self.body, self.proj = torch.nn.Linear(16, n), torch.nn.Linear(n, 8)
        self.register_buffer("anchors", torch.randn(4, 8))

    def forward(self, x):
        z = self.proj(torch.relu(self.body(x))).unsqueeze(1)
        return torch.nn.functional.cosine_similarity(z, self.anchors.unsqueeze(0), dim=-1), z


def test_a_readout_whose_output_cosine_similarity_normalises_is_marked():
    proj = sptrace.trace(CosineHead(64), torch.randn(4, 16), routes=("export",))["proj.weight"]
    assert proj.role.value == "readout" and proj.normalized_by is not None
