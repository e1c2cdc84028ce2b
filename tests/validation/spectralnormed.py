"""A spectral-normed MLP for the coord checks of tests/validation/test_validate_spectral_norm.py: 3072 -> n
-> n -> n -> 10 (the zoo's digits), leaky ReLU, every layer wrapped by ``torch.nn.utils.spectral_norm``
(the forward pre-hook) or ``torch.nn.utils.parametrizations.spectral_norm``, as a GAN discriminator's are."""
from torch import nn
from torch.nn import functional as F


class SpectralNormedMLP(nn.Module):
    def __init__(self, width, api="hook", d_in=3072, d_out=10):
        super().__init__()
        sn = nn.utils.spectral_norm if api == "hook" else nn.utils.parametrizations.spectral_norm
        self.inp, self.h1, self.h2 = sn(nn.Linear(d_in, width)), sn(nn.Linear(width, width)), sn(nn.Linear(width, width))
        self.out = sn(nn.Linear(width, d_out))

    def forward(self, x):
        for layer in (self.inp, self.h1, self.h2):
            x = F.leaky_relu(layer(x), 0.2)
        return self.out(x)
