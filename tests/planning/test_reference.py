"""planning/reference.py (the reference-width form) and planning/library.detect_laws."""
import math

import pytest
import torch
import torch.nn as nn

from sptrace.planning.library import detect_laws, drawn_with
from sptrace.planning.plan import plan
from sptrace.planning.reference import at_reference, model_width
from sptrace.types import SptraceError
from tests.planning.test_rules import R, catalogue, depthwise, mlp, rec
from sptrace.types import Role


def test_model_width_is_the_most_common_width_size():
    assert model_width(mlp(512)) == 512
    down = rec("down", (512, 2048), (1,), (0,), {0, 1}, Role.HIDDEN)
    up = rec("up", (2048, 512), (1,), (0,), {0, 1}, Role.HIDDEN)
    assert model_width([*mlp(512), down, up]) == 512  # 4n appears twice, n five times
    assert model_width([rec("x", (3, 4), (1,), (0,), set(), Role.HIDDEN)]) is None


def test_at_reference_scales_width_axes_and_depthwise_groups():
    fc1, fc2, fc3 = at_reference(mlp(1024), 256)
    assert fc1.base_shape == (256.0, 3072) and fc2.base_shape == (256.0, 256.0) and fc3.base_shape == (10, 256.0)
    (dw,) = at_reference([depthwise(1024)], 256)
    assert dw.base_groups == 256.0 and dw.base_fan_out == 1.0  # one channel per group at every width
    with pytest.raises(SptraceError, match="reference_width must be a positive int"):
        at_reference(mlp(64), 0)


@pytest.mark.parametrize("family", ["sgd", "adam", "spectral"])
def test_a_width_axis_smaller_than_the_width_ratio_is_planned(family):
    """A squeeze-excitation bottleneck (4 channels where the model is 1152 wide: torchvision's
    EfficientNet-B0) is 0.89 channels at the reference width 256. Only ratios are read, so it is
    planned as a model built at 256 would have it; before, planning raised "empty block" and the
    one-line call failed on every torchvision EfficientNet."""
    squeeze = rec("se.fc1", (4, 1152), (1,), (0,), {0, 1}, Role.HIDDEN)
    excite = rec("se.fc2", (1152, 4), (1,), (0,), {0, 1}, Role.HIDDEN)
    records = at_reference([*mlp(1152), squeeze, excite], 256)
    assert math.isclose(records[-2].base_fan_out, 4 * 256 / 1152)
    plans = {p.name: p for p in plan(records, family, lr=1e-3)}
    assert all(math.isfinite(p.lr) and p.lr > 0 for p in plans.values())
    if family == "adam":  # lr ∝ 1/fan_in from the reference: x 256/1152 and x 256/1152 too
        assert math.isclose(plans["se.fc1"].lr, 1e-3 * 256 / 1152) and math.isclose(plans["se.fc2"].lr, plans["se.fc1"].lr)


@pytest.mark.parametrize("family", ["sgd", "adam", "spectral"])
def test_the_reference_form_equals_the_base_form_against_a_model_at_the_reference_width(family):
    """A real base at width 64 and the virtual one (reference_width=64) give the same plan."""
    with_base = plan(catalogue(256, 64), family, lr=1e-3)
    no_base = [type(r)(**{**r.__dict__, "base_shape": None, "base_groups": None}) for r in catalogue(256, 64)]
    virtual = plan(no_base, family, lr=1e-3, reference_width=64)
    for a, b in zip(with_base, virtual):
        assert (a.lr, a.init, a.init_scale, a.spectral_scale) == (R(b.lr), b.init, R(b.init_scale),
                                                                   R(b.spectral_scale)), a.name
        assert b.form == "reference" and a.form == "base"


def layers(width):
    return nn.ModuleDict({"fc1": nn.Linear(48, width), "fc2": nn.Linear(width, width), "fc3": nn.Linear(width, 10),
                          "up": nn.Linear(width, 4 * width), "down": nn.Linear(4 * width, width),
                          "conv": nn.Conv2d(width, width, 3)})


