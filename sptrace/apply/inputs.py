"""The example inputs ``parametrize`` and ``param_groups`` trace the model on (docs/parametrize.md,
"Example inputs").

Given ones are normalised (a tensor, a tuple of positional arguments, ``(args, kwargs)``, or a
mapping of keyword arguments). Without them, the model says what it takes, in this order:

1. its own ``example_inputs()`` method;
2. a Hugging Face model (duck-typed: a ``dummy_inputs`` mapping of tensors, passed by keyword, when
   it holds the model's ``main_input_name``; a text model whose forward also takes ``pixel_values``
   gets images of its ``vision_config``'s size beside the text, one per text of the batch, each text
   first led by the image tokens the model's ``get_image_features`` says an image fills (LLaVA,
   PaliGemma: :func:`_with_image_tokens`), with the text alone as the last fallback). Where the dummy does not hold the main input, the main input is made from
   the config: ``pixel_values`` as 2 random images of its ``num_channels`` and ``image_size``, or
   video of ``num_frames`` of them; ``input_values`` as one second of audio at its
   ``sampling_rate`` (by ``audio_channels`` where it has them) or a spectrogram of its
   ``max_length`` by ``num_mel_bins``; ``input_features`` as its feature count by twice
   ``max_source_positions`` frames, in either order; ``past_values`` (time series) as its
   ``context_length`` by ``num_input_channels``. A decoder whose forward reads an encoder's
   output also gets random encoder states, so that its cross-attention is traced
   (:func:`with_encoder_states`), and an encoder-decoder whose inputs give its decoder nothing gets
   decoder ids (:func:`with_decoder_ids`);
3. a timm model (duck-typed: ``pretrained_cfg`` or ``default_cfg`` with ``input_size`` (C, H, W)):
   a batch of 2 random images of that size;
4. the layer that first takes the input, where the model's structure says which one that is: the
   first module of an ``nn.Sequential`` (nested Sequentials entered, parameter-free elementwise
   modules such as ReLU, Dropout or Flatten passed over), or, for any other model whose forward
   takes exactly one required argument, its submodules with parameters of their own, in
   registration order: the first of a type below gives the input, and the next ones' inputs (each
   distinct input once, at most :data:`MAX_ENTRY_TRIES` in all) are the fallbacks, for a model
   whose input goes to a layer registered later (a LoRA adapter's base registered before the
   embedding, a hypernetwork's generator run on a parameter); modules of other types are passed
   over. The types: an ``nn.Linear`` (float (2, in_features)), an ``nn.Conv1d/2d/3d`` (float (2,
   in_channels, L[, L, L]), L the model's own ``image_size``, else large enough for the chain of
   every conv and pool of the model: :func:`_conv_sides`), an ``nn.ConvTranspose1d/2d/3d`` (float
   (2, in_channels, 8[, 8, 8]): a generator's stem), an ``nn.Embedding`` / ``nn.EmbeddingBag``
   (int64 (2, 8) ids below num_embeddings: 2 bags of 8 for a bag), an ``nn.RNN`` / ``nn.LSTM`` /
   ``nn.GRU`` or an ``nn.MultiheadAttention`` (float (2, 8, features), sequence first unless
   ``batch_first``: the first layer of ``nn.TransformerEncoder``), or an ``nn.LayerNorm`` /
   ``nn.RMSNorm`` (float (2, *normalized_shape)).

A model wrapped by ``torch.compile``, ``nn.DataParallel`` or ``DistributedDataParallel`` is asked
through the wrapper (:func:`unwrapped`): the wrapper's forward is ``*args, **kwargs``.

Sources 2 to 4 are inferred, and rule 4's registration order is only a guess: the trace that
follows runs the model on them, each fallback in turn where the one before does not run (none
runs more than once: where the first runs, nothing else is tried), and when none runs the caller
gets the error of :func:`missing_inputs_error` (every input tried, the forward's signature and the
exact argument to pass), never a graph of something else. Random values come from a private
generator: the global RNG (and so the init that follows) is the same as with explicit inputs.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, Optional

import torch
from torch import nn

from ..graph.trace import forward_parameters, forward_signature, modes_restored, signature_parameters
from ..types import SptraceError

BATCH = 2
SEQUENCE = 8
MIN_SIDE = 8
MAX_SIDE = {1: 4096, 2: 256, 3: 32}  # per conv dimension: the inferred input stays CPU-cheap
SIDE_FALLBACKS = (2, 4)  # multiples of the estimated side tried where it does not run
PASS_THROUGH = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.Flatten,
                nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Mish, nn.Tanh, nn.Sigmoid, nn.ELU, nn.SELU,
                nn.Softplus, nn.Hardswish, nn.Hardtanh)
CONVS = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}
TABLES = (nn.Embedding, nn.EmbeddingBag)  # looked up by int64 ids (a 2-D batch of a bag's ids is fixed-length bags)
TRANSPOSED_CONVS = {nn.ConvTranspose1d: 1, nn.ConvTranspose2d: 2, nn.ConvTranspose3d: 3}
NORMS = tuple(n for n in (nn.LayerNorm, getattr(nn, "RMSNorm", None)) if n is not None)  # RMSNorm: torch >= 2.4
ENTRY_LAYERS = (nn.Linear, *TABLES, nn.RNNBase, *NORMS)  # a model that is one of these takes that layer's input
POOLS = {nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3, nn.AvgPool1d: 1, nn.AvgPool2d: 2, nn.AvgPool3d: 3}
DOC = "docs/parametrize.md, \"Example inputs\""
# rule 4 under registration order: inputs tried in all, each a forward that fails before the next is
# tried (a large model that none fits must not run many), and enough for the layer the input goes
# to when it is registered after a readout or beside a layer that reads a parameter
MAX_ENTRY_TRIES = 6
# Hugging Face's names for the hidden states of an encoder that a decoder's cross-attention reads,
# in the order they are tried; ``encoder_outputs`` takes a tuple whose first item is the states
ENCODER_STATES = ("encoder_hidden_states", "encoder_outputs")
ENCODER_POSITIONS = 4  # a few encoder positions: the cross-attention's weights do not depend on them
# config fields with the width of the states the cross-attention reads, where it is not the model's own
ENCODER_DIM_FIELDS = ("cross_attention_hidden_size", "encoder_hidden_size")
DECODER_INPUTS = ("decoder_input_ids", "decoder_inputs_embeds")
IMAGE_TOKEN_FIELDS = ("image_token_id", "image_token_index")  # the config's id of the token an image feature fills
DECODER_POSITIONS = 4  # decoder ids beside audio or images: a few positions
SAMPLING_RATE = 16000  # one second of audio where the config gives no sampling_rate (speech models' rate)
MAX_AUDIO_FRAMES = 4096  # frames of a spectrogram or of features: above it, a CPU-cheap default instead
DEFAULT_AUDIO_FRAMES = 64
ADDED = {"encoder_hidden_states": "encoder states for its cross-attention",
         "encoder_outputs": "encoder states for its cross-attention",
         "decoder_input_ids": "decoder ids"}  # what the dummy text is given, as the source names it


class ExampleInputs(NamedTuple):
    args: tuple
    kwargs: dict
    source: str  # where they came from, with the expression that builds them when inferred
    inferred: bool  # not given nor the model's example_inputs(): a run of the model confirms them
    # inferred inputs to try when the model does not run on these (text alone, where text and images failed)
    fallback: Optional["ExampleInputs"] = None


def resolve_example_inputs(model: nn.Module, example_inputs: Any = None) -> ExampleInputs:
    """The (args, kwargs) to trace ``model`` on: the given ones, or the model's (module docstring)."""
    if example_inputs is not None:
        return ExampleInputs(*_normalise(example_inputs, "example_inputs"), "given", False)
    model = unwrapped(model)
    if callable(getattr(model, "example_inputs", None)):
        where = f"{type(model).__name__}.example_inputs()"
        return ExampleInputs(*_normalise(model.example_inputs(), where), where, False)
    for find in (_hugging_face, _timm, _first_layer):
        found = find(model)
        if found is not None:
            return _on_device(model, *found)
    raise missing_inputs_error(model)


