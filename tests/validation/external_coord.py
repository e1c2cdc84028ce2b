"""The coord check of a model built by a library's own constructor (tests/validation/test_validate_external.py,
tests/validation/test_validate_vision_external.py), with ``sptrace.validation.validate``'s conventions:
the zoo's data and loss; ``sptrace.parametrize`` with its own defaults in ``form`` ``"reference"``
(no base: the one-line call) or ``"base"`` (a real model at the narrowest width, so sptrace reads
the library's init law off it, ``delta=`` the next width); validate's lr (``validation_lr``); the
mean over ``n_seeds`` init seeds; module outputs and every classified parameter's natural
spectral norms judged (Condition 2). Standard parametrization is the optimizer on
``model.parameters()`` with the same lr."""
import warnings

import torch

import models_zoo
from sptrace.validation.coord import coord_check, scaled_outside
from sptrace.validation.models import optimizer_for
from sptrace.validation.validate import validation_lr


def external_coord_check(build, data, optimizer, parametrization, widths, *, steps, batch_size, n_seeds, tol=0.25,
                         tokens=None, form="reference", lr=None, dtype=None, zero_readout="auto", attention_fix=False):
    """Verdict of ``build(width)`` at ``widths`` under ``parametrization`` ("sptrace" or "sp"), on the
    zoo model ``data``'s batches (``tokens``: the first that many of each sequence), at ``lr`` (default
    validate's), trained in ``dtype`` (default: as built, float32); the CoordCheck is attached as ``.coord``."""
    spec = models_zoo.get(data)
    stream = spec.batches(batch_size, seed=0)
    batches = [next(stream) for _ in range(steps)]
    if tokens is not None:
        batches = [(tuple(x[:, :tokens] for x in inputs), target[:, :tokens]) for inputs, target in batches]
    example = batches[0][0]
    if lr is None:
        lr = validation_lr(optimizer, form)
    optimizers, traces, axes = {}, {}, {}

    def make_model(width):  # coord_check seeds the RNG before each call
        model = build(width)
        base = delta = None
        if parametrization != "sp" and form == "base":  # the baseline keeps the model as built
            base = build(widths[0])
            with torch.device("meta"):
                delta = build(widths[1])
        opt = optimizer_for(model, parametrization, optimizer, lr, example, base, delta, traces=traces,
                            zero_readout=zero_readout, attention_fix=attention_fix)
        if parametrization != "sp":
            axes.update({a: r for r in opt.sptrace.trace for a in r.aliases if r.classified})
        optimizers[id(model)] = opt
        return model

    judge_params = parametrization != "sp"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cc = coord_check(make_model, lambda m: optimizers.pop(id(m)), batches,
                         lambda out, y: spec.loss(getattr(out, "logits", out), y), widths, steps=steps,
                         params=judge_params, param_axes=axes, n_seeds=n_seeds, dtype=dtype)
    quantities = ["rms@0", f"delta_rms@{steps}"]
    verdict = cc.verdict(tol=tol, quantities=quantities, allow_shrink=["rms@0"],
                         params=list(axes) if judge_params else False, expected_for=scaled_outside(axes, quantities))
    verdict.coord = cc
    return verdict
