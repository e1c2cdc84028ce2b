"""sptrace.plan: a plan computed on meta, applied to a materialised model, saved and loaded back,
refused on another architecture or width, and the checkpoint marker."""
import io
import json
import warnings

import pytest
import torch
from torch import nn

import models_zoo
import sptrace

SPEC = models_zoo.get("gpt")


def gpt(width, device=None, **kw):
    with torch.device(device or "cpu"):
        return SPEC.build(width, **kw)


def snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same(model, snap):
    return model.state_dict().keys() == snap.keys() and all(torch.equal(v, snap[k]) for k, v in model.state_dict().items())


def hooks(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._state_dict_hooks) + ("forward" in vars(m))
               for m in model.modules())


def group_view(groups):
    return [(g["lr"], g["weight_decay"], g["sptrace_lr_multiplier"], g["sptrace_names"]) for g in groups]


@pytest.fixture(scope="module")
def base():
    return gpt(32, "meta", tied=True)


@pytest.fixture(scope="module")
def meta_plan(base):
    return sptrace.plan(gpt(64, "meta", tied=True), "adamw", lr=3e-3, example_inputs=SPEC.example_inputs(), base=base,
                        weight_decay=0.1, betas=(0.9, 0.95))


def test_plan_on_meta_equals_parametrize_on_a_real_model(meta_plan, base):
    """Same groups, multipliers and (with the library's values as the starting point) the very same
    init as the one-line call, bit for bit."""
    torch.manual_seed(0)
    direct = gpt(64, tied=True)
    torch.manual_seed(1)
    opt = sptrace.parametrize(direct, "adamw", lr=3e-3, example_inputs=SPEC.example_inputs(), base=base,
                              weight_decay=0.1, betas=(0.9, 0.95))
    torch.manual_seed(0)
    model = gpt(64, tied=True)
    torch.manual_seed(1)
    meta_plan.init_(model, reset=False)
    meta_plan.install(model)
    planned = meta_plan.optimizer(model)
    assert same(model, snapshot(direct))
    assert group_view(planned.param_groups) == group_view(opt.param_groups)
    assert planned.defaults["betas"] == (0.9, 0.95) and type(planned) is torch.optim.AdamW
    assert meta_plan.multipliers == opt.sptrace.multipliers and len(meta_plan.multipliers) == 1
    x = SPEC.example_inputs()[0][0]
    with torch.no_grad():
        assert torch.equal(model(x), direct(x))


def test_to_empty_then_init_draws_the_library_law_then_the_plan(meta_plan):
    """After to_empty there are no values: reset_parameters draws the library's, the plan rescales
    them. Every tensor's std matches the one-line call's on a real model (width 64: 10%, or three
    standard errors of a sample std for the small biases)."""
    torch.manual_seed(0)
    direct = gpt(64, tied=True)
    meta_plan.init_(direct, reset=False)
    model = gpt(64, "meta", tied=True)
    model.to_empty(device="cpu")
    with pytest.raises(sptrace.PlanMismatchError, match="to_empty"):  # it unties shared parameters
        meta_plan.init_(model)
    model.lm_head.weight = model.transformer.wte.weight
    torch.manual_seed(3)
    meta_plan.init_(model)
    reference = dict(direct.named_parameters())
    for name, p in model.named_parameters():
        want = reference[name].detach().std() if p.numel() > 1 else reference[name].detach().abs()
        got = p.detach().std() if p.numel() > 1 else p.detach().abs()
        assert torch.isfinite(p).all(), name
        assert got == pytest.approx(float(want), rel=max(0.1, 3 / p.numel() ** 0.5), abs=1e-6), name


