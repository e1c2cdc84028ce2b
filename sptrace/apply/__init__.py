"""Stage 5: apply a plan to a model: in-place init, forward multipliers, optimizer param groups,
all as one transaction (``parametrize``)."""
