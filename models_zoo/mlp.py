"""The paper's MLP: 3072 -> width -> width -> out_features, ReLU, no biases.

Input: a digit upsampled to 3x32x32 and flattened to 3072 features (``data.image_batches(...,
flatten=True)``). Width dims: fc1's output, fc2's both sides, fc3's input. Fixed: the 3072 input
features and the ``out_features`` classes. PyTorch's default nn.Linear init.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

IN_FEATURES = 3 * 32 * 32


class MLP(nn.Module):
    def __init__(self, width: int, out_features: int = 10, in_features: int = IN_FEATURES):
        super().__init__()
        self.fc1 = nn.Linear(in_features, width, bias=False)
        self.fc2 = nn.Linear(width, width, bias=False)
        self.fc3 = nn.Linear(width, out_features, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, 3072)
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)


def build(width: int, *, out_features: int = 10) -> MLP:
    return MLP(width, out_features=out_features)