def _on_device(model, args, kwargs, source, fallback=None) -> ExampleInputs:
    device = _device(model)
    move = lambda t: t.to(device) if isinstance(t, torch.Tensor) else t  # noqa: E731
    return ExampleInputs(tuple(map(move, args)), {k: move(v) for k, v in kwargs.items()}, source, True,
                         fallback and _on_device(model, *fallback))


def unwrapped(model: nn.Module) -> nn.Module:
    """The model a wrapper that passes its inputs through holds (``torch.compile``'s
    ``OptimizedModule``, ``nn.DataParallel``, ``DistributedDataParallel``): its forward is
    ``*args, **kwargs``, so what the inputs are is said by the wrapped model."""
    wrappers = (nn.DataParallel, nn.parallel.DistributedDataParallel)
    while True:
        if isinstance(model, wrappers):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile's OptimizedModule
            model = model._orig_mod
        else:
            return model


def missing_inputs_error(model: nn.Module, tried: Optional[str] = None) -> SptraceError:
    """The one error for a model whose inputs sptrace cannot tell: its forward and what to pass."""
    model = unwrapped(model)
    why = f"it tried {tried}" if tried else "the model does not say what its forward takes"
    return SptraceError(
        f"pass example_inputs=: sptrace traces the model on one batch of inputs, and {why}. Its forward is "
        f"{forward_signature(model)}: {_suggestion(model)}. A batch of 2 is enough; or give the model an "
        f"example_inputs() method that returns them ({DOC})")


