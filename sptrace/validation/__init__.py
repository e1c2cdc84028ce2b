"""Checks of what sptrace promises, on the public API: coord checks, slope verdicts, ``validate``,
learning-rate transfer, and their plots."""
