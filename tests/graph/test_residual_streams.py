"""Copies of the hidden state combined again (graph/axes.py, docs/classification.md "Width dims"):
hyper-connections keep ``n`` residual streams, made by broadcasting the embedding to ``n`` copies
and, after each block, by weighing the block's output per stream; every read of them is a weighted
sum over the streams. ``n`` is a count of the construction (DeepSeek-V4's ``hc_mult`` = 4), so the
mixing projections, whose outputs are ``n`` + ``n`` + ``n x n`` weights per token, are readouts of
the hidden state. Copies that are never summed again (a key/value head repeated to its query heads)
are not such a count and keep what the rest of the graph says."""
import torch
import torch.nn as nn
import torch.nn.functional as F

import sptrace

TOKENS = torch.randint(0, 77, (2, 16), generator=torch.Generator().manual_seed(0))


class ResidualStreams(nn.Module):
    """mHC reduced to its shapes: ``fn`` maps the flattened streams (n x d) to pre (n), post (n)
    and comb (n x n) weights; pre collapses the streams into the block's input, post spreads the
    block's output over the streams, comb mixes the old streams into the new ones."""

    def __init__(self, d, streams=4, layers=2):
        super().__init__()
        self.n = streams
        self.embed = nn.Embedding(77, d)
        self.fn = nn.ParameterList(nn.Parameter(torch.randn((2 + streams) * streams, streams * d) / (streams * d) ** 0.5)
                                   for _ in range(layers))
        self.blocks = nn.ModuleList(nn.Linear(d, d) for _ in range(layers))
        self.head_fn = nn.Parameter(torch.randn(streams, streams * d) / (streams * d) ** 0.5)
        self.out = nn.Linear(d, 77)

    def forward(self, ids):
        n = self.n
        x = self.embed(ids).unsqueeze(2).expand(-1, -1, n, -1)
        for fn, block in zip(self.fn, self.blocks):
            pre, post, comb = F.linear(x.flatten(2), fn).split([n, n, n * n], -1)
            comb = comb.unflatten(-1, (n, n)).softmax(-1)
            collapsed = (torch.sigmoid(pre).unsqueeze(-1) * x).sum(2)
            x = torch.sigmoid(post).unsqueeze(-1) * block(collapsed).unsqueeze(-2) + comb.transpose(-1, -2) @ x
        pre = torch.sigmoid(F.linear(x.flatten(2), self.head_fn))
        return self.out((pre.unsqueeze(-1) * x).sum(2))


def test_residual_stream_count_is_fixed_and_the_mixing_projections_are_readouts():
    traced = sptrace.trace(ResidualStreams(64), TOKENS)
    assert not traced.unclassified, [(r.name, r.problem) for r in traced.unclassified]
    for name in ("fn.0", "fn.1", "head_fn"):
        record = traced[name]
        assert (record.kind.value, record.role.value, record.width_dims) == ("vector", "readout", (1,)), record.dims
    assert traced["blocks.0.weight"].role.value == "hidden" and traced["blocks.0.weight"].width_dims == (0, 1)


class RepeatedHeads(nn.Module):
    """One key/value head repeated to ``h`` query heads (GQA's ``repeat_kv``: an expand of a size-1
    axis, then merged with the head axis), never summed over the copies."""

    def __init__(self, d, heads=4, head_dim=16):
        super().__init__()
        self.h, self.hd = heads, head_dim
        self.embed = nn.Embedding(77, d)
        self.q = nn.Linear(d, heads * head_dim)
        self.kv = nn.Linear(d, head_dim)
        self.o = nn.Linear(heads * head_dim, d)
        self.out = nn.Linear(d, 77)

    def forward(self, ids):
        x = self.embed(ids)
        b, s, _ = x.shape
        q = self.q(x).view(b, s, self.h, self.hd).transpose(1, 2)
        kv = self.kv(x).view(b, 1, s, self.hd).expand(b, self.h, s, self.hd)
        y = F.scaled_dot_product_attention(q, kv, kv).transpose(1, 2).reshape(b, s, -1)
        return self.out(self.o(y))


def test_copies_never_summed_again_are_left_alone():
    before = {r.name: r.width_dims for r in sptrace.trace(RepeatedHeads(64), TOKENS)}
    assert before["q.weight"] == (0, 1) and before["o.weight"] == (0, 1)