# ---------------------------------------------------------------------------------------------


def _normalise(value, where: str) -> tuple[tuple, dict]:
    if isinstance(value, Mapping):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise SptraceError(f"{where}: a mapping of example inputs is passed by keyword, so its keys must be "
                               f"argument names (str), got {bad!r}; pass positional inputs as a tuple")
        return (), dict(value)
    if isinstance(value, torch.Tensor):
        return (value,), {}
    if isinstance(value, (tuple, list)):
        if len(value) == 2 and isinstance(value[0], (tuple, list)) and isinstance(value[1], Mapping):
            return tuple(value[0]), dict(value[1])
        return tuple(value), {}
    raise SptraceError(f"{where} must be a tensor, a tuple of positional arguments, (args, kwargs) or a dict of "
                       f"keyword arguments, got {type(value).__name__} ({DOC})")


def _generator() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _float_dtype(model) -> torch.dtype:
    return next((p.dtype for p in model.parameters() if p.dtype.is_floating_point), torch.get_default_dtype())


def _device(model) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def _images(model, channels: int, size, batch: int = BATCH) -> torch.Tensor:
    sides = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
    return _random(model, batch, int(channels), *map(int, sides))


def _hugging_face(model):
    try:
        dummy = getattr(model, "dummy_inputs", None)
    except Exception:  # noqa: BLE001 - a property that cannot build them: not a source
        dummy = None
    main = getattr(model, "main_input_name", None)
    if isinstance(dummy, Mapping) and dummy and all(isinstance(v, torch.Tensor) for v in dummy.values()) \
            and (main is None or main in dummy):
        return _dummy_text(model, dict(dummy))
    return _chain([_with_decoder(model, kwargs, what) for kwargs, what in _main_input_tries(model, main)])


def _with_decoder(model, kwargs: dict, what: str) -> tuple[tuple, dict, str]:
    full = with_decoder_ids(model, kwargs)
    extra = " with decoder ids" if len(full) > len(kwargs) else ""
    return (), full, f"{what}{extra} ({_expression((), full)})"


def _dummy_text(model, dummy: dict):
    """The dummy text (with encoder states or decoder ids where the model needs them), and before it
    images of the config's size where the forward also takes ``pixel_values``; the text alone is
    the fallback, and, where decoder ids were added, the text without them after it."""
    plain = with_encoder_states(model, (), dummy)[1]
    tries = [(kwargs, _dummy_source(dummy, kwargs)) for kwargs in (with_decoder_ids(model, plain), plain)]
    if len(tries[0][0]) == len(plain):
        tries.pop()
    text = tries[0][0]
    takes_images = "pixel_values" in _forward_names(model)
    batch = next((t.shape[0] for t in text.values() if t.dim()), BATCH)  # the text's: one batch of pairs
    images = _config_images(model, batch) if takes_images and "pixel_values" not in text else None
    if images is not None:
        tries.insert(0, ({**text, "pixel_values": images}, tries[0][1] + " and images of the config's size"))
        tokens = _with_image_tokens(model, text, images)
        if tokens is not None:
            tries.insert(0, (tokens, tries[0][1] + ", each text led by the image's tokens"))
    return _chain([((), kwargs, f"{what} ({_expression((), kwargs)})") for kwargs, what in tries])


