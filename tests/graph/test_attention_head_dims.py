"""Automatic mode's head_dim hypothesis (sptrace/graph/attention.py ``assume_fixed_head_dims``):
a head_dim that splits a width dim into heads × head_dim is taken as the fixed factor, so a gain
applied per head over head_dim (Qwen3's ``q_norm`` / ``k_norm``) is a fixed vector shared by a
growing number of heads. Measured (tests/validation/test_validate_moe.py's conventions, SGD, widths
64-512, 3 seeds, 10 steps): taken as a width vector, its update's natural norm grows with slope
+0.88 (Qwen3), +0.93 (Gemma 3), +0.91 (Qwen3-MoE); taken as fixed, -0.12, -0.07, -0.09."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sptrace

from sptrace.graph.attention import ASSUMED, assume_fixed_head_dims, find_attention
from sptrace.graph.axes import label_axes
from sptrace.graph.capture import capture
from sptrace.graph.ops import Shapes
from sptrace.graph.trace import _dense_fan_in
from sptrace.graph.uses import analyse_uses


def labelled(model, *inputs):
    """The graph stage up to the axis labels, as ``sptrace.trace`` runs it in automatic mode."""
    captured = capture(model, inputs, {})
    shapes = Shapes(captured.graph)
    uses = analyse_uses(captured, shapes)
    return captured, shapes, uses.op_axes, label_axes(captured, shapes, uses.op_axes, _dense_fan_in(uses))


def param_axis(captured, labels, name, axis=0):
    node = next(n for n, p in captured.param_nodes.items() if p.endswith(name))
    return labels.decide((node, axis))


class PerHeadNormAttention(nn.Module):
    """Hand-written attention (matmul, scale, softmax) with an RMS norm over head_dim, its gain
    shared by every head, as Qwen3 and Gemma 3 write it; ``heads`` × ``head_dim`` = width."""

    def __init__(self, width, heads):
        super().__init__()
        self.heads, self.head_dim = heads, width // heads
        self.emb = nn.Embedding(11, width)
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.q_gain = nn.Parameter(torch.ones(self.head_dim))
        self.out = nn.Linear(width, 11)

    def forward(self, ids):
        x = self.emb(ids)
        b, s, _ = x.shape
        q, k, v = (t.view(b, s, self.heads, self.head_dim).transpose(1, 2) for t in self.qkv(x).chunk(3, -1))
        q = q * torch.rsqrt(q.pow(2).mean(-1, keepdim=True) + 1e-6) * self.q_gain
        att = (q @ k.transpose(-1, -2) * self.head_dim ** -0.5).softmax(-1)
        return self.out((att @ v).transpose(1, 2).reshape(b, s, -1))


def test_per_head_gain_of_hand_written_attention_is_taken_as_fixed():
    captured, shapes, axes, labels = labelled(PerHeadNormAttention(32, 4), torch.randint(0, 11, (2, 5)))
    assert param_axis(captured, labels, "q_gain")[0]
    where = assume_fixed_head_dims(captured, shapes, axes, labels)
    assert where == [""]
    is_width, reason = param_axis(captured, labels, "q_gain")
    assert not is_width and reason.startswith(ASSUMED), reason
    # the heads and the projections stay width; the site still says its growth is unknown
    assert param_axis(captured, labels, "qkv.weight", 1)[0] and param_axis(captured, labels, "qkv.weight", 0)[0]
    assert [s.head_dim_is_width for s in find_attention(captured, shapes, axes, labels)] == [None]


def test_a_single_head_is_the_width_itself():
    """One head: head_dim is the whole width (no split into heads), so nothing is assumed."""
    captured, shapes, axes, labels = labelled(PerHeadNormAttention(32, 1), torch.randint(0, 11, (2, 5)))
    assert assume_fixed_head_dims(captured, shapes, axes, labels) == []
    assert param_axis(captured, labels, "q_gain")[0]


class PackedQkvAttention(nn.Module):
    """timm's ViT attention: one qkv projection reshaped to (b, n, 3, heads, head_dim), permuted and
    unbound into q, k, v, then SDPA; the output projection reads heads × head_dim."""

    def __init__(self, width, heads):
        super().__init__()
        self.heads, self.head_dim = heads, width // heads
        self.emb = nn.Embedding(11, width)
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.out = nn.Linear(width, 11)

    def forward(self, ids):
        x = self.emb(ids)
        b, s, c = x.shape
        q, k, v = self.qkv(x).reshape(b, s, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        return self.out(self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, s, c)))


@pytest.mark.parametrize("heads", [1, 4])
def test_the_packed_qkv_axis_is_not_the_heads(heads):
    """The packed projection's q/k/v axis (3) is a part of the split of the width but reaches none of
    q, k, v: with one head nothing is assumed and the output projection stays a hidden matrix (it
    was an input layer, its fan-in fixed as a head_dim: timm's ViTs at width 64, one head of 64);
    with four heads head_dim is assumed fixed, the projection still hidden (heads grow)."""
    captured, shapes, axes, labels = labelled(PackedQkvAttention(64, heads), torch.randint(0, 11, (2, 5)))
    assert assume_fixed_head_dims(captured, shapes, axes, labels) == ([] if heads == 1 else [""])
    traced = sptrace.trace(PackedQkvAttention(64, heads), torch.randint(0, 11, (2, 5)))
    assert traced["proj.weight"].role.value == "hidden" and traced["proj.weight"].width_dims == (0, 1)
    assert traced["qkv.weight"].width_dims == (0, 1)


@pytest.fixture(scope="module")
def transformers():
    return pytest.importorskip("transformers")


def _config(width, head_dim=16):
    return dict(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=1,
                num_attention_heads=width // head_dim, num_key_value_heads=width // (2 * head_dim), vocab_size=77,
                max_position_embeddings=64, bos_token_id=0, eos_token_id=0, pad_token_id=0,
                tie_word_embeddings=False)


def test_qwen3_q_norm_and_k_norm_are_taken_as_fixed(transformers):
    torch.manual_seed(0)
    model = transformers.Qwen3ForCausalLM(transformers.Qwen3Config(head_dim=16, **_config(64)))
    captured, shapes, axes, labels = labelled(model, torch.randint(0, 77, (2, 8)))
    assert param_axis(captured, labels, "q_norm.weight")[0]
    assert assume_fixed_head_dims(captured, shapes, axes, labels) == ["model.layers.0.self_attn"]
    for name in ("q_norm.weight", "k_norm.weight"):
        is_width, reason = param_axis(captured, labels, name)
        assert not is_width and "model.layers.0.self_attn" in reason, (name, reason)
    for name in ("q_proj.weight", "k_proj.weight", "o_proj.weight", "input_layernorm.weight"):
        assert param_axis(captured, labels, name)[0], name


def test_olmo2_norm_over_the_whole_projection_stays_width(transformers):
    """OLMo2 normalises q over all heads before the split: its gain is a width vector."""
    torch.manual_seed(0)
    model = transformers.Olmo2ForCausalLM(transformers.Olmo2Config(**_config(64)))
    captured, shapes, axes, labels = labelled(model, torch.randint(0, 77, (2, 8)))
    assume_fixed_head_dims(captured, shapes, axes, labels)
    assert param_axis(captured, labels, "q_norm.weight")[0] and param_axis(captured, labels, "k_norm.weight")[0]


def test_trace_takes_per_head_gains_as_fixed(transformers):
    import sptrace

    torch.manual_seed(0)
    model = transformers.Qwen3ForCausalLM(transformers.Qwen3Config(head_dim=16, **_config(64)))
    traced = sptrace.trace(model, torch.randint(0, 77, (2, 8)))
    assert traced["model.layers.0.self_attn.q_norm.weight"].width_dims == ()


class BlockDiagonalGate(nn.Module):
    """A gate applied per head: the width split into heads × block, one (block × block) matrix per
    head by ``baddbmm`` (RecurrentGemma's RG-LRU input and recurrent gates)."""

    def __init__(self, width, block=16):
        super().__init__()
        self.heads, self.block = width // block, block
        self.emb = nn.Embedding(11, width)
        self.w = nn.Parameter(torch.randn(self.heads, block, block) / block ** 0.5)
        self.b = nn.Parameter(torch.zeros(self.heads, block))
        self.out = nn.Linear(width, 11)

    def forward(self, ids):
        x = self.emb(ids)
        b, s, n = x.shape
        h = x.reshape(b * s, self.heads, self.block).permute(1, 0, 2)
        gate = torch.baddbmm(self.b[:, None, :], h, self.w).transpose(0, 1).reshape(b, s, n)
        return self.out(torch.sigmoid(gate) * x)


@pytest.mark.parametrize("block", [16, 64])
def test_a_matrix_applied_per_head_has_a_fixed_block(block):
    """Heads grow, the block is fixed (the hypothesis attention's head_dim is under): the weight is
    a fixed (block × block) matrix per head, not a hidden matrix whose fan-in grows (RecurrentGemma,
    planned so, had its gates' update natural norm shrink with slope -0.9). One block over the whole
    width (one head) is the width itself."""
    traced = sptrace.trace(BlockDiagonalGate(64, block), torch.randint(0, 11, (2, 5)))
    w, b = traced["w"], traced["b"]
    if block == 16:
        assert w.width_dims == (0,) and w.role.value == "fixed" and ASSUMED in w.dims[1].reason
        assert b.width_dims == (0,)
    else:
        assert w.width_dims == (1, 2) and w.role.value == "hidden" and b.width_dims == (1,)


class BatchMergedHeadsAttention(nn.Module):
    """Heads merged into the batch axis (``reshape(B * heads, head_dim, L)``, as timm's BoTNet and
    HaloNet and fairseq write it), with a gain over head_dim and
    a table of key offsets per head_dim (``q @ table.T`` added to the logits, a relative-position
    table's use); ``heads`` × ``head_dim`` = width."""

    def __init__(self, width, heads, positions=9):
        super().__init__()
        self.heads, self.head_dim = heads, width // heads
        self.stem = nn.Conv2d(3, width, 4, 4)
        self.qkv = nn.Conv2d(width, 3 * width, 1, bias=False)
        self.q_gain = nn.Parameter(torch.ones(self.head_dim))
        self.key_table = nn.Parameter(torch.randn(positions, self.head_dim))
        self.head = nn.Linear(width, 10)

    def forward(self, x):
        x = self.stem(x)
        B, C, H, W = x.shape
        q, k, v = (t.reshape(B * self.heads, self.head_dim, H * W) for t in self.qkv(x).split(C, dim=1))
        q = q.transpose(-1, -2) * self.q_gain * self.head_dim ** -0.5
        att = (q @ k + q @ self.key_table.transpose(0, 1)).softmax(-1)
        return self.head((att @ v.transpose(-1, -2)).transpose(-1, -2).reshape(B, C, H * W).mean(-1))


@pytest.mark.parametrize("route", ("export", "eager"))
def test_heads_merged_into_the_batch_are_heads(route):
    """The batch × heads axis is q's axis beside head_dim, and the reshape that makes it splits the
    width (merged with the batch) into it and head_dim: head_dim is assumed fixed there as where
    the heads have an axis of their own, so the per-head_dim parameters have no width axis (before,
    head_dim was taken for width and their lr fell like 1/width at a constant shape)."""
    traced = sptrace.trace(BatchMergedHeadsAttention(64, 4), torch.randn(2, 3, 12, 12), routes=(route,))
    assert traced["q_gain"].width_dims == () and traced["key_table"].width_dims == ()
    assert all(ASSUMED in traced[name].dims[-1].reason for name in ("q_gain", "key_table"))
    assert traced["qkv.weight"].width_dims == (0, 1)


class PerHeadEinsumAttention(nn.Module):
    """XLNet's attention: q, k, v and o stored per head, (width, heads, head size), applied by einsum
    (``ibh,hnd->ibnd``, ``ibnd,hnd->ibh``), and a bias per head and head size added to q. No reshape
    splits the width into heads × head size: the split is in the parameters' shapes."""

    def __init__(self, width, heads):
        super().__init__()
        self.emb = nn.Embedding(11, width)
        shape = (width, heads, width // heads)
        self.q, self.k, self.v, self.o = (nn.Parameter(torch.randn(shape) / width ** 0.5) for _ in range(4))
        self.r_w_bias = nn.Parameter(torch.zeros(shape[1:]))
        self.scale = shape[2] ** -0.5
        self.out = nn.Linear(width, 11)

    def forward(self, ids):
        h = self.emb(ids).transpose(0, 1)  # (len, batch, width), as XLNet keeps it
        q, k, v = (torch.einsum("ibh,hnd->ibnd", h, w) for w in (self.q, self.k, self.v))
        att = (torch.einsum("ibnd,jbnd->bnij", q + self.r_w_bias, k) * self.scale).softmax(-1)
        a = torch.einsum("bnij,jbnd->ibnd", att, v)
        return self.out(torch.einsum("ibnd,hnd->ibh", a, self.o).transpose(0, 1))


@pytest.mark.parametrize("route", ("export", "eager"))
def test_parameters_stored_per_head_have_a_fixed_head_size(route):
    """The heads axis beside one other width axis on a side of the parameter's einsum (q's outputs,
    o's inputs) makes that axis the size per head, assumed fixed as a head_dim cut by a reshape is
    (v's and o's too, which no q @ k^T contracts). Before, the head size was taken for width: in the
    reference form o's fan-in (heads × head size) scaled its Adam lr like 1/width² and SGD's bias lr
    like width² (HF XLNet: docs/classification.md, "Attention")."""
    traced = sptrace.trace(PerHeadEinsumAttention(64, 4), torch.randint(0, 11, (2, 5)), routes=(route,))
    for name in ("q", "k", "v", "o"):
        assert traced[name].width_dims == (0, 1) and traced[name].role.value == "hidden", name
        assert ASSUMED in traced[name].dims[2].reason, name
    assert traced["r_w_bias"].width_dims == (0,)
    assert [s.head_dim_is_width for s in traced.attention] == [None]


def test_one_head_stored_per_head_is_the_width_itself():
    """A heads axis of size 1 is no heads axis: the size per head is the width, as with a reshape."""
    traced = sptrace.trace(PerHeadEinsumAttention(64, 1), torch.randint(0, 11, (2, 5)))
    assert traced["q"].width_dims == (0, 2) and traced["o"].width_dims == (0, 2)
