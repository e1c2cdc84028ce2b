"""Relative-position tables read through the "relative shift" trick (Music Transformer, BoTNet,
HaloNet, Transformer-XL): a ``(2 * win - 1, head_dim)`` table against the queries gives
``(..., W, 2 * win - 1)`` logits, which pads, a flatten, a reshape and slices turn into
``(..., W, win)`` logits over the key positions. The relative axis is a count of offsets: the
pads and slices keep its fixedness and the reshapes make it a factor of a product of fixed
positions, so it must come out fixed; the head-size axis is the queries' head_dim (assumed fixed in
automatic mode, docs/classification.md "Attention"; width with a base where the head count is fixed
and the channels grow).

HaloNet's keys are windows cut from the padded feature map by ``Tensor.unfold``: the windows and
their taps are parts of the axis they slide over (fixed positions), without which the key axis,
and through it the relative axis, was taken for width.
"""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import sptrace

ROUTES = ("export", "eager")


def rel_logits_1d(q, table):
    """timm's relative shift: queries (B, H, W, d) against a (2 * win - 1, d) table -> (B, H, W, win)
    logits over the key positions of each query's window (``win == W`` where keys are the queries'
    own positions, as in BoTNet)."""
    B, H, W, _ = q.shape
    rel_size = table.shape[0]
    win = (rel_size + 1) // 2
    x = (q @ table.transpose(-1, -2)).reshape(-1, W, rel_size)
    x = F.pad(F.pad(x, [0, 1]).flatten(1), [0, rel_size - W])
    x = x.reshape(-1, W + 1, rel_size)[:, :W, win - 1:]
    return x.reshape(B, H, W, win)