def law_records(width):
    """The records of :func:`layers`' weights."""
    return [*mlp(width, n0=48), rec("conv", (width, width, 3, 3), (1, 2, 3), (0,), {0, 1}, Role.HIDDEN),
            rec("up", (4 * width, width), (1,), (0,), {0, 1}, Role.HIDDEN),
            rec("down", (width, 4 * width), (1,), (0,), {0, 1}, Role.HIDDEN)]


def laws_of(module, width, means=False):
    tensors = {name: layer.weight.detach() for name, layer in module.items()}
    return detect_laws(law_records(width), {k: float(t.std()) for k, t in tensors.items()},
                       {k: float(t.mean()) for k, t in tensors.items()} if means else None)


@pytest.mark.parametrize("width", [64, 833, 2048])
def test_detect_laws_reads_torch_kaiming_xavier_and_constant(width):
    torch.manual_seed(0)
    module = layers(width)
    assert set(laws_of(module, width).values()) == {"torch"}
    for layer in module.values():
        nn.init.normal_(layer.weight, std=0.02)  # Hugging Face's initializer_range: 0.02 is torch's at fan-in 833
    assert set(laws_of(module, width).values()) == {"constant"}
    for layer in module.values():
        nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
    assert set(laws_of(module, width).values()) == {"fan_out"}
    for layer in module.values():
        nn.init.xavier_uniform_(layer.weight)
    assert set(laws_of(module, width).values()) == {"fan_avg"}
    for name in ("fc1", "fc2", "fc3", "up", "down"):
        nn.init.normal_(module[name].weight, std=0.02)
    module["conv"].reset_parameters()  # timm's ViT: linears at 0.02, the patch conv by PyTorch's law
    laws = laws_of(module, width)
    assert laws["fc2"] == "constant" and laws["conv"] == "torch"


@pytest.mark.parametrize("seed", range(5))
def test_a_torch_model_whose_weights_mostly_share_a_fan_in_is_not_read_as_constant(seed):
    """The zoo GPT at width 32: most matrices have fan-in 32, so a fitted constant matches them
    exactly; the law must still be PyTorch's (it was read as constant on seed 3 of 0-4)."""
    import models_zoo
    import sptrace
    from sptrace.apply.parametrize import _detected_laws

    torch.manual_seed(seed)
    model = models_zoo.get("gpt").build(32)
    traced = sptrace.trace(model, *models_zoo.get("gpt").example_inputs()[0])
    assert set(_detected_laws(traced, model).values()) == {"torch"}


def test_a_weight_drawn_off_centre_is_its_module_s_own_constant():
    """Every shape law draws centred values; U(0, b) (Funnel Transformer's relative-attention kernel,
    b its initializer_range) has a mean of sqrt(3) stds: drawn by the module's own code with
    width-free bounds, so constant, whatever law its std happens to sit near."""
    torch.manual_seed(0)
    module = layers(64)
    nn.init.uniform_(module["conv"].weight, 0.0, 0.1)
    before = laws_of(module, 64)
    assert before["conv"] == "torch"  # its std alone (0.029) fits no law: it took the model's
    laws = laws_of(module, 64, means=True)
    assert laws["conv"] == "constant" and laws["fc2"] == "torch" and laws["up"] == "torch"


def test_a_declared_std_is_the_law_only_where_a_weight_was_drawn_with_it():
    """A config's initializer_range holds where some weight's std is within 5 % of it: N(0, 0.1) at
    every fan-in; not Funnel's N(0, 1/(fan_in + fan_out)), 0.0625 for a 128 x 128 matrix, 0.075 for
    the 128 x 48 input layer (25 % off)."""
    torch.manual_seed(0)
    module, records = layers(128), law_records(128)
    for layer in module.values():
        nn.init.normal_(layer.weight, std=0.1)
    stds = {k: float(t.weight.detach().std()) for k, t in module.items()}
    assert drawn_with(records, stds, 0.1) and not drawn_with(records, stds, 0.2)
    for layer in module.values():
        fan_out, fan_in = layer.weight.shape[0], layer.weight[0].numel()
        nn.init.normal_(layer.weight, std=(fan_in + fan_out) ** -0.5)
    stds = {k: float(t.weight.detach().std()) for k, t in module.items()}
    assert not drawn_with(records, stds, 0.1)


