"""Coord checks of a token embedding multiplied by sqrt(width) in the forward (Gemma's
ScaledWordEmbedding; docs/rules.md "Constants in the forward"), with
tests/validation/external_coord.py's conventions (the one-line ``sptrace.parametrize`` call,
validate's lr, the zoo GPT's tokens). With the constant read as part of the operator (graph/constants.py)
every module output and parameter slope stays within ±0.25; planned as if the embedding's output
were used directly (the constant not read), the embedding's output change grows like width^+1/2.
The hand-written model and Hugging Face's Gemma are fast; Gemma 2 and Gemma 3 are ``-m slow``."""
import pytest
import torch

import sptrace.graph.trace as trace_module
from tests.external_models import gemma
from tests.graph.test_forward_constants import ScaledEmbeddingLM, ScaledReadoutLM
from tests.validation.external_coord import external_coord_check

WIDTHS = (64, 128, 256, 512)


def check(build, optimizer, widths=WIDTHS, n_seeds=2):
    return external_coord_check(build, "gpt", optimizer, "sptrace", widths, steps=3, batch_size=8, n_seeds=n_seeds,
                                tokens=16)


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "spectral"])
def test_an_embedding_times_sqrt_width_is_width_stable(optimizer, one_thread):
    verdict = check(ScaledEmbeddingLM, optimizer)
    assert verdict.passed, verdict.summary()


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_without_reading_the_constant_the_embedding_grows(optimizer, monkeypatch, one_thread):
    monkeypatch.setattr(trace_module, "forward_constants", lambda *args: {})
    verdict = check(ScaledEmbeddingLM, optimizer)
    assert not verdict.passed
    assert any(c.module.startswith("emb") and c.status == "grows" for c in verdict.worst), verdict.summary()


class ScaledProjectionLM(torch.nn.Module):
    """A projection whose output the parent multiplies by width^-1/2 (Gemma 4's per-layer
    projection): c W is planned, so the Linear's own output grows like width^+1/2, as expected."""

    def __init__(self, width):
        super().__init__()
        self.emb, self.proj = torch.nn.Embedding(77, width), torch.nn.Linear(width, width)
        self.head = torch.nn.Linear(width, 77)
        self.c = width ** -0.5

    def forward(self, ids):
        return self.head(torch.relu(self.proj(self.emb(ids)) * self.c))


@pytest.mark.parametrize("read", [True, False])
def test_a_constant_outside_the_module_is_expected_of_its_output(read, monkeypatch, one_thread):
    if not read:
        monkeypatch.setattr(trace_module, "forward_constants", lambda *args: {})
    verdict = check(ScaledProjectionLM, "adam")
    assert verdict.passed == read, verdict.summary()
    if read:
        assert verdict.modules["proj"].checks["delta_rms@3"].expected == 0.5


@pytest.mark.parametrize("model_type", ["gemma", pytest.param("gemma2", marks=pytest.mark.slow),
                                        pytest.param("gemma3_text", marks=pytest.mark.slow)])
def test_hugging_face_gemma_is_width_stable(model_type, one_thread):
    """One decoder layer, widths 64-256 (measured: 9 s, 4 s, 3 s on 2 cores)."""
    pytest.importorskip("transformers")
    verdict = check(lambda width: gemma(width, model_type), "adam", widths=(64, 128, 256))
    assert verdict.passed, verdict.summary()


def test_hugging_face_gemma_fails_with_the_constant_not_read(monkeypatch, one_thread):
    pytest.importorskip("transformers")
    monkeypatch.setattr(trace_module, "forward_constants", lambda *args: {})
    verdict = check(gemma, "adam", widths=(64, 128, 256), n_seeds=1)
    assert any(c.module == "model.embed_tokens" and c.status == "grows" for c in verdict.worst), verdict.summary()


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_readout_reading_a_scaled_input_is_width_stable(optimizer, one_thread):
    """A readout that reads ``h * width**-0.5`` (T5's LM head) is planned as the operator ``c W``."""
    verdict = check(lambda width: ScaledReadoutLM(width, tied=False), optimizer)
    assert verdict.passed, verdict.summary()


def _head_change(build, optimizer):
    return check(build, optimizer, n_seeds=3).modules["head"].checks["delta_rms@3"].slope


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_a_tied_readout_reading_a_scaled_input_moves_as_a_plain_tied_one(optimizer, monkeypatch, one_thread):
    """T5's tied LM head: its multiplier carries the constant, so the logits change as a plain tied
    readout's do (this shallow tied model's own slope, -0.29 under Adam at these widths and steps,
    is a tied readout's, with or without a constant); not reading it, they shrink like width^-1/2."""
    from sptrace.graph import constants

    plain = _head_change(lambda width: ScaledEmbeddingLM(width, "none", tied=True), optimizer)
    scaled = _head_change(ScaledReadoutLM, optimizer)
    assert abs(scaled - plain) < 0.1, (scaled, plain)
    monkeypatch.setattr(constants, "_input_constant", lambda *args: None)
    assert _head_change(ScaledReadoutLM, optimizer) < plain - 0.3


class TwiceScaledEmbeddingLM(torch.nn.Module):
    """Two embedding modules sharing one weight, the parent scaling each lookup by sqrt(width)
    (Pegasus and Marian: the encoder's and the decoder's ``embed_tokens`` tied to the shared table,
    ``embed_tokens(ids) * embed_scale`` in each stack's forward)."""

    def __init__(self, width):
        super().__init__()
        self.encoder_embed, self.decoder_embed = torch.nn.Embedding(77, width), torch.nn.Embedding(77, width)
        self.decoder_embed.weight = self.encoder_embed.weight
        self.fc, self.head = torch.nn.Linear(width, width), torch.nn.Linear(width, 77)
        self.c = width ** 0.5

    def forward(self, ids):
        context = self.encoder_embed(ids) * self.c
        return self.head(torch.relu(self.fc(self.decoder_embed(ids) * self.c + context.mean(1, keepdim=True))))


def test_every_use_a_parent_scales_is_expected_to_scale(one_thread):
    """Each use carries its own constant, so each module reaching the table expects n^-1/2 of its
    own output (only the first did: the second module's output change read as a shrink, -0.5)."""
    verdict = check(TwiceScaledEmbeddingLM, "adam")
    assert verdict.passed, verdict.summary()
    assert {verdict.modules[m].checks["delta_rms@3"].expected for m in ("encoder_embed", "decoder_embed")} == {-0.5}
