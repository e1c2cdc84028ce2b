"""Architectures from the Hugging Face and timm catalogs, by name (``hf:<model_type>``,
``timm:<model_name>``): built from the library's own config at a small width with random weights,
nothing downloaded, and trained on the zoo's shipped data (character-level Shakespeare for causal
language models, digits for image models).

Width is the config's width knobs: the model dim is ``width``; every other size that grows with it in
the architecture (feed-forward, expert, low-rank and state sizes) keeps its default ratio to the
model dim; heads keep a fixed size (``HEAD_DIM`` for Hugging Face configs, the default size for
timm models) and their number grows. Hugging Face depth, expert count and vocabulary are shrunk to
small fixed values so that a model builds in a second. docs/coverage.md measures both catalogs.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
import os
from typing import Any, Callable, Iterator, Optional

import torch

import models_zoo
from models_zoo import ZooSpec

from ..types import SptraceError

HEAD_DIM = 16
LAYERS = 2
EXPERTS = 4
EXPERTS_PER_TOKEN = 2
COORD_WIDTHS = (64, 128, 256)
DEFAULT_WIDTH = 64
# Grouped-query attention keeps its query/key-value share up to this many, so that the narrowest
# build (64 / HEAD_DIM = 4 heads) keeps two key/value heads: with one, k and v have no head axis,
# their fan-out is one fixed head_dim (readouts, started at zero) at that width and hidden at the
# others. Multi-query models (one key/value head by default) keep their one.
MAX_KV_SHARE = 2

# Config fields, by what width does to them (a config uses its own names; these are every name the
# Hugging Face causal-LM configs use for each knob).
MODEL_DIM_FIELDS = ("hidden_size", "n_embd", "d_model", "emb_dim", "dim", "hidden_dim", "embed_dim", "model_dim")
# Sizes proportional to the model dim in the architecture: they keep their default ratio to it.
PROPORTIONAL_FIELDS = (
    "intermediate_size", "n_inner", "ffn_dim", "d_ff", "dim_ff", "dff", "ffn_hidden_size", "encoder_ffn_dim",
    "decoder_ffn_dim", "moe_intermediate_size", "shared_expert_intermediate_size", "shared_intermediate_size",
    "shared_experts_intermediate_size", "intermediate_size_mlp", "attention_hidden_size", "embedding_size",
    "kv_lora_rank", "q_lora_rank", "o_lora_rank", "hidden_size_per_layer_input", "backbone_hidden_size",
    "mamba_d_ssm", "time_step_rank", "mamba_dt_rank", "laurel_rank", "expert_ffn_hidden_size",
)
HEAD_COUNT_FIELDS = ("num_attention_heads", "n_head", "n_heads", "num_heads", "encoder_attention_heads",
                     "decoder_attention_heads", "mamba_n_heads", "n_mamba_heads", "linear_num_value_heads",
                     "swa_num_attention_heads", "index_n_heads", "linear_num_heads")
KV_HEAD_FIELDS = {"num_key_value_heads": "num_attention_heads", "num_kv_heads": "num_attention_heads",
                  "linear_num_key_heads": "linear_num_value_heads",
                  "swa_num_key_value_heads": "swa_num_attention_heads"}
# Per-head sizes: fixed at HEAD_DIM-scale (each shrinks by the same factor as head_dim).
HEAD_SIZE_FIELDS = ("head_dim", "attention_head_dim", "dim_head", "mamba_d_head", "qk_rope_head_dim",
                    "qk_nope_head_dim", "v_head_dim", "qk_head_dim", "linear_key_head_dim",
                    "linear_value_head_dim", "linear_head_dim", "swa_head_dim", "index_head_dim", "rotary_dim",
                    "kv_channels")  # Megatron's name for the per-head size (JetMoE)
LAYER_FIELDS = ("num_hidden_layers", "n_layer", "n_layers", "num_layers", "decoder_layers", "encoder_layers")
EXPERT_FIELDS = ("num_experts", "num_local_experts", "n_routed_experts", "moe_num_experts", "zero_expert_num")
EXPERT_TOP_K_FIELDS = ("num_experts_per_tok", "num_experts_per_token", "moe_topk", "moe_k", "topk_group", "n_group",
                       "num_expert_group")
FIRST_DENSE_FIELDS = ("first_k_dense_replace", "num_dense_layers", "moe_layer_start_index")
GROUP_FIELDS = ("n_groups", "mamba_n_groups")  # groups of state-space heads: one, so that any head count divides
# A compression rate (tokens pooled into one key/value entry: ``compress_rates``, ``compress_rate_hca``,
# ``indexer_compress_ratio``) counts tokens, not width: the training sequences are
# ``models_zoo.gpt.BLOCK_SIZE`` (64) tokens, and a rate above that pools no window at all (DeepSeek-V4's
# heavily compressed attention, 128 by default: an empty compressed sequence, whose RMS is NaN, and a
# compressor with no effect on the loss). Rates are cut to a quarter of a sequence, so that every
# compressor emits several entries; smaller rates stay.
MAX_COMPRESS_RATE = models_zoo.gpt.BLOCK_SIZE // 4


@dataclasses.dataclass(frozen=True)
class ExternalSpec(ZooSpec):
    """A model from outside the zoo (a catalog architecture, a user's factory) as a zoo model: a zoo
    model's data and loss; its output may be a library's output object (the loss reads its ``logits``)."""

    def loss(self, output: Any, target: torch.Tensor) -> torch.Tensor:
        return super().loss(getattr(output, "logits", output), target)


def catalog_spec(name: str) -> ExternalSpec:
    """``hf:<model_type>`` or ``timm:<model_name>`` as a zoo model on the zoo's data."""
    library, _, arch = name.partition(":")
    if not arch:
        raise SptraceError(f"{name!r}: name the architecture after the prefix, e.g. hf:llama or timm:resnet18")
    if library == "hf":
        hf_config(arch, DEFAULT_WIDTH)  # fail now on an unknown or unwidenable type, not at the first build
        data = models_zoo.get("gpt")
        return ExternalSpec(name, f"Hugging Face {arch} causal LM from its config, random weights", DEFAULT_WIDTH,
                           COORD_WIDTHS, "language-modelling", lambda width, **fields: hf_model(arch, width, **fields),
                           data.batches_fn)
    if library == "timm":
        digits = models_zoo.get("vit")
        timm_width_args(arch, DEFAULT_WIDTH)
        size = _input_size(arch, digits)
        image = _image_args(arch, size)
        return ExternalSpec(name, f"timm {arch} from its constructor, random weights", DEFAULT_WIDTH, COORD_WIDTHS,
                           "classification", lambda width, **kwargs: timm_model(arch, width, **{**image, **kwargs}),
                           _resized(digits.batches_fn, size))
    raise SptraceError(f"unknown catalog {library!r} in {name!r}: use hf:<model_type> or timm:<model_name>")


# -- Hugging Face -------------------------------------------------------------------------------


def _transformers():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # configs are built from their classes: nothing to fetch
    try:
        import transformers
    except ImportError as exc:
        raise SptraceError("hf:<model_type> needs the transformers package (pip install transformers)") from exc
    return transformers


def hf_model_types(base: bool = False) -> list[str]:
    """Every Hugging Face causal-LM model type (``AutoModelForCausalLM``'s mapping), or with ``base``
    every base-model type (``AutoModel``'s: encoders, encoder-decoders, vision and audio backbones)."""
    _transformers()
    from transformers.models.auto import modeling_auto

    return list(modeling_auto.MODEL_MAPPING_NAMES if base else modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)


def hf_config(model_type: str, width: int, **fields: Any):
    """The config of ``model_type`` at ``width`` (see the module docstring), on the character vocabulary;
    ``fields`` set config fields over the shrunk ones (a released checkpoint's routing, say:
    ``norm_topk_prob=True``).

    Heads are first given a fixed size (:data:`HEAD_DIM`), then, where the config rejects that (a
    state-space head whose count is tied to the model dim), their default size with a count in
    proportion to width; depth is first shrunk to :data:`LAYERS` (more where a layer pattern needs
    it), then left at its default. The first config transformers accepts is used."""
    if model_type not in hf_model_types():
        raise SptraceError(f"hf:{model_type}: not a Hugging Face causal-LM model type; known types are "
                           "transformers.models.auto.modeling_auto.MODEL_FOR_CAUSAL_LM_MAPPING_NAMES")
    return _shrunk_config(model_type, width, fields, decoder=True)


def _shrunk_config(model_type: str, width: int, fields: dict, decoder: bool):
    """:func:`hf_config`'s search over head and depth choices; ``decoder``: a config that says it is
    not a decoder is made one (a causal LM decodes), else left as it is (a base model)."""
    transformers = _transformers()
    try:
        default = transformers.AutoConfig.for_model(model_type).to_dict()
    except Exception as exc:  # the library's own validation of its defaults
        raise SptraceError(f"hf:{model_type}: transformers cannot build its default config: {exc}") from exc
    _check_fields(f"hf:{model_type}", fields, default)
    tried = []
    for heads, shallow in ((FIXED, True), (FIXED, False), (PROPORTIONAL, True), (PROPORTIONAL, False)):
        overrides = {**shrink(default, width, f"hf:{model_type}", heads, shallow, decoder), **fields}
        try:
            return transformers.AutoConfig.for_model(model_type, **overrides)
        except Exception as exc:
            tried.append(f"  {heads} heads, {'shrunk' if shallow else 'default'} depth ({_changed(default, overrides)}): "
                         f"{' '.join(str(exc).split())[:300]}")
    raise SptraceError(f"hf:{model_type}: transformers rejects every config shrunk to width {width}; fields tried:\n"
                       + "\n".join(tried))


def hf_model(model_type: str, width: int, **fields: Any) -> torch.nn.Module:
    config = hf_config(model_type, width, **fields)
    transformers = _transformers()
    try:
        return transformers.AutoModelForCausalLM.from_config(config)
    except Exception as exc:
        raise SptraceError(f"hf:{model_type}: the model does not build from its config shrunk to width {width}: "
                           f"{type(exc).__name__}: {exc}") from exc


def hf_base_model(model_type: str, width: int) -> torch.nn.Module:
    """The Hugging Face base model (``AutoModel``) of ``model_type`` at ``width``, its config shrunk
    as :func:`hf_config` shrinks a causal LM's, except that an encoder stays an encoder."""
    if model_type not in hf_model_types(base=True):
        raise SptraceError(f"hf:{model_type}: not a Hugging Face base-model type; known types are "
                           "transformers.models.auto.modeling_auto.MODEL_MAPPING_NAMES")
    config = _shrunk_config(model_type, width, {}, decoder=False)
    try:
        return _transformers().AutoModel.from_config(config)
    except Exception as exc:
        raise SptraceError(f"hf:{model_type}: the base model does not build from its config shrunk to width {width}: "
                           f"{type(exc).__name__}: {exc}") from exc


def _check_fields(name: str, fields: dict, default: dict) -> None:
    """Every field set by hand is one the config has: transformers would keep a misspelt one as an
    unused attribute and build the model without it."""
    unknown = sorted(set(fields) - set(default))
    if unknown:
        hints = [f"{f} (did you mean {', '.join(close)}?)" if (close := difflib.get_close_matches(f, default, n=2))
                 else f for f in unknown]
        raise SptraceError(f"{name}: its config has no field {', '.join(hints)}; set fields the config has "
                           "(transformers.AutoConfig.for_model(...).to_dict() lists them)")


FIXED, PROPORTIONAL = "fixed-size", "proportional"


def shrink(config: dict, width: int, name: str, heads: str = FIXED, shallow: bool = True,
           decoder: bool = True) -> dict:
    """Overrides that put the config dict ``config`` (and its sub-configs) at ``width``; ``decoder``:
    a config with ``is_decoder=False`` becomes a decoder (for a causal LM)."""
    overrides = {}
    for key, sub in config.items():
        if isinstance(sub, dict) and _model_dim(sub) is not None:
            overrides[key] = {**sub, **shrink(sub, width, f"{name}.{key}", heads, shallow, decoder)}
    dim = _model_dim(config)
    if dim is None:
        if overrides:
            return overrides
        raise SptraceError(f"{name}: cannot widen the config automatically: it has none of the model-dim fields "
                           f"{', '.join(MODEL_DIM_FIELDS)} (nor a sub-config with one)")
    ratio = width / dim[1]
    overrides.update({f: width for f in MODEL_DIM_FIELDS if _is_size(config.get(f))})
    overrides.update({f: max(1, round(config[f] * ratio)) for f in PROPORTIONAL_FIELDS if _is_size(config.get(f))})
    overrides.update(_heads(config, width, name) if heads == FIXED else _proportional_heads(config, ratio))
    if shallow:
        overrides.update(_depth(config))
    overrides.update({f: min(config[f], EXPERTS) for f in EXPERT_FIELDS if _is_size(config.get(f))})
    overrides.update({f: min(config[f], EXPERTS_PER_TOKEN) for f in EXPERT_TOP_K_FIELDS if _is_size(config.get(f))})
    if any(_is_size(config.get(f)) for f in EXPERT_FIELDS):  # a default that leaves the top-k unset
        overrides.update({f: EXPERTS_PER_TOKEN for f in EXPERT_TOP_K_FIELDS[:2] if f in config and config[f] is None})
    overrides.update({f: 1 for f in GROUP_FIELDS if _is_size(config.get(f))})
    overrides.update({f: min(config[f], 1) for f in FIRST_DENSE_FIELDS if _is_size(config.get(f))})
    overrides.update(_vocabulary(config))
    overrides.update(_compress_rates(config))
    overrides.update({k: 0.0 for k, v in config.items() if _is_dropout(k, v)})
    if "use_cache" in config:
        overrides["use_cache"] = False
    if decoder and config.get("is_decoder") is False:  # a causal LM decodes (Reformer's LM head insists)
        overrides["is_decoder"] = True
    return overrides


def _depth(config: dict) -> dict:
    """:data:`LAYERS` layers, or as many as it takes for every kind in a per-layer pattern (and every
    ``*_layer_offset``, and the first layer of a ``*_layer_index_start`` range) to occur once; per-layer lists and ``{layer: ...}`` maps cut to match."""
    fields = [f for f in LAYER_FIELDS if _is_size(config.get(f))]
    if not fields:
        return {}
    default = config[fields[0]]
    per_layer = {k: v for k, v in config.items() if isinstance(v, list) and len(v) == default and default > 1}
    depth = LAYERS
    for values in per_layer.values():
        firsts = {}
        for i, v in enumerate(values):
            firsts.setdefault(repr(v), i)
        depth = max(depth, max(firsts.values()) + 1)
    for key, value in config.items():  # the first layer of a kind, or of a range (a loop's layers)
        if key.endswith(("layer_offset", "layer_index_start")) and _is_size(value):
            depth = max(depth, value + 1)
    depth = min(depth, default)
    out = {f: depth for f in fields}
    out.update({k: v[:depth] for k, v in per_layer.items()})
    for key, value in config.items():
        if isinstance(value, dict) and value and all(str(k).isdigit() for k in value):
            out[key] = {k: v for k, v in value.items() if int(k) < depth}
    return out


def _model_dim(config: dict) -> Optional[tuple[str, int]]:
    return next(((f, config[f]) for f in MODEL_DIM_FIELDS if _is_size(config.get(f))), None)


def _is_size(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _heads(config: dict, width: int, name: str) -> dict:
    """Head counts grow with width at a fixed head size; key/value heads keep their default share."""
    counts = {f: config[f] for f in HEAD_COUNT_FIELDS if _is_size(config.get(f))}
    if not counts:
        return {}
    if width % HEAD_DIM:
        raise SptraceError(f"{name}: width {width} is not a multiple of the head size {HEAD_DIM}")
    heads = width // HEAD_DIM
    out = {f: heads for f in counts}
    head_dim = config.get("head_dim")
    head_dim = head_dim if _is_size(head_dim) else _model_dim(config)[1] / next(iter(counts.values()))
    for f in HEAD_SIZE_FIELDS:  # every per-head size shrinks by the same factor as the head
        if _is_size(config.get(f)):
            out[f] = HEAD_DIM if f == "head_dim" else max(1, round(config[f] * HEAD_DIM / head_dim))
    for kv, of in KV_HEAD_FIELDS.items():
        if _is_size(config.get(kv)) and of in counts:
            share = max(1, counts[of] // config[kv])
            if config[kv] > 1:  # grouped: at most MAX_KV_SHARE queries per key/value head
                share = min(share, MAX_KV_SHARE)
            out[kv] = max(1, heads // share)
    return out


def _proportional_heads(config: dict, ratio: float) -> dict:
    """Head counts in proportion to width at their default size (per-head sizes untouched)."""
    counts = [f for f in (*HEAD_COUNT_FIELDS, *KV_HEAD_FIELDS) if _is_size(config.get(f))]
    return {f: max(1, round(config[f] * ratio)) for f in counts}


def _compress_rates(config: dict) -> dict:
    """Every compression rate (a ``*compress*rate*`` / ``*compress*ratio*`` field: an int, a list of
    per-layer ints, or a dict of them) at most :data:`MAX_COMPRESS_RATE`; a 0 (no compression) stays."""
    def cut(value):
        if _is_size(value):
            return min(value, MAX_COMPRESS_RATE)
        if isinstance(value, dict):
            return {k: cut(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(cut(v) for v in value)
        return value

    return {k: cut(v) for k, v in config.items()
            if "compress" in k and ("rate" in k or "ratio" in k) and cut(v) != v}


def _vocabulary(config: dict) -> dict:
    """The characters, then one id for each special token the text never holds: padding and every
    id past the characters (image, audio, ... tokens). Mapped onto a character instead, a '}' would
    be read as an image token (Gemma 4's forward turns NaN) and the padding row would never train."""
    chars = models_zoo.data.VOCAB_SIZE
    special = sorted({v for k, v in config.items() if _is_token_id(k, v) and (v >= chars or k == "pad_token_id")})
    ids = {v: chars + i for i, v in enumerate(special)}
    out = {k: ids[v] for k, v in config.items() if _is_token_id(k, v) and v in ids}
    out.update({k: [ids.get(i, i) for i in v] for k, v in config.items()
                if k.endswith("_token_id") and isinstance(v, list) and all(isinstance(i, int) for i in v)})
    if _is_size(config.get("vocab_size")):
        out["vocab_size"] = chars + len(special)
    return out


def _is_token_id(key: str, value: Any) -> bool:
    return key.endswith(("_token_id", "_token_index")) and isinstance(value, int) and not isinstance(value, bool)


def _is_dropout(key: str, value: Any) -> bool:
    return isinstance(value, float) and not isinstance(value, bool) and ("dropout" in key or "pdrop" in key) \
        and value > 0


def _changed(default: dict, overrides: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in overrides.items() if not isinstance(v, dict) and default.get(k) != v)


# -- timm -------------------------------------------------------------------------------------------


def _timm():
    try:
        import timm
    except ImportError as exc:
        raise SptraceError(f"timm:<model_name> needs timm and torchvision, which are not importable here "
                           f"({exc}); install them beside a matching torch (pip install timm torchvision)") from exc
    return timm


# A timm model's width arguments, as its constructors name them: an int, or one int per stage. The
# first group sets the trunk's width; the second (the head's features, a stem) only follows it.
TIMM_WIDTH_ARGS = ("embed_dim", "embed_dims", "dims", "dim", "widths", "channels", "hidden_dim", "width", "num_chs",
                   "hidden_size", "embed_dims_per_stage")
TIMM_FOLLOWING_ARGS = ("num_features", "stem_width", "inner_dim")  # inner_dim: TNT's pixel width (width / 16)
TIMM_HEAD_ARGS = ("num_heads", "heads", "num_heads_outer")
# Channel counts in config dataclasses nested in a constructor's config (timm's ByobNet: ByoModelCfg
# holds a tuple of ByoBlockCfg, each block's ``c`` its output channels, beside the stem's ``stem_chs``)
TIMM_CHANNEL_FIELDS = ("c", "stem_chs")


def timm_families() -> dict[str, str]:
    """One timm model per family (timm's model modules): the first of its names by size word."""
    timm = _timm()
    return {module: min(timm.list_models(module=module), key=_size_rank) for module in timm.list_modules()
            if timm.list_models(module=module)}


SIZE_WORDS = ("atto", "femto", "pico", "nano", "tiny", "xxs", "xs", "small", "s", "mini", "b0", "18", "base")


def _size_rank(name: str) -> tuple:
    """Smaller first: the earliest size word a part of the name starts with (a one-letter word only
    before digits: ``s18``), then the shorter name."""
    parts = name.replace("-", "_").replace(".", "_").split("_")

    def says(part: str, word: str) -> bool:
        return part.startswith(word) and (len(word) > 1 or part[1:].isdigit())

    rank = min((i for i, w in enumerate(SIZE_WORDS) for p in parts if says(p, w)), default=len(SIZE_WORDS))
    return rank, len(name), name


def _image_args(name: str, size: int) -> dict:
    """The image size and the digits' class count, as the constructor takes them."""
    args = _constructor_args(_timm(), name)
    return {"num_classes": 10, **({"img_size": size} if "img_size" in args else {})}


def _input_size(name: str, data: ZooSpec) -> int:
    """The digits' size (32), or where the model does not run on it and runs on its own default
    input size (timm's ``pretrained_cfg["input_size"]``), that one: HaloNet's windows of 8 need a map
    divisible by 8 after a stride of 32 (256). Both tried on the meta device, at the default width."""
    (images,), _ = data.example_inputs()
    size = images.shape[-1]
    if _runs(name, images):
        return size
    with torch.device("meta"):
        own = _create(_timm(), name).pretrained_cfg.get("input_size")
    if own and own[-1] != size and _runs(name, torch.zeros(*images.shape[:2], *own[1:])):
        return own[-1]
    return size


def _runs(name: str, images: torch.Tensor) -> bool:
    try:
        with torch.device("meta"):
            timm_model(name, DEFAULT_WIDTH, **_image_args(name, images.shape[-1]))(images.to("meta"))
    except Exception:  # noqa: BLE001 - any failure: the size does not fit
        return False
    return True


def _resized(batches_fn: Callable[..., Iterator], size: int) -> Callable[..., Iterator]:
    """``batches_fn`` with its images resized to ``size`` (bilinear, as the digits are upsampled)."""

    def batches(*args: Any, **kwargs: Any) -> Iterator:
        for (images, *rest), target in batches_fn(*args, **kwargs):
            if images.shape[-1] != size:
                images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear",
                                                         align_corners=False)
            yield (images, *rest), target

    return batches


def timm_model(name: str, width: Optional[int] = None, **kwargs: Any) -> torch.nn.Module:
    """timm's ``name`` with random weights; at ``width``, its width arguments scaled so that the
    first is ``width`` (:func:`timm_width_args`); ``None``: as timm defines it."""
    timm = _timm()
    if name not in timm.list_models():
        raise SptraceError(f"timm:{name}: not a timm model name (timm.list_models() lists them)")
    if width is None:
        return _create(timm, name, **kwargs)
    widths = timm_width_args(name, width)
    try:
        return timm.create_model(name, pretrained=False, **kwargs, **widths)
    except TypeError:  # an entry point that fixes a width argument itself (timm's Mixer, EfficientNet)
        pass
    # then the model class itself, on the arguments the entry point gave it (recorded on meta: the
    # route only for entry points whose arguments hold no module already built)
    cls = _model_class(timm, name)
    try:
        return cls(**{**_constructor_args(timm, name), **kwargs, **widths})
    except Exception as exc:
        raise SptraceError(f"timm:{name}: {cls.__name__} does not build at width {width} "
                           f"({', '.join(f'{k}={v}' for k, v in widths.items())}): "
                           f"{type(exc).__name__}: {exc}") from exc


def _create(timm, name: str, **kwargs) -> torch.nn.Module:
    try:
        return timm.create_model(name, pretrained=False, **kwargs)
    except Exception as exc:
        raise SptraceError(f"timm:{name}: timm.create_model fails with {kwargs}: {type(exc).__name__}: {exc}") from exc


def timm_width_args(name: str, width: int) -> dict:
    """The constructor arguments that put ``name`` at ``width`` (:func:`width_args` on the
    arguments timm's entry point passes)."""
    return width_args(_constructor_args(_timm(), name), width, f"timm:{name}")


def width_args(args: dict, width: int, what: str = "the model") -> dict:
    """Of a constructor's arguments ``args``, those that put it at ``width``: every width argument
    (an int or a per-stage tuple) and every head count scaled by ``width / first`` (heads keep their
    default size, so that their number grows with width); where the constructor takes its sizes in
    one config dataclass (timm's NaFlexViT), that config with its fields scaled; where they sit in
    config dataclasses nested in it (ByobNet's blocks), every channel count in them scaled."""
    scaled = _scaled(args, width)
    if scaled:
        return scaled
    for key, value in args.items():
        if _is_config(value):
            inner = _scaled({f.name: getattr(value, f.name) for f in dataclasses.fields(value)}, width)
            if inner:
                return {key: dataclasses.replace(value, **inner)}
            first = _first_channels(value)
            if first:
                return {key: _scaled_config(value, width / first)}
    raise SptraceError(f"{what}: cannot widen it automatically: its constructor "
                       f"({', '.join(args) or 'no arguments'}) takes none of {', '.join(TIMM_WIDTH_ARGS)}, "
                       f"nor a config dataclass with one or with a channel count ({', '.join(TIMM_CHANNEL_FIELDS)})")


def _is_config(value: Any) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)


def _nested(value: Any) -> list:
    """What a config holds that may hold channel counts: its fields' values, a tuple's items."""
    if _is_config(value):
        return [getattr(value, f.name) for f in dataclasses.fields(value)]
    return list(value) if type(value) in (tuple, list) else []


def _first_channels(value: Any) -> Optional[int]:
    """The first channel count in a config, depth first (ByobNet: its first block's ``c``): the
    width the others scale with."""
    if _is_config(value):
        for f in dataclasses.fields(value):
            own = getattr(value, f.name)
            if f.name in TIMM_CHANNEL_FIELDS and _sizes(own):
                return own if isinstance(own, int) else own[0]
            if (found := _first_channels(own)) is not None:
                return found
        return None
    return next((found for v in _nested(value) if (found := _first_channels(v)) is not None), None)


def _scaled_config(value: Any, ratio: float) -> Any:
    """``value`` with every channel count in it, and in the configs it holds, times ``ratio``
    (a feature count that follows, too); depths, strides, group sizes and ratios stay."""
    if _is_config(value):
        changes = {}
        for f in dataclasses.fields(value):
            if not f.init:
                continue
            own = getattr(value, f.name)
            if f.name in (*TIMM_CHANNEL_FIELDS, *TIMM_FOLLOWING_ARGS) and _sizes(own):
                changes[f.name] = _scale(own, ratio)
            elif _nested(own):
                changes[f.name] = _scaled_config(own, ratio)
        return dataclasses.replace(value, **changes)
    if type(value) in (tuple, list):
        return type(value)(_scaled_config(v, ratio) for v in value)
    return value


def _scaled(args: dict, width: int) -> dict:
    widths = {k: v for k, v in args.items() if k in TIMM_WIDTH_ARGS and _sizes(v)}
    if not widths:
        return {}
    first = next(iter(widths.values()))
    ratio = width / (first if isinstance(first, int) else first[0])
    following = {k: args[k] for k in (*TIMM_FOLLOWING_ARGS, *TIMM_HEAD_ARGS) if _sizes(args.get(k))}
    return {k: _scale(v, ratio) for k, v in {**widths, **following}.items()}


def _model_class(timm, name: str) -> type:
    with torch.device("meta"):
        return type(_create(timm, name))


@functools.lru_cache(maxsize=None)  # two builds on meta each: asked for by every width (read only)
def _constructor_args(timm, name: str) -> dict:
    """The keyword arguments timm's entry point passes to the model class, with the class's own
    defaults: the class is found from one build on the meta device, then its ``__init__`` records
    the call."""
    cls = _model_class(timm, name)
    seen: dict = {}
    init = cls.__init__

    def recording(self, *a, **kw):
        if not seen:
            seen.update(inspect.signature(init).bind(self, *a, **kw).arguments)
        init(self, *a, **kw)

    cls.__init__ = recording
    try:
        with torch.device("meta"):
            _create(timm, name)
    finally:
        cls.__init__ = init
    defaults = {k: p.default for k, p in inspect.signature(init).parameters.items()
                if p.default is not inspect.Parameter.empty}
    kwargs = seen.pop("kwargs", {}) if isinstance(seen.get("kwargs"), dict) else {}
    return {**defaults, **{k: v for k, v in seen.items() if k != "self"}, **kwargs}


def _sizes(value: Any) -> bool:
    return _is_size(value) or (isinstance(value, (tuple, list)) and bool(value) and all(_is_size(v) for v in value))


def _scale(value: Any, ratio: float) -> Any:
    if isinstance(value, int):
        return max(1, round(value * ratio))
    return type(value)(max(1, round(v * ratio)) for v in value)
