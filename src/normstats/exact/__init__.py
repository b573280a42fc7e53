"""Exact references: Gaussian quadrature, the closed-form Gaussian integrals behind the activations' formulas,
order statistics of the maximum, the per-statistic dispatch (formula, then quadrature) and the
self-normalizing solve.

May import: the foundation modules (``errors``, ``params``, ``registry``, ``stats``, ``lazy``). Knows nothing of
the layers package, which builds its references from this one.
"""
