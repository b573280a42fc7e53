"""Gaussian expectations by quadrature: ``E g(X)`` for ``X ~ N(0, 1)`` and the fixed Gauss-Legendre rule
behind it (numpy only), with scipy's adaptive ``quad`` as the fallback where the fixed rule cannot vouch for
its result."""

from __future__ import annotations

import functools
import math
from typing import Callable, Iterable, Sequence

import numpy as np

from normstats.lazy import integrate as scipy_integrate

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
    (a second pass) rather than as ``E g^2 - (E g)^2``, so no digits are lost to cancellation. Both passes
    integrate ``g - g(0)``: where ``g`` is nearly constant (a clip far in the tail) the mean's small part
    is then integrated, not left as the last digits of ``g(0) + ...``."""
    points = tuple(breakpoints)
    # The mean as g(0) + E[g - g(0)]: a constant g gets its value exactly, and then a variance of exactly 0.
    base = float(np.asarray(g(np.zeros(1)), dtype=float).ravel()[0])
    mean = base + gaussian_expectation(lambda t: g(t) - base, points)
    var = gaussian_expectation(lambda t: (g(t) - mean) ** 2, points)
    return mean, math.sqrt(var)


#: Where a Gaussian expectation's integrand must have died out for the expectation to exist: ``|x|`` in
#: ``[28, 32]``. ``phi(28) ~ 1e-171``, so a ``g`` whose ``g phi`` is not negligible there grows like
#: ``exp(x^2 / 2)`` or faster (``exp(c x^2)`` with ``c`` within 0.04 of 1/2 for the second moment) and its
#: expectation diverges; a finite one (``exp(0.23 x^2)`` squared) is under ``e^{-36}`` of its peak there.
TAIL = (28.0, 32.0)
_TAIL_REL = 1e-13


def gaussian_expectation_checked(
    g: Callable[[np.ndarray], np.ndarray], breakpoints: Iterable[float] = (), cutoff: float = FAR
) -> float:
    """``E g(X)``, or ``inf`` / ``-inf`` / ``nan`` where it diverges: when ``g phi`` has not died out at
    ``|x|`` in :data:`TAIL` (relative to the integral) the tails that have not carry the sign of the
    divergence; tails of both signs leave the expectation undefined (nan). ``g`` is set to 0 beyond
    ``cutoff`` (where ``phi`` underflows), and no numpy or scipy warning escapes."""
    import warnings

    norm = 1.0 / math.sqrt(2 * math.pi)

    def weighted(t: np.ndarray) -> np.ndarray:
        return np.where(np.abs(t) < cutoff, g(t) * np.exp(-0.5 * t * t) * norm, 0.0)

    lo, hi = TAIL
    tails = np.concatenate([np.linspace(-hi, -lo, 81), np.linspace(lo, hi, 81)])
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w = np.asarray(weighted(tails), dtype=float)
        points = sorted({0.0, *(float(b) for b in breakpoints if abs(float(b)) < FAR)})
        try:
            core = integrate(weighted, [-FAR, *points, FAR])
        except (ValueError, OverflowError):  # the adaptive fallback summing infinities of both signs
            core = math.nan
    scale = abs(core) if math.isfinite(core) else 0.0
    alive = ~np.isfinite(w) | (np.abs(w) * (hi - lo) > _TAIL_REL * scale + 1e-100)
    if not alive.any():
        return core  # finite unless the integrand blew up inside [-28, 28]: then nan, undefined
    signs = set(np.sign(w[alive]).tolist()) - {0.0}
    if np.isnan(w[alive]).any() or len(signs) != 1:
        return math.nan
    return math.inf if signs == {1.0} else -math.inf


def gaussian_mean_std_checked(
    g: Callable[[np.ndarray], np.ndarray], breakpoints: Iterable[float] = (), cutoff: float = FAR
) -> tuple[float, float]:
    """:func:`gaussian_mean_std` with :func:`gaussian_expectation_checked`: the std is ``inf`` where the mean
    is not finite (``E g^2 >= (E |g|)^2``) or the variance diverges."""
    import warnings

    points = tuple(breakpoints)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = float(np.asarray(g(np.zeros(1)), dtype=float).ravel()[0])
    if not math.isfinite(base):
        base = 0.0
    mean = base + gaussian_expectation_checked(lambda t: g(t) - base, points, cutoff)
    if not math.isfinite(mean):
        return mean, math.inf
    var = gaussian_expectation_checked(lambda t: (g(t) - mean) ** 2, points, cutoff)
    return mean, math.sqrt(var) if var >= 0 else math.nan


def chi2_expectation(h: Callable[[np.ndarray], np.ndarray], k: int) -> float:
    """``E h(S)`` for ``S ~ chi^2_k``, integrated over ``u = log S`` (the normalization layers' references).

    ``log S`` has the density ``exp((k/2) u - e^u / 2) / (2^{k/2} Gamma(k/2))``: smooth, without the
    ``S^{k/2 - 1}`` endpoint singularity of ``S`` itself, so the fixed rule of :func:`integrate` applies. The
    variable is ``w = (u - log k) / sqrt(2 / k)`` (``log S`` has mean about ``log k`` and sd about
    ``sqrt(2 / k)``), over ``[-max(12, 120 / sqrt(k)), 12]``: below, the density falls like ``e^{(k/2) u}`` and
    is under ``e^{-80}`` of its peak at the lower end; above, like ``exp(-e^u / 2)``, past ``e^{-30}`` well before
    ``w = 12`` for every ``k``.

    In ``w`` the density is ``exp(-(w^2 / 2) r(sigma w))`` up to a constant, ``r(x) = 2 (e^x - 1 - x) / x^2``
    (``-> 1``: the Gaussian limit), computed without the cancellation of ``(k/2) u - e^u / 2``, two numbers of
    size ``k log k`` that leave a relative error of ``k eps`` in the density (``1e-9`` at ``k = 4 * 10^6``,
    where the fixed rule's two resolutions then disagreed and the adaptive fallback warned). The constant is
    divided out: the result is the ratio of the integrals of ``h`` times the density and of the density, so
    no ``lgamma(k/2)`` enters either."""
    sigma = math.sqrt(2.0 / k)
    scale = float(k)

    def density(w: np.ndarray) -> np.ndarray:
        return np.exp(-0.5 * w * w * _r(sigma * w))

    edges = [-max(12.0, 120.0 / math.sqrt(k)), 0.0, 12.0]
    total = integrate(lambda w: h(scale * np.exp(sigma * w)) * density(w), edges)
    return total / integrate(density, edges)


def _r(x: np.ndarray) -> np.ndarray:
    """``2 (e^x - 1 - x) / x^2`` to full precision: its Taylor series where ``|x| < 0.05`` (8 terms: the next is
    under ``1e-17``), else ``expm1``."""
    x = np.asarray(x, dtype=float)
    small = np.abs(x) < 0.05
    out = np.empty_like(x)
    xs = x[small]
    series = np.zeros_like(xs)
    for j in range(9, 1, -1):  # sum_{j>=2} 2 x^(j-2) / j!, by Horner
        series = series * xs + 2.0 / math.factorial(j)
    out[small] = series
    xl = x[~small]
    out[~small] = 2.0 * (np.expm1(xl) - xl) / (xl * xl)
    return out
