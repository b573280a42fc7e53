"""Order statistics of standard normals: the moments of the largest of ``n`` iid N(0, 1) variables, the
exact reference of max pooling over one window."""

from __future__ import annotations

import math

import numpy as np

from normstats.exact.quadrature import FAR, integrate
from normstats.lazy import special


def max_normal_moments(n: int) -> tuple[float, float]:
    """Mean and standard deviation of the largest of ``n`` iid N(0, 1) variables.

    The maximum has density ``n phi(x) Phi(x)^(n-1)``; ``Phi^(n-1)`` is evaluated as
    ``exp((n-1) log Phi(x))`` (``scipy.special.log_ndtr``) so it stays accurate far in the left tail.
    The integral is split near the mode, about ``sqrt(2 log n)``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")

    def density(t: np.ndarray) -> np.ndarray:
        return n * np.exp(-0.5 * t * t + (n - 1) * special.log_ndtr(t)) / math.sqrt(2 * math.pi)

    mode = math.sqrt(2 * math.log(n)) if n > 1 else 0.0
    edges = [-FAR, mode - 2.0, mode, mode + 2.0, FAR]
    mean = integrate(lambda t: t * density(t), edges)
    var = integrate(lambda t: (t - mean) ** 2 * density(t), edges)
    return mean, math.sqrt(var)
