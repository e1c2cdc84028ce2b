"""The one-line call on Hugging Face models whose main input is audio or video, and on
encoder-decoders whose dummy text gives the decoder nothing (sptrace/apply/inputs.py,
docs/parametrize.md "Example inputs").

Before, ``sptrace.parametrize(model, "adam")`` asked for ``example_inputs=`` on Whisper and
Speech2Text (``input_features``), failed on wav2vec2 (its first conv's guessed input has a channel
axis the model adds itself) and on video models (images where frames were expected), and failed on
Pegasus, M2M100 and Switch Transformers, whose base models run no decoder without decoder ids, and
on time-series models (``past_values``)
(found by the catalog scan of AutoModel types, docs/coverage.md). Each model here is built from a
small config with random weights.
"""
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import sptrace
from sptrace.apply.inputs import resolve_example_inputs

pytestmark = pytest.mark.usefixtures("one_thread")

transformers = pytest.importorskip("transformers")
ENCODER_DECODER = dict(d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                       decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=64,
                       pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
AUDIO_ENCODER = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                     conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3), num_conv_pos_embeddings=16,
                     num_conv_pos_embedding_groups=4)
VISION = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, image_size=16)


def every_parameter_reached(opt) -> bool:
    return not any("never reached" in w for w in opt.sptrace.warnings)


def planned_whole(model):
    """The one-line call on ``model``, every parameter reached and classified."""
    opt = sptrace.parametrize(model, "adam")
    assert not opt.sptrace.trace.unclassified and every_parameter_reached(opt)
    return opt


def inferred(opt) -> str:
    return next(w for w in opt.sptrace.warnings if w.startswith("example inputs inferred"))


def test_whisper_gets_features_of_its_config_and_decoder_ids():
    model = transformers.WhisperModel(transformers.WhisperConfig(
        **ENCODER_DECODER, num_mel_bins=8, max_source_positions=16, max_target_positions=16))
    found = resolve_example_inputs(model)
    assert found.kwargs["input_features"].shape == (2, 8, 32)  # features by twice max_source_positions
    assert torch.equal(found.kwargs["decoder_input_ids"], torch.ones(2, 4, dtype=torch.long))  # the start id
    opt = planned_whole(model)
    assert "audio features of the config's size with decoder ids" in inferred(opt)


def test_speech2text_takes_frames_first_the_fallback():
    model = transformers.Speech2TextModel(transformers.Speech2TextConfig(
        **ENCODER_DECODER, input_feat_per_channel=8, input_channels=1, max_source_positions=32,
        max_target_positions=16, conv_channels=16))
    found = resolve_example_inputs(model)
    assert found.kwargs["input_features"].shape == (2, 8, 64)
    assert found.fallback.kwargs["input_features"].shape == (2, 64, 8)
    opt = planned_whole(model)
    assert "'input_features': torch.randn(2, 64, 8)" in inferred(opt)


@pytest.mark.parametrize("kind", ["Wav2Vec2", "Hubert"])
def test_a_speech_encoder_gets_one_second_of_audio(kind):
    config = getattr(transformers, f"{kind}Config")(**AUDIO_ENCODER)
    model = getattr(transformers, f"{kind}Model")(config)
    assert resolve_example_inputs(model).kwargs["input_values"].shape == (2, 16000)
    opt = sptrace.parametrize(model, "adam")
    assert every_parameter_reached(opt) and "one second of audio (16000 samples)" in inferred(opt)
    assert opt.sptrace.trace["feature_extractor.conv_layers.0.conv.weight"].role.value == "input"


def test_a_spectrogram_model_gets_a_spectrogram_of_its_config():
    model = transformers.ASTModel(transformers.ASTConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, max_length=48,
        num_mel_bins=24, patch_size=16))
    assert resolve_example_inputs(model).kwargs["input_values"].shape == (2, 48, 24)
    opt = planned_whole(model)


class Codec(nn.Module):
    """A Hugging Face-like codec whose waveform comes with a channel axis (EnCodec, Mimi)."""
    main_input_name = "input_values"

    def __init__(self, width=16):
        super().__init__()
        self.config = SimpleNamespace(audio_channels=2, sampling_rate=400)
        self.conv, self.head = nn.Conv1d(2, width, 8, stride=4), nn.Conv1d(width, 2, 1)

    def forward(self, input_values):
        return self.head(torch.relu(self.conv(input_values)))


