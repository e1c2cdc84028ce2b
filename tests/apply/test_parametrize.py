"""sptrace.parametrize / param_groups: init in place, groups, anchoring, ties, attention, bad input."""
import copy
import warnings

import pytest
import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode

import sptrace
from sptrace.apply.hooks import ForwardOverride
from tests.graph.test_trace_core import PaperMLP, TinyGPT


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def assert_same(model, snap):
    now = model.state_dict()
    assert now.keys() == snap.keys()
    for k, v in snap.items():
        assert torch.equal(now[k], v), k


def ids():
    return torch.randint(0, 50, (2, 16))


def test_same_parameter_objects_and_state_dict_keys():
    torch.manual_seed(0)
    model = PaperMLP(64)
    before = {n: p for n, p in model.named_parameters()}
    opt = sptrace.parametrize(model, "adam", lr=0.5, example_inputs=torch.randn(2, 3072))
    assert all(p is before[n] for n, p in model.named_parameters())
    assert {id(p) for g in opt.param_groups for p in g["params"]} == {id(p) for p in before.values()}


def test_init_is_deterministic_under_manual_seed():
    def run():
        torch.manual_seed(1)
        model = PaperMLP(64)
        torch.manual_seed(7)
        sptrace.parametrize(model, "adam", lr=0.5, example_inputs=torch.randn(2, 3072))
        return snapshot(model)

    a, b = run(), run()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_absolute_adam_groups_follow_one_over_fan_in():
    model = PaperMLP(128)
    opt = sptrace.parametrize(model, "adam", lr=1.0, example_inputs=torch.randn(2, 3072), form="absolute")
    lr = {n: g["lr"] for g in opt.param_groups for n in g["sptrace_names"]}
    assert lr["fc1.weight"] == pytest.approx(1 / 3072)
    assert lr["fc2.weight"] == pytest.approx(1 / 128)
    assert lr["fc3.weight"] == pytest.approx(1 / 128)
    # equal hyperparameters share a group; fc2 and fc3 share the lr but not Adam's eps (gradient
    # sizes 1/d_out: 1/128 for the hidden fc2, 1/10 for the readout), so three groups
    assert len(opt.param_groups) == 3
    eps = {n: g["eps"] for g in opt.param_groups for n in g["sptrace_names"]}
    assert eps["fc2.weight"] == pytest.approx(1e-8 / 128) and eps["fc3.weight"] == pytest.approx(1e-8 / 10)
    for g in opt.param_groups:
        assert g["lr"] == pytest.approx(g["sptrace_base_lr"] * g["sptrace_lr_multiplier"])


def test_base_at_same_width_is_bit_identical_standard_practice():
    torch.manual_seed(0)
    model = TinyGPT(32, tied=False)
    snap = snapshot(model)
    opt = sptrace.parametrize(model, "adam", lr=3e-3, example_inputs=ids(), base=copy.deepcopy(model),
                              zero_readout=False)
    assert_same(model, snap)
    assert {g["lr"] for g in opt.param_groups} == {3e-3}


def test_base_mode_ratios_between_widths():
    model, base = TinyGPT(128, tied=False), TinyGPT(32, tied=False)
    opt = sptrace.parametrize(model, "adam", lr=1e-3, example_inputs=ids(), base=base)
    lr = {n: g["lr"] for g in opt.param_groups for n in g["sptrace_names"]}
    assert lr["qkv.weight"] == pytest.approx(1e-3 * 32 / 128)
    assert lr["head.weight"] == pytest.approx(1e-3 * 32 / 128)
    assert lr["wte.weight"] == pytest.approx(1e-3)
    assert lr["qkv.bias"] == pytest.approx(1e-3)