@pytest.mark.parametrize("width", [64, 512])
def test_a_shape_law_times_a_gain_of_its_own_is_that_law(width):
    """Funnel Transformer's N(0, 1/(fan_in + fan_out)) is xavier times 1/sqrt(2): as drawn, every law
    misses some weight by more than 15 %, and the best by mean error was PyTorch's law at width 64
    (xavier at 512: the read changed with width); xavier with its gain fitted fits them all."""
    torch.manual_seed(0)
    module = layers(width)
    for layer in module.values():
        fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(layer.weight)
        nn.init.normal_(layer.weight, std=(fan_in + fan_out) ** -0.5)
    assert set(laws_of(module, width).values()) == {"fan_avg"}


@pytest.mark.parametrize("width", [64, 256])
def test_nn_bilinear_is_read_by_its_own_law_not_the_fan_in_law(width):
    """nn.Bilinear draws its (out, in1, in2) weight from U(±1/sqrt(in1)); the fan-in law (PyTorch's
    for Linear / Conv, fan-in in1 x in2) would take its std to fall with in2 too, so the plan scaled
    it, and its bias by it, sqrt(width) too little (nat@0 +0.45 over widths 32-256 under Adam)."""
    torch.manual_seed(0)
    module = layers(width)
    module["join"] = nn.Bilinear(width, width, width)
    records = [*law_records(width), rec("join", (width, width, width), (1, 2), (0,), {0, 1, 2}, Role.HIDDEN)]
    laws = detect_laws(records, {name: float(layer.weight.detach().std()) for name, layer in module.items()})
    assert laws["join"] == "in1" and set(laws.values()) - {"in1"} == {"torch"}


def _expert_transformer(width: int):
    """The records and sampled stds of a transformer's Linears beside hand-drawn (E, d, 4d) / (E, 4d, d)
    expert stacks, N(0, 1/d_in)."""
    module = nn.ModuleDict({"qkv": nn.Linear(width, 3 * width), "o": nn.Linear(width, width),
                            "router": nn.Linear(width, 4), "head": nn.Linear(width, 77)})
    stds = {name: float(layer.weight.detach().std()) for name, layer in module.items()}
    stds.update(w_in=float((torch.randn(4, width, 4 * width) / width ** 0.5).std()),
                w_out=float((torch.randn(4, 4 * width, width) / (4 * width) ** 0.5).std()))
    records = [rec("qkv", (3 * width, width), (1,), (0,), {0, 1}, Role.HIDDEN),
               rec("o", (width, width), (1,), (0,), {0, 1}, Role.HIDDEN),
               rec("router", (4, width), (1,), (0,), {1}, Role.READOUT),
               rec("head", (77, width), (1,), (0,), {1}, Role.READOUT),
               rec("w_in", (4, width, 4 * width), (1,), (2,), {1, 2}, Role.HIDDEN),
               rec("w_out", (4, 4 * width, width), (1,), (2,), {1, 2}, Role.HIDDEN)]
    return records, stds


@pytest.mark.parametrize("width", [64, 256])
def test_hand_drawn_expert_stacks_do_not_make_the_linears_constant(width):
    """A transformer whose MoE experts are two hand-written (E, d, 4d) / (E, 4d, d) parameters drawn
    N(0, 1/d_in): they fit no law as drawn (PyTorch's law reads fan-in d·4d), and outvoted the nn.Linear
    weights, which fit PyTorch's law exactly but which a fitted constant matched too (one fan-in, d).
    The model was read as constant, so the reference form scaled every hidden weight by sqrt(256/d)
    (nat@0 -0.50 over widths 64-512, Adam and SGD). A constant needs weights of two fan-ins it fits."""
    torch.manual_seed(0)
    records, stds = _expert_transformer(width)
    laws = detect_laws(records, stds)
    assert "constant" not in laws.values(), laws
    # in1 (std ∝ 1/sqrt(shape[1])) is PyTorch's law for 2-D weights and the experts' per-expert fan-in
    assert laws["w_in"] == laws["w_out"] == "in1"


