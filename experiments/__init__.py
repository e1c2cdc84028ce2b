"""The paper's experiments (Fig. 1, Fig. 2) and other studies, built on sptrace's public API.
Not part of the installed package: run from a checkout (``python -m experiments``).

* :mod:`experiments.digits`: the data (the digits as the stand-in for CIFAR-10).
* :mod:`experiments.gd_mlp`: the Fig. 2 MLP and its full-batch gradient descent (Appendix A).
* :mod:`experiments.fig2`, :mod:`experiments.fig2_store`: Fig. 2 and its store of finished runs.
* :mod:`experiments.fig1`: Fig. 1 (and Fig. 3's stable ranks).
* :mod:`experiments.lr_sweep`: learning-rate sweep of the Fig. 2 MLP.
* :mod:`experiments.coord_demo`: a coord check on the digits, SP vs sptrace.
* :mod:`experiments.plots`: the figures; :mod:`experiments.results`: what results share."""
