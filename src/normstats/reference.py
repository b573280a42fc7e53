"""Exact references: Gaussian expectations by quadrature, order statistics of the maximum, and the dispatch
that picks a reference for each statistic of a layer.

For each statistic the dispatch tries the layer's closed form first, then its quadrature, the way
``scipy.stats`` tries ``formula -> quadrature``. A caller can force one path with ``method=``; forcing a path
the layer does not have for a statistic raises instead of guessing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable

import numpy as np
from normstats.lazy import integrate, special

from normstats.errors import NormstatsError

if TYPE_CHECKING:
    from normstats.layers.base import Layer

#: Reference kinds as they appear in the JSON document.
CLOSED_FORM = "closed_form"
QUADRATURE = "quadrature"
METHODS = ("auto", "formula", "quadrature")

_QUAD_OPTS = dict(epsabs=1e-15, epsrel=1e-13, limit=500)


@dataclass(frozen=True)
class Reference:
    """An exact value of a statistic and how it was obtained (``closed_form`` or ``quadrature``)."""

    value: float
    kind: str


def gaussian_expectation(
    g: Callable[[np.ndarray], np.ndarray], breakpoints: Iterable[float] = ()
) -> float:
    """``E g(X)`` for ``X ~ N(0, 1)``, by adaptive quadrature split at ``breakpoints`` (kinks of ``g``).

    The integrand ``g(x) phi(x)`` is integrated over each piece between consecutive breakpoints (and 0), with
    the two outer pieces running to -inf and +inf; splitting at the kinks keeps the quadrature at full
    accuracy.
    """
    # 0 is always a split point (an infinite piece whose edge lies far from the bulk of the Gaussian gets
    # mapped by quad's substitution so that the bulk is missed); kinks beyond |x| = 40, where phi underflows,
    # would only create such pieces.
    points = sorted({0.0, *(float(b) for b in breakpoints if abs(float(b)) < 40.0)})
    edges = [-math.inf, *points, math.inf]

    def integrand(t: float) -> float:
        return float(g(np.asarray(t, dtype=float))) * math.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)

    return math.fsum(integrate.quad(integrand, a, b, **_QUAD_OPTS)[0] for a, b in zip(edges, edges[1:]))


def gaussian_mean_std(
    g: Callable[[np.ndarray], np.ndarray], breakpoints: Iterable[float] = ()
) -> tuple[float, float]:
    """Mean and standard deviation of ``g(X)``, ``X ~ N(0, 1)``; the variance is integrated about the mean
    (a second pass) rather than as ``E g^2 - (E g)^2``, so no digits are lost to cancellation."""
    points = tuple(breakpoints)
    mean = gaussian_expectation(g, points)
    var = gaussian_expectation(lambda t: (g(t) - mean) ** 2, points)
    return mean, math.sqrt(var)


def max_normal_moments(n: int) -> tuple[float, float]:
    """Mean and standard deviation of the largest of ``n`` iid N(0, 1) variables.

    The maximum has density ``n phi(x) Phi(x)^(n-1)``; ``Phi^(n-1)`` is evaluated as
    ``exp((n-1) log Phi(x))`` (``scipy.special.log_ndtr``) so it stays accurate far in the left tail.
    The integral is split near the mode, about ``sqrt(2 log n)``.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")

    def density(t: float) -> float:
        return n * math.exp(-0.5 * t * t + (n - 1) * special.log_ndtr(t)) / math.sqrt(2 * math.pi)

    mode = math.sqrt(2 * math.log(n)) if n > 1 else 0.0
    edges = [-math.inf, mode - 2.0, mode, mode + 2.0, math.inf]

    def integrate_pieces(h: Callable[[float], float]) -> float:
        return math.fsum(
            integrate.quad(lambda t: h(t) * density(t), a, b, **_QUAD_OPTS)[0]
            for a, b in zip(edges, edges[1:])
        )

    mean = integrate_pieces(lambda t: t)
    var = integrate_pieces(lambda t: (t - mean) ** 2)
    return mean, math.sqrt(var)


def reference_moments(layer: Layer, method: str = "auto") -> dict[str, Reference | None]:
    """The reference for each statistic of ``layer``: ``None`` where the layer has none.

    ``method="auto"`` takes the closed form where there is one and quadrature otherwise;
    ``"formula"`` or ``"quadrature"`` forces that path: statistics the path does not cover get no
    reference, and a path that covers none of the layer's statistics raises.
    """
    from normstats.layers.base import STATS

    if method not in METHODS:
        raise NormstatsError(f"--reference must be one of: {', '.join(METHODS)}; got {method!r}")
    paths = {"formula": (layer.formula(), CLOSED_FORM), "quadrature": (layer.quadrature(), QUADRATURE)}
    order = ["formula", "quadrature"] if method == "auto" else [method]
    out: dict[str, Reference | None] = {}
    for stat in STATS:
        found = [Reference(float(paths[p][0][stat]), paths[p][1]) for p in order if stat in paths[p][0]]
        out[stat] = found[0] if found else None
    if method != "auto" and all(r is None for r in out.values()):
        other = "quadrature" if method == "formula" else "formula"
        raise NormstatsError(
            f"--reference {method}: layer '{layer.name}' has no {method} reference; "
            f"use --reference auto or {other}"
        )
    return out
