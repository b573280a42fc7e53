"""Exact references: Gaussian expectations by quadrature, order statistics of the maximum, and the dispatch
that picks a reference for each statistic of a layer.

For each statistic the dispatch tries the layer's closed form first, then its quadrature, the way
``scipy.stats`` tries ``formula -> quadrature``. A caller can force one path with ``method=``; forcing a path
the layer does not have for a statistic raises instead of guessing.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np
from normstats.lazy import integrate as scipy_integrate
from normstats.lazy import special

from normstats.errors import NormstatsError

if TYPE_CHECKING:
    from normstats.layers.base import Layer

#: Reference kinds as they appear in the JSON document.
CLOSED_FORM = "closed_form"
QUADRATURE = "quadrature"
METHODS = ("auto", "formula", "quadrature")

_QUAD_OPTS = dict(epsabs=1e-15, epsrel=1e-13, limit=500)
#: The fixed rule: Gauss-Legendre with ``_NODES`` nodes on panels at most ``_PANEL`` wide, checked against the
#: same rule on panels half as wide. 20 nodes integrate a polynomial of degree 39 exactly; a function analytic
#: in a strip wider than a panel (the Gaussian weight times any smooth activation) converges geometrically.
_NODES = 20
_PANEL = 0.5
#: The fixed rule's two results must agree to this (relative to the integral of ``|h|``, plus ``_ABS_TOL``);
#: otherwise the adaptive quadrature decides.
_REL_TOL = 1e-13
_ABS_TOL = 1e-15
#: ``phi(40) ~ 1e-348`` underflows to 0: nothing of a Gaussian expectation lies beyond ``|x| = 40``.
FAR = 40.0


@dataclass(frozen=True)
class Reference:
    """An exact value of a statistic and how it was obtained (``closed_form`` or ``quadrature``)."""

    value: float
    kind: str


def integrate(h: Callable[[np.ndarray], np.ndarray], edges: Sequence[float]) -> float:
    """``int h`` over ``[edges[0], edges[-1]]``, split at every edge (put kinks and jumps of ``h`` there).

    ``h`` takes an array. The fast path is a fixed composite Gauss-Legendre rule, numpy only (no scipy import,
    about a millisecond): it runs on panels at most ``_PANEL`` wide and again on panels half as wide, and
    returns the finer result when the two agree to ``_REL_TOL``. Where they do not (a kink that is not at an
    edge, a sharp feature narrower than a panel, a value that is not finite), scipy's adaptive ``quad``
    integrates each piece instead, the outer two out to -inf and +inf.
    """
    coarse, fine, scale = 0.0, [], 0.0
    for a, b in zip(edges, edges[1:]):
        c, _ = _fixed_rule(h, a, b, _PANEL)
        f, size = _fixed_rule(h, a, b, _PANEL / 2)
        coarse += c
        fine.append(f)
        scale += size
    total = math.fsum(fine)
    if math.isfinite(total) and abs(total - coarse) <= _REL_TOL * scale + _ABS_TOL:
        return total
    return _adaptive(h, edges)


def _fixed_rule(h: Callable[[np.ndarray], np.ndarray], a: float, b: float, panel: float) -> tuple[float, float]:
    """Composite Gauss-Legendre over ``[a, b]``: ``(int h, int |h|)``."""
    nodes, weights = _gauss_legendre()
    n = max(1, math.ceil((b - a) / panel))
    cuts = np.linspace(a, b, n + 1)
    mid, half = (cuts[1:] + cuts[:-1]) / 2, (cuts[1:] - cuts[:-1]) / 2
    x = (mid[:, None] + half[:, None] * nodes).ravel()
    with np.errstate(all="ignore"):
        v = np.broadcast_to(np.asarray(h(x), dtype=float), x.shape)
    terms = (half[:, None] * weights).ravel() * v
    if not np.all(np.isfinite(terms)):
        return math.nan, math.nan
    return float(np.sum(terms)), float(np.sum(np.abs(terms)))  # pairwise summation: ~1e-16 relative here


@functools.cache
def _gauss_legendre() -> tuple[np.ndarray, np.ndarray]:
    from numpy.polynomial.legendre import leggauss

    return leggauss(_NODES)


def _adaptive(h: Callable[[np.ndarray], np.ndarray], edges: Sequence[float]) -> float:
    """The fallback: ``scipy.integrate.quad`` on each piece, the outer pieces to -inf and +inf."""
    ends = [-math.inf, *edges[1:-1], math.inf]

    def scalar(t: float) -> float:
        return float(h(np.asarray(t, dtype=float)))

    return math.fsum(scipy_integrate.quad(scalar, a, b, **_QUAD_OPTS)[0] for a, b in zip(ends, ends[1:]))


def gaussian_expectation(
    g: Callable[[np.ndarray], np.ndarray], breakpoints: Iterable[float] = ()
) -> float:
    """``E g(X)`` for ``X ~ N(0, 1)``: the integral of ``g(x) phi(x)`` over ``[-40, 40]`` (see :func:`integrate`),
    split at ``breakpoints`` (kinks of ``g``) and at 0."""
    # 0 is always a split point (for the fallback: an infinite piece whose edge lies far from the bulk of the
    # Gaussian gets mapped by quad's substitution so that the bulk is missed); kinks beyond |x| = 40, where phi
    # underflows, would only create such pieces.
    points = sorted({0.0, *(float(b) for b in breakpoints if abs(float(b)) < FAR)})
    norm = 1.0 / math.sqrt(2 * math.pi)
    return integrate(lambda t: g(t) * (np.exp(-0.5 * t * t) * norm), [-FAR, *points, FAR])


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

    def density(t: np.ndarray) -> np.ndarray:
        return n * np.exp(-0.5 * t * t + (n - 1) * special.log_ndtr(t)) / math.sqrt(2 * math.pi)

    mode = math.sqrt(2 * math.log(n)) if n > 1 else 0.0
    edges = [-FAR, mode - 2.0, mode, mode + 2.0, FAR]
    mean = integrate(lambda t: t * density(t), edges)
    var = integrate(lambda t: (t - mean) ** 2 * density(t), edges)
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
