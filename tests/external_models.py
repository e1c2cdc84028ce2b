"""Models sptrace was not written for, built by their own libraries' constructors from configs
with random weights (nothing is downloaded): Hugging Face GPT-2 (tied and untied), Llama and ViT,
torch's LSTM / GRU as layers and as cells stepped in a loop, and Hugging Face's mixture-of-experts
LMs (``MOE_MODELS``: Mixtral, Qwen3-MoE with Hugging Face's default routing and with the released
checkpoints', OLMoE, Qwen2-MoE, gpt-oss). ``MODELS[name] = (build, data)``:
``build(width)`` makes the model, ``data`` names the zoo model whose batches and loss it trains on."""
import warnings

import torch

warnings.filterwarnings("ignore", message=".*(bos|eos)_token_id.*")

HEAD_DIM = 16


def _transformers():
    import transformers

    return transformers


def gpt2(width, tied=True):
    cfg = _transformers().GPT2Config(n_embd=width, n_head=width // HEAD_DIM, n_layer=1, vocab_size=77, n_positions=64,
                                     tie_word_embeddings=tied, resid_pdrop=0, embd_pdrop=0, attn_pdrop=0,
                                     bos_token_id=0, eos_token_id=0)
    return _transformers().GPT2LMHeadModel(cfg)


def llama(width):
    cfg = _transformers().LlamaConfig(hidden_size=width, intermediate_size=4 * width, num_hidden_layers=1,
                                      num_attention_heads=width // HEAD_DIM,
                                      num_key_value_heads=width // (2 * HEAD_DIM), vocab_size=77,
                                      max_position_embeddings=64, bos_token_id=0, eos_token_id=0, pad_token_id=0,
                                      tie_word_embeddings=False)
    return _transformers().LlamaForCausalLM(cfg)


def vit(width):
    cfg = _transformers().ViTConfig(hidden_size=width, num_hidden_layers=1, num_attention_heads=width // HEAD_DIM,
                                    intermediate_size=4 * width, image_size=32, patch_size=4, num_channels=3,
                                    num_labels=10, hidden_dropout_prob=0, attention_probs_dropout_prob=0)
    return _transformers().ViTForImageClassification(cfg)


class RecurrentLM(torch.nn.Module):
    """torch's own LSTM and GRU layers (their weights reach the graph through one list argument)."""

    def __init__(self, width):
        super().__init__()
        self.emb = torch.nn.Embedding(77, width)
        self.lstm = torch.nn.LSTM(width, width, batch_first=True)
        self.gru = torch.nn.GRU(width, width, batch_first=True)
        self.head = torch.nn.Linear(width, 77)

    def forward(self, ids):
        return self.head(self.gru(self.lstm(self.emb(ids))[0])[0])


class RecurrentCellLM(torch.nn.Module):
    """torch's LSTMCell and GRUCell stepped in a Python loop over time (one use of each weight per step)."""

    def __init__(self, width):
        super().__init__()
        self.emb = torch.nn.Embedding(77, width)
        self.lstm = torch.nn.LSTMCell(width, width)
        self.gru = torch.nn.GRUCell(width, width)
        self.head = torch.nn.Linear(width, 77)

    def forward(self, ids):
        h = c = g = torch.zeros(ids.shape[0], self.lstm.hidden_size, device=ids.device)
        outs = []
        for t in range(ids.shape[1]):
            h, c = self.lstm(self.emb(ids[:, t]), (h, c))
            g = self.gru(h, g)
            outs.append(g)
        return self.head(torch.stack(outs, 1))


EXPERTS, TOP_K = 4, 2


def _moe_common(width):
    """One decoder layer of ``width`` with heads of HEAD_DIM; experts and top-k fixed, as in a real
    MoE family (the width knobs are the hidden and per-expert intermediate sizes)."""
    return dict(hidden_size=width, num_hidden_layers=1, num_attention_heads=width // HEAD_DIM,
                num_key_value_heads=width // (2 * HEAD_DIM), vocab_size=77, max_position_embeddings=64,
                num_experts_per_tok=TOP_K, bos_token_id=0, eos_token_id=0, pad_token_id=0, tie_word_embeddings=False)


def _experts(model, implementation):
    """Hugging Face's experts forward: "grouped_mm" (its default), "batched_mm" (index + bmm) or
    "eager" (a loop over the experts hit, indexing the stacked parameter)."""
    if implementation is not None:
        model.config._experts_implementation = implementation
    return model


def mixtral(width, implementation=None):
    t = _transformers()
    cfg = t.MixtralConfig(intermediate_size=2 * width, num_local_experts=EXPERTS, router_jitter_noise=0.0,
                          **_moe_common(width))
    return _experts(t.MixtralForCausalLM(cfg), implementation)


