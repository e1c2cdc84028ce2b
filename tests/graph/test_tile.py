"""``torch.tile`` of a parameter ties its axes as ``repeat`` does (the op table, ``graph/ops.py``):
a tiled axis keeps its identity though its size grows, so a window's position embedding tiled over
the grid is an embedding as it would be untiled.

Before, ``tile`` was not in the op table: "tile: transformed by an op that mixes its entries", the
parameter unclassified (HF SAM3's ViT position embedding, ``sam3_vit_model`` / ``sam3_vision_model``
at width 64 in the catalog scan of AutoModel types, docs/coverage.md; timm's SAM2 Hiera).
"""
import pytest
import torch
import torch.nn as nn

import sptrace


def _row(record):
    return (record.kind.value, record.role.value, record.fan_in_axes, record.fan_out_axes, record.width_dims)


class TiledPositions(nn.Module):
    def __init__(self, n=32):
        super().__init__()
        self.patch, self.head = nn.Conv2d(3, n, 4, stride=4), nn.Linear(n, 3)
        self.pos = nn.Parameter(torch.zeros(1, n, 2, 2))

    def forward(self, x):
        h = self.patch(x) + self.pos.tile((1, 1, 2, 2))  # a 2 x 2 window's positions over the 4 x 4 grid
        return self.head(h.mean((2, 3)))


@pytest.mark.parametrize("route", ["export", "eager"])
def test_a_tiled_position_embedding_is_an_embedding(route):
    traced = sptrace.trace(TiledPositions(), torch.randn(2, 3, 16, 16), routes=(route,))
    assert not traced.unclassified, [(r.name, r.problem) for r in traced.unclassified]
    assert _row(traced["pos"]) == ("vector", "embedding", (2, 3), (1,), (1,))


def test_hugging_face_sam3_vit_position_embedding():
    transformers = pytest.importorskip("transformers")
    config = transformers.AutoConfig.for_model(
        "sam3_vit_model", hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        image_size=56, patch_size=14, window_size=2, global_attn_indexes=[1], pretrain_image_size=28)
    torch.manual_seed(0)
    traced = sptrace.trace(transformers.AutoModel.from_config(config), pixel_values=torch.randn(2, 3, 56, 56))
    assert not traced.unclassified, [(r.name, r.problem) for r in traced.unclassified]
    assert _row(traced["embeddings.position_embeddings"]) == ("vector", "embedding", (1,), (2,), (2,))