def test_base_at_same_width_with_delta_classifies_like_every_width():
    """Tuning at the base width: with delta= the model there is classified like any wider one
    (head a readout, so zero_readout zeroes it) and everything else stays standard practice."""
    torch.manual_seed(0)
    model = TinyGPT(32, tied=False)
    snap = snapshot(model)
    with torch.device("meta"):
        delta = TinyGPT(64, tied=False)
    opt = sptrace.parametrize(model, "adam", lr=3e-3, example_inputs=ids(), base=copy.deepcopy(model), delta=delta,
                              zero_readout=True)
    assert not model.head.weight.any()
    assert all(torch.equal(v, snap[k]) for k, v in model.state_dict().items() if k != "head.weight")
    assert {g["lr"] for g in opt.param_groups} == {3e-3}
    wider = sptrace.trace(TinyGPT(128, tied=False), ids(), base=TinyGPT(32, tied=False))
    assert [(r.role, r.width_dims) for r in opt.sptrace.trace] == [(r.role, r.width_dims) for r in wider]


class FanOutNet(nn.Module):
    """Libraries that do not use PyTorch's fan-in default: kaiming fan_out on convs (torchvision and
    timm ResNets, MobileNets) and xavier on a token-mixing-like input layer (timm's Mixer)."""

    def __init__(self, width):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.dw = nn.Conv2d(width, width, 3, padding=1, groups=width)
        self.pw = nn.Conv2d(width, width, 1)
        self.mix = nn.Linear(16, width)
        self.head = nn.Linear(width, 10)
        for conv in (self.stem, self.dw, self.pw):
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        nn.init.xavier_uniform_(self.mix.weight)

    def forward(self, x):
        h = self.pw(torch.relu(self.dw(torch.relu(self.stem(x)))))  # (B, width, 4, 4)
        h = self.mix(h.flatten(2)).mean(-1)  # the 16 positions mixed into width features
        return self.head(h)


def test_base_form_reads_fan_out_and_xavier_library_laws():
    """μP keeps the std of the stem, the depthwise conv and the input-like mixing layer (fixed
    fan-in) as at the base, and shrinks the pointwise conv's like sqrt(base/width): whatever law
    the library used to draw them (measured on a real base, 64 -> 1024)."""
    torch.manual_seed(0)
    base, model = FanOutNet(64), FanOutNet(1024)
    sptrace.parametrize(model, "adam", lr=1e-3, example_inputs=torch.randn(2, 3, 4, 4), base=base)
    ratio = {n: (p.std() / dict(base.named_parameters())[n].std()).item() for n, p in model.named_parameters()
             if n.endswith("weight")}
    assert ratio["stem.weight"] == pytest.approx(1.0, rel=0.05)
    assert ratio["dw.weight"] == pytest.approx(1.0, rel=0.1)
    assert ratio["mix.weight"] == pytest.approx(1.0, rel=0.05)
    assert ratio["pw.weight"] == pytest.approx((64 / 1024) ** 0.5, rel=0.05)


class TorchInitMLP(nn.Sequential):
    def __init__(self, width):
        super().__init__(nn.Linear(16, width), nn.GELU(), nn.Linear(width, width), nn.GELU(), nn.Linear(width, 10))


class ConstantStdMLP(TorchInitMLP):
    """timm's and Hugging Face's way: every Linear drawn with one std (0.02) at every width."""

    def __init__(self, width):
        super().__init__(width)
        for layer in (self[0], self[2], self[4]):
            nn.init.trunc_normal_(layer.weight, std=0.02)


@pytest.mark.parametrize("make, hidden_ratio", [(ConstantStdMLP, (32 / 512) ** 0.5), (TorchInitMLP, 1.0)])
def test_a_meta_base_reads_the_library_law_from_the_model(make, hidden_ratio):
    """A meta base has no values to measure, so the model's own weights say which law drew them:
    a constant std is shrunk like sqrt(base/width) in the hidden layer (it was kept, as if it were
    PyTorch's fan-in law: standard parametrization again), PyTorch's own law is kept."""
    torch.manual_seed(0)
    model = make(512)
    before = model[2].weight.std().item()
    with torch.device("meta"):
        base = make(32)
    sptrace.parametrize(model, "adam", lr=1e-3, example_inputs=torch.randn(2, 16), base=base)
    assert model[2].weight.std().item() / before == pytest.approx(hidden_ratio, rel=0.05)