def qwen3_moe(width, implementation=None, norm_topk_prob=False):
    """Qwen3-MoE with Hugging Face's default routing (``norm_topk_prob=False``: the chosen experts
    weighted by the softmax over all of them)."""
    t = _transformers()
    cfg = t.Qwen3MoeConfig(head_dim=HEAD_DIM, intermediate_size=2 * width, moe_intermediate_size=width,
                           num_experts=EXPERTS, norm_topk_prob=norm_topk_prob, **_moe_common(width))
    return _experts(t.Qwen3MoeForCausalLM(cfg), implementation)


def qwen3_moe_released(width, implementation=None):
    """Qwen3-MoE with the released checkpoints' routing: their config.json sets ``norm_topk_prob: true``
    (the chosen experts' weights renormalised to sum to one), where ``Qwen3MoeConfig`` defaults to false."""
    return qwen3_moe(width, implementation, norm_topk_prob=True)


def olmoe(width, implementation=None):
    t = _transformers()
    cfg = t.OlmoeConfig(intermediate_size=width, num_experts=EXPERTS, **_moe_common(width))
    return _experts(t.OlmoeForCausalLM(cfg), implementation)


def qwen2_moe(width, implementation=None):
    """Qwen2-MoE adds a dense shared expert and a one-output sigmoid gate on it."""
    t = _transformers()
    cfg = t.Qwen2MoeConfig(intermediate_size=2 * width, moe_intermediate_size=width,
                           shared_expert_intermediate_size=2 * width, num_experts=EXPERTS, **_moe_common(width))
    return _experts(t.Qwen2MoeForCausalLM(cfg), implementation)


def gpt_oss(width, implementation=None):
    """gpt-oss stores its experts transposed (experts x in x out), with per-expert biases."""
    t = _transformers()
    common = _moe_common(width)
    cfg = t.GptOssConfig(head_dim=HEAD_DIM, intermediate_size=width, num_local_experts=EXPERTS,
                         layer_types=["full_attention"], rope_parameters={"rope_type": "default", "rope_theta": 1e4},
                         **common)
    return _experts(t.GptOssForCausalLM(cfg), implementation)


def gemma(width, model_type="gemma"):
    """Hugging Face Gemma (``model_type`` "gemma", "gemma2" or "gemma3_text"): the token embedding's
    output times sqrt(hidden_size), a 0-d buffer (tests/graph/test_forward_constants.py)."""
    t = _transformers()
    config, model = {"gemma": (t.GemmaConfig, t.GemmaForCausalLM), "gemma2": (t.Gemma2Config, t.Gemma2ForCausalLM),
                     "gemma3_text": (t.Gemma3TextConfig, t.Gemma3ForCausalLM)}[model_type]
    cfg = config(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=1, head_dim=HEAD_DIM,
                 num_attention_heads=width // HEAD_DIM, num_key_value_heads=width // (2 * HEAD_DIM), vocab_size=77,
                 max_position_embeddings=64, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    return model(cfg)


# Mixture-of-experts causal LMs (tests/graph/test_moe.py, tests/validation/test_validate_moe.py):
# apart from MODELS so that the external coord checks' default cells keep to their time.
MOE_MODELS = {
    "mixtral": (mixtral, "gpt"),
    "qwen3-moe": (qwen3_moe, "gpt"),
    "qwen3-moe-released": (qwen3_moe_released, "gpt"),
    "olmoe": (olmoe, "gpt"),
    "qwen2-moe": (qwen2_moe, "gpt"),
    "gpt-oss": (gpt_oss, "gpt"),
}

MODELS = {
    "lstm-gru": (RecurrentLM, "gpt"),
    "lstm-gru-cells": (RecurrentCellLM, "gpt"),
    "gpt2-tied": (lambda w: gpt2(w, True), "gpt"),
    "gpt2-untied": (lambda w: gpt2(w, False), "gpt"),
    "llama": (llama, "gpt"),
    "hf-vit": (vit, "vit"),
}


def catalog_trace(model_type, width=64):
    """``sptrace.trace`` of the Hugging Face catalog's ``model_type`` built on meta at ``width``
    (sptrace.validation.catalog), on 2 x 16 token ids; skips where this transformers lacks it."""
    import pytest

    import sptrace
    from sptrace.validation import catalog

    pytest.importorskip("transformers")
    if model_type not in catalog.hf_model_types():
        pytest.skip(f"this transformers has no {model_type}")
    with torch.device("meta"):
        model = catalog.hf_model(model_type, width)
    return sptrace.trace(model, torch.randint(0, 77, (2, 16)))
