"""Inner products of two activations over a width axis that reach no softmax (graph/attention.py
``_product_site``): listed with the attention sites, warned about by ``parametrize``."""
import warnings

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import sptrace
from sptrace.types import SptraceWarning


class Interactions(nn.Module):
    """DLRM's feature interactions: the pairwise dot products of per-feature embeddings."""

    def __init__(self, d: int, scale: float = 1.0, features: int = 3):
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(20, d) for _ in range(features))
        self.scale = scale
        self.top = nn.Linear(features * features, 5)

    def forward(self, ids):
        z = torch.stack([t(ids[:, i]) for i, t in enumerate(self.tables)], 1)  # (B, F, d)
        inter = torch.bmm(z, z.transpose(1, 2)) * self.scale
        return self.top(inter.flatten(1))


class Similarity(nn.Module):
    """Two towers (lookup tables) and their similarity: a plain dot product (``norm=None``), or the
    operands divided by a norm over d: ``"l2"`` (``F.normalize`` and ``x / x.norm()``), ``"written"``
    (HF CLIP's ``x / pow(sum(pow(x, 2)), 0.5)``), ``"l1"`` (no unit vector: entries ~ 1/d)."""

    def __init__(self, d: int, norm=None):
        super().__init__()
        self.users, self.items, self.norm = nn.Embedding(20, d), nn.Embedding(30, d), norm

    def forward(self, ids):
        u, v = self.users(ids[:, 0]), self.items(ids[:, 1])
        if self.norm == "l2":
            u, v = F.normalize(u, dim=-1), v / v.norm(dim=-1, keepdim=True)
        elif self.norm == "written":
            u, v = (t / torch.pow(torch.sum(torch.pow(t, 2), dim=-1, keepdim=True), 0.5) for t in (u, v))
        elif self.norm == "l1":
            u, v = (t / t.norm(p=1, dim=-1, keepdim=True) for t in (u, v))
        return u @ v.t()


class BufferScaled(nn.Module):
    """A similarity scaled by a 0-d buffer holding 1/d: capture records its value, and the site reads it."""

    def __init__(self, d: int):
        super().__init__()
        self.users, self.items = nn.Embedding(20, d), nn.Embedding(30, d)
        self.register_buffer("scale", torch.tensor(1.0 / d))

    def forward(self, ids):
        return (self.users(ids[:, 0]) @ self.items(ids[:, 1]).t()) * self.scale


class TowersOfLayers(nn.Module):
    """A similarity of two MLP towers' outputs: no layer reads that axis, so automatic mode cannot
    tell it from a head_dim or a state size and stays quiet (docs/classification.md)."""

    def __init__(self, d: int, out=None):
        super().__init__()
        self.a = nn.Sequential(nn.Linear(10, d), nn.ReLU(), nn.Linear(d, out or d))
        self.b = nn.Sequential(nn.Linear(10, d), nn.ReLU(), nn.Linear(d, out or d))

    def forward(self, x):
        return self.a(x) @ self.b(x).t()


def _ids():
    return torch.randint(0, 20, (4, 3))


@pytest.mark.parametrize("route", ["export", "eager"])
def test_feature_interactions_over_width_are_a_product_site(route):
    [site] = sptrace.trace(Interactions(64), _ids(), routes=(route,)).attention
    assert (site.kind, site.head_dim, site.head_dim_is_width, site.scale) == ("product", 64, True, 1.0)
    assert site.width_stable is False
    assert "inner product of two activations over a width axis of 64" in sptrace.trace(Interactions(64), _ids()).report()


def test_a_product_scaled_by_one_over_width_is_stable():
    [site] = sptrace.trace(Interactions(64, scale=1 / 64), _ids()).attention
    assert site.scale == pytest.approx(1 / 64) and site.width_stable


@pytest.mark.parametrize("norm, listed", [(None, True), ("l2", False), ("written", False), ("l1", True)])
def test_a_cosine_of_unit_vectors_is_bounded(norm, listed):
    sites = sptrace.trace(Similarity(64, norm), _ids()).attention
    assert bool(sites) == listed


@pytest.mark.parametrize("route", ["export", "eager"])
def test_a_scale_held_in_a_buffer_is_read(route):
    [site] = sptrace.trace(BufferScaled(64), _ids(), routes=(route,)).attention
    assert site.scale == pytest.approx(1 / 64) and site.width_stable


def test_an_axis_no_layer_reads_is_not_listed():
    assert sptrace.trace(TowersOfLayers(64), torch.randn(3, 10)).attention == []


def test_with_a_base_an_axis_no_layer_reads_is_listed_where_it_grows():
    """The base says which axes grow, so the towers' similarity over theirs is a product site; one
    over an axis the base shows to be fixed is not."""
    [site] = sptrace.trace(TowersOfLayers(64), torch.randn(3, 10), base=TowersOfLayers(16)).attention
    assert (site.kind, site.head_dim, site.head_dim_is_width, site.width_stable) == ("product", 64, True, False)
    fixed = sptrace.trace(TowersOfLayers(64, out=8), torch.randn(3, 10), base=TowersOfLayers(16, out=8))
    assert fixed.attention == []


def test_a_product_over_a_fixed_axis_is_not_listed():
    class OverFeatures(Interactions):
        def forward(self, ids):
            z = torch.stack([t(ids[:, i]) for i, t in enumerate(self.tables)], 1)
            return self.top(torch.bmm(z.transpose(1, 2), z).mean(1).repeat(1, 3)[:, :9])  # contracts the 3 features

    assert sptrace.trace(OverFeatures(64), _ids()).attention == []


def test_parametrize_warns_once_and_says_what_to_change():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        opt = sptrace.parametrize(Interactions(64), "adam")
    said = [str(w.message) for w in caught if issubclass(w.category, SptraceWarning)]
    assert len(said) == 1 and "(bmm)" in said[0]
    assert any("multiply it by 1/width" in w for w in opt.sptrace.warnings)


def test_a_stable_product_is_not_warned_about():
    with warnings.catch_warnings():
        warnings.simplefilter("error", SptraceWarning)
        sptrace.parametrize(Interactions(64, scale=1 / 64), "adam")


class AttendThenCompare(nn.Module):
    """Self-attention with 4 heads (head_dim grows with width), then the similarity of two heads on
    its output, an axis no layer reads: under ``base=`` the model lists one site more than the base's own
    capture does."""

    def __init__(self, d: int):
        super().__init__()
        self.inp, self.qkv = nn.Linear(10, d), nn.Linear(d, 3 * d)
        self.a, self.b = nn.Linear(d, d), nn.Linear(d, d)

    def forward(self, x):
        B, T, _ = x.shape
        q, k, v = (t.view(B, T, 4, -1).transpose(1, 2) for t in self.qkv(self.inp(x)).chunk(3, -1))
        h = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, T, -1)
        return self.a(h) @ self.b(h).transpose(1, 2)


def test_base_sites_are_matched_by_module_and_kind_not_by_position():
    """Before, a length mismatch between the model's sites and the base's left every site as automatic
    mode read it: the attention's head_dim 'unknown' although the base shows it grows."""
    sites = sptrace.trace(AttendThenCompare(64), torch.randn(2, 5, 10), base=AttendThenCompare(32)).attention
    by_kind = {s.kind: s for s in sites}
    assert set(by_kind) == {"sdpa", "product"}, sites
    assert (by_kind["sdpa"].head_dim, by_kind["sdpa"].base_head_dim, by_kind["sdpa"].head_dim_is_width) == (16, 8, True)
    assert by_kind["product"].head_dim == 64 and by_kind["product"].width_stable is False
