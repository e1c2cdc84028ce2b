"""Coord checks of the catalog types that carry a constant in the forward besides the Gemma family
(docs/coverage.md, "The validate sample"): ``sqrt(hidden)`` on the token embedding's output
(``scale_embedding``; graph/constants.py reads it as part of the operator), with the command
``python -m sptrace validate hf:<type> --widths 64 128 256 --steps 4 --seeds 2`` (adam, batch 32),
sptrace only. Two of them failed on something else, fixed:

* XGLM floors its logits with ``torch.full((), finfo(dtype).min)``, made at the default dtype, so
  the float64 pass that tells a parameter without effect (a key bias, which the softmax removes)
  raised and every such bias was judged: its float32 rounding-noise update shrank with slope -1.0
  (validation/coord.py now runs that pass with float64 as the default dtype);
* RecurrentGemma's RG-LRU gates are one (block × block) matrix per head (``baddbmm``), planned as
  hidden matrices whose fan-in grows: their update's natural norm shrank with slope -0.9
  (graph/attention.py now takes the block as fixed, the heads as growing, as for head_dim).

Each type takes about a minute on 2 cores: ``-m slow``."""
import pytest

from sptrace.validation.validate import validate

TYPES = ["biogpt", "xglm", "ctrl", "plbart", "bigbird_pegasus", "vaultgemma"]


def _sptrace(model_type):
    pytest.importorskip("transformers")
    return validate(f"hf:{model_type}", (64, 128, 256), "adam", steps=4, n_seeds=2, parametrizations=["sptrace"])


@pytest.mark.slow
@pytest.mark.parametrize("model_type", TYPES)
def test_a_catalog_type_with_a_scaled_embedding_is_width_stable(model_type, one_thread):
    result = _sptrace(model_type)
    assert result.passed, result.summary()


@pytest.mark.slow
def test_recurrent_gemma_gates_are_width_stable(one_thread):
    """Its gates and embedding stay near flat (planned as hidden matrices over the width, the gates'
    update shrank -0.75 to -0.93); what still fails is elsewhere (measured on 4a39b43 with the fix:
    layers.1's temporal_block.linear_out output change +0.32, the logits' -0.26, as before it; with
    1327333's Adam eps rule also layers.1's input gate at +0.251, at the tolerance's edge)."""
    verdict = _sptrace("recurrent_gemma").runs["sptrace"].verdict
    far = [c for c in verdict.worst if ("rg_lru" in c.module or "embed_tokens" in c.module)
           and abs(c.slope - c.expected) > 0.4]
    assert not far, verdict.summary()
