"""A character-level GPT (nanoGPT style) on Shakespeare.

Token embedding over the fixed 77-character vocabulary, learned position embedding over a fixed
block of 64, ``n_layer`` pre-LN blocks (fused QKV, causal ``F.scaled_dot_product_attention``,
MLP width -> 4*width -> width with GELU), final LayerNorm, ``lm_head``.

Width dims: d_model (= width), the QKV outputs (3*width), the MLP hidden (4*width), the number of
heads (by default). Fixed: vocabulary, block size, ``head_dim`` (by default 16, so
n_head = width // 16 grows with width; pass ``n_head`` to fix the head count instead, then
head_dim = width // n_head grows). ``tied=True`` makes ``lm_head.weight`` the very Parameter of
``transformer.wte.weight``. ``attn_scale`` overrides SDPA's default 1/sqrt(head_dim).
PyTorch's default init (embeddings N(0, 1), linears Kaiming-uniform, norms ones/zeros).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .data import VOCAB_SIZE

BLOCK_SIZE = 64


def heads_for(width: int, head_dim: Optional[int], n_head: Optional[int]) -> tuple[int, int]:
    """(n_head, head_dim) for a width: exactly one of head_dim / n_head is fixed."""
    if n_head is not None:
        if width % n_head:
            raise ValueError(f"width {width} is not divisible by n_head={n_head}")
        return n_head, width // n_head
    head_dim = 16 if head_dim is None else head_dim
    if width % head_dim:
        raise ValueError(f"width {width} is not a multiple of head_dim={head_dim}")
    return width // head_dim, head_dim


class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, n_head: int, bias: bool, attn_scale: Optional[float]):
        super().__init__()
        self.n_head = n_head
        self.attn_scale = attn_scale
        self.c_attn = nn.Linear(width, 3 * width, bias=bias)  # fused q, k, v
        self.c_proj = nn.Linear(width, width, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hd)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.attn_scale)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, width: int, bias: bool):
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width, bias=bias)
        self.c_proj = nn.Linear(4 * width, width, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, width: int, n_head: int, bias: bool, attn_scale: Optional[float]):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = CausalSelfAttention(width, n_head, bias, attn_scale)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = MLP(width, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, width: int, *, n_layer: int = 2, head_dim: Optional[int] = None, n_head: Optional[int] = None,
                 tied: bool = False, bias: bool = True, attn_scale: Optional[float] = None,
                 vocab_size: int = VOCAB_SIZE, block_size: int = BLOCK_SIZE):
        super().__init__()
        self.n_head, self.head_dim = heads_for(width, head_dim, n_head)
        self.block_size = block_size
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab_size, width),
            wpe=nn.Embedding(block_size, width),
            h=nn.ModuleList([Block(width, self.n_head, bias, attn_scale) for _ in range(n_layer)]),
            ln_f=nn.LayerNorm(width),
        ))
        self.lm_head = nn.Linear(width, vocab_size, bias=False)
        if tied:
            self.lm_head.weight = self.transformer.wte.weight  # one Parameter, two uses

    def forward(self, idx: torch.Tensor) -> torch.Tensor:  # idx: (B, T) int64, T <= block_size
        pos = torch.arange(idx.shape[1], dtype=torch.long, device=idx.device)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))  # (B, T, vocab)


def build(width: int, *, n_layer: int = 2, head_dim: Optional[int] = None, n_head: Optional[int] = None,
          tied: bool = False, bias: bool = True, attn_scale: Optional[float] = None) -> GPT:
    return GPT(width, n_layer=n_layer, head_dim=head_dim, n_head=n_head, tied=tied, bias=bias,
               attn_scale=attn_scale)
