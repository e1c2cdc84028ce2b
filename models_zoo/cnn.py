"""A small ResNet-style CNN on 3x32x32 digits, with depthwise and grouped convs.

    stem   conv3x3 3->w, stride 2 (no bias) + BN + ReLU              32x32 -> 16x16
    layer1 Block(w -> w,  stride 1)                                   16x16
    layer2 Block(w -> 2w, stride 2), 1x1 conv + BN shortcut           16x16 -> 8x8
    head   global average pool, Linear(2w -> 10)

    Block: dw   depthwise conv3x3 (groups = c_in, with bias), stride  + BN + ReLU
           gconv grouped conv1x1 c_in -> c_out (groups = 4, fixed; no bias) + BN + ReLU
           pw   conv1x1 c_out -> c_out (with bias) + BN
           out = ReLU(pw(...) + shortcut(x))

Width dims: every channel count (w or 2w); the depthwise conv's group count grows with width.
Fixed: the 3 image channels, kernel sizes, the 4 groups of the grouped conv, the 10 classes.
``width`` must be a multiple of 4. PyTorch's default init.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

GROUPS = 4


class Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.dw = nn.Conv2d(c_in, c_in, 3, stride=stride, padding=1, groups=c_in, bias=True)
        self.bn1 = nn.BatchNorm2d(c_in)
        self.gconv = nn.Conv2d(c_in, c_out, 1, groups=GROUPS, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.pw = nn.Conv2d(c_out, c_out, 1, bias=True)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.dw(x)))
        h = F.relu(self.bn2(self.gconv(h)))
        h = self.bn3(self.pw(h))
        return F.relu(h + self.shortcut(x))


class CNN(nn.Module):
    def __init__(self, width: int, num_classes: int = 10, in_channels: int = 3):
        super().__init__()
        if width % GROUPS:
            raise ValueError(f"cnn: width must be a multiple of {GROUPS} (grouped conv), got {width}")
        self.stem = nn.Conv2d(in_channels, width, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)
        self.layer1 = Block(width, width, stride=1)
        self.layer2 = Block(width, 2 * width, stride=2)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (B, 3, 32, 32)
        x = F.relu(self.bn(self.stem(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(x.mean(dim=(2, 3)))


def build(width: int) -> CNN:
    return CNN(width)
