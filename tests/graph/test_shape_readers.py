"""``p.new_zeros(size)`` (``new_ones`` / ``new_empty`` / ``new_full``) reads only the parameter's
dtype and device: the zeros are data made from nothing, as ``torch.zeros`` is, and the parameter's
classification comes from its other uses.

Before, the parameter was taken to flow into the zeros ("new_zeros: transformed by an op that mixes
its entries") and left unclassified: the base model (AutoModel) of HF Mamba, Mamba2, Falcon-Mamba,
Jamba, Bamba, Zamba2, Falcon-H1, GraniteMoeHybrid, Nemotron-H at width 64 (``A_log`` of each
layer's mixer: its zero state is ``A_log.new_zeros``), 10 types in the catalog scan of AutoModel
types (docs/coverage.md).
"""
import pytest
import torch
import torch.nn as nn

import sptrace


class ZeroState(nn.Module):
    def __init__(self, n=32):
        super().__init__()
        self.a, self.b = nn.Linear(6, n), nn.Linear(n, 3)
        self.decay = nn.Parameter(torch.zeros(n))

    def forward(self, x):
        state = self.decay.new_zeros(x.shape[0], self.decay.shape[0])  # a zero state shaped by a parameter
        return self.b(self.a(x) * self.decay.exp() + state)


@pytest.mark.parametrize("route", ["export", "eager"])
def test_zeros_made_from_a_parameter_are_data(route):
    traced = sptrace.trace(ZeroState(), torch.randn(8, 6), routes=(route,))
    assert not traced.unclassified, [(r.name, r.problem) for r in traced.unclassified]
    assert traced["decay"].role.value == "gain" and traced["decay"].width_dims == (0,)


def test_hugging_face_mamba_base_model():
    transformers = pytest.importorskip("transformers")
    config = transformers.MambaConfig(vocab_size=50, hidden_size=64, state_size=8, num_hidden_layers=1)
    torch.manual_seed(0)
    traced = sptrace.trace(transformers.MambaModel(config), input_ids=torch.randint(0, 50, (2, 6)))
    assert not traced.unclassified, [(r.name, r.problem) for r in traced.unclassified]
    assert traced["layers.0.mixer.A_log"].kind.value != "unknown"
