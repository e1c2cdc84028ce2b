"""Stages 1-3: capture the graph, analyse how each parameter is used, label which axes grow with
width, and classify every parameter (``trace`` returns the records as a :class:`~sptrace.graph.trace.Trace`)."""
