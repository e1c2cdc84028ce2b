"""Models written the way users write them, that no issue and no zoo entry lists, validated through the
front door: ``sptrace.validate(factory, widths, optimizer, data=...)`` with the one-line call's defaults,
against the standard parametrization (docs/validation.md, "Hand-written models").

Each model exercises something the zoo writes differently: a llama-style block with a fused
``(d, 3, heads, head_dim)`` projection read by einsum, complex-number RoPE, SDPA and a parameter as the
head; a top-1 mixture of experts routed by ``probs.max(-1)`` over a ModuleList; one encoder layer shared
across depth; two branches concatenated; a depthwise-separable CNN with a squeeze-excitation gate.
Slow: 3-60 s per cell on one core.
"""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sptrace

WIDTHS = (64, 128, 256, 512)
VOCAB, CONTEXT = 77, 64  # the zoo GPT's data: Shakespeare characters in windows of 64


class RMSNorm(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(width))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.gain


class LlamaBlockLM(nn.Module):
    """One pre-norm block: fused qkv drawn with std d^-1/2 in its own layout, RoPE as a complex product,
    causal SDPA, a SwiGLU MLP, and the unembedding as a bare parameter read by ``x @ W.t()``."""

    def __init__(self, width, head_dim=16):
        super().__init__()
        heads = width // head_dim
        self.emb = nn.Embedding(VOCAB, width)
        self.norm1, self.norm2, self.norm_out = RMSNorm(width), RMSNorm(width), RMSNorm(width)
        self.qkv = nn.Parameter(torch.randn(width, 3, heads, head_dim) * width ** -0.5)
        self.o = nn.Parameter(torch.randn(heads, head_dim, width) * width ** -0.5)
        self.up = nn.Linear(width, 6 * width, bias=False)
        self.down = nn.Linear(3 * width, width, bias=False)
        self.unembed = nn.Parameter(torch.randn(VOCAB, width) * width ** -0.5)
        angles = torch.outer(torch.arange(CONTEXT).float(), 1e4 ** (-torch.arange(0, head_dim, 2).float() / head_dim))
        self.register_buffer("rotation", torch.polar(torch.ones_like(angles), angles), persistent=False)

    def rope(self, x):  # (batch, time, heads, head_dim)
        pairs = torch.view_as_complex(x.reshape(*x.shape[:-1], -1, 2))
        return torch.view_as_real(pairs * self.rotation[: x.shape[1], None]).reshape(x.shape)

    def forward(self, idx):
        x = self.emb(idx)
        q, k, v = torch.einsum("btd,dkhe->kbthe", self.norm1(x), self.qkv).unbind(0)
        q, k, v = (t.transpose(1, 2) for t in (self.rope(q), self.rope(k), v))
        x = x + torch.einsum("bhte,hed->btd", F.scaled_dot_product_attention(q, k, v, is_causal=True), self.o)
        gate, up = self.up(self.norm2(x)).chunk(2, -1)
        x = x + self.down(F.silu(gate) * up)
        return self.norm_out(x) @ self.unembed.t()


class TopOneMoELM(nn.Module):
    """A causal depthwise token mixer, then four experts in a ModuleList, each token routed to the one
    ``probs.max(-1)`` picks and scaled by its probability (Switch Transformer's top-1, by hand)."""

    def __init__(self, width, experts=4):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, width)
        self.mix = nn.Conv1d(width, width, 4, groups=width)
        self.norm = nn.LayerNorm(width)
        self.router = nn.Linear(width, experts, bias=False)
        self.experts = nn.ModuleList(nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))
                                     for _ in range(experts))
        self.head = nn.Linear(width, VOCAB)

    def forward(self, idx):
        x = self.emb(idx)
        x = x + self.mix(F.pad(x.transpose(1, 2), (3, 0))).transpose(1, 2)
        tokens = self.norm(x).flatten(0, 1)
        weight, choice = self.router(tokens).softmax(-1).max(-1)
        out = torch.zeros_like(tokens)
        for e, expert in enumerate(self.experts):
            rows = (choice == e).nonzero().squeeze(-1)
            out = out.index_add(0, rows, expert(tokens[rows]) * weight[rows, None])
        return self.head(x + out.view_as(x))


class SharedEncoderLM(nn.Module):
    """One nn.TransformerEncoderLayer applied three times (weights shared across depth), a learned
    position table, causal mask."""

    def __init__(self, width):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, width)
        self.pos = nn.Parameter(torch.zeros(1, CONTEXT, width))
        self.layer = nn.TransformerEncoderLayer(width, width // 16, 4 * width, dropout=0.0, batch_first=True,
                                                norm_first=True)
        self.head = nn.Linear(width, VOCAB)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(CONTEXT), persistent=False)

    def forward(self, idx):
        x = self.emb(idx) + self.pos[:, : idx.shape[1]]
        for _ in range(3):
            x = self.layer(x, src_mask=self.mask, is_causal=True)
        return self.head(x)


class TwoBranchMLP(nn.Module):
    """Two branches of width / 2 on the digits, concatenated along the features."""

    def __init__(self, width):
        super().__init__()
        self.a = nn.Linear(3072, width // 2)
        self.b = nn.Sequential(nn.Linear(3072, width // 2), nn.Tanh())
        self.mid = nn.Linear(width, width)
        self.out = nn.Linear(width, 10)

    def forward(self, x):
        return self.out(F.relu(self.mid(torch.cat([F.relu(self.a(x)), self.b(x)], dim=-1))))


class SqueezeExciteCNN(nn.Module):
    """Stem, depthwise and pointwise convolutions with batch norm, a squeeze-excitation gate of width / 4,
    global average pooling, linear head."""

    def __init__(self, width):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1, stride=2)
        self.depthwise = nn.Conv2d(width, width, 3, padding=1, groups=width)
        self.bn = nn.BatchNorm2d(width)
        self.pointwise = nn.Conv2d(width, 2 * width, 1)
        self.squeeze = nn.Linear(2 * width, width // 4)
        self.excite = nn.Linear(width // 4, 2 * width)
        self.head = nn.Linear(2 * width, 10)

    def forward(self, x):
        h = F.relu(self.pointwise(F.relu(self.bn(self.depthwise(F.relu(self.stem(x)))))))
        gate = torch.sigmoid(self.excite(F.relu(self.squeeze(h.mean((2, 3))))))
        return self.head((h * gate[:, :, None, None]).mean((2, 3)))


# (factory, the zoo data it trains on, the optimizers it passes under): every cell measured on the CPU
# (docs/validation.md, "Hand-written models", with the cells that do not pass and why)
CASES = [
    (LlamaBlockLM, "gpt", ("adam", "sgd")),
    (TopOneMoELM, "gpt", ("adam",)),
    (SharedEncoderLM, "gpt", ("adam", "sgd")),
    (TwoBranchMLP, "mlp", ("adam", "sgd")),
    (SqueezeExciteCNN, "cnn", ("adam",)),
]


@pytest.mark.slow
@pytest.mark.parametrize("factory, data, optimizer",
                         [pytest.param(f, d, o, id=f"{f.__name__}-{o}") for f, d, opts in CASES for o in opts])
def test_a_hand_written_model_passes_where_standard_practice_fails(factory, data, optimizer):
    v = sptrace.validate(factory, WIDTHS, optimizer, data=data, parametrizations=("sptrace", "sp"))
    assert v.passed, v.summary()
    assert not v.runs["sp"].verdict.passed, v.summary()