def _with_image_tokens(model, text: dict, images: torch.Tensor) -> Optional[dict]:
    """The text led by one image's worth of image tokens, beside the images, for a model whose text
    must hold a token per image feature (LLaVA, PaliGemma, InternVL: the config's ``image_token_id``):
    as many as the model's own ``get_image_features`` gives an image, run once in eval mode without
    gradients (every module's mode restored); ``image_sizes`` too where it takes them (LLaVA-NeXT).
    ``None`` where the model says none of this or the probe fails."""
    config, ids = getattr(model, "config", None), text.get("input_ids")
    token = next((getattr(config, f) for f in IMAGE_TOKEN_FIELDS if _is_size(getattr(config, f, None))), None)
    probe = getattr(model, "get_image_features", None)
    if token is None or not callable(probe) or not isinstance(ids, torch.Tensor) or ids.dim() != 2:
        return None
    extra = {}
    if "image_sizes" in {p.name for p in signature_parameters(probe) or []}:
        extra["image_sizes"] = torch.tensor([list(images.shape[-2:])] * images.shape[0], device=images.device)
    try:
        with modes_restored(model), torch.no_grad():
            model.eval()
            count = _features_per_image(probe(pixel_values=images.to(_device(model)), **extra), images.shape[0])
    except Exception:  # noqa: BLE001 - a probe that fails is not a source (the other tries follow)
        return None
    if not count:
        return None
    lead = lambda t, value: torch.cat([torch.full((t.shape[0], count), value, dtype=t.dtype, device=t.device), t], 1)  # noqa: E731
    out = {"input_ids": lead(ids, token), "pixel_values": images, **extra}
    if isinstance(text.get("attention_mask"), torch.Tensor):
        out["attention_mask"] = lead(text["attention_mask"], 1)
    return out


def _features_per_image(out, batch: int) -> Optional[int]:
    """How many features ``get_image_features`` made for each image: its ``pooler_output`` (the
    projected features, where it returns a model output) or its tensor, ``(batch, n, d)``, ``(batch
    · n, d)`` or a list of ``(n, d)``."""
    if not isinstance(out, (torch.Tensor, list, tuple)):
        pooled = getattr(out, "pooler_output", None)
        out = pooled if pooled is not None else getattr(out, "last_hidden_state", None)
    if isinstance(out, (list, tuple)) and out and isinstance(out[0], torch.Tensor) and out[0].dim() == 2:
        return int(out[0].shape[0])
    if isinstance(out, torch.Tensor) and out.dim() in (2, 3):
        return int(out.shape[1]) if out.dim() == 3 else int(out.shape[0]) // batch
    return None


def _dummy_source(dummy: dict, kwargs: dict) -> str:
    added = [ADDED[name] for name in kwargs if name not in dummy]
    return "the Hugging Face dummy_inputs" + (f" with {' and '.join(added)}" if added else "")


def _main_input_tries(model, main) -> list[tuple[dict, str]]:
    """Inputs of the config's size for a model whose main input is images, video or audio, in the
    order to try them: ``[(kwargs, what they are)]``."""
    config = getattr(model, "config", None)
    if main == "pixel_values":
        return [({main: x}, what) for x, what in _video_or_images(model, config)]
    if main == "input_values":
        return [({main: x}, what) for x, what in _raw_audio(model, config)]
    if main == "input_features":
        return [({main: x}, "audio features of the config's size") for x in _audio_features(model, config)]
    length, channels = getattr(config, "context_length", None), getattr(config, "num_input_channels", None)
    if main == "past_values" and _is_size(length) and _is_size(channels):  # PatchTST, PatchTSMixer
        return [({main: _random(model, BATCH, length, channels)}, "a series of the config's context_length "
                                                                   "by num_input_channels")]
    return []


