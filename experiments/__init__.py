"""The paper's experiments (Fig. 1, Fig. 2) and other studies, built on sptrace's public API.
Not part of the installed package: run from a checkout (``python -m experiments.paper``)."""
