"""Mean-field signal propagation through a deep, infinitely wide network with an elementwise activation ``f``.

The network (Poole et al., *Exponential expressivity in deep neural networks through transient chaos*, NIPS
2016; Schoenholz et al., *Deep information propagation*, ICLR 2017): pre-activations ``h^(l+1) = W f(h^l) + b``
with weights ``W_ij ~ N(0, sigma_w^2 / fan_in)`` and biases ``b_i ~ N(0, sigma_b^2)``. At infinite width the
pre-activations of two inputs are, at every layer, a centred bivariate normal of variance ``q^l`` (each) and
correlation ``c^l``, with ``z, z1, z2`` independent standard normals below:

* the q-map: ``q' = sigma_w^2 E[f(sqrt(q) z)^2] + sigma_b^2``; iterated from ``q0`` it tends to ``q*``;
* the C-map at ``q*``: ``c' = (sigma_w^2 E[f(u1) f(u2)] + sigma_b^2) / q*`` with ``u1 = sqrt(q*) z1``,
  ``u2 = sqrt(q*) (c z1 + sqrt(1 - c^2) z2)``; along a trajectory ``q*`` is replaced by ``q^l`` inside the
  expectation and by ``q^(l+1)`` in the denominator.

Slopes and depth scales:

* ``chi_1 = sigma_w^2 E[f'(sqrt(q*) z)^2]`` is the slope of the C-map at ``c = 1``: by Price's theorem
  ``d/dc E[f(u1) f(u2)] = q* E[f'(u1) f'(u2)]``, which at ``c = 1`` is ``q* E[f'(u)^2]``. ``chi_1 < 1`` is the
  ordered phase (nearby inputs converge, gradients vanish), ``chi_1 > 1`` the chaotic one, ``chi_1 = 1`` the
  edge of chaos.
* ``chi_c = sigma_w^2 E[f'(u1) f'(u2)]`` at ``(q*, c*)``: the slope of the C-map at its attracting fixed point;
  ``xi_c = -1 / log chi_c`` is the depth over which ``|c^l - c*|`` shrinks by ``e``.
* ``chi_q``, the slope of the q-map at ``q*``: with ``u = sqrt(q) z``, ``d/dq E[f(u)^2] = E[2 f(u) f'(u) z /
  (2 sqrt q)] = E[f(u) f'(u) u] / q``, so ``chi_q = sigma_w^2 E[f(u) f'(u) u] / q*``. Stein's lemma (``E[z
  g(z)] = E[g'(z)]``) turns this into Schoenholz et al.'s ``chi_1 + sigma_w^2 E[f''(u) f(u)]`` (their eq. for
  ``xi_q``), which needs ``f''``; the form used here needs only ``f'`` (the tests check that the two agree
  for tanh, and against a finite difference of the q-map). ``xi_q = -1 / log |chi_q|``.

The fixed point of the C-map. Mehler's formula writes ``E[f(u1) f(u2)] = sum_n a_n^2 c^n`` with ``a_n`` the
normalised Hermite coefficients of ``f(sqrt(q*) z)``, so on ``[0, 1]`` the C-map is a power series in ``c`` with
non-negative coefficients: increasing and convex, with ``C(1) = 1`` and ``C'(1) = chi_1``. Hence ``c = 1`` is its
only fixed point in ``[0, 1]`` when ``chi_1 <= 1`` (``C(c) >= 1 - chi_1 (1 - c) >= c``), and when ``chi_1 > 1``
there is exactly one more, ``c* in [0, 1)``, which attracts every start in ``[0, 1)`` (and ``C'(c*) < 1``). A
start ``c0 < 0`` is iterated until it enters ``[0, 1]``, or converges on a fixed point of its own.

Degenerate fixed points are said, not hidden: ``q* = inf`` when the q-map has no fixed point above the start
(relu with ``sigma_w^2 > 2``: the variance grows without bound), ``q* = 0`` when it decays to 0 (no bias,
``f(0) = 0``, ``chi_1 < 1``). At ``q* = 0`` ``chi_1`` and ``chi_q`` are their limits ``q -> 0+`` (``chi_q``
tends to ``chi_1`` there, since ``f(u) ~ f'(0+) u``) and the C-map, divided by ``q* = 0``, is undefined. A
depth scale whose slope is within ``CRITICAL_TOL`` of 1 is infinite, and reported so.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from normstats.errors import NormstatsError
from normstats.exact.bivariate import bivariate_expectation
from normstats.exact.quadrature import gaussian_expectation
from normstats.layers.base import Elementwise
from normstats.lazy import optimize
from normstats.output.results.meanfield import FixedPoint, LayerPoint

#: A slope this close to 1 is the edge of chaos to the precision of the quadrature (about 1e-13): its depth
#: scale is infinite.
CRITICAL_TOL = 1e-11
#: The q-map is iterated this many times before the fixed point is bracketed and solved for.
_ITERATIONS = 40
#: Beyond this the q-map is taken to diverge (q* = inf); below _Q_ZERO, to decay to 0.
_Q_HUGE = 1e100
_Q_ZERO = 1e-250
#: Where a limit q -> 0+ (or q -> inf) is evaluated.
_Q_TINY = 1e-200
#: Steps of the C-map tried from a negative c0 before giving up.
_C_STEPS = 200
#: Beyond this |z| the Gaussian weight underflows: the 1-D integrands are set to 0 there (as for --expr).
_CUTOFF = 38.0


def check_elementwise(layer: object) -> Elementwise:
    if not isinstance(layer, Elementwise):
        name = getattr(layer, "name", type(layer).__name__)
        raise NormstatsError(
            f"meanfield needs an elementwise activation (--layer relu, tanh, ... or --expr FORMULA); "
            f"got layer '{name}', which is not elementwise"
        )
    return layer


class MeanField:
    """The mean-field maps of ``layer`` at ``(sigma_w2, sigma_b2)``; every expectation by quadrature."""

    def __init__(self, layer: Elementwise, sigma_w2: float, sigma_b2: float) -> None:
        self.layer = check_elementwise(layer)
        self.sigma_w2 = float(sigma_w2)
        self.sigma_b2 = float(sigma_b2)
        self.kinks = tuple(float(k) for k in layer.breakpoints)

    # -- one-dimensional expectations ------------------------------------------------------------------
    def _expect(self, g: Callable[[np.ndarray], np.ndarray], q: float) -> float:
        """``E[g(sqrt(q) z, z)]`` with ``g`` taking ``(u, z)``; split at the kinks of ``f`` (in ``z``)."""
        r = math.sqrt(q)

        def integrand(z: np.ndarray) -> np.ndarray:
            with np.errstate(all="ignore"):
                return np.where(np.abs(z) < _CUTOFF, g(r * z, z), 0.0)

        return gaussian_expectation(integrand, [k / r for k in self.kinks])

    def second_moment(self, q: float) -> float:
        """``E[f(sqrt(q) z)^2]``."""
        f = self.layer.f
        return self._expect(lambda u, z: f(u) ** 2, q)

    def q_map(self, q: float) -> float:
        return self.sigma_w2 * self.second_moment(q) + self.sigma_b2

    def chi_1(self, q: float) -> float:
        """``sigma_w^2 E[f'(sqrt(q) z)^2]``; at ``q = 0`` its limit ``q -> 0+``."""
        df = self.layer.df
        return self.sigma_w2 * self._expect(lambda u, z: df(u) ** 2, max(q, _Q_TINY))

    def q_slope(self, q: float) -> float:
        """``d q' / d q = sigma_w^2 E[f(u) f'(u) u] / q`` at ``u = sqrt(q) z`` (module docstring); at ``q = 0`` its
        limit. Written as ``E[f(u) f'(u) z] / sqrt(q)`` so that a tiny ``q`` loses nothing to underflow."""
        q = max(q, _Q_TINY)
        f, df = self.layer.f, self.layer.df
        return self.sigma_w2 * self._expect(lambda u, z: f(u) * df(u) * z, q) / math.sqrt(q)

    # -- two-dimensional expectations ------------------------------------------------------------------
    def cross(self, q: float, c: float) -> float:
        """``E[f(u1) f(u2)]`` at variances ``q`` and correlation ``c``."""
        return bivariate_expectation(self.layer.f, self.layer.f, q, q, c, self.kinks, self.kinks)

    def cross_slope(self, q: float, c: float) -> float:
        """``sigma_w^2 E[f'(u1) f'(u2)]``: the slope of the C-map at ``c`` (Price's theorem)."""
        if c == 1.0:
            return self.chi_1(q)
        return self.sigma_w2 * bivariate_expectation(self.layer.df, self.layer.df, q, q, c, self.kinks,
                                                     self.kinks)

    def c_map(self, c: float, q: float) -> float:
        """The C-map at the fixed variance ``q``: ``(sigma_w^2 E[f(u1) f(u2)] + sigma_b^2) / q``."""
        if c == 1.0:
            return 1.0
        return (self.sigma_w2 * self.cross(q, c) + self.sigma_b2) / q

    # -- fixed points -----------------------------------------------------------------------------------
    def q_star(self, q0: float) -> float:
        """The limit of the q-map iterated from ``q0``: ``inf`` if it grows without bound, 0 if it decays to 0.

        A few iterations, then the nearest sign change of ``q' - q`` in the direction the iteration moves is
        bracketed and solved with Brent's method."""
        q = q0
        for _ in range(_ITERATIONS):
            nq = self.q_map(q)
            if not math.isfinite(nq) or nq > _Q_HUGE:
                return math.inf
            if abs(nq - q) <= 1e-15 * max(q, nq):
                return nq
            q = nq
        return self._bracket_q(q)

    def _bracket_q(self, q: float) -> float:
        def gap(t: float) -> float:
            return self.q_map(t) - t

        g0 = gap(q)
        if g0 == 0.0:
            return q
        step = g0
        while True:  # from q, towards where the iteration moves, in doubling steps
            other = q + step
            if g0 < 0 and other <= q * 1e-3:
                other = q * 1e-3
            if other > _Q_HUGE:
                return math.inf
            g1 = gap(other)
            if not math.isfinite(g1):
                return math.inf
            if (g1 <= 0) != (g0 < 0) or g1 == 0.0:
                break
            if other < _Q_ZERO:
                return 0.0
            q, g0, step = other, g1, 2.0 * step
        lo, hi = sorted((q, other))
        return float(optimize.brentq(gap, lo, hi, xtol=1e-300, rtol=8.9e-16, maxiter=200))

    def c_star(self, q_star: float, chi_1: float) -> float:
        """The attracting fixed point of the C-map in ``[0, 1]`` (module docstring): 1 unless ``chi_1 > 1``."""
        if chi_1 <= 1.0 + CRITICAL_TOL:
            return 1.0

        def gap(c: float) -> float:
            return self.c_map(c, q_star) - c

        eps = 0.5
        while gap(1.0 - eps) >= 0.0:  # C(c) < c just below 1 because C'(1) > 1; find where that shows
            eps /= 4.0
            if eps < 1e-13:
                return 1.0
        if gap(0.0) <= 0.0:
            return 0.0
        return float(optimize.brentq(gap, 0.0, 1.0 - eps, xtol=1e-15, rtol=8.9e-16, maxiter=200))

    def c_limit(self, q_star: float, c0: float, c_star: float) -> float | None:
        """Where the C-map iterated from ``c0`` ends: ``c*`` for a start in ``[0, 1)``; from ``c0 < 0``, ``c*`` if
        the iteration enters ``[0, 1]``, else the negative fixed point it converges to (None if it does not
        within ``_C_STEPS`` steps)."""
        if c0 == 1.0:
            return 1.0
        c = c0
        for _ in range(_C_STEPS):
            if c >= 0.0:
                return c_star
            nc = self.c_map(c, q_star)
            if abs(nc - c) <= 1e-14:
                return nc
            c = nc
        return None

    # -- the whole picture ---------------------------------------------------------------------------------
    def fixed_point(self, q0: float, c0: float | None) -> FixedPoint:
        qs = self.q_star(q0)
        if math.isinf(qs):
            return FixedPoint(
                q_star=qs, c_star=None, c_star_from_c0=None, chi_1=None, chi_c=None, chi_q=None, xi_q=None,
                xi_c=None, phase="unbounded",
                note=f"the q-map has no fixed point above q0 = {q0:g}: the variance grows without bound",
            )
        chi1 = self.chi_1(qs)
        chiq = self.q_slope(qs)
        phase = "critical" if abs(chi1 - 1.0) <= CRITICAL_TOL else ("ordered" if chi1 < 1.0 else "chaotic")
        if qs == 0.0:
            return FixedPoint(
                q_star=0.0, c_star=None, c_star_from_c0=None, chi_1=chi1, chi_c=None, chi_q=chiq,
                xi_q=depth_scale(chiq), xi_c=None, phase=phase,
                note="q* = 0: every signal decays to 0, and the C-map (divided by q*) is undefined; chi_1 and "
                "chi_q are their limits q -> 0+",
            )
        cs = self.c_star(qs, chi1)
        chic = chi1 if cs == 1.0 else self.cross_slope(qs, cs)
        from_c0 = None if c0 is None else self.c_limit(qs, c0, cs)
        note = None
        if c0 is not None and from_c0 is None:
            note = f"the C-map iterated from c0 = {c0:g} did not settle within {_C_STEPS} layers"
        return FixedPoint(
            q_star=qs, c_star=cs, c_star_from_c0=from_c0, chi_1=chi1, chi_c=chic, chi_q=chiq,
            xi_q=depth_scale(chiq), xi_c=depth_scale(chic), phase=phase, note=note,
        )

    def trajectory(self, q0: float, c0: float, depth: int) -> list[LayerPoint]:
        """``(q^l, c^l)`` for ``l = 0 .. depth``: both inputs start at variance ``q0`` and correlation ``c0``."""
        q, c = q0, c0
        out = [LayerPoint(0, q, c)]
        for layer in range(1, depth + 1):
            if not math.isfinite(q) or c is None:
                out.append(LayerPoint(layer, math.inf if not math.isfinite(q) else q, None))
                continue
            nq = self.q_map(q)
            if c == 1.0:
                nc: float | None = 1.0
            elif nq > 0.0 and math.isfinite(nq):
                nc = (self.sigma_w2 * self.cross(q, c) + self.sigma_b2) / nq
            else:
                nc = None
            q, c = (nq if math.isfinite(nq) else math.inf), nc
            out.append(LayerPoint(layer, q, c))
        return out


def depth_scale(chi: float | None) -> float | None:
    """``-1 / log |chi|``: ``inf`` at ``|chi| = 1`` (within :data:`CRITICAL_TOL`), None where ``|chi| > 1`` (no
    attracting fixed point) or ``chi`` is undefined."""
    if chi is None or not math.isfinite(chi):
        return None
    a = abs(chi)
    if abs(a - 1.0) <= CRITICAL_TOL:
        return math.inf
    if a > 1.0:
        return None
    if a == 0.0:
        return 0.0
    return -1.0 / math.log(a)


#: The range of sigma_w^2 searched for the edge of chaos, and the log-spaced grid that brackets it.
CRITICAL_RANGE = (0.01, 100.0)
_CRITICAL_GRID = 25


def edge_of_chaos(layer: Elementwise, sigma_b2: float, q0: float) -> tuple[float, float]:
    """``(sigma_w^2, q*)`` with ``chi_1 = 1`` at ``sigma_b^2``: the smallest ``sigma_w^2`` in
    :data:`CRITICAL_RANGE` where ``chi_1 - 1`` changes sign (bracketed on a log grid, then Brent's method).
    Where ``q*`` is infinite (relu and the identity: the fixed point runs off to infinity as ``sigma_w^2``
    reaches the edge) ``chi_1`` is its limit ``q -> inf`` there, and ``q*`` is reported as ``inf``."""

    def excess(w: float) -> float:
        m = MeanField(layer, w, sigma_b2)
        qs = m.q_star(q0)
        chi = m.chi_1(1.0 / _Q_TINY if math.isinf(qs) else qs)
        return chi - 1.0 if math.isfinite(chi) else math.inf

    grid = np.geomspace(*CRITICAL_RANGE, _CRITICAL_GRID)
    values = [excess(float(w)) for w in grid]
    for (a, fa), (b, fb) in zip(zip(grid, values), zip(grid[1:], values[1:])):
        if fa == 0.0:
            b = a
            break
        if fa < 0.0 <= fb:
            break
    else:
        low, high = min(values), max(values)
        raise NormstatsError(
            f"--critical: no edge of chaos for sigma_w2 in [{CRITICAL_RANGE[0]:g}, {CRITICAL_RANGE[1]:g}] at "
            f"sigma_b2 = {sigma_b2:g}: chi_1 stays between {low + 1:.4g} and {high + 1:.4g}, never crossing 1"
        )
    w = float(b) if fa == 0.0 else float(optimize.brentq(excess, float(a), float(b), xtol=1e-15, rtol=1e-15))
    qs = MeanField(layer, w * (1.0 + 1e-9), sigma_b2).q_star(q0)
    if not math.isinf(qs):
        qs = MeanField(layer, w, sigma_b2).q_star(q0)
    return w, qs


#: Allowed ranges of the command's numbers (inclusive unless said).
MAX_DEPTH = 10_000
WIDTH_RANGE = (2, 8192)
NETWORKS_RANGE = (2, 100_000)


def check_real(option: str, value: object, low: float, high: float = math.inf, *, low_open: bool = False) -> float:
    """``value`` as a finite float in ``[low, high]`` (``(low, high]`` with ``low_open``), or one line naming
    ``option``, the range and what was given."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))
    x = float(value) if ok else math.nan  # type: ignore[arg-type]
    if not ok or x < low or x > high or (low_open and x == low):
        left = "(" if low_open else "["
        right = "]" if math.isfinite(high) else ")"
        raise NormstatsError(f"{option} must be a finite number in {left}{low:g}, {high:g}{right}; got {value!r}")
    return x


def check_count(option: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise NormstatsError(f"{option} must be an integer in [{low}, {high:,}]; got {value!r}")
    return value