def test_save_and_load_give_the_same_plan_without_tracing(meta_plan, tmp_path, monkeypatch):
    path = tmp_path / "plan.json"
    meta_plan.save(path)
    monkeypatch.setattr("sptrace.graph.trace.capture", lambda *a, **k: pytest.fail("load_plan traced"))
    loaded = sptrace.load_plan(path)
    assert loaded == meta_plan and loaded.digest == meta_plan.digest
    assert [p.rule for p in loaded.params] == [p.rule for p in meta_plan.params]  # the rules too (not compared)
    torch.manual_seed(0)
    a, b = gpt(64, tied=True), gpt(64, tied=True)
    b.load_state_dict(a.state_dict())
    meta_plan.install(a)
    loaded.install(b)
    assert group_view(loaded.optimizer(b).param_groups) == group_view(meta_plan.optimizer(a).param_groups)
    x = SPEC.example_inputs()[0][0]
    with torch.no_grad():
        assert torch.equal(a(x), b(x))
    assert json.loads(json.dumps(loaded.to_dict())) == meta_plan.to_dict()


def test_a_factory_is_not_saved_and_must_be_passed_again(base, tmp_path):
    def make(groups, lr):
        return torch.optim.SGD(groups, lr=lr, momentum=0.9)

    planned = sptrace.plan(gpt(64, "meta"), make, lr=0.1, example_inputs=SPEC.example_inputs(), base=base, family="sgd")
    planned.save(tmp_path / "p.json")
    loaded = sptrace.load_plan(tmp_path / "p.json")
    model = gpt(64)
    with pytest.raises(sptrace.SptraceError, match="factory"):
        loaded.optimizer(model)
    assert type(loaded.optimizer(model, make)) is torch.optim.SGD


@pytest.mark.parametrize("other", [
    lambda: gpt(128, tied=True),                       # another width
    lambda: gpt(64, tied=False),                       # untied: the same names, two tensors
    lambda: gpt(64, tied=True, n_layer=3),             # another depth
    lambda: nn.Sequential(nn.Linear(8, 64), nn.Linear(64, 4)),
])
def test_another_architecture_or_width_is_refused_untouched(meta_plan, other):
    torch.manual_seed(0)
    model = other()
    before, n_hooks = snapshot(model), hooks(model)
    for apply in (meta_plan.init_, meta_plan.install, meta_plan.param_groups, meta_plan.optimizer):
        with pytest.raises(sptrace.PlanMismatchError, match="another architecture or width"):
            apply(model)
    assert same(model, before) and hooks(model) == n_hooks


@pytest.mark.parametrize("text", ["{not json", '{"sptrace_plan": 1, "params": []}', '[1, 2]',
                                  '{"sptrace_plan": 99}', "\x00\xff"])
def test_a_file_that_is_not_a_plan_is_a_named_error(meta_plan, tmp_path, text):
    path = tmp_path / "bad.json"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(sptrace.PlanFileError):
        sptrace.load_plan(path)
    broken = meta_plan.to_dict()
    broken["params"][0]["init_std"] = "wide"
    with pytest.raises(sptrace.PlanFileError, match="does not parse"):
        sptrace.load_plan(broken)
    with pytest.raises(sptrace.PlanFileError, match="cannot read"):
        sptrace.load_plan(tmp_path / "missing.json")


def test_a_checkpoint_saved_before_parametrize_is_refused_after(meta_plan):
    torch.manual_seed(0)
    model = gpt(64, tied=True)
    plain = io.BytesIO()
    torch.save(model.state_dict(), plain)
    meta_plan.init_(model, reset=False)
    meta_plan.install(model)
    parametrized = snapshot(model)
    plain.seek(0)
    old = torch.load(plain, weights_only=True)
    with pytest.raises(sptrace.SptraceError, match="saved before sptrace parametrized"):
        model.load_state_dict(old)
    assert same(model, parametrized)
    model.load_state_dict(dict(old))  # without its metadata: loaded deliberately
    assert not same(model, parametrized)

    # saved after: loads into the parametrized model and into a plain one alike
    model.load_state_dict(dict(parametrized))
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.load_state_dict(checkpoint)
        gpt(64, tied=True).load_state_dict(checkpoint)


def test_a_checkpoint_of_another_plan_is_refused(meta_plan, base):
    torch.manual_seed(0)
    model = gpt(64, tied=True)
    meta_plan.install(model)
    other = sptrace.plan(gpt(64, "meta", tied=True), "adam", lr=1e-3, example_inputs=SPEC.example_inputs())
    assert other.digest != meta_plan.digest  # the reference form's tied multiplier is 1/64, not 32/64
    twin = gpt(64, tied=True)
    other.install(twin)
    with pytest.raises(sptrace.SptraceError, match="another sptrace plan"):
        model.load_state_dict(twin.state_dict())


