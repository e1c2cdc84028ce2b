"""Weight-normed models for the coord checks of tests/validation/test_validate_weight_norm.py: every
layer wrapped by ``torch.nn.utils.parametrizations.weight_norm`` (``WeightNormedNet``, default dim 0,
the readout too), and a wav2vec2-style positional conv (``PosConvNet``: a grouped Conv1d weight-normed
over dim 2, one norm per kernel tap, added to its input and LayerNorm'd, as HF wav2vec2's
``pos_conv_embed``)."""
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm


class WeightNormedNet(nn.Module):
    """conv 3 -> n, conv n -> n (stride 2), pooled, readout n -> 10, each weight-normed (dim 0)."""

    def __init__(self, width):
        super().__init__()
        self.conv1 = weight_norm(nn.Conv2d(3, width, 3, padding=1))
        self.conv2 = weight_norm(nn.Conv2d(width, width, 3, stride=2, padding=1))
        self.head = weight_norm(nn.Linear(width, 10))

    def forward(self, x):
        x = torch.relu(self.conv2(torch.relu(self.conv1(x))))
        return self.head(x.mean((2, 3)))


class PosConvNet(nn.Module):
    """Patches of the image as a sequence of 64 tokens of width n; a grouped Conv1d(n, n, 8, groups=4)
    weight-normed over dim 2 (wav2vec2's positional conv), GELU, added to its input, LayerNorm, a readout."""

    def __init__(self, width, groups=4, kernel=8, normed=True):
        super().__init__()
        self.patch = nn.Conv2d(3, width, 4, stride=4)
        self.conv = nn.Conv1d(width, width, kernel, padding=kernel // 2, groups=groups)
        if normed:  # else the control: the same conv, its weight plain
            self.conv = weight_norm(self.conv, dim=2)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        h = self.patch(x).flatten(2)  # (batch, n, 64)
        h = h + nn.functional.gelu(self.conv(h)[..., :-1])
        return self.head(self.norm(h.transpose(1, 2)).mean(1))
