"""Experts a router sends no token to on the example batch are classified as an identical sibling
that the forward reaches (sptrace/graph/siblings.py, docs/parametrize.md "Parameters the inputs
never reach").

Before, they were reported never used and left at the library's init with the plain lr, and which
experts those were changed with the init: the Hugging Face Switch Transformers base model of the
catalog scan (docs/coverage.md) lost 14 expert tensors of 198 to its routing of 10 dummy tokens.
"""
import pytest
import torch
import torch.nn as nn

import sptrace

pytestmark = pytest.mark.usefixtures("one_thread")


class Expert(nn.Module):
    def __init__(self, width, hidden):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(width, hidden), nn.Linear(hidden, width)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class DataRoutedMoE(nn.Module):
    """Top-1 routing written as most MoE code is: a loop over an nn.ModuleList of experts, each run on
    the tokens sent to it. The choice here depends on the data only (the sign of two features), so
    inputs with a positive first feature never reach experts 2 and 3."""

    def __init__(self, width=64, hidden=None, n_experts=4):
        super().__init__()
        hidden = hidden or [width] * n_experts
        self.embed = nn.Linear(8, width)
        self.experts = nn.ModuleList(Expert(width, h) for h in hidden)
        self.head = nn.Linear(width, 3)

    def forward(self, x):
        h = self.embed(x)
        choice = (x[..., 0] < 0).long() * 2 + (x[..., 1] < 0).long()
        out = torch.zeros_like(h)
        for e, expert in enumerate(self.experts):
            mask = choice == e
            if mask.any():
                out[mask] = expert(h[mask])
        return self.head(h + out)


def reaching_experts_0_and_1():
    x = torch.randn(2, 6, 8)
    x[..., 0] = x[..., 0].abs() + 0.1
    x[..., 1] = torch.tensor([1.0, -1.0]).repeat(3)  # both signs: experts 0 and 1
    return x


def same_classification(a, b):
    return (a.kind, a.role, a.width_dims, a.fan_in_axes, a.fan_out_axes, a.input_space, a.output_space) == \
        (b.kind, b.role, b.width_dims, b.fan_in_axes, b.fan_out_axes, b.input_space, b.output_space)


def test_an_expert_no_token_reaches_is_classified_as_its_nearest_identical_sibling():
    traced = sptrace.trace(DataRoutedMoE(), reaching_experts_0_and_1())
    assert not traced.unclassified and not any("never used" in w for w in traced.warnings)
    for e in (2, 3):
        for name in ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"):
            assert same_classification(traced[f"experts.{e}.{name}"], traced[f"experts.1.{name}"])
    assert traced["experts.3.fc1.weight"].role.value == "hidden"
    (line,) = [w for w in traced.warnings if "identical sibling" in w]
    assert line.startswith("2 modules the forward does not reach") and "experts.2 as experts.1" in line \
        and "experts.3 as experts.1" in line


def test_a_sibling_of_another_shape_stays_never_used():
    traced = sptrace.trace(DataRoutedMoE(hidden=[64, 64, 48, 64]), reaching_experts_0_and_1())
    assert [r.name for r in traced.unclassified] == [f"experts.2.{n}" for n in ("fc1.weight", "fc1.bias",
                                                                                "fc2.weight", "fc2.bias")]
    assert "experts.3 as experts.1" in next(w for w in traced.warnings if "identical sibling" in w)


def test_parametrize_plans_the_unreached_expert_as_the_reached_ones():
    torch.manual_seed(0)
    model = DataRoutedMoE(width=128)
    opt = sptrace.parametrize(model, "adam", example_inputs=(reaching_experts_0_and_1(),))
    lrs = {n: g["lr"] for g in opt.param_groups for n in g["sptrace_names"]}
    assert lrs["experts.3.fc1.weight"] == lrs["experts.0.fc1.weight"] != 1e-3  # hidden: x 256/128
    stds = [model.experts[e].fc2.weight.std().item() for e in range(4)]
    assert max(stds) / min(stds) < 1.1  # one init law for all four


def test_hugging_face_switch_transformers_experts_are_all_classified():
    transformers = pytest.importorskip("transformers")
    # 16 experts, top-1, 10 dummy tokens a layer: some experts get none
    config = transformers.SwitchTransformersConfig(d_model=32, d_kv=16, d_ff=64, num_layers=2, num_decoder_layers=2,
                                                   num_heads=2, vocab_size=64, num_experts=16,
                                                   num_sparse_encoder_layers=2, num_sparse_decoder_layers=2)
    torch.manual_seed(0)
    opt = sptrace.parametrize(transformers.SwitchTransformersModel(config), "adam")
    assert not opt.sptrace.trace.unclassified
    assert not any("never used" in w for w in opt.sptrace.warnings)


def test_tokens_picked_by_a_mask_keep_their_feature_axis():
    """``x[mask]`` (aten.index with a bool mask) makes the mask's axes one axis of picked tokens, and
    the features follow: before, the mask's axes were tied to the output's first two, the feature axis
    was lost, and every expert's first layer read as an input layer (a fixed fan-in) in automatic mode."""
    x = torch.randn(2, 16, 8)
    x[0, :4, :2], x[0, 4:8, :2], x[0, 8:12, :2] = 1.0, -1.0, torch.tensor([-1.0, 1.0])  # all four experts
    traced = sptrace.trace(DataRoutedMoE(), x)
    assert not any("never used" in w or "identical sibling" in w for w in traced.warnings)
    assert all(traced[f"experts.{e}.fc1.weight"].role.value == "hidden" for e in range(4))
    assert traced["experts.0.fc1.weight"].fan_in_axes == (1,) and traced["experts.0.fc1.weight"].width_dims == (0, 1)
