"""Closed-form Gaussian integrals behind the activations' exact references.

``X ~ N(0, 1)`` throughout. Two families cover every activation with a closed form:

* piecewise polynomials (identity, relu, leaky_relu, hardtanh, relu6, hardsigmoid, hardswish) through the
  truncated moments ``M_k(a, b) = E[X^k 1{a < X < b}]``;
* the exponential pieces of elu, celu and selu through ``E[exp(tX) 1{X < 0}] = exp(t^2/2) Phi(-t)``, or for
  small ``t`` through its Taylor series (:func:`exp_negative_series`), where the closed form cancels.

Where a closed form still loses digits (a hardtanh window far in the tail), :func:`piecewise_moment_bound`
says how many, and the activation leaves that statistic to quadrature.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

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
    return _truncated_moments(a, b, k_max)[0]


def _truncated_moments(a: float, b: float, k_max: int) -> tuple[list[float], list[float]]:
    """The moments of :func:`truncated_moments` and, for each, the sum of the magnitudes of the terms it was
    computed from (through the recursion): its rounding error is at most a few ulps of that sum."""
    upper, lower = (ndtr(-a), ndtr(-b)) if a >= 0 else (ndtr(b), ndtr(a))
    moments, sizes = [upper - lower, pdf(a) - pdf(b)], [upper + lower, pdf(a) + pdf(b)]

    def edge(x: float, power: int) -> float:
        return 0.0 if math.isinf(x) else x**power * pdf(x)

    for k in range(2, k_max + 1):
        ea, eb = edge(a, k - 1), edge(b, k - 1)
        moments.append(ea - eb + (k - 1) * moments[k - 2])
        sizes.append(abs(ea) + abs(eb) + (k - 1) * sizes[k - 2])
    return moments[: k_max + 1], sizes[: k_max + 1]


def _square(coeffs: Sequence[float]) -> list[float]:
    out = [0.0] * (2 * len(coeffs) - 1)
    for i, ci in enumerate(coeffs):
        for j, cj in enumerate(coeffs):
            out[i + j] += ci * cj
    return out


def piecewise_moment(pieces: Sequence[Piece], square: bool = False) -> float:
    """``E p(X)`` (or ``E p(X)^2`` with ``square``) for the piecewise polynomial ``p`` given by ``pieces``."""
    return piecewise_moment_bound(pieces, square)[0]


#: Ulps of rounding error allowed per term of a sum, in :func:`piecewise_moment_bound` (each term carries the
#: error of a pdf or erfc, a product and the recursion's own sums: a few ulps; 8 is generous).
_ULPS = 8


def piecewise_moment_bound(pieces: Sequence[Piece], square: bool = False) -> tuple[float, float]:
    """:func:`piecewise_moment` and a bound on its rounding error: ``_ULPS`` ulps of the sum of the magnitudes
    of every term behind it. A result far smaller than its terms (a window far in the tail, where
    ``M_2 - 2 c M_1 + c^2 M_0`` nearly cancels) gets a bound as large as the loss."""
    total, size = [], 0.0
    for a, b, coeffs in pieces:
        poly = _square(coeffs) if square else list(coeffs)
        moments, sizes = _truncated_moments(a, b, len(poly) - 1)
        total.extend(c * m for c, m in zip(poly, moments))
        size += sum(abs(c) * z for c, z in zip(poly, sizes))
    return math.fsum(total), _ULPS * 2.0**-52 * size


def exp_negative_moment(t: float) -> float:
    """``E[exp(tX) 1{X < 0}] = exp(t^2/2) Phi(-t)``, evaluated in logs so large ``t`` does not overflow."""
    return math.exp(0.5 * t * t + float(special.log_ndtr(-t)))


def negative_half_moment(k: int) -> float:
    """``E[X^k 1{X < 0}] = (-1)^k E|X|^k / 2``, with ``E|X|^k = 2^(k/2) Gamma((k+1)/2) / sqrt(pi)``."""
    return (-1) ** k * 0.5 * math.exp(0.5 * k * math.log(2.0) + math.lgamma(0.5 * (k + 1)) - 0.5 * math.log(math.pi))


#: Below this ``|t|`` the exponential moments are summed as series (:func:`exp_negative_series`).
SERIES_T = 0.5
#: Terms of those series: at |t| <= 1/2 the k-th term is below (t^2 k / e)^(k/2) / k!, < 1e-30 by k = 40.
_SERIES_TERMS = 40


def exp_negative_series(t: float, weight: Callable[[int], float]) -> float:
    """``sum_{k >= 2} weight(k) t^k E[X^k 1{X<0}] / k!``: for ``weight = 1`` that is
    ``E[(exp(tX) - 1 - tX) 1{X<0}]``, for ``weight(k) = 2^k - 2`` it is ``E[(exp(tX) - 1)^2 1{X<0}]``. These
    are the parts of the exponential-linear moments that ``exp(t^2/2) Phi(-t) - 1/2`` gets only by
    cancellation (a relative loss of order 1/t); summed term by term they lose nothing for ``|t| <=
    SERIES_T``."""
    terms = [
        weight(k) * math.exp(k * math.log(abs(t)) - math.lgamma(k + 1)) * (1 if t > 0 or k % 2 == 0 else -1)
        * negative_half_moment(k)
        for k in range(2, _SERIES_TERMS)
    ] if t != 0 else [0.0]
    return math.fsum(terms)
