"""The coord check of a model built by a library's own constructor (tests/validation/test_validate_external.py,
tests/validation/test_validate_vision_external.py), with ``sptrace.validation.validate``'s conventions: the zoo's data
and loss, lr ``DEFAULT_LR`` at the narrowest width, which is sptrace's base (a real model there, so
sptrace reads the library's init law off it) with ``delta=`` the next width, readouts zero at init,
the mean over ``n_seeds`` init seeds; standard parametrization is the optimizer on
``model.parameters()`` with that one lr."""
import warnings

import torch

import models_zoo
from sptrace.validation.coord import coord_check
from sptrace.validation.models import optimizer_for
from sptrace.validation.validate import DEFAULT_LR


def external_coord_check(build, data, optimizer, parametrization, widths, *, steps, batch_size, n_seeds, tol=0.25,
                         tokens=None):
    """Verdict of ``build(width)`` at ``widths`` under ``parametrization`` ("sptrace" or "sp"), on the
    zoo model ``data``'s batches (``tokens``: the first that many of each sequence); the CoordCheck
    is attached as ``.coord``."""
    spec = models_zoo.get(data)
    stream = spec.batches(batch_size, seed=0)
    batches = [next(stream) for _ in range(steps)]
    if tokens is not None:
        batches = [(tuple(x[:, :tokens] for x in inputs), target[:, :tokens]) for inputs, target in batches]
    example = batches[0][0]
    lr = DEFAULT_LR[optimizer]
    optimizers, traces = {}, {}

    def make_model(width):  # coord_check seeds the RNG before each call
        model = build(width)
        base = delta = None
        if parametrization != "sp":  # the baseline keeps the model as built
            base = build(widths[0])
            with torch.device("meta"):
                delta = build(widths[1])
        optimizers[id(model)] = optimizer_for(model, parametrization, optimizer, lr, example, base, delta,
                                              zero_readout=True, traces=traces)
        return model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cc = coord_check(make_model, lambda m: optimizers.pop(id(m)), batches,
                         lambda out, y: spec.loss(getattr(out, "logits", out), y), widths, steps=steps,
                         params=False, n_seeds=n_seeds)
    verdict = cc.verdict(tol=tol, quantities=["rms@0", f"delta_rms@{steps}"], allow_shrink=["rms@0"])
    verdict.coord = cc
    return verdict