@pytest.mark.parametrize("seed", range(12))
def test_a_constant_is_shared_within_sampling_noise_not_within_a_laws_tolerance(seed):
    """The same transformer at width 64, drawn by seed: its (E, 4d, d) experts' std 1/sqrt(4d) is the
    Linears' 1/sqrt(3d) (PyTorch's law at fan-in d) over sqrt(4/3) = 1.155, just outside the 15 % a law
    may miss by. Counted as sharing the fitted constant whenever the sample noise brought it inside
    (seeds 2 and 9 here), they gave the constant its second fan-in and it won: the reference form
    then drew every hidden weight twice too large at width 64 for those seeds (MoE GPT, 6 seeds:
    nat@0 of w_in 2.24 mean at width 64 against 1.50 at 128-512; the module updates' slopes -0.37
    (Adam) and -1.3 (SGD router) came from that one width). Two fan-ins share a std within 5 %."""
    torch.manual_seed(seed)
    records, stds = _expert_transformer(64)
    assert set(detect_laws(records, stds).values()) == {"in1"}


@pytest.mark.parametrize("width", [128, 512])
def test_a_middle_weight_does_not_take_an_unbacked_constant(width):
    """A hand-drawn N(0, 1/d) square matrix between two nn.Linear (fan-ins 32 and d): the fitted constant,
    the median of three stds, is that matrix's own std, and it took it (widths 128 and 512; xavier at 64
    and 256), so the reference form scaled its init by sqrt(256/d): its spectral norm 2.78 at 128, 1.40 at
    512, 1.95 at 64 and 256. A constant no two fan-ins share is no weight's law."""
    records = [rec("inp", (width, 32), (1,), (0,), {0}, Role.INPUT),
               rec("mid", (width, width), (1,), (0,), {0, 1}, Role.HIDDEN),
               rec("out", (10, width), (1,), (0,), {1}, Role.READOUT)]
    stds = {"inp": (3 * 32) ** -0.5, "mid": 1.01 * width ** -0.5, "out": (3 * width) ** -0.5}  # 1 %: a sample's
    laws = detect_laws(records, stds)
    assert laws["mid"] != "constant" and laws["inp"] == laws["out"] == "torch", laws


@pytest.mark.parametrize("width", [64, 256, 1024])
def test_a_shared_std_of_one_over_sqrt_width_is_a_law_in_width(width):
    """Every matrix from N(0, 1/width), whatever its fan-in (Switch Transformers' experts, wi d -> 4d and
    wo 4d -> d alike): one model cannot tell that from a width-free constant, but a constant that is
    exactly 1/sqrt(width) is read as falling with width (a shape law), not as 0.0625 at every width."""
    torch.manual_seed(0)
    module = layers(width)
    for layer in module.values():
        nn.init.normal_(layer.weight, std=width ** -0.5)
    tensors = {name: layer.weight.detach() for name, layer in module.items()}
    stds = {k: float(t.std()) for k, t in tensors.items()}
    assert set(detect_laws(law_records(width), stds).values()) == {"constant"}
    assert "constant" not in set(detect_laws(law_records(width), stds, width=width).values())
    for layer in module.values():
        nn.init.normal_(layer.weight, std=0.02)  # Hugging Face's initializer_range stays a constant
    stds = {k: float(layer.weight.detach().std()) for k, layer in module.items()}
    assert set(detect_laws(law_records(width), stds, width=width).values()) == {"constant"}


def test_hugging_face_switch_transformers_experts_are_not_read_as_constant():
    transformers = pytest.importorskip("transformers")
    import sptrace
    from sptrace.apply.parametrize import _detected_laws

    torch.manual_seed(0)
    width = 128
    model = transformers.SwitchTransformersForConditionalGeneration(transformers.SwitchTransformersConfig(
        d_model=width, d_ff=4 * width, d_kv=16, num_heads=width // 16, num_layers=1, num_decoder_layers=1,
        vocab_size=77, dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0, num_experts=4,
        expert_capacity=64, num_sparse_encoder_layers=1, num_sparse_decoder_layers=1))
    ids = torch.randint(0, 77, (2, 8))
    traced = sptrace.trace(model, input_ids=ids, decoder_input_ids=ids)
    laws = _detected_laws(traced, model)
    experts = {name: law for name, law in laws.items() if ".experts." in name}
    assert experts and "constant" not in experts.values(), experts
