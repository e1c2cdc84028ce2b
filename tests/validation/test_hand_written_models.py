"""Models written the way users write them, that no issue and no zoo entry lists, validated through the
front door: ``sptrace.validate(factory, widths, optimizer, data=...)`` with the one-line call's defaults,
against the standard parametrization (docs/validation.md, "Hand-written models").

Each model exercises something the zoo writes differently: a llama-style block with a fused
``(d, 3, heads, head_dim)`` projection read by einsum, complex-number RoPE, SDPA and a parameter as the
head; a top-1 mixture of experts routed by ``probs.max(-1)`` over a ModuleList; one encoder layer shared
across depth; two branches concatenated; a depthwise-separable CNN with a squeeze-excitation gate; a ViT
with sequence-first ``nn.MultiheadAttention`` and attention pooling; a conv net with a transposed conv
and a concatenated skip.
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


class PatchAttentionPoolViT(nn.Module):
    """8 × 8 patches with a table of their 16 positions, sequence-first ``nn.MultiheadAttention`` (its
    default layout, fused ``in_proj_weight``), an MLP, and attention pooling by a learned query."""

    def __init__(self, width):
        super().__init__()
        heads = width // 16
        self.patch = nn.Conv2d(3, width, 8, stride=8)
        self.pos = nn.Parameter(torch.zeros(16, 1, width))
        self.attn, self.pool = nn.MultiheadAttention(width, heads), nn.MultiheadAttention(width, heads)
        self.norm = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))
        self.query = nn.Parameter(torch.zeros(1, 1, width))
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        h = self.patch(x).flatten(2).permute(2, 0, 1) + self.pos  # (positions, batch, width)
        y = self.norm(h)
        h = h + self.attn(y, y, y, need_weights=False)[0]
        h = h + self.mlp(self.norm(h))
        query = self.query.expand(1, h.shape[1], -1)
        return self.head(self.pool(query, h, h, need_weights=False)[0][0])


class SkipUNetCNN(nn.Module):
    """A stride-2 conv down, an ``nn.ConvTranspose2d`` back up, group norms, the skip concatenated and
    fused by a 1 × 1 conv, a pooled linear head."""

    def __init__(self, width):
        super().__init__()
        self.stem, self.norm1 = nn.Conv2d(3, width, 3, padding=1), nn.GroupNorm(8, width)
        self.down, self.norm2 = nn.Conv2d(width, 2 * width, 3, stride=2, padding=1), nn.GroupNorm(8, 2 * width)
        self.up = nn.ConvTranspose2d(2 * width, width, 2, stride=2)
        self.fuse = nn.Conv2d(2 * width, width, 1)
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        skip = F.silu(self.norm1(self.stem(x)))
        h = self.up(F.silu(self.norm2(self.down(skip))))
        return self.head(F.silu(self.fuse(torch.cat([skip, h], 1))).mean((2, 3)))


class EncoderStackLM(nn.Module):
    """``nn.TransformerEncoder`` of two pre-norm layers under a causal mask, a learned position table."""

    def __init__(self, width):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, width)
        self.pos = nn.Parameter(torch.zeros(CONTEXT, width))
        layer = nn.TransformerEncoderLayer(width, width // 16, 4 * width, dropout=0.0, batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.norm, self.head = nn.LayerNorm(width), nn.Linear(width, VOCAB)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(CONTEXT), persistent=False)

    def forward(self, idx):
        h = self.emb(idx) + self.pos[: idx.shape[1]]
        return self.head(self.norm(self.encoder(h, mask=self.mask, is_causal=True)))


class PReLUShuffleCNN(nn.Module):
    """One PReLU slope for every channel, a conv to 4 x width channels that ``PixelShuffle`` folds into
    space, a max-pooled head."""

    def __init__(self, width):
        super().__init__()
        self.stem, self.act = nn.Conv2d(3, width, 3, stride=2, padding=1), nn.PReLU()
        self.expand, self.shuffle = nn.Conv2d(width, 4 * width, 3, padding=1), nn.PixelShuffle(2)
        self.mix = nn.Conv2d(width, width, 3, padding=1)
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        h = self.shuffle(self.expand(self.act(self.stem(x))))
        return self.head(F.gelu(self.mix(h)).amax((2, 3)))


class MobileNetCNN(nn.Module):
    """A stride-2 stem and two depthwise-separable blocks, batch norm after every conv, ``activation``."""

    def __init__(self, width, activation=nn.ReLU):
        super().__init__()

        def conv_bn(c_in, kernel, groups=1, stride=1):
            return [nn.Conv2d(c_in, width, kernel, stride, kernel // 2, groups=groups, bias=False),
                    nn.BatchNorm2d(width), activation()]

        layers = conv_bn(3, 3, stride=2)
        for _ in range(2):
            layers += conv_bn(width, 3, groups=width) + conv_bn(width, 1)
        self.body, self.head = nn.Sequential(*layers), nn.Linear(width, 10)

    def forward(self, x):
        return self.head(self.body(x).mean((2, 3)))


def mobilenet_relu6(width):
    return MobileNetCNN(width, nn.ReLU6)


# (factory, the zoo data it trains on, the optimizers it passes under, the widths): every cell measured on
# the CPU (docs/validation.md, "Hand-written models", with the cells that do not pass and why)
NARROW = (32, 64, 128, 256)  # the conv nets on 32 x 32 images: 8x, a cell under 2 minutes
CASES = [
    (LlamaBlockLM, "gpt", ("adam", "sgd"), WIDTHS),
    (TopOneMoELM, "gpt", ("adam",), WIDTHS),
    (SharedEncoderLM, "gpt", ("adam", "sgd"), WIDTHS),
    (TwoBranchMLP, "mlp", ("adam", "sgd"), WIDTHS),
    (SqueezeExciteCNN, "cnn", ("adam",), WIDTHS),
    (PatchAttentionPoolViT, "cnn", ("adam", "sgd"), NARROW),
    (SkipUNetCNN, "cnn", ("adam",), NARROW),
    (EncoderStackLM, "gpt", ("adam", "sgd"), WIDTHS),
    (PReLUShuffleCNN, "cnn", ("adam",), NARROW),
    (MobileNetCNN, "cnn", ("adam", "sgd"), WIDTHS),
    (mobilenet_relu6, "cnn", ("adam",), WIDTHS),
]


@pytest.mark.slow
@pytest.mark.parametrize("factory, data, optimizer, widths",
                         [pytest.param(f, d, o, w, id=f"{f.__name__}-{o}") for f, d, opts, w in CASES for o in opts])
def test_a_hand_written_model_passes_where_standard_practice_fails(factory, data, optimizer, widths):
    v = sptrace.validate(factory, widths, optimizer, data=data, parametrizations=("sptrace", "sp"))
    assert v.passed, v.summary()
    assert not v.runs["sp"].verdict.passed, v.summary()


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="docs/validation.md, 'Hand-written models': a batch norm gain before ReLU6, "
                                       "a depthwise conv and a batch norm acts only where ReLU6 caps; its SGD update "
                                       "is a few ulps (not exempt: its float64 gradient is 1e-8 of the largest)")
def test_a_batch_norm_gain_that_acts_only_through_relu6_s_cap_fails_under_sgd():
    v = sptrace.validate(mobilenet_relu6, WIDTHS, "sgd", data="cnn", parametrizations=("sptrace",))
    assert v.passed, v.summary()
