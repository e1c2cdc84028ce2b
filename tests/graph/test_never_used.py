"""Parameters the example inputs never reach (issue: a multimodal model traced on text, a
decoder's cross-attention traced without encoder states): one warning lists them, the call
succeeds, and they are left as they are with the plain lr."""
import torch
import torch.nn as nn

import sptrace


class TextOnly(nn.Module):
    """A text path that is traced, and a 'vision tower' of 3 blocks that these inputs never reach."""

    def __init__(self):
        super().__init__()
        self.text = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 4))
        self.vision = nn.ModuleDict({f"block{i}": nn.Sequential(nn.Linear(64, 64), nn.LayerNorm(64)) for i in range(3)})

    def forward(self, x):
        return self.text(x)


def test_one_warning_names_every_unreached_parameter_by_module():
    traced = sptrace.trace(TextOnly(), torch.randn(2, 8))
    unreached = [w for w in traced.warnings if "never used" in w]
    assert len(unreached) == 1, traced.warnings
    assert unreached[0].startswith("12 parameters never used by the forward pass")
    assert all(f"vision.block{i}.* (4)" in unreached[0] for i in range(3))


def test_a_few_unreached_parameters_are_named_one_by_one():
    model = TextOnly()
    del model.vision["block1"], model.vision["block2"]
    traced = sptrace.trace(model, torch.randn(2, 8))
    (line,) = [w for w in traced.warnings if "never used" in w]
    assert "vision.block0.0.weight, vision.block0.0.bias, vision.block0.1.weight, vision.block0.1.bias" in line


def test_parametrize_leaves_unreached_parameters_as_they_were():
    model = TextOnly()
    before = {n: p.detach().clone() for n, p in model.vision.named_parameters()}
    opt = sptrace.parametrize(model, "adam", example_inputs=(torch.randn(2, 8),))
    assert all(torch.equal(p, before[n]) for n, p in model.vision.named_parameters())
    lrs = {n: g["lr"] for g in opt.param_groups for n in g["sptrace_names"]}
    assert all(lrs[f"vision.{n}"] == 1e-3 for n in before)
    assert sum("never used" in w for w in opt.sptrace.warnings) == 1


class LayerDropNet(nn.Module):
    """Blocks skipped in training with probability ``p`` (LayerDrop; ``p=1``: every block, every call),
    one kept in eval mode by its owner (a frozen norm), the rest following the model's mode."""

    def __init__(self, p=1.0, n=64):
        super().__init__()
        self.stem, self.head = nn.Linear(8, n), nn.Linear(n, 4)
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(n, n), nn.GELU(), nn.Linear(n, n)) for _ in range(3))
        self.norm = nn.LayerNorm(n).eval()
        self.p = p

    def forward(self, x):
        x = self.stem(x)
        for block in self.blocks:
            if not (self.training and torch.rand(()) < self.p):
                x = x + block(x)
        return self.head(self.norm(x))


class AuxiliaryHead(nn.Module):
    """An auxiliary classifier that runs only in training (torchvision's Inception, GoogLeNet)."""

    def __init__(self, n=64):
        super().__init__()
        self.body, self.head, self.aux = nn.Linear(8, n), nn.Linear(n, 4), nn.Linear(n, 4)

    def forward(self, x):
        h = torch.relu(self.body(x))
        return (self.head(h), self.aux(h)) if self.training else self.head(h)


def test_blocks_skipped_in_training_are_classified_from_a_capture_in_eval_mode():
    model = LayerDropNet()
    modes = {name: m.training for name, m in model.named_modules()}
    traced = sptrace.trace(model, torch.randn(2, 8))
    assert all(r.classified for r in traced), [r.name for r in traced if not r.classified]
    assert traced["blocks.1.0.weight"].role.value == "hidden" and traced["blocks.1.0.weight"].width_dims == (0, 1)
    assert not [w for w in traced.warnings if "never used" in w]
    assert any("12 parameters the forward reaches only in eval mode" in w for w in traced.warnings), traced.warnings
    assert {name: m.training for name, m in model.named_modules()} == modes  # the frozen norm stays in eval


def test_an_auxiliary_head_is_classified_from_a_capture_in_train_mode():
    model = AuxiliaryHead().eval()
    traced = sptrace.trace(model, torch.randn(2, 8))
    assert traced["aux.weight"].role.value == "readout" and not model.training
    assert any("reaches only in train mode" in w for w in traced.warnings)


def test_parameters_no_mode_reaches_are_still_named_once():
    traced = sptrace.trace(TextOnly().eval(), torch.randn(2, 8))
    assert [w for w in traced.warnings if "never used" in w] and not [w for w in traced.warnings if "only in" in w]


def test_hugging_face_wav2vec2_with_layerdrop_is_classified_whole():
    """Wav2Vec2 skips each encoder layer in training with probability ``layerdrop`` (0.1 by default;
    1.0 here: every layer, every call). Traced in train mode, its layers were never used."""
    transformers = __import__("pytest").importorskip("transformers")
    config = transformers.Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                         intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 2),
                                         conv_kernel=(10, 3), num_conv_pos_embeddings=8,
                                         num_conv_pos_embedding_groups=2, layerdrop=1.0, vocab_size=12)
    torch.manual_seed(0)
    traced = sptrace.trace(transformers.Wav2Vec2ForCTC(config), torch.randn(2, 1000))
    layers = [r for r in traced if ".encoder.layers." in r.name]
    assert layers and all(r.classified for r in layers), [r.name for r in layers if not r.classified]
    assert traced["wav2vec2.encoder.layers.1.feed_forward.intermediate_dense.weight"].role.value == "hidden"


class FailsInEval(TextOnly):
    """Its vision tower is unreached, and its forward raises in eval mode."""

    def forward(self, x):
        if not self.training:
            raise RuntimeError("this model only runs in training")
        return self.text(x)


def test_a_forward_that_fails_in_the_other_mode_leaves_the_first_capture_as_it_was():
    model = FailsInEval()
    traced = sptrace.trace(model, torch.randn(2, 8))
    assert model.training and [w for w in traced.warnings if "never used" in w]
    assert traced["text.0.weight"].classified and not traced["vision.block0.0.weight"].classified
