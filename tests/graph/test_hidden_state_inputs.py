"""Inputs that are another network's hidden states, and ``where`` on a parameter (issue 11: the
parameters the text inputs never reach, Gemma 4's token embedding).

graph/axes.py: beside token ids, a float input whose last axis a parameter reads as features, of
the size of a hidden width, is an encoder's output of the model's width (width); of another size,
or without token ids (a plain float input), it is data (fixed). graph/uses.py: a parameter as a
value operand of ``where`` is placed into the activation, an embedding use."""
import pytest
import torch
import torch.nn as nn

import sptrace
from sptrace.types import Kind, Role
from tests.external_models import catalog_trace


class CrossDecoder(nn.Module):
    """Token ids and an encoder's states ``memory``, read by a key/value projection (cross-attention)."""

    def __init__(self, width=32, memory_dim=32):
        super().__init__()
        self.emb = nn.Embedding(77, width)
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(memory_dim, width)
        self.head = nn.Linear(width, 77)

    def forward(self, ids, memory):
        h = self.emb(ids)
        kv = self.kv(memory)
        att = torch.softmax(self.q(h) @ kv.transpose(1, 2) / kv.shape[-1] ** 0.5, dim=-1)
        return self.head(h + att @ kv)


def _trace(model, memory_dim, ids=True):
    first = torch.randint(0, 77, (2, 8)) if ids else torch.randn(2, 8, 32)
    return sptrace.trace(model, first, torch.randn(2, 3, memory_dim))


def test_encoder_states_of_the_model_width_are_width():
    record = _trace(CrossDecoder(), 32)["kv.weight"]
    assert (record.kind, record.role) == (Kind.MATRIX, Role.HIDDEN)
    assert all(d.width for d in record.dims)


def test_encoder_states_of_another_size_are_data():
    record = _trace(CrossDecoder(memory_dim=12), 12)["kv.weight"]
    assert record.role is Role.INPUT
    assert [d.width for d in record.dims] == [True, False] and "input" in record.dims[1].reason


class FloatInputs(nn.Module):
    """Two float inputs, no token ids: both are data, whatever their sizes."""

    def __init__(self, width=32):
        super().__init__()
        self.first = nn.Linear(32, width)
        self.kv = nn.Linear(32, width)
        self.head = nn.Linear(width, 10)

    def forward(self, x, memory):
        return self.head(torch.relu(self.first(x)) + self.kv(memory).mean(1, keepdim=True))


def test_without_token_ids_a_float_input_of_width_size_is_data():
    traced = _trace(FloatInputs(), 32, ids=False)
    assert traced["kv.weight"].role is Role.INPUT and traced["first.weight"].role is Role.INPUT


class MaskedRows(nn.Module):
    """``where`` places parameter entries into the activation: a row of the (tied) token table at
    the positions of one id, and a learned mask vector where the mask says."""

    def __init__(self, width=32):
        super().__init__()
        self.emb = nn.Embedding(77, width)
        self.mask_token = nn.Parameter(torch.randn(width))
        self.body = nn.Linear(width, width)

    def forward(self, ids):
        h = self.emb(ids)
        h = torch.where((ids == 0).unsqueeze(-1), self.emb.weight[1], h)
        h = torch.where((ids == 2).unsqueeze(-1), h, self.mask_token)
        return self.body(h) @ self.emb.weight.t()


def test_where_with_a_parameter_value_is_an_embedding_use():
    traced = sptrace.trace(MaskedRows(), torch.randint(0, 77, (2, 8)))
    assert not traced.unclassified, [(r.name, r.problem) for r in traced.unclassified]
    table = traced["emb.weight"]
    assert (table.role, table.fan_in_axes, table.fan_out_axes) == (Role.EMBEDDING, (0,), (1,))
    assert [u.op for u in table.uses] == ["embedding", "where", "matmul"]
    mask = traced["mask_token"]
    assert (mask.role, mask.fan_out_axes) == (Role.EMBEDDING, (0,)) and mask.dims[0].width


@pytest.mark.slow  # 5-15 s: Gemma 4's build and export on meta
def test_gemma4_tied_embedding_is_classified():
    """The catalog model that showed it: Gemma 4 puts a row of its tied token embedding at some
    positions with ``where`` (left unclassified before; docs/coverage.md)."""
    traced = catalog_trace("gemma4")
    assert not traced.unclassified, [(r.name, r.problem) for r in traced.unclassified]
    table = traced["lm_head.weight"]
    assert "where" in [u.op for u in table.uses] and table.role is Role.EMBEDDING
    assert [u.role for u in table.secondary_uses] == [Role.READOUT]


class WhereFill(nn.Module):
    """``torch.where(mask, p, x)`` in a model of float inputs: the parameter replaces masked
    activations (was reported as an op sptrace does not understand)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(6, 16)
        self.fill = nn.Parameter(torch.zeros(16))
        self.out = nn.Linear(16, 3)

    def forward(self, x):
        h = self.fc(x)
        return self.out(torch.where(h > 0, self.fill, h))


@pytest.mark.parametrize("route", ["export", "eager"])
def test_where_fill_on_both_routes(route):
    traced = sptrace.trace(WhereFill(), torch.randn(4, 6), routes=(route,))
    record = traced["fill"]
    assert (record.kind, record.role, record.fan_in_axes, record.fan_out_axes) == (Kind.VECTOR, Role.EMBEDDING, (), (0,))