def test_audio_with_channels_where_the_config_has_them():
    found = resolve_example_inputs(Codec())
    assert found.kwargs["input_values"].shape == (2, 2, 400) and found.fallback.kwargs["input_values"].shape == (2, 400)
    opt = sptrace.parametrize(Codec(), "adam")
    assert not opt.sptrace.trace.unclassified and "by channel" in inferred(opt)


@pytest.mark.parametrize("kind", ["VideoMAE", "Timesformer"])
def test_a_video_model_gets_frames_of_its_config(kind):
    config = getattr(transformers, f"{kind}Config")(**VISION, patch_size=8, num_frames=4)
    model = getattr(transformers, f"{kind}Model")(config)
    assert resolve_example_inputs(model).kwargs["pixel_values"].shape == (2, 4, 3, 16, 16)
    opt = planned_whole(model)
    assert "video of the config's num_frames" in inferred(opt)


class ChannelsFirstVideo(nn.Module):
    """Video as (batch, channels, frames, H, W): a Conv3d stem, the fallback order."""
    main_input_name = "pixel_values"

    def __init__(self, width=16):
        super().__init__()
        self.config = SimpleNamespace(num_frames=4, image_size=8, num_channels=3)
        self.stem, self.head = nn.Conv3d(3, width, 2, stride=2), nn.Linear(width, 5)

    def forward(self, pixel_values):
        return self.head(self.stem(pixel_values).mean((2, 3, 4)))


def test_video_channels_before_frames_is_the_fallback():
    opt = sptrace.parametrize(ChannelsFirstVideo(), "adam")
    assert not opt.sptrace.trace.unclassified and "torch.randn(2, 3, 4, 8, 8)" in inferred(opt)


@pytest.mark.parametrize("kind", ["Pegasus", "M2M100"])
def test_an_encoder_decoder_gets_decoder_ids_beside_its_dummy_text(kind):
    config = getattr(transformers, f"{kind}Config")(**ENCODER_DECODER, max_position_embeddings=32)
    model = getattr(transformers, f"{kind}Model")(config)
    found = resolve_example_inputs(model)
    assert torch.equal(found.kwargs["decoder_input_ids"], model.dummy_inputs["input_ids"])  # valid ids
    opt = planned_whole(model)
    assert "the Hugging Face dummy_inputs with decoder ids" in inferred(opt)


def test_given_decoder_ids_are_kept():
    pytest.importorskip("transformers")
    config = transformers.T5Config(d_model=32, d_kv=16, d_ff=64, num_layers=1, num_heads=2, vocab_size=64)
    model = transformers.T5Model(config)  # its dummy holds decoder ids of its own
    found = resolve_example_inputs(model)
    assert torch.equal(found.kwargs["decoder_input_ids"], model.dummy_inputs["decoder_input_ids"])
    assert "with decoder ids" not in found.source


@pytest.mark.parametrize("kind", ["PatchTST", "PatchTSMixer"])
def test_a_time_series_model_gets_a_series_of_its_config(kind):
    config = getattr(transformers, f"{kind}Config")(d_model=32, context_length=24, num_input_channels=3)
    model = getattr(transformers, f"{kind}Model")(config)
    assert resolve_example_inputs(model).kwargs["past_values"].shape == (2, 24, 3)
    opt = planned_whole(model)


class MakesItsOwnDecoderIds(nn.Module):
    """A Hugging Face-like encoder-decoder that refuses given decoder ids (it shifts its own)."""
    main_input_name = "input_ids"

    def __init__(self, width=16):
        super().__init__()
        self.config = SimpleNamespace(is_encoder_decoder=True)
        self.embed, self.head = nn.Embedding(20, width), nn.Linear(width, 20)

    @property
    def dummy_inputs(self):
        return {"input_ids": torch.tensor([[1, 2, 3], [4, 5, 6]])}

    def forward(self, input_ids, decoder_input_ids=None):
        if decoder_input_ids is not None:
            raise ValueError("this model makes its own decoder ids")
        return self.head(self.embed(input_ids))


def test_the_dummy_without_decoder_ids_is_the_fallback():
    found = resolve_example_inputs(MakesItsOwnDecoderIds())
    assert "decoder_input_ids" in found.kwargs and set(found.fallback.kwargs) == {"input_ids"}
    opt = sptrace.parametrize(MakesItsOwnDecoderIds(), "adam")
    assert not opt.sptrace.trace.unclassified and "the Hugging Face dummy_inputs (" in inferred(opt)
