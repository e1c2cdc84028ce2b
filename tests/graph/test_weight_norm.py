"""Weight-normed layers, ``W = g * v / ||v||`` (graph/weightnorm.py; docs/classification.md "Weight
norm"): both APIs (``torch.nn.utils.parametrizations.weight_norm``, the older ``nn.utils.weight_norm``
hook), both capture routes (export sees ``aten._weight_norm``, eager ``aten._weight_norm_interface``).
v is classified as the layer's weight (same axes), g as the gain of its slices along ``dim``, and both
records name the pair. Before, both factors were unclassified with the way out named
(``remove_parametrizations``): library init and the plain lr."""
import pytest
import torch
from torch import nn

import sptrace

ROUTES = ("export", "eager")
B = 4


class WeightNormed(nn.Module):
    """An input layer, a hidden layer and a readout, each weight-normed over ``dim``."""

    def __init__(self, width=32, new_api=True, dim=0):
        super().__init__()
        wn = nn.utils.parametrizations.weight_norm if new_api else nn.utils.weight_norm
        self.a, self.b, self.head = (wn(nn.Linear(i, o), dim=dim) for i, o in ((5, width), (width, width), (width, 3)))

    def forward(self, x):
        return self.head(torch.relu(self.b(torch.relu(self.a(x)))))


def factors(layer: str, new_api: bool) -> tuple[str, str]:
    """(v, g) of a layer."""
    if new_api:
        return f"{layer}.parametrizations.weight.original1", f"{layer}.parametrizations.weight.original0"
    return f"{layer}.weight_v", f"{layer}.weight_g"


def row(record):
    return record.kind.value, record.role.value, record.fan_in_axes, record.fan_out_axes, record.width_dims


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("new_api", [True, False])
def test_v_is_the_layer_s_weight_and_g_the_gain_of_its_rows(new_api, route):
    torch.manual_seed(0)
    model = WeightNormed(new_api=new_api)
    traced = sptrace.trace(model, torch.randn(B, 5), routes=(route,))
    assert traced.route == route and not traced.unclassified, [(r.name, r.problem) for r in traced.unclassified]
    expected = {  # v: as the plain layer's weight; g (out, 1): a gain of the output rows
        "a": (("vector", "input", (1,), (0,), (0,)), ("vector", "gain", (), (0,), (0,))),
        "b": (("matrix", "hidden", (1,), (0,), (0, 1)), ("vector", "gain", (), (0,), (0,))),
        "head": (("vector", "readout", (1,), (0,), (1,)), ("scalar", "scalar", (), (0,), ())),
    }
    for layer, (v_row, g_row) in expected.items():
        v, g = factors(layer, new_api)
        assert (row(traced[v]), row(traced[g])) == (v_row, g_row), layer
        assert traced[v].weight_norm == traced[g].weight_norm
        assert (traced[v].weight_norm.v, traced[v].weight_norm.g, traced[v].weight_norm.dim) == (v, g, 0)


def test_removed_the_layer_is_the_same_ordinary_linear():
    torch.manual_seed(0)
    model = WeightNormed()
    nn.utils.parametrize.remove_parametrizations(model.b, "weight")
    traced = sptrace.trace(model, torch.randn(B, 5))
    assert row(traced["b.weight"]) == ("matrix", "hidden", (1,), (0,), (0, 1)) and traced["b.weight"].weight_norm is None


class PositionalConv(nn.Module):
    """wav2vec2's positional conv: a grouped Conv1d weight-normed over dim 2 (one norm per kernel tap,
    over out x in), added to its input."""

    def __init__(self, width=32, groups=4, kernel=8, new_api=True):
        super().__init__()
        wn = nn.utils.parametrizations.weight_norm if new_api else nn.utils.weight_norm
        self.proj = nn.Linear(6, width)
        self.conv = wn(nn.Conv1d(width, width, kernel, padding=kernel // 2, groups=groups), dim=2)
        self.head = nn.Linear(width, 3)

    def forward(self, x):
        h = self.proj(x).transpose(1, 2)
        h = h + torch.relu(self.conv(h)[..., :-1])
        return self.head(h.mean(2))


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("new_api", [True, False])
def test_a_norm_per_kernel_tap_is_a_fixed_gain_of_a_grouped_conv(new_api, route):
    torch.manual_seed(0)
    traced = sptrace.trace(PositionalConv(new_api=new_api), torch.randn(B, 10, 6), routes=(route,))
    assert not traced.unclassified, [(r.name, r.problem) for r in traced.unclassified]
    v, g = factors("conv", new_api)
    assert row(traced[v]) == ("matrix", "hidden", (1, 2), (0,), (0, 1)) and traced[v].groups == 4
    assert traced[g].shape == (1, 1, 8) and traced[g].kind.value == "scalar" and traced[g].width_dims == ()
    assert traced[g].weight_norm.dim == 2 and traced[g].weight_norm.v == v


def test_a_norm_over_the_whole_tensor():
    """``dim=None`` (torch's -1): one norm over all of v, g a single number."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 32), nn.ReLU(), nn.utils.parametrizations.weight_norm(nn.Linear(32, 32), dim=None),
                          nn.ReLU(), nn.Linear(32, 3))
    traced = sptrace.trace(model, torch.randn(B, 5))
    assert not traced.unclassified
    v, g = traced["2.parametrizations.weight.original1"], traced["2.parametrizations.weight.original0"]
    assert row(v) == ("matrix", "hidden", (1,), (0,), (0, 1)) and g.kind.value == "scalar" and g.weight_norm.dim == -1


def test_hugging_face_wav2vec2_pos_conv_is_classified():
    """HF Wav2Vec2Model from a small config (random weights, no download): ``pos_conv_embed.conv`` is
    weight-normed over dim 2 (a grouped Conv1d); before, its two factors were its only unclassified
    parameters."""
    transformers = pytest.importorskip("transformers")
    config = transformers.Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                         intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 2),
                                         conv_kernel=(10, 3), num_conv_pos_embeddings=8,
                                         num_conv_pos_embedding_groups=2, vocab_size=12)
    torch.manual_seed(0)
    model = transformers.Wav2Vec2Model(config)
    traced = sptrace.trace(model, torch.randn(2, 1000))
    assert not traced.unclassified, [(r.name, r.problem) for r in traced.unclassified]
    v = traced["encoder.pos_conv_embed.conv.parametrizations.weight.original1"]
    g = traced["encoder.pos_conv_embed.conv.parametrizations.weight.original0"]
    assert row(v) == ("matrix", "hidden", (1, 2), (0,), (0, 1)) and v.groups == 2
    assert g.shape == (1, 1, 8) and g.weight_norm.dim == 2 and g.weight_norm.v == v.name
    opt = sptrace.parametrize(model, "adam", example_inputs=(torch.randn(2, 1000),), traced=traced)
    plans = {p.name: p for p in opt.sptrace.plans}
    assert plans[v.name].init == "scale" and plans[g.name].init == "norm"  # width 32, the reference 256
    assert plans[g.name].lr_multiplier == pytest.approx((32 / 256) ** 0.5)  # c ~ sqrt(width), Adam: lr x c
    conv = model.encoder.pos_conv_embed.conv
    assert torch.allclose(conv.weight, conv.parametrizations.weight.original1, rtol=1e-5, atol=1e-7)
    assert not any("pos_conv_embed" in w for w in opt.sptrace.warnings), opt.sptrace.warnings