def _chain(tries: list):
    """``(args, kwargs, source, fallback)`` of the first try, each falling back on the next; ``None``
    for no tries."""
    found = None
    for args, kwargs, source in reversed(tries):
        found = (args, kwargs, source, found)
    return found


def _video_or_images(model, config) -> list:
    """Video where the config (or its ``vision_config``) has ``num_frames``: ``(batch, frames,
    channels, H, W)`` (VideoMAE, TimeSformer, ViViT, X-CLIP), channels before frames as the fallback;
    images of the config's size otherwise."""
    images = _config_images(model)
    if images is None:
        return []
    frames = next((c.num_frames for c in (config, getattr(config, "vision_config", None))
                   if _is_size(getattr(c, "num_frames", None))), None)
    if frames is None:
        return [(images, "images of the config's num_channels and image_size")]
    video = _random(model, images.shape[0], frames, *images.shape[1:])
    what = "video of the config's num_frames, num_channels and image_size"
    return [(video, what), (video.transpose(1, 2).contiguous(), what)]


def _raw_audio(model, config) -> list:
    """For ``input_values``: a spectrogram where the config sizes one (``max_length`` frames by
    ``num_mel_bins``: the Audio Spectrogram Transformer), else one second of waveform at the config's
    ``sampling_rate`` (16 kHz where it has none): ``(batch, samples)`` (wav2vec2 and its family), or
    ``(batch, audio_channels, samples)`` first where the config has ``audio_channels`` (EnCodec,
    Mimi); each shape falls back on the other."""
    frames, bins = getattr(config, "max_length", None), getattr(config, "num_mel_bins", None)
    if _is_size(frames) and _is_size(bins) and frames <= MAX_AUDIO_FRAMES:
        return [(_random(model, BATCH, frames, bins), "a spectrogram of the config's max_length and num_mel_bins")]
    rate = getattr(config, "sampling_rate", None)
    samples = rate if _is_size(rate) else SAMPLING_RATE
    channels = getattr(config, "audio_channels", None)
    mono = (_random(model, BATCH, samples), f"one second of audio ({samples} samples)")
    with_channels = (_random(model, BATCH, channels if _is_size(channels) else 1, samples),
                     f"one second of audio ({samples} samples) by channel")
    return [with_channels, mono] if _is_size(channels) else [mono, with_channels]


def _audio_features(model, config) -> list:
    """For ``input_features``: the config's feature count (``num_mel_bins``, ``input_feat_per_channel``
    × ``input_channels``, or ``feature_size``) by twice ``max_source_positions`` frames (what a
    stride-2 stem such as Whisper's turns into its positions; 64 frames where the config has none),
    features first (Whisper), then frames first (Speech2Text)."""
    per_channel = getattr(config, "input_feat_per_channel", None)
    features = next((f for f in (getattr(config, "num_mel_bins", None),
                                 _is_size(per_channel) and per_channel * (getattr(config, "input_channels", 1) or 1),
                                 getattr(config, "feature_size", None)) if _is_size(f)), None)
    if features is None:
        return []
    sources = getattr(config, "max_source_positions", None)
    frames = 2 * sources if _is_size(sources) and 2 * sources <= MAX_AUDIO_FRAMES else DEFAULT_AUDIO_FRAMES
    return [_random(model, BATCH, features, frames), _random(model, BATCH, frames, features)]


def _forward_names(model) -> set[str]:
    return {p.name for p in forward_parameters(model) or []}


def _random(model, *shape) -> torch.Tensor:
    return torch.randn(*shape, generator=_generator()).to(_float_dtype(model))


