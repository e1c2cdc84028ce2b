"""A parameter that ``scaled_dot_product_attention`` reads directly as its query, key or value (no
projection between): an attention-pooling head's learned query (HF AIMv2's ``cls_token``), learned
memory tokens. They are tokens of the network's own, as a table a layer reads as data is
(test_tables_as_data.py): an embedding whose features (heads × head size) are the fan-out and whose
token axis is a count.

Before, the op table knew the attention op but no rule said what a parameter operand of it is: the
parameter was left unclassified ("a parameter used as argument 'query' of an op sptrace does not
understand"), 1 tensor in each of HF ``aimv2`` and ``aimv2_vision_model`` at width 64 (the catalog
scan of AutoModel types, docs/coverage.md).
"""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import sptrace


def _row(record):
    return (record.kind.value, record.role.value, record.fan_in_axes, record.fan_out_axes, record.width_dims)


class AttentionPool(nn.Module):
    """``queries`` learned tokens attend to the data, read by SDPA as they are (AIMv2's pooling
    head)."""

    def __init__(self, n, heads=None, queries=1):
        super().__init__()
        self.heads = heads or n // 16
        self.inp, self.head = nn.Linear(10, n), nn.Linear(n, 3)
        self.query = nn.Parameter(torch.randn(1, queries, n))
        self.k, self.v = nn.Linear(n, n), nn.Linear(n, n)

    def _split(self, t):
        return t.reshape(t.shape[0], t.shape[1], self.heads, -1).transpose(1, 2)

    def forward(self, x):
        h = self.inp(x)
        b = x.shape[0]
        q = self._split(self.query.expand(b, -1, -1))
        a = F.scaled_dot_product_attention(q, self._split(self.k(h)), self._split(self.v(h)))
        return self.head(a.transpose(1, 2).reshape(b, -1, h.shape[-1]).mean(1))


@pytest.mark.parametrize("route", ["export", "eager"])
def test_a_learned_query_read_by_the_attention_is_an_embedding(route):
    traced = sptrace.trace(AttentionPool(64), torch.randn(2, 5, 10), routes=(route,))
    assert not traced.unclassified, [(r.name, r.problem) for r in traced.unclassified]
    assert _row(traced["query"]) == ("vector", "embedding", (), (2,), (2,))
    assert "attention" in traced["query"].uses[0].op, traced["query"].uses
    assert _row(traced["k.weight"]) == ("matrix", "hidden", (1,), (0,), (0, 1))


class Memory(nn.Module):
    """The data's tokens attend to learned key and value tokens alone (a memory read by SDPA)."""

    def __init__(self, n, slots=7):
        super().__init__()
        self.inp, self.q, self.head = nn.Linear(10, n), nn.Linear(n, n), nn.Linear(n, 3)
        self.mem_k, self.mem_v = nn.Parameter(torch.randn(slots, n)), nn.Parameter(torch.randn(slots, n))

    def forward(self, x):
        b, t, n = x.shape[0], x.shape[1], self.q.out_features
        split = lambda z: z.reshape(z.shape[0], z.shape[1], n // 16, 16).transpose(1, 2)  # noqa: E731
        mem = lambda p: split(p.expand(b, -1, -1))  # noqa: E731
        a = F.scaled_dot_product_attention(split(self.q(self.inp(x))), mem(self.mem_k), mem(self.mem_v))
        return self.head(a.transpose(1, 2).reshape(b, t, n))


def test_learned_keys_and_values_read_by_the_attention_are_embeddings():
    traced = sptrace.trace(Memory(64), torch.randn(2, 5, 10))
    assert not traced.unclassified, [(r.name, r.problem) for r in traced.unclassified]
    for name in ("mem_k", "mem_v"):
        assert _row(traced[name]) == ("vector", "embedding", (0,), (1,), (1,)), name
    assert _row(traced["q.weight"]) == ("matrix", "hidden", (1,), (0,), (0, 1))


def test_several_learned_queries_are_a_count():
    """Learned queries as many as the width: the token axis is still a count, not width."""
    traced = sptrace.trace(AttentionPool(64, queries=64), torch.randn(2, 5, 10))
    assert not traced.unclassified, [(r.name, r.problem) for r in traced.unclassified]
    assert _row(traced["query"]) == ("vector", "embedding", (1,), (2,), (2,))


def test_base_mode_agrees_with_the_shapes():
    with torch.device("meta"):
        base = AttentionPool(32, heads=2, queries=3)
    traced = sptrace.trace(AttentionPool(64, heads=4, queries=3), torch.randn(2, 5, 10), base=base)
    assert not traced.unclassified, [(r.name, r.problem) for r in traced.unclassified]
    for record in traced:
        differ = tuple(a for a, (n, b) in enumerate(zip(record.shape, record.base_shape)) if n != b)
        assert record.width_dims == differ, record.name


def test_hugging_face_aimv2_pooling_query():
    """HF AIMv2's vision tower at width 64 (random weights, built from its config): its pooling
    head's ``cls_token`` is the query SDPA reads; every parameter is classified."""
    transformers = pytest.importorskip("transformers")
    config = transformers.AutoConfig.for_model("aimv2_vision_model", hidden_size=64, intermediate_size=128,
                                               num_hidden_layers=1, num_attention_heads=4, image_size=28,
                                               patch_size=14, use_head=True)
    torch.manual_seed(0)
    model = transformers.AutoModel.from_config(config)
    traced = sptrace.trace(model, pixel_values=torch.randn(2, 3, 28, 28))
    assert not traced.unclassified, [(r.name, r.problem) for r in traced.unclassified]
    query = next(r for r in traced if r.name.endswith("head.cls_token"))
    assert _row(query) == ("vector", "embedding", (), (2,), (2,))