def test_idempotent_no_double_scaling():
    torch.manual_seed(0)
    model, base = TinyGPT(64, tied=False), TinyGPT(32, tied=False)
    sptrace.parametrize(model, "adam", lr=1e-3, example_inputs=ids(), base=base)
    once = snapshot(model)
    opt = sptrace.parametrize(model, "adam", lr=1e-3, example_inputs=ids(), base=base)
    assert_same(model, once)
    # an untied model without attention_fix needs no forward multiplier: none is installed, by
    # either call (the first call's hooks, if any, would still sit on the modules); the handles
    # left are the checkpoint marker's state-dict hooks
    assert opt.sptrace.multipliers == []
    assert not any(isinstance(h, ForwardOverride) for h in opt.sptrace.handles)
    assert not any(m._forward_hooks or m._forward_pre_hooks or "forward" in vars(m) for m in model.modules())


def test_tied_readout_gets_one_multiplier_and_it_is_replaced_on_a_second_call():
    model, base = TinyGPT(64), TinyGPT(32)
    x = ids()
    for _ in range(2):
        opt = sptrace.parametrize(model, "adam", lr=1e-3, example_inputs=x, base=base)
    [m] = opt.sptrace.multipliers
    assert m.module == "head" and m.value == pytest.approx(32 / 64)
    with torch.no_grad():
        h = torch.randn(3, 64)
        assert torch.allclose(model.head(h), 0.5 * h @ model.wte.weight.t())


def test_attention_fix_reroutes_sdpa_scale():
    model, base = TinyGPT(64), TinyGPT(32)
    x = ids()
    sptrace.parametrize(model, "adam", lr=1e-3, example_inputs=x, base=base, attention_fix=True, init="keep")
    scale = 8 ** 0.5 / 16  # base head_dim 8, head_dim 16: sqrt(8)/16, i.e. 1/sqrt(8) at the base
    seen = []

    class Spy(TorchFunctionMode):  # outer mode: sees the call after sptrace's mode rewrote it
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func is torch.nn.functional.scaled_dot_product_attention:
                seen.append((kwargs or {}).get("scale"))
            return func(*args, **(kwargs or {}))

    with Spy():
        model(x)
    assert seen == [pytest.approx(scale)]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(optimizer="adamax9", lr=1e-3), "unknown optimizer"),
        (dict(optimizer="adam", lr=-1.0), "positive finite"),
        (dict(optimizer="adam", form="absolute"), "form='absolute' needs lr="),
        (dict(optimizer=lambda groups, **kw: None, family="adam"), "has no default lr: pass lr="),
        (dict(optimizer="adam", zero_readout="yes"), "zero_readout must be 'auto'"),
        (dict(optimizer="adam", reference_width=0), "reference_width must be a positive int"),
        (dict(optimizer="adam", form="relative"), "form must be one of"),
        (dict(optimizer="adam", lr=float("nan")), "positive finite"),
        (dict(optimizer="adam", lr=1e-3, init="zeros"), r"init must be one of 'default', .*'keep', or True"),
        (dict(optimizer="adam", lr=1e-3, init=None), r"init must be one of .* got None"),
        (dict(optimizer="adam", lr=1e-3, init=0), r"init must be one of .* got 0"),
    ],
)
def test_bad_arguments_leave_model_untouched(kwargs, message):
    model = PaperMLP(32)
    snap = snapshot(model)
    with pytest.raises(sptrace.SptraceError, match=message):
        sptrace.parametrize(model, example_inputs=torch.randn(2, 3072), **kwargs)
    assert_same(model, snap)


