"""Closed-form Gaussian integrals behind the activations' exact references.

``X ~ N(0, 1)`` throughout. Two families cover every activation with a closed form:

* piecewise polynomials (identity, relu, leaky_relu, hardtanh, relu6, hardsigmoid, hardswish) through the
  truncated moments ``M_k(a, b) = E[X^k 1{a < X < b}]``;
* the exponential pieces of elu, celu and selu through ``E[exp(tX) 1{X < 0}] = exp(t^2/2) Phi(-t)``.
"""

from __future__ import annotations

import math
from typing import Sequence

from normstats.lazy import special

#: A piece of a piecewise polynomial: ``(a, b, coefficients)`` with the coefficients lowest degree first;
#: the polynomial applies on the open interval ``(a, b)`` and the function is 0 outside every piece.
Piece = tuple[float, float, Sequence[float]]


def pdf(x: float) -> float:
    return 0.0 if math.isinf(x) else math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def ndtr(x: float) -> float:
    """``Phi(x)``, the standard normal CDF, as ``erfc(-x / sqrt 2) / 2``: accurate in both tails (no ``1 - ``
    cancellation) and without importing scipy for the piecewise-polynomial activations."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def truncated_moments(a: float, b: float, k_max: int) -> list[float]:
    """``[M_0, ..., M_k_max]`` with ``M_k = E[X^k 1{a < X < b}]``, by the recursion
    ``M_k = a^(k-1) phi(a) - b^(k-1) phi(b) + (k-1) M_(k-2)`` (integration by parts)."""
    mass = ndtr(-a) - ndtr(-b) if a >= 0 else ndtr(b) - ndtr(a)
    moments = [mass, pdf(a) - pdf(b)]

    def edge(x: float, power: int) -> float:
        return 0.0 if math.isinf(x) else x**power * pdf(x)

    for k in range(2, k_max + 1):
        moments.append(edge(a, k - 1) - edge(b, k - 1) + (k - 1) * moments[k - 2])
    return moments[: k_max + 1]


def _square(coeffs: Sequence[float]) -> list[float]:
    out = [0.0] * (2 * len(coeffs) - 1)
    for i, ci in enumerate(coeffs):
        for j, cj in enumerate(coeffs):
            out[i + j] += ci * cj
    return out


def piecewise_moment(pieces: Sequence[Piece], square: bool = False) -> float:
    """``E p(X)`` (or ``E p(X)^2`` with ``square``) for the piecewise polynomial ``p`` given by ``pieces``."""
    total = []
    for a, b, coeffs in pieces:
        poly = _square(coeffs) if square else list(coeffs)
        moments = truncated_moments(a, b, len(poly) - 1)
        total.extend(c * m for c, m in zip(poly, moments))
    return math.fsum(total)


def exp_negative_moment(t: float) -> float:
    """``E[exp(tX) 1{X < 0}] = exp(t^2/2) Phi(-t)``, evaluated in logs so large ``t`` does not overflow."""
    return math.exp(0.5 * t * t + float(special.log_ndtr(-t)))
