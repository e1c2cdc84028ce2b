"""Gains on an l2-normalised activation (graph/l2norm.py, docs/rules.md "Gains on an l2-normalised
activation"): ``g * x / ||x||`` over a width axis of size n is a Θ(1) gain times ``n^-1/2``, so g is
planned as a gain under the forward constant ``c = n^-1/2`` (init x sqrt(n), Adam lr x sqrt(n), SGD
lr x n, spectral scale x sqrt(n)); an RMS norm written with the l2 norm (``* sqrt(n)``) cancels it;
cosine attention's scale (after the contraction of two unit vectors) and LayerNorm's gain are plain.
The coord check is tests/validation/test_validate_l2norm.py."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sptrace
from sptrace.planning.plan import plan


class Normed(nn.Module):
    """An input layer, a gain on the activation l2-normalised over the width, a readout. ``how``:
    ``scalenorm`` (``g * x / ||x||.clamp_min(eps)``, g a scalar at sqrt(n): ScaleNorm), ``normalize``
    (``F.normalize(x) * v``, v a width vector at 1), ``rms`` (``F.normalize(x) * sqrt(n) * v``: an RMS
    norm), ``layernorm`` (``nn.LayerNorm``), ``written`` (ScaleNorm with the norm written out as
    ``sqrt(sum(x * x))``, graph/values.py)."""

    def __init__(self, width, how="scalenorm"):
        super().__init__()
        self.how, self.width = how, width
        self.fc = nn.Linear(10, width)
        self.g = nn.Parameter(torch.tensor(math.sqrt(width)) if how in ("scalenorm", "written") else torch.ones(width))
        self.ln = nn.LayerNorm(width) if how == "layernorm" else None
        self.head = nn.Linear(width, 3)

    def forward(self, x):
        h = self.fc(x)
        if self.how == "scalenorm":
            h = self.g * h / h.norm(dim=-1, keepdim=True).clamp_min(1e-5)
        elif self.how == "written":
            h = self.g * h / torch.sqrt((h * h).sum(-1, keepdim=True) + 1e-10)
        elif self.how == "normalize":
            h = F.normalize(h, dim=-1) * self.g
        elif self.how == "rms":
            h = F.normalize(h, dim=-1) * self.width ** 0.5 * self.g
        else:
            h = self.ln(h) * self.g
        return self.head(torch.relu(h))


class CosineAttention(nn.Module):
    """Swin V2's cosine attention: ``F.normalize(q) @ F.normalize(k).T * logit_scale.exp()``, q and k
    normalised over head_dim, one learned logit scale per head."""

    def __init__(self, width, heads=4):
        super().__init__()
        self.heads = heads
        self.fc, self.qkv, self.out = nn.Linear(10, width), nn.Linear(width, 3 * width), nn.Linear(width, 3)
        self.logit_scale = nn.Parameter(torch.log(10 * torch.ones(heads, 1, 1)))

    def forward(self, x):
        h = self.fc(x)
        B, T, C = h.shape
        q, k, v = self.qkv(h).view(B, T, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        att = F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1) * self.logit_scale.exp()
        y = (att.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C)
        return self.out(y)


def x2():
    return torch.randn(4, 10)


@pytest.mark.parametrize("route", ["export", "eager"])
@pytest.mark.parametrize("how", ["scalenorm", "normalize", "written"])
def test_a_gain_on_an_l2_normalised_activation_carries_n_to_the_minus_half(how, route, one_thread):
    traced = sptrace.trace(Normed(64, how), x2(), routes=(route,))
    found = traced["g"].forward_constant
    assert found is not None, traced.report()
    assert (found.power, found.size, found.axis, found.normalised_axes) == (-0.5, 64, -1, 1)
    assert found.value == pytest.approx(1 / 8)
    assert found.in_init is (how in ("scalenorm", "written"))  # ScaleNorm's own init already holds sqrt(n)
    assert all(r.forward_constant is None for r in traced if r.name != "g")


@pytest.mark.parametrize("how", ["rms", "layernorm"])
def test_an_rms_norm_and_layernorm_leave_the_gain_plain(how, one_thread):
    traced = sptrace.trace(Normed(64, how), x2())
    assert all(r.forward_constant is None for r in traced), traced.report()


def test_cosine_attention_s_logit_scale_is_a_plain_scalar(one_thread):
    traced = sptrace.trace(CosineAttention(64), torch.randn(2, 5, 10))
    assert all(r.forward_constant is None for r in traced), traced.report()


def _by_name(plans):
    return {p.name: p for p in plans}


@pytest.mark.parametrize("width", [64, 512])
def test_the_plan_scales_the_gain_by_the_normalised_width(width, one_thread):
    """Reference form (256): ScaleNorm's g keeps its init (it is sqrt(n) already), its Adam lr is
    x sqrt(n/256), its SGD lr x n/256; a gain at 1 on F.normalize is scaled to sqrt(n/256)."""
    ratio = width / 256
    scalenorm = sptrace.trace(Normed(width, "scalenorm"), x2()).records
    normalize = sptrace.trace(Normed(width, "normalize"), x2()).records
    adam, sgd = _by_name(plan(scalenorm, "adam", lr=1.0)), _by_name(plan(scalenorm, "sgd", lr=1.0))
    assert adam["g"].init == "keep" and sgd["g"].init == "keep"
    assert adam["g"].lr == pytest.approx(ratio ** 0.5) and sgd["g"].lr == pytest.approx(ratio)
    spectral = _by_name(plan(scalenorm, "spectral", lr=1.0))["g"]
    assert spectral.spectral_scale == pytest.approx(ratio ** 0.5)
    adam, sgd = _by_name(plan(normalize, "adam", lr=1.0)), _by_name(plan(normalize, "sgd", lr=1.0))
    assert adam["g"].init == "scale" and adam["g"].init_scale == pytest.approx(ratio ** 0.5)
    assert adam["g"].lr == pytest.approx(ratio ** 0.5)
    assert sgd["g"].lr == pytest.approx(ratio * ratio)  # a width gain's n/256, times n/256


def test_the_base_form_reads_the_normalised_width_from_the_base(one_thread):
    traced = sptrace.trace(Normed(256, "scalenorm"), x2(), base=Normed(64, "scalenorm"))
    found = traced["g"].forward_constant
    assert (found.size, found.base_size) == (256, 64.0)
    sgd = _by_name(plan(traced.records, "sgd", lr=1.0, form="base"))["g"]
    assert sgd.init == "keep" and sgd.lr == pytest.approx(4.0)