def test_init_false_is_keep_and_true_is_default():
    """Fine-tuning by a bool (docs/parametrize.md, "Fine-tuning and resuming"): ``init=False`` only
    sets the groups, as ``init="keep"``; ``init=True`` re-initialises, as ``init="default"``."""
    x = torch.randn(2, 3072)
    torch.manual_seed(0)
    model = PaperMLP(64)
    snap = snapshot(model)
    kept = sptrace.parametrize(model, "adam", lr=1e-3, example_inputs=x, init=False)
    assert_same(model, snap)
    assert [p.init for p in kept.sptrace.plans] == ["keep"] * len(kept.sptrace.plans)
    keep = sptrace.parametrize(PaperMLP(64), "adam", lr=1e-3, example_inputs=x, init="keep")
    assert [(g["lr"], g["sptrace_names"]) for g in kept.param_groups] == \
        [(g["lr"], g["sptrace_names"]) for g in keep.param_groups]
    states = []
    for init in (True, "default"):
        torch.manual_seed(0)
        model = PaperMLP(64)
        torch.manual_seed(1)
        sptrace.parametrize(model, "adam", lr=1e-3, example_inputs=x, init=init)
        states.append(snapshot(model))
    assert not torch.equal(states[0]["fc3.weight"], snap["fc3.weight"])  # the readout starts at zero
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_failure_while_building_optimizer_restores_everything():
    model = TinyGPT(64)
    snap = snapshot(model)

    def broken(groups, **kw):
        raise RuntimeError("optimizer factory failed")

    with pytest.raises(RuntimeError, match="factory failed"):
        sptrace.parametrize(model, broken, lr=1e-3, example_inputs=ids(), family="adam")
    assert_same(model, snap)
    assert not model.head._forward_pre_hooks and "forward" not in vars(model.head)


def test_failure_after_the_init_restores_every_parameter_bit_for_bit():
    """The rollback snapshot holds the values the init overwrote (tied tensors once): a factory
    failing after a full Gaussian re-init puts back every parameter exactly, marks included."""
    torch.manual_seed(0)
    model = TinyGPT(64)
    snap = snapshot(model)

    def broken(groups, **kw):
        assert not torch.equal(model.qkv.weight, snap["qkv.weight"])  # the init did run
        raise RuntimeError("optimizer factory failed")

    with pytest.raises(RuntimeError, match="factory failed"):
        sptrace.parametrize(model, broken, lr=1e-3, example_inputs=ids(), family="adam", form="absolute")
    assert_same(model, snap)
    assert not any(hasattr(p, "_sptrace_init") for p in model.parameters())
    opt = sptrace.parametrize(model, "adam", lr=1e-3, example_inputs=ids(), form="absolute")  # and a retry works
    assert not torch.equal(model.qkv.weight, snap["qkv.weight"]) and opt.param_groups


def test_base_not_narrower_or_other_architecture():
    model = PaperMLP(32)
    snap = snapshot(model)
    with pytest.raises(sptrace.SptraceError, match="not narrower"):
        sptrace.parametrize(model, "adam", lr=1e-3, example_inputs=torch.randn(2, 3072), base=PaperMLP(64))
    with pytest.raises(sptrace.SptraceError, match="no counterpart"):
        sptrace.parametrize(model, "adam", lr=1e-3, example_inputs=torch.randn(2, 3072), base=nn.Linear(3072, 8))
    assert_same(model, snap)


