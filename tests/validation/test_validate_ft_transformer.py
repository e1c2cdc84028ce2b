"""Coord checks of an FT-Transformer (rtdl's feature tokenizer: a per-feature bias, F x d, and a class token
drawn from U(±1/sqrt(d)), the tables this test is about; the tokenizer's weight, a gain of the broadcast
input, drawn width-free; one attention + MLP block; a readout from the class token) on 64 of the digits'
3072 features, with tests/validation/external_coord.py's conventions in the base form (``base=`` the model
at 64, widths 64..512, 4 steps, batch 32, 3 seeds).

Measured (2026-12-04): passes under Adam and SGD. Before (the tables kept at their 1/sqrt(d) std, as every
table's law was width-free) SGD failed (``ln1``'s output change +0.80 ± 0.10, ``qkv`` +0.68 ± 0.09, 13/30
checks; Adam passed), and with the weight drawn N(0, 1/d) as well both did (Adam: ``ln1`` +0.43 ± 0.01;
SGD: ``ln1`` +1.02 ± 0.06; docs/rules.md, "Tables drawn with 1/sqrt(width)"). With rtdl's U(±1/sqrt(d)) weight too (``rtdl_weight=True``), a gain whose
library value is kept, Adam passes and SGD fails on that weight's update alone (+0.27 ± 0.08). About 35 s
per optimizer on 2 cores: slow."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tests.validation.external_coord import external_coord_check

WIDTHS = (64, 128, 256, 512)


class FTTransformer(nn.Module):
    def __init__(self, d, features=64, head_dim=16, rtdl_weight=False):
        super().__init__()
        self.features, self.heads = features, d // head_dim
        bound = d ** -0.5  # rtdl's _TokenInitialization "uniform"
        weight = torch.empty(features, d).uniform_(-bound, bound) if rtdl_weight else torch.randn(features, d)
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(torch.empty(features, d).uniform_(-bound, bound))
        self.cls = nn.Parameter(torch.empty(1, 1, d).uniform_(-bound, bound))
        self.ln1, self.ln2, self.ln_f = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.o = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.ReLU(), nn.Linear(2 * d, d))
        self.head = nn.Linear(d, 10)

    def forward(self, x):
        x = x[:, 1000:1000 + self.features]
        tokens = x[..., None] * self.weight + self.bias
        h = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], 1)
        B, N, d = h.shape
        q, k, v = self.qkv(self.ln1(h)).view(B, N, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        h = h + self.o(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(B, N, d))
        h = h + self.mlp(self.ln2(h))
        return self.head(self.ln_f(h[:, 0]).relu())


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_an_ft_transformer_is_width_stable_in_the_base_form(optimizer, one_thread):
    verdict = external_coord_check(FTTransformer, "mlp", optimizer, "sptrace", WIDTHS, steps=4, batch_size=32,
                                   n_seeds=3, form="base")
    assert verdict.passed, verdict.summary()
