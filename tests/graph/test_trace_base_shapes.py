"""trace(base=, delta=) reads the width dims from parameter shapes: one capture per call."""
import pytest
import torch

import models_zoo
import sptrace
from sptrace.graph import trace as trace_module

SPEC = models_zoo.get("gpt")


def meta(width, **kw):
    with torch.device("meta"):
        return SPEC.build(width, **kw)


@pytest.fixture
def captures(monkeypatch):
    calls = []
    original = trace_module.capture

    def counted(model, *args, **kwargs):
        calls.append(type(model).__name__)
        return original(model, *args, **kwargs)

    monkeypatch.setattr(trace_module, "capture", counted)
    return calls


def test_base_and_delta_cost_no_capture(captures):
    """head_dim 16 at every width (heads grow): the base's and the delta's sizes come from their
    parameters and one forward each that records their attention calls, not from a capture."""
    args, kwargs = SPEC.example_inputs()
    traced = sptrace.trace(meta(64), *args, base=meta(32), delta=meta(48), **kwargs)
    assert captures == ["GPT"]
    assert traced["transformer.h.0.attn.c_attn.weight"].base_shape == (96, 32)
    assert [(s.head_dim, s.base_head_dim, s.head_dim_is_width) for s in traced.attention] == [(16, 16, False)] * 2


def test_a_growing_head_dim_is_read_from_the_base_forward(captures):
    args, kwargs = SPEC.example_inputs()
    traced = sptrace.trace(meta(128, n_head=4), *args, base=meta(32, n_head=4), **kwargs)
    assert captures == ["GPT"]
    assert [(s.head_dim, s.base_head_dim, s.head_dim_is_width) for s in traced.attention] == [(32, 8, True)] * 2


def test_at_the_base_width_the_delta_tells_the_head_dim_grows(captures):
    args, kwargs = SPEC.example_inputs()
    traced = sptrace.trace(meta(32, n_head=4), *args, base=meta(32, n_head=4), delta=meta(64, n_head=4), **kwargs)
    assert captures == ["GPT"]
    assert all(s.head_dim_is_width for s in traced.attention)


def test_depthwise_groups_of_the_base_follow_its_channels():
    from torch import nn

    def net(width):
        return nn.Sequential(nn.Conv2d(3, width, 3), nn.Conv2d(width, width, 3, groups=width),
                             nn.Conv2d(width, width, 3, groups=4), nn.Flatten(), nn.LazyLinear(10))

    x = torch.randn(2, 3, 12, 12)
    model, base = net(32), net(16)
    model(x), base(x)
    traced = sptrace.trace(model, x, base=base)
    assert traced["1.weight"].base_groups == 16 and traced["2.weight"].base_groups == 4