class Cumulative(nn.Module):
    """A cumulative sum over a parameter's width axis: no rule covers it (unclassified)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 16)
        self.steps = nn.Parameter(torch.ones(16))
        self.out = nn.Linear(16, 2)

    def forward(self, x):
        return self.out(self.fc(x) * torch.cumsum(self.steps, 0))


def test_unclassified_strict_raises_and_lenient_keeps_default():
    model = Cumulative()
    snap = snapshot(model)
    with pytest.raises(sptrace.SptraceError, match="steps"):
        sptrace.parametrize(model, "adam", lr=1e-3, example_inputs=torch.randn(2, 8), strict=True)
    assert_same(model, snap)
    opt = sptrace.parametrize(model, "adam", lr=1e-3, example_inputs=torch.randn(2, 8))
    assert torch.equal(model.steps, snap["steps"])
    assert any("steps" in w and "unclassified" in w for w in opt.sptrace.warnings)
    lr = {n: g["lr"] for g in opt.param_groups for n in g["sptrace_names"]}
    assert lr["steps"] == 1e-3


def test_frozen_parameters_are_left_out():
    model = PaperMLP(32)
    model.fc1.weight.requires_grad_(False)
    opt = sptrace.parametrize(model, "sgd", lr=0.1, example_inputs=torch.randn(2, 3072))
    assert all(p is not model.fc1.weight for g in opt.param_groups for p in g["params"])


def test_param_groups_work_with_fused_and_foreach_adamw():
    model = PaperMLP(64)
    groups = sptrace.param_groups(model, "adamw", lr=0.5, example_inputs=torch.randn(2, 3072), weight_decay=0.1)
    for flag in ({"foreach": True}, {"fused": True}):
        opt = torch.optim.AdamW(groups, lr=0.5, **flag)
        model(torch.randn(4, 3072)).sum().backward()
        opt.step()
    assert sum(len(g["params"]) for g in groups) == 3


def test_spectral_optimizer_from_parametrize_steps():
    torch.manual_seed(0)
    model = PaperMLP(64)
    opt = sptrace.parametrize(model, "spectral", lr=0.05, example_inputs=torch.randn(2, 3072))
    x, y = torch.randn(16, 3072), torch.randint(0, 10, (16,))
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_report_has_plan_columns():
    model = PaperMLP(64)
    opt = sptrace.parametrize(model, "adam", lr=1.0, example_inputs=torch.randn(2, 3072), form="absolute")
    text = opt.sptrace.report()
    assert "lr x" in text and "nat ||W||" in text and "N(0," in text


def test_second_call_with_another_base_rescales_from_the_library_values():
    torch.manual_seed(0)
    fresh = TinyGPT(64, tied=False)
    again = copy.deepcopy(fresh)
    sptrace.parametrize(fresh, "adam", lr=1e-3, example_inputs=ids(), base=TinyGPT(16, tied=False))
    sptrace.parametrize(again, "adam", lr=1e-3, example_inputs=ids(), base=TinyGPT(32, tied=False))
    sptrace.parametrize(again, "adam", lr=1e-3, example_inputs=ids(), base=TinyGPT(16, tied=False))
    for (name, a), b in zip(fresh.named_parameters(), again.parameters()):
        assert torch.allclose(a, b, rtol=1e-6, atol=0), name


def test_report_shows_the_fixed_attention_scale():
    model, base = TinyGPT(64), TinyGPT(32)
    opt = sptrace.parametrize(model, "adam", lr=1e-3, example_inputs=ids(), base=base, attention_fix=True)
    [site] = opt.sptrace.trace.attention
    assert site.fixed_by_sptrace and site.width_stable
    assert "NOT width-stable" not in opt.sptrace.report()


def test_a_growing_head_dim_left_at_its_scale_is_warned_about_once():
    """head_dim grows against the base (8 -> 16) and the model keeps 1/sqrt(head_dim): one SptraceWarning
    naming the site, none with attention_fix=True."""
    for fix, expected in ((False, 1), (True, 0)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sptrace.parametrize(TinyGPT(64), "adam", lr=1e-3, example_inputs=ids(), base=TinyGPT(32), attention_fix=fix)
        said = [str(w.message) for w in caught if issubclass(w.category, sptrace.SptraceWarning)
                and "grow with width" in str(w.message)]
        assert len(said) == expected, said
        assert all("attention_fix=True" in w for w in said)


def test_a_trace_is_reused_for_a_model_of_the_same_shapes_and_refused_for_another():
    """traced=: one capture serves every seed at a width (the coord checks use it); a trace of
    another width is refused by name and leaves the model untouched."""
    import models_zoo

    spec = models_zoo.get("mlp")
    args, _ = spec.example_inputs()
    torch.manual_seed(0)
    first = spec.build(64)
    opt = sptrace.parametrize(first, "adam", lr=1e-2, example_inputs=args, zero_readout=True)
    torch.manual_seed(0)
    again = spec.build(64)
    reused = sptrace.parametrize(again, "adam", lr=1e-2, traced=opt.sptrace.trace, zero_readout=True)
    assert all(torch.equal(a, b) for a, b in zip(first.parameters(), again.parameters()))
    assert [g["lr"] for g in reused.param_groups] == [g["lr"] for g in opt.param_groups]
    wider = spec.build(128)
    before = [p.detach().clone() for p in wider.parameters()]
    with pytest.raises(sptrace.SptraceError, match=r"another architecture or width: fc1.weight \(128, 3072\)"):
        sptrace.parametrize(wider, "adam", lr=1e-2, traced=opt.sptrace.trace)
    assert all(torch.equal(a, b) for a, b in zip(before, wider.parameters()))


def test_a_fixed_size_readout_bias_keeps_its_scale_at_every_width():
    """Linear(n, 200).bias has no width axis, but PyTorch draws it from U(±1/sqrt(n)): the base form
    rescales it like any bias (Appendix D, σ_b = Θ(1)), the absolute form zeroes it. Classified as
    a scalar it kept the library's values and its std fell like n^-1/2 (0.5x from 64 to 256)."""
    def mlp(n):
        return nn.Sequential(nn.Linear(8, n), nn.ReLU(), nn.Linear(n, 200))

    stds = {}
    for n in (64, 256):
        torch.manual_seed(0)
        model = mlp(n)
        opt = sptrace.parametrize(model, "adam", lr=1e-3, example_inputs=torch.randn(2, 8), base=mlp(32))
        assert opt.sptrace.trace["2.bias"].role.value == "bias"
        stds[n] = float(model[2].bias.std())
    assert 0.85 < stds[256] / stds[64] < 1.15, stds
    absolute = mlp(256)
    sptrace.parametrize(absolute, "adam", lr=1e-3, example_inputs=torch.randn(2, 8), form="absolute")
    assert torch.count_nonzero(absolute[2].bias) == 0