def with_decoder_ids(model: nn.Module, kwargs: dict) -> dict:
    """``kwargs`` with decoder ids added where ``model`` is an encoder-decoder (``is_encoder_decoder``)
    whose forward takes ``decoder_input_ids`` and the inputs give the decoder nothing (Pegasus, M2M100,
    Switch Transformers, Whisper: their base models do not make them from the encoder's ids). The
    ids are the dummy text's own (valid ids), or :data:`DECODER_POSITIONS` of the config's
    ``decoder_start_token_id`` (0 where it has none) beside audio or images."""
    config = getattr(model, "config", None)
    names = _forward_names(model)
    if not getattr(config, "is_encoder_decoder", False) or "decoder_input_ids" not in names \
            or any(n in kwargs for n in DECODER_INPUTS):
        return kwargs
    ids = kwargs.get("input_ids")
    if not isinstance(ids, torch.Tensor) or ids.dtype.is_floating_point:
        first = next((t for t in kwargs.values() if isinstance(t, torch.Tensor) and t.dim()), None)
        start = getattr(config, "decoder_start_token_id", None)
        batch = first.shape[0] if first is not None else BATCH
        ids = torch.full((batch, DECODER_POSITIONS), start if _is_size(start) else 0, dtype=torch.long)
    return {**kwargs, "decoder_input_ids": ids.clone()}


def _config_images(model, batch: int = BATCH) -> Optional[torch.Tensor]:
    """A batch of images of the size the model's config gives (its own ``image_size`` and
    ``num_channels``, or its ``vision_config``'s: a text-and-image model such as CLIP, whose
    ``dummy_inputs`` hold token ids alone); ``None`` where no config says."""
    config = getattr(model, "config", None)
    for where in (config, getattr(config, "vision_config", None)):
        size = getattr(where, "image_size", None)
        if size:
            return _images(model, getattr(where, "num_channels", None) or 3, size, batch)
    return None