def test_install_replaces_the_previous_hooks(meta_plan):
    model = gpt(64, tied=True)
    sptrace.parametrize(model, "adam", lr=1e-3, example_inputs=SPEC.example_inputs())
    for _ in range(2):
        meta_plan.install(model)
    assert len(model._state_dict_hooks) == 1
    h = torch.randn(3, 64)
    with torch.no_grad():  # the base form's 32/64, once
        assert torch.allclose(model.lm_head(h), 0.5 * h @ model.transformer.wte.weight.T)


def test_groups_of_a_wrapped_model_carry_the_wrapper_names(meta_plan):
    model = gpt(64, tied=True)
    wrapped = nn.DataParallel(model)  # on a CPU it only wraps: parameters named module.*, as DDP's
    groups = meta_plan.param_groups(wrapped)
    assert all(n.startswith("module.") for g in groups for n in g["sptrace_names"])
    params = dict(wrapped.named_parameters())
    assert all(p is params[n] for g in groups for n, p in zip(g["sptrace_names"], g["params"]))


class Scaled(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.inp = nn.Linear(8, width)
        self.gain = nn.Parameter(torch.ones(width))  # a raw parameter: no reset_parameters of its own
        self.out = nn.Linear(width, 4)

    def forward(self, x):
        return self.out(self.inp(x) * self.gain)


def test_init_after_to_empty_needs_a_module_that_can_redraw_the_library_init():
    with torch.device("meta"):
        planned = sptrace.plan(Scaled(64), "adam", lr=1e-3, example_inputs=torch.randn(2, 8), init="keep")
    model = Scaled(64)
    before = snapshot(model)
    with pytest.raises(sptrace.SptraceError, match="reset=False"):
        planned.init_(model)
    assert same(model, before)
    planned.init_(model, reset=False)  # the library's values are there: kept
    assert same(model, before)


def test_the_signature_and_defaults_are_parametrize_s():
    import inspect

    ours, theirs = inspect.signature(sptrace.plan), inspect.signature(sptrace.parametrize)
    assert list(ours.parameters.values()) == list(theirs.parameters.values())


def test_a_failing_install_puts_the_previous_multipliers_back(meta_plan):
    import dataclasses

    model = gpt(64, tied=True)
    meta_plan.install(model)
    h = torch.randn(3, 64)
    with torch.no_grad():
        before = model.lm_head(h)
    broken = dataclasses.replace(meta_plan, multipliers=[*meta_plan.multipliers,
                                                         sptrace.types.Multiplier("", "tied readout input", 2.0, "")])
    with pytest.raises(sptrace.SptraceError, match="root module"):
        broken.install(model)
    with torch.no_grad():
        assert torch.equal(model.lm_head(h), before)
    assert len(model._state_dict_hooks) == 1


def test_a_hugging_face_model_on_meta_gets_its_own_init_law_then_the_plan():
    """initializer_range (N(0, 0.02)), not nn.Linear's default: the law the plan assumed for it."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(n_embd=128, n_head=2, n_layer=1, vocab_size=512, n_positions=64, use_cache=False)
    ids = torch.randint(0, 512, (2, 16))
    torch.manual_seed(0)
    direct = GPT2LMHeadModel(config)
    sptrace.parametrize(direct, "adam", lr=1e-3, example_inputs=ids)
    with torch.device("meta"):
        model = GPT2LMHeadModel(config)
    planned = sptrace.plan(model, "adam", lr=1e-3, example_inputs=ids)
    model.to_empty(device="cpu")
    model.tie_weights()
    torch.manual_seed(1)
    planned.init_(model)
    reference = dict(direct.named_parameters())
    for name, p in model.named_parameters():
        if p.numel() >= 128 * 128:
            assert float(p.detach().std()) == pytest.approx(float(reference[name].detach().std()), rel=0.1), name