def test_a_one_output_head_s_bias_is_a_bias_and_keeps_its_scale_at_every_width():
    """A value or regression head, Linear(n, 1): its one-element bias is drawn from U(±1/sqrt(n))
    like any other. Taken for a scalar (one element) it kept those values under the one-line call:
    RMS over seeds about 0.072 at n = 64 and 0.018 at n = 1024 (ratio 0.25); as a bias it is
    rescaled to the reference width's law at every width (one draw per seed: the RMS over 48
    seeds is good to about 20 %, so the bounds are a factor 2 either way; the scalar's was 0.25)."""
    def head(n):
        return nn.Sequential(nn.Linear(8, n), nn.ReLU(), nn.Linear(n, 1))

    rms = {}
    for n in (64, 1024):
        values, traced = [], None
        for seed in range(48):
            torch.manual_seed(seed)
            model = head(n)
            opt = sptrace.parametrize(model, "adam", example_inputs=torch.randn(2, 8), traced=traced)
            traced = opt.sptrace.trace
            values.append(float(model[2].bias))
        assert traced["2.bias"].role.value == "bias"
        rms[n] = float(torch.tensor(values).square().mean().sqrt())
    assert 0.5 < rms[1024] / rms[64] < 2.0, rms


def test_parameters_left_unplanned_are_named_in_one_warning_at_the_caller_s_line():
    """The one-line call prints no report: learned centres read by torch.cdist (an op sptrace does not
    understand) keep the library's init and the plain lr, and one SptraceWarning names them, pointing
    at the user's line."""
    class WithDistances(nn.Module):
        def __init__(self, n=32):
            super().__init__()
            self.a, self.centres, self.out = nn.Linear(8, n), nn.Parameter(torch.randn(5, n)), nn.Linear(5, 2)

        def forward(self, x):
            return self.out(torch.cdist(self.a(x), self.centres))

    with pytest.warns(sptrace.SptraceWarning, match=r"left 1 of 5 parameters .*centres") as caught:
        sptrace.parametrize(WithDistances(), "adam")
    assert len(caught) == 1 and caught[0].filename == __file__
    with warnings.catch_warnings():
        warnings.simplefilter("error", sptrace.SptraceWarning)
        sptrace.parametrize(nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2)), "adam")


