"""Figures published elsewhere, each with its source: the NormProp table, third-party constants (NFNet gammas,
PyTorch gains) and their audit, each community's convention for the normalizing constants, and the rows of the
default table.

May import: ``exact``, ``layers`` and the foundation modules; never ``output`` or the API (a convention takes a
row by its statistics, not by its type).
"""
