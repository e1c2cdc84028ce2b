"""Images inferred beside a Hugging Face model's dummy text come one per text (sptrace/apply/inputs.py,
docs/parametrize.md "Example inputs"): a model that reads text and images as pairs (HF BridgeTower's
cross-modal layers add the two towers' states) cannot run on 3 texts and 2 images.

Before, the images were a batch of 2 whatever the text's batch (transformers' dummy_inputs hold 3
texts), so the one-line call failed on BridgeTower ("The size of tensor a (3) must match the size of
tensor b (2)"), the text alone failing too; found by the catalog scan of AutoModel types
(docs/coverage.md).
"""
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import sptrace
from sptrace.apply.inputs import resolve_example_inputs

pytestmark = pytest.mark.usefixtures("one_thread")


class Pairs(nn.Module):
    """Text and image states added per example: the batches must agree."""
    main_input_name = "input_ids"

    def __init__(self, width=32):
        super().__init__()
        self.config = SimpleNamespace(vision_config=SimpleNamespace(image_size=8, num_channels=3))
        self.embed, self.vision = nn.Embedding(20, width), nn.Linear(3 * 8 * 8, width)
        self.head = nn.Linear(width, 5)

    @property
    def dummy_inputs(self):
        return {"input_ids": torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 9]])}

    def forward(self, input_ids, pixel_values):
        return self.head(self.embed(input_ids).mean(1) + self.vision(pixel_values.flatten(1)))


def test_inferred_images_come_one_per_text():
    found = resolve_example_inputs(Pairs())
    assert found.kwargs["pixel_values"].shape == (3, 3, 8, 8), found.source
    traced = sptrace.parametrize(Pairs(), "adam").sptrace.trace
    assert not traced.unclassified, [(r.name, r.problem) for r in traced.unclassified]


def test_hugging_face_bridgetower_runs_on_its_inferred_inputs():
    transformers = pytest.importorskip("transformers")
    tower = dict(hidden_size=64, num_hidden_layers=1, num_attention_heads=4, intermediate_size=128)
    config = transformers.BridgeTowerConfig(  # its vision tower has hidden_size // 64 heads
        hidden_size=64, num_hidden_layers=1, num_attention_heads=4,
        text_config=dict(tower, vocab_size=50), vision_config=dict(tower, image_size=32, patch_size=16))
    torch.manual_seed(0)
    model = transformers.BridgeTowerModel(config).eval()
    found = resolve_example_inputs(model)
    assert found.kwargs["pixel_values"].shape[0] == found.kwargs["input_ids"].shape[0], found.source
    with torch.no_grad():
        model(**found.kwargs)


class ImageTokens(nn.Module):
    """A Hugging Face-like vision-language model whose text must hold one image token per image
    feature (LLaVA, PaliGemma, InternVL), found through the config's ``image_token_id`` and the
    model's ``get_image_features``."""
    main_input_name = "input_ids"
    FEATURES = 4  # per image: a 2x2 grid of patches

    def __init__(self, width=32):
        super().__init__()
        self.config = SimpleNamespace(image_token_id=19, vision_config=SimpleNamespace(image_size=8, num_channels=3))
        self.embed, self.patch = nn.Embedding(20, width), nn.Conv2d(3, width, 4, stride=4)
        self.head = nn.Linear(width, 20)

    @property
    def dummy_inputs(self):
        return {"input_ids": torch.tensor([[1, 2, 3], [4, 5, 6]])}

    def get_image_features(self, pixel_values):
        return self.patch(pixel_values).flatten(2).transpose(1, 2)  # (images, FEATURES, width)

    def forward(self, input_ids, pixel_values=None):
        h = self.embed(input_ids)
        if pixel_values is not None:
            at = input_ids == self.config.image_token_id
            features = self.get_image_features(pixel_values).reshape(-1, h.shape[-1])
            if int(at.sum()) != features.shape[0]:
                raise ValueError(f"Image features and image tokens do not match: tokens {int(at.sum())}, "
                                 f"features {features.shape[0]}")
            h = h.masked_scatter(at[..., None], features)
        return self.head(h)


def test_a_text_that_must_hold_image_tokens_gets_them():
    """Before, the images beside the dummy text failed (no image tokens), the text alone was traced,
    and the vision tower was left out of the plan (HF Mistral 3 in the catalog's build: 24 tensors)."""
    model = ImageTokens()
    rng = torch.get_rng_state()
    found = resolve_example_inputs(model)
    assert torch.equal(torch.get_rng_state(), rng) and model.training  # the probe: eval, no gradient, restored
    ids = found.kwargs["input_ids"]
    assert ids.shape == (2, 4 + 3) and (ids[:, :4] == 19).all() and found.kwargs["pixel_values"].shape == (2, 3, 8, 8)
    opt = sptrace.parametrize(ImageTokens(), "adam")
    assert not opt.sptrace.trace.unclassified and opt.sptrace.trace["patch.weight"].role.value == "input"
    assert any("each text led by the image's tokens" in w for w in opt.sptrace.warnings)


def test_hugging_face_paligemma_s_text_holds_the_image_tokens():
    """PaliGemma also runs on images without their tokens (its vision tower traced, its features
    unused); with them, the features reach the text as in use."""
    transformers = pytest.importorskip("transformers")
    tower = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
    config = transformers.PaliGemmaConfig(
        vision_config=dict(tower, image_size=32, patch_size=8), projection_dim=32,
        text_config=dict(tower, vocab_size=80, num_key_value_heads=1, head_dim=16), image_token_index=79)
    opt = sptrace.parametrize(transformers.PaliGemmaModel(config), "adam")
    assert not opt.sptrace.trace.unclassified
    assert any("each text led by the image's tokens" in w for w in opt.sptrace.warnings)