class RelShiftAttention(nn.Module):
    """BoTNet-style: every position of an h x w map attends to every other, with relative logits
    along each axis (tables of 2h - 1 and 2w - 1 offsets); ``heads`` fixed, head size n // heads."""

    def __init__(self, n, heads=4, size=6):
        super().__init__()
        self.heads = heads
        self.stem = nn.Conv2d(3, n, 4, 4)
        self.qkv = nn.Conv2d(n, 3 * n, 1, bias=False)
        self.height_rel = nn.Parameter(torch.randn(2 * size - 1, n // heads))
        self.width_rel = nn.Parameter(torch.randn(2 * size - 1, n // heads))
        self.head = nn.Linear(n, 10)

    def forward(self, x):
        x = self.stem(x)
        B, C, H, W = x.shape
        q, k, v = (t.reshape(B * self.heads, C // self.heads, H * W) for t in self.qkv(x).split(C, dim=1))
        q = q.transpose(-1, -2)
        grid = q.reshape(-1, H, W, C // self.heads)
        rel_w = rel_logits_1d(grid, self.width_rel)[:, :, :, None, :]  # (., H, W, 1, key W)
        rel_h = rel_logits_1d(grid.transpose(1, 2), self.height_rel).transpose(1, 2)[..., None]  # (., H, W, key H, 1)
        rel = (rel_h + rel_w).reshape(-1, H * W, H * W)
        attn = (q @ k + rel).softmax(-1)
        out = (attn @ v.transpose(-1, -2)).transpose(-1, -2).reshape(B, C, H, W)
        return self.head(out.mean((2, 3)))


class HaloRelAttention(nn.Module):
    """HaloNet-style: blocks of b x b queries attend to their (b + 2 halo)-wide window of keys, cut
    from the padded map by ``unfold``, with relative logits over the window (tables of 2 win - 1)."""

    def __init__(self, n, heads=2, block=4, halo=1):
        super().__init__()
        self.heads, self.block, self.halo, self.win = heads, block, halo, block + 2 * halo
        self.stem = nn.Conv2d(3, n, 2, 2)
        self.q = nn.Conv2d(n, n, 1, bias=False)
        self.kv = nn.Conv2d(n, 2 * n, 1, bias=False)
        self.height_rel = nn.Parameter(torch.randn(2 * self.win - 1, n // heads))
        self.width_rel = nn.Parameter(torch.randn(2 * self.win - 1, n // heads))
        self.head = nn.Linear(n, 10)

    def forward(self, x):
        x = self.stem(x)
        B, C, H, W = x.shape
        b, win, nh, nw, dh = self.block, self.win, H // self.block, W // self.block, C // self.heads
        q = self.q(x).reshape(B * self.heads, dh, nh, b, nw, b).permute(0, 2, 4, 3, 5, 1).reshape(-1, b, b, dh)
        kv = F.pad(self.kv(x), [self.halo] * 4).unfold(2, win, b).unfold(3, win, b)  # (B, 2C, nh, nw, win, win)
        k, v = kv.reshape(B * self.heads, 2 * dh, nh * nw, win * win).permute(0, 2, 3, 1).split(dh, -1)
        rel_w = rel_logits_1d(q, self.width_rel)[:, :, :, None, :]  # (., b, b, 1, win)
        rel_h = rel_logits_1d(q.transpose(1, 2), self.height_rel).transpose(1, 2)[..., None]  # (., b, b, win, 1)
        rel = (rel_h + rel_w).reshape(B * self.heads, nh * nw, b * b, win * win)
        attn = (q.reshape(B * self.heads, nh * nw, b * b, dh) @ k.transpose(-1, -2) + rel).softmax(-1)
        return self.head((attn @ v).mean((1, 2)).reshape(B, C))


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("module, image", [(RelShiftAttention, 24), (HaloRelAttention, 16)])
def test_a_relative_table_through_the_relative_shift_has_a_fixed_offset_axis(module, image, route):
    """Offsets fixed either way; the head size is automatic mode's head_dim (assumed fixed, the
    heads merged into the batch growing) and width where a base says it grows."""
    x = torch.randn(2, 3, image, image)
    traced = sptrace.trace(module(64), x, routes=(route,))
    based = sptrace.trace(module(64), x, base=module(32), routes=(route,))
    for name in ("height_rel", "width_rel"):
        assert traced[name].width_dims == () and "head_dim of attention" in traced[name].dims[1].reason, name
        assert based[name].width_dims == (1,) and based[name].fan_in_axes == (1,), name


class UnfoldedPatches(nn.Module):
    """Patches cut from the image by ``unfold`` (channels x taps), flattened and embedded."""

    def __init__(self, n, patch=4):
        super().__init__()
        self.patch = patch
        self.embed, self.head = nn.Linear(3 * patch * patch, n), nn.Linear(n, 10)

    def forward(self, x):
        p = self.patch
        patches = x.unfold(2, p, p).unfold(3, p, p).permute(0, 2, 3, 1, 4, 5).flatten(3)  # (B, h, w, 3 p p)
        return self.head(torch.relu(self.embed(patches)).mean((1, 2)))


@pytest.mark.parametrize("route", ROUTES)
def test_unfolded_windows_of_the_image_are_data(route):
    """The image's channels pass through ``unfold`` and the taps of windows over its positions are
    a count: the patch embedding reads fixed features (an op that tied nothing made them width)."""
    traced = sptrace.trace(UnfoldedPatches(64), torch.randn(2, 3, 16, 16), routes=(route,))
    assert traced["embed.weight"].role.value == "input"
    assert traced["embed.weight"].width_dims == (0,)


class PixelEmbedding(nn.Module):
    """TNT-style pixel embedding: the image cut into windows by ``nn.Unfold`` (aten ``im2col``),
    each window a small image again (B * L, 3, p, p) for a conv into the width."""

    def __init__(self, n, patch=4, inner=2):
        super().__init__()
        self.patch = patch
        self.unfold = nn.Unfold(kernel_size=patch, stride=patch)
        self.proj = nn.Conv2d(3, n, kernel_size=inner, stride=inner)
        self.head = nn.Linear(n, 10)

    def forward(self, x):
        B, C, H, W = x.shape
        L = (H // self.patch) * (W // self.patch)
        x = self.unfold(x).transpose(1, 2).reshape(B * L, C, self.patch, self.patch)
        return self.head(self.proj(x).mean((2, 3)).reshape(B, L, -1).mean(1))


@pytest.mark.parametrize("route", ROUTES)
def test_im2col_windows_of_the_image_are_data(route):
    """The image's colours pass through im2col as a factor of its column axis and the kernel taps
    are a count: the conv on the windows reads data (an op that tied nothing made its input
    channels width, a hidden matrix)."""
    traced = sptrace.trace(PixelEmbedding(64), torch.randn(2, 3, 16, 16), routes=(route,))
    assert traced["proj.weight"].role.value == "input"
    assert traced["proj.weight"].width_dims == (0,)


class OutlookAttention(nn.Module):
    """VOLO-style outlook attention: v unfolded into k x k windows (``F.unfold``), per-position
    attention weights over the window's taps from a Linear (heads x k^2 x k^2), the weighted values
    folded back (``F.fold``). ``tap_bias`` is a learned logit offset per (query tap, key tap)."""

    def __init__(self, n, heads=2, k=3):
        super().__init__()
        self.heads, self.k = heads, k
        self.stem = nn.Conv2d(3, n, 4, 4)
        self.v = nn.Linear(n, n)
        self.attn = nn.Linear(n, heads * k ** 4)
        self.tap_bias = nn.Parameter(torch.zeros(k * k, k * k))
        self.proj = nn.Linear(n, n)
        self.head = nn.Linear(n, 10)

    def forward(self, x):
        x = self.stem(x).permute(0, 2, 3, 1)
        B, H, W, C = x.shape
        k, h = self.k, self.heads
        v = F.unfold(self.v(x).permute(0, 3, 1, 2), k, padding=1)  # (B, C k k, H W)
        v = v.reshape(B, h, C // h, k * k, H * W).permute(0, 1, 4, 3, 2)  # (B, h, HW, taps, C/h)
        a = self.attn(x).reshape(B, H * W, h, k * k, k * k).permute(0, 2, 1, 3, 4)
        a = (a + self.tap_bias).softmax(-1)
        y = (a @ v).permute(0, 1, 4, 3, 2).reshape(B, C * k * k, H * W)
        y = F.fold(y, output_size=(H, W), kernel_size=k, padding=1)  # (B, C, H, W)
        return self.head(self.proj(y.permute(0, 2, 3, 1)).mean((1, 2)))


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize("heads", [1, 2])
def test_outlook_attention_taps_are_a_count(heads, route):
    """The window taps the model splits out of im2col's column axis (heads, head size, taps) are the
    kernel's taps, a count: the per-tap logit offset has no width axis, and the attention-weight
    Linear's outputs grow only through the heads (with one head they are fixed: a readout)."""
    traced = sptrace.trace(OutlookAttention(64, heads=heads), torch.randn(2, 3, 24, 24), routes=(route,))
    assert traced["tap_bias"].width_dims == ()
    assert traced["attn.weight"].width_dims == ((0, 1) if heads > 1 else (1,))
    for name in ("v.weight", "proj.weight"):
        assert traced[name].role.value == "hidden" and traced[name].width_dims == (0, 1), name
