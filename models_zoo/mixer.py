"""MLP-Mixer on 3x32x32 digits.

Patch conv (3 -> width, patch 4: 64 patches), ``depth`` blocks of
    x = x + token_mlp(norm1(x) over the patch axis)   Linear(64 -> width//2), GELU, Linear(width//2 -> 64)
    x = x + channel_mlp(norm2(x))                      Linear(width -> 4*width), GELU, Linear(4*width -> width)
final LayerNorm, mean over patches, linear head to 10 classes.

Width dims: channels (= width), the token-mixing hidden (width // 2, ``token_ratio`` to change),
the channel-mixing hidden (4*width). Fixed: image channels, patch size, the 64 patches (so
``token_mlp.fc2`` maps a width dim back to a fixed one: an inner readout), 10 classes.
PyTorch's default init.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

PATCH = 4
NUM_PATCHES = (32 // PATCH) ** 2  # 64


class MlpBlock(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class MixerBlock(nn.Module):
    def __init__(self, width: int, token_hidden: int):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.token_mlp = MlpBlock(NUM_PATCHES, token_hidden)
        self.norm2 = nn.LayerNorm(width)
        self.channel_mlp = MlpBlock(width, 4 * width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, 64, width)
        x = x + self.token_mlp(self.norm1(x).transpose(1, 2)).transpose(1, 2)
        return x + self.channel_mlp(self.norm2(x))


class Mixer(nn.Module):
    def __init__(self, width: int, *, depth: int = 2, token_ratio: float = 0.5, num_classes: int = 10,
                 in_channels: int = 3):
        super().__init__()
        token_hidden = max(1, int(width * token_ratio))
        self.stem = nn.Conv2d(in_channels, width, PATCH, stride=PATCH)
        self.blocks = nn.ModuleList([MixerBlock(width, token_hidden) for _ in range(depth)])
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, num_classes)

    def example_inputs(self) -> tuple[torch.Tensor]:
        """A batch of 2 images of the one size the fixed patch count allows (what sptrace traces on),
        from a generator of its own: asking for inputs leaves the global RNG, and so the init, alone."""
        side = PATCH * int(NUM_PATCHES ** 0.5)
        images = torch.randn(2, self.stem.in_channels, side, side, generator=torch.Generator().manual_seed(0))
        return (images.to(self.stem.weight.device),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, 3, 32, 32)
        x = self.stem(x).flatten(2).transpose(1, 2)  # (B, 64, width)
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x).mean(dim=1))


def build(width: int, *, depth: int = 2, token_ratio: float = 0.5) -> Mixer:
    return Mixer(width, depth=depth, token_ratio=token_ratio)