def test_an_unclassified_parameter_is_one_warning_line():
    """The plan's line (why, and what the parameter gets) replaces the trace's (why): before, the
    report listed every unclassified parameter twice."""

    class Prototypes(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc, self.protos = nn.Linear(8, 32), nn.Parameter(torch.randn(5, 32))

        def forward(self, x):
            return -torch.cdist(self.fc(x), self.protos)  # cdist: an op sptrace does not classify

    with pytest.warns(sptrace.SptraceWarning):
        opt = sptrace.parametrize(Prototypes(), "adam", example_inputs=(torch.randn(2, 8),))
    (line,) = [w for w in opt.sptrace.warnings if w.startswith("protos")]
    assert "cdist" in line and line.endswith("library-default init and the plain lr 0.001")
    assert opt.sptrace.report().count("- protos:") == 1


class TokenizedTables(nn.Module):
    """FT-Transformer's feature tokenizer (rtdl): a per-feature weight and bias and a class token drawn
    with std ∝ 1/sqrt(d) (``row``); a position table and an nn.Embedding drawn width-free (controls)."""

    def __init__(self, d, features=16):
        super().__init__()
        row = d ** -0.5
        self.weight = nn.Parameter(torch.randn(features, d) * row)
        self.bias = nn.Parameter(torch.randn(features, d) * row)
        self.cls = nn.Parameter(torch.randn(1, 1, d) * row)
        self.pos = nn.Parameter(torch.randn(features + 1, d) * 0.02)
        self.emb = nn.Embedding(features + 1, d)
        self.head = nn.Linear(d, 10)

    def forward(self, x):
        tokens = torch.cat([self.cls.expand(x.shape[0], -1, -1), x[..., None] * self.weight + self.bias], 1)
        tokens = tokens + self.pos + self.emb.weight
        return self.head(tokens.mean(1))


def test_base_form_reads_a_table_drawn_with_one_over_sqrt_width():
    """The base form measures each tensor's std against the base's and takes the nearest law; every law
    gave a table (sparse input) a width-free std, so the tokenizer's bias and class token, drawn
    with 1/sqrt(d), kept it: their std fell like sqrt(64/256) = 0.5, and an FT-Transformer failed its
    coord check under Adam and SGD (docs/rules.md, "Tables drawn with 1/sqrt(width)"). Now the law
    1/sqrt(row length) is a candidate where the base's table has its std; the width-free tables keep
    theirs."""
    x = torch.randn(2, 16)
    torch.manual_seed(0)
    base = TokenizedTables(64)
    stds = {}
    for d in (64, 256):
        torch.manual_seed(1)
        model = TokenizedTables(d)
        sptrace.parametrize(model, "adam", lr=1e-3, example_inputs=x, base=base)
        stds[d] = {n: float(p.std()) for n, p in model.named_parameters()}
    ratio = {n: stds[256][n] / stds[64][n] for n in ("bias", "cls", "pos", "emb.weight")}
    assert ratio["bias"] == pytest.approx(1.0, rel=0.15), ratio
    assert ratio["cls"] == pytest.approx(1.0, rel=0.3), ratio
    assert ratio["pos"] == pytest.approx(1.0, rel=0.15), ratio
    assert ratio["emb.weight"] == pytest.approx(1.0, rel=0.15), ratio