def with_encoder_states(model: nn.Module, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
    """``(args, kwargs)`` with random encoder states added where ``model`` is a decoder whose
    forward takes an encoder's hidden states by Hugging Face's names (``encoder_hidden_states``, or
    ``encoder_outputs`` as a one-tuple) and the inputs do not hold them: without them its
    cross-attention is never run, and its parameters are left out of the plan (docs/parametrize.md,
    "Parameters the inputs never reach"). The states are float (batch of the first tensor input,
    :data:`ENCODER_POSITIONS`, width), the width the config gives them (``cross_attention_hidden_size``
    / ``encoder_hidden_size``, else its ``hidden_size``). Nothing is added where the config says the
    model has no cross-attention (``add_cross_attention=False``: BERT-style models that only may be
    decoders) or is an encoder-decoder (``is_encoder_decoder``: its own encoder computes the states,
    and given states would skip it)."""
    names = _forward_names(model)
    name = next((n for n in ENCODER_STATES if n in names), None)
    config = getattr(model, "config", None)
    if name is None or any(n in kwargs for n in ENCODER_STATES) or getattr(config, "add_cross_attention", None) is False \
            or getattr(config, "is_encoder_decoder", False):  # its own encoder makes them: given, it would be skipped
        return args, kwargs
    dim = next((getattr(config, f) for f in (*ENCODER_DIM_FIELDS, "hidden_size") if _is_size(getattr(config, f, None))),
               None)
    first = next((t for t in (*args, *kwargs.values()) if isinstance(t, torch.Tensor) and t.dim()), None)
    if dim is None or first is None:
        return args, kwargs
    states = torch.randn(first.shape[0], ENCODER_POSITIONS, dim, generator=_generator()).to(_float_dtype(model))
    return args, {**kwargs, name: states if name == ENCODER_STATES[0] else (states,)}


def _is_size(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _timm(model):
    for attr in ("pretrained_cfg", "default_cfg"):
        cfg = getattr(model, attr, None)
        size = cfg.get("input_size") if isinstance(cfg, Mapping) else getattr(cfg, "input_size", None)
        if isinstance(size, (tuple, list)) and len(size) == 3:
            args = (_images(model, size[0], size[1:]),)
            return args, {}, f"images of the {attr}'s input_size {tuple(size)} ({_expression(args, {})})"
    return None


def _first_layer(model):
    """The input of the layer that first takes it (module docstring, rule 4), then, under registration
    order, the inputs of the next layers as fallbacks: each distinct input once, at most
    :data:`MAX_ENTRY_TRIES` in all."""
    tries, sides = [], {}
    for layer, name in _entry_layers(model):
        where = f"its first layer {name}" if not tries else f"its next layer in registration order {name}"
        for x in _layer_inputs(model, layer, sides):
            if any(x.shape == t.shape and x.dtype == t.dtype and torch.equal(x, t) for (t,), _, _ in tries):
                continue
            if not x.dtype.is_floating_point:
                text = f"example_inputs=(torch.randint(0, {layer.num_embeddings}, {tuple(x.shape)}),)"
            else:
                text = _expression((x,), {})
            tries.append(((x,), {}, f"the input of {where} ({type(layer).__name__}): {text}"))
        if len(tries) >= MAX_ENTRY_TRIES:
            break
    return _chain(tries[:MAX_ENTRY_TRIES])


def _layer_inputs(model, layer: nn.Module, sides: dict) -> list[torch.Tensor]:
    """One batch of what ``layer`` takes, in the order to try them (module docstring, rule 4);
    none for another layer. ``sides``: the conv sides of the model by dimension, once computed."""
    if isinstance(layer, TABLES):
        return [torch.randint(0, layer.num_embeddings, (BATCH, SEQUENCE), generator=_generator())]
    if type(layer) in CONVS:
        dim = CONVS[type(layer)]
        if dim not in sides:
            sides[dim] = _conv_sides(model, dim)
        shapes = [(BATCH, layer.in_channels, *(side,) * dim) for side in sides[dim]]
    elif isinstance(layer, nn.Linear):
        shapes = [(BATCH, layer.in_features)]
    elif type(layer) in TRANSPOSED_CONVS:  # any side fits: a transposed conv only grows it
        shapes = [(BATCH, layer.in_channels, *(MIN_SIDE,) * TRANSPOSED_CONVS[type(layer)])]
    elif isinstance(layer, (nn.RNNBase, nn.MultiheadAttention)):
        features = layer.input_size if isinstance(layer, nn.RNNBase) else layer.embed_dim
        shapes = [(BATCH, SEQUENCE, features) if layer.batch_first else (SEQUENCE, BATCH, features)]
    elif isinstance(layer, NORMS) and layer.normalized_shape:
        shapes = [(BATCH, *layer.normalized_shape)]
    else:
        return []
    dtype = next((p.dtype for p in layer.parameters()), _float_dtype(model))
    return [torch.randn(*shape, generator=_generator()).to(dtype) for shape in shapes]


def _conv_sides(model, dim: int) -> list[int]:
    """The input sides to try, in order, for a model whose first layer is a conv: the model's own
    ``image_size`` where it has one (torchvision's ViT checks it); else the least side on which every
    conv and pool leaves a map 2 wide, at most :data:`MAX_SIDE`, then that side times
    :data:`SIDE_FALLBACKS` (a table of 4 × 4 patch positions runs on 32 × 32 images only); where the
    cap cuts the estimate, the estimate itself up to twice the cap (torchvision's Inception v3: its
    auxiliary head needs 299); last, the least side that leaves a map 1 wide (a Flatten into a
    Linear sized for it)."""
    own = getattr(model, "image_size", None)
    if dim == 2 and _is_size(own):
        return [own]
    cap = MAX_SIDE[dim]
    wide, exact = (max(MIN_SIDE, _min_side(model, dim, last)) for last in (2, 1))
    sides = [wide, *(min(wide * f, cap) for f in SIDE_FALLBACKS)] if wide <= cap else [cap, min(wide, 2 * cap)]
    return list(dict.fromkeys([*sides, min(exact, 2 * cap)]))


def _entry_layers(model):
    """The modules the forward's input may go to first, in the order to try them: the one the
    structure says, or every submodule with parameters of its own in registration order (module
    docstring, rule 4)."""
    if isinstance(model, ENTRY_LAYERS) or type(model) in CONVS or type(model) in TRANSPOSED_CONVS:
        yield model, "(the model itself)"
        return
    if isinstance(model, nn.Sequential):
        found, name = _sequential_entry(model, "")
        if found is not None:
            yield found, name
        return
    required = [p for p in forward_parameters(model) or []
                if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if len(required) != 1 or required[0].kind is required[0].KEYWORD_ONLY:
        return
    for name, module in model.named_modules():
        if name and next(module.parameters(recurse=False), None) is not None:
            yield module, name


def _sequential_entry(seq: nn.Sequential, prefix: str) -> tuple[Optional[nn.Module], str]:
    for name, child in seq.named_children():
        path = f"{prefix}{name}"
        if isinstance(child, nn.Sequential):
            found, where = _sequential_entry(child, f"{path}.")
            if found is not None or where:
                return found, where
            continue
        if isinstance(child, PASS_THROUGH) and not (isinstance(child, nn.Flatten) and child.start_dim != 1):
            continue
        return child, path
    return None, ""


def _min_side(model, dim: int, last: int) -> int:
    """The smallest input side on which every conv and pool of ``dim`` dimensions leaves a map
    ``last`` wide, as if they were one chain in registration order (parallel branches make it larger
    than needed, never smaller). 2 wide is tried first: a size-1 axis broadcasts against any
    parameter (one patch plus a table of 16 positions runs, as 16 copies of the patch) and hides
    which axis is which."""
    side = last
    chain = [m for m in model.modules() if CONVS.get(type(m)) == dim or POOLS.get(type(m)) == dim]
    for m in reversed(chain):
        kernel, stride, pad, dilation = (max(_tuple(getattr(m, a, d), dim)) for a, d in
                                         (("kernel_size", 1), ("stride", 1), ("padding", 0), ("dilation", 1)))
        if getattr(m, "padding", 0) == "same":
            pad = dilation * (kernel - 1) // 2
        side = max(1, (side - 1) * stride + dilation * (kernel - 1) + 1 - 2 * pad)
    return side


def _tuple(value, dim: int) -> tuple[int, ...]:
    if isinstance(value, str):  # "valid" / "same" padding: "same" is handled by the caller
        return (0,)
    return tuple(value) if isinstance(value, (tuple, list)) else (value,) * dim


def _expression(args: tuple, kwargs: dict) -> str:
    """The Python expression of ``example_inputs=`` that builds inputs of these shapes."""
    parts = [_tensor_expression(a) for a in args]
    positional = f"({parts[0]},)" if len(parts) == 1 else f"({', '.join(parts)})"
    if kwargs:
        body = ", ".join(f"{k!r}: {_tensor_expression(v)}" for k, v in kwargs.items())
        return f"example_inputs={{{body}}}" if not parts else f"example_inputs=({positional}, {{{body}}})"
    return f"example_inputs={positional}"


def _tensor_expression(t) -> str:
    if isinstance(t, tuple):
        return f"({', '.join(map(_tensor_expression, t))},)"
    if not isinstance(t, torch.Tensor):
        return repr(t)
    if t.dtype.is_floating_point:
        return f"torch.randn({', '.join(map(str, t.shape))})"
    high = int(t.max()) + 1 if t.numel() and t.device.type != "meta" else 2
    return f"torch.randint(0, {high}, {tuple(t.shape)})"


def _suggestion(model) -> str:
    """``example_inputs=(x,)`` / ``{"name": ...}`` from the forward's own parameter names."""
    params = forward_parameters(model) or []
    positional = [p.name for p in params if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    keyword = [p.name for p in params if p.default is p.empty and p.kind is p.KEYWORD_ONLY]
    if not positional and not keyword:
        main = getattr(model, "main_input_name", None)
        optional = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        keyword = [main] if main in optional else optional[:1]
    if not positional and not keyword:
        return "no named argument; pass example_inputs=(x,) with the tensors it is called with"
    shown = [f"{n!r}: {n}" for n in keyword]
    args = f"({positional[0]},)" if len(positional) == 1 else f"({', '.join(positional)})"
    if positional and keyword:
        text = f"example_inputs=({args}, {{{', '.join(shown)}}})"
    elif positional:
        text = f"example_inputs={args}"
    else:
        text = f"example_inputs={{{', '.join(shown)}}}"
    names = ", ".join(positional + keyword)
    return (f"pass {text}, where {names} {'is' if len(positional + keyword) == 1 else 'are'} one batch of what it "
            "takes, e.g. torch.randn(2, 3, 32, 32) for images, torch.randint(0, vocab_size, (2, 16)) for token ids")
