"""Stage 4: the rules (the paper's Parametrization 1 and Table 1, per optimizer family) and the
per-parameter plan of init, lr and weight decay they give. Pure functions of the records: nothing
here touches a model."""
