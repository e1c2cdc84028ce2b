"""A small ViT on 3x32x32 digits.

Patch embedding conv (3 -> width, patch 4: 8x8 = 64 patches), a class token (1, 1, width)
expanded and concatenated in front, a learned position embedding (1, 65, width) added, ``depth``
pre-LN blocks, final LayerNorm on the class token, linear head to 10 classes.

Attention is ``nn.MultiheadAttention(batch_first=True)`` on purpose: it exercises the packed
layout (``attn.in_proj_weight`` of shape (3*width, width), ``attn.out_proj``) that differs from
gpt's fused ``c_attn`` linear. Its scale is the fixed 1/sqrt(head_dim).

Width dims: d_model (= width), the MLP hidden (4*width), the number of heads (by default).
Fixed: image channels, patch size, 64 patches + 1 class token, head_dim (default 16; pass
``n_head`` to fix the head count instead), 10 classes. Init: PyTorch defaults for modules;
class token and position embedding N(0, 0.02^2).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from .gpt import heads_for

PATCH = 4
NUM_PATCHES = (32 // PATCH) ** 2  # 64


class MLP(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.fc1 = nn.Linear(width, 4 * width)
        self.fc2 = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, width: int, n_head: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, n_head, batch_first=True)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = MLP(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    def __init__(self, width: int, *, depth: int = 2, head_dim: Optional[int] = None, n_head: Optional[int] = None,
                 num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        self.n_head, self.head_dim = heads_for(width, head_dim, n_head)
        self.patch_embed = nn.Conv2d(in_channels, width, PATCH, stride=PATCH)
        self.cls_token = nn.Parameter(torch.empty(1, 1, width))
        self.pos_embed = nn.Parameter(torch.empty(1, NUM_PATCHES + 1, width))
        self.blocks = nn.ModuleList([Block(width, self.n_head) for _ in range(depth)])
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_classes)
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.pos_embed, std=0.02)

    def example_inputs(self) -> tuple[torch.Tensor]:
        """A batch of 2 images of the one size the fixed patch count allows (what sptrace traces on),
        from a generator of its own: asking for inputs leaves the global RNG, and so the init, alone."""
        side = PATCH * int(NUM_PATCHES ** 0.5)
        images = torch.randn(2, self.patch_embed.in_channels, side, side, generator=torch.Generator().manual_seed(0))
        return (images.to(self.patch_embed.weight.device),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, 3, 32, 32)
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, 64, width)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x[:, 0]))


def build(width: int, *, depth: int = 2, head_dim: Optional[int] = None, n_head: Optional[int] = None) -> ViT:
    return ViT(width, depth=depth, head_dim=head_dim, n_head=n_head)
