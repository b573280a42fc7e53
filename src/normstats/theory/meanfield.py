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
from normstats.exact.quadrature import FAR, _gauss_legendre, gaussian_expectation
from normstats.layers.base import Elementwise
from normstats.lazy import optimize
from normstats.output.results.meanfield import EdgeOfChaos, FixedPoint, Jump, LayerPoint, QFixedPoint

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
#: Points a decade of the scan for every fixed point of the q-map.
_SCAN_PER_DECADE = 3
#: A gap q' - q smaller than this times q is rounding (the quadrature's relative precision is about 1e-13).
_GAP_NOISE = 1e-12
#: Steps of the C-map tried from a negative c0 before giving up.
_C_STEPS = 200
#: C(0) below this is 0 to rounding (an odd f's E[f] is not exactly 0 by quadrature): c* = 0 within it.
_C_ZERO = 1e-15
#: Beyond this |z| the Gaussian weight underflows: the 1-D integrands are set to 0 there (as for --expr).
_CUTOFF = 38.0
_NORM = 1.0 / math.sqrt(2.0 * math.pi)
#: The split points of the 1-D rule around 0 and each kink are graded from this width (in ``u``) up to the
#: rule's panel (in ``z``), doubling; the 2-D rule's (fast path failing, or ``q > _GRADE_2D_FROM``) from
#: ``_GRADE_2D`` up, quadrupling.
_GRADE_1D = 0.125
_GRADE_2D = 0.5
_GRADE_2D_FROM = 4.0
#: At most this many graded points a side in 2-D (the tensor rule's memory grows with their square).
_MAX_LEVELS_2D = 9


def graded_points(kinks: tuple[float, ...], r: float, first: float, ratio: float, panel: float = 0.5,
                  far: float = _CUTOFF, max_levels: int = 1100) -> list[float]:
    """Split points in ``z`` for a function of ``u = r z``: 0 and each kink ``k`` (at ``z = k / r``), and on both
    sides of each, points at distances ``first / r * ratio^j`` while those are below ``panel``. Each piece then
    holds a feature of width about 1 in ``u`` at a fixed fraction of its length, so the fixed rule converges
    geometrically for every ``q`` (a bounded number of pieces per factor ``ratio`` of ``r``)."""
    points = set()
    if not (math.isfinite(r) and r > 0.0):
        return sorted({0.0, *kinks}) if r == 0.0 else [0.0]
    # At most max_levels a side: past that the ratio grows (a rule that then fails to converge says so).
    levels = math.log(max(panel * r / first, 1.0)) / math.log(ratio)
    if levels > max_levels:
        ratio = (panel * r / first) ** (1.0 / max_levels)
    for k in {0.0, *kinks}:
        centre = k / r
        points.add(centre)
        d = first / r
        while d < panel:
            points.update((centre - d, centre + d))
            d *= ratio
    return sorted(p for p in points if abs(p) < far)


def check_elementwise(layer: object) -> Elementwise:
    if not isinstance(layer, Elementwise):
        name = getattr(layer, "name", type(layer).__name__)
        raise NormstatsError(
            f"meanfield needs an elementwise activation (--layer relu, tanh, ... or --expr FORMULA); "
            f"got layer '{name}', which is not elementwise"
        )
    return layer


def _rule(edges: np.ndarray, panel: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the composite Gauss-Legendre rule over ``[edges[0], edges[-1]]``, split at every edge
    and each piece into panels at most ``panel`` wide: every piece at once (one array), as
    :func:`normstats.exact.quadrature.integrate` does piece by piece."""
    nodes, weights = _gauss_legendre()
    a, b = edges[:-1], edges[1:]
    n = np.maximum(1, np.ceil((b - a) / panel)).astype(int)
    piece = np.repeat(np.arange(len(a)), n)
    k = np.arange(len(piece)) - np.repeat(np.cumsum(n) - n, n)
    width = (b - a)[piece] / n[piece]
    left = a[piece] + k * width
    x = (left[:, None] + width[:, None] * (nodes + 1.0) / 2.0).ravel()
    w = (width[:, None] / 2.0 * weights).ravel()
    return x, w


def _expectation(g: Callable[[np.ndarray], np.ndarray], points: list[float]) -> float:
    """``E g(z)``, ``z ~ N(0, 1)``, split at ``points``: the fixed rule of
    :func:`normstats.exact.quadrature.integrate` (panels of 0.5, checked against panels of 0.25 to 1e-13
    relative) vectorised over all pieces; where the two passes disagree, :func:`gaussian_expectation` (whose
    adaptive fallback decides)."""
    edges = np.asarray([-FAR, *sorted({0.0, *points}), FAR])
    results = []
    for panel in (0.5, 0.25):
        x, w = _rule(edges, panel)
        with np.errstate(all="ignore"):
            terms = np.asarray(g(x), dtype=float) * np.exp(-0.5 * x * x) * w * _NORM
        results.append((float(np.sum(terms)), float(np.sum(np.abs(terms)))))
    (coarse, _), (fine, scale) = results
    if math.isfinite(fine) and abs(fine - coarse) <= 1e-13 * scale + 1e-15:
        return fine
    return gaussian_expectation(g, points)


class MeanField:
    """The mean-field maps of ``layer`` at ``(sigma_w2, sigma_b2)``; every expectation by quadrature."""

    def __init__(self, layer: Elementwise, sigma_w2: float, sigma_b2: float) -> None:
        self.layer = check_elementwise(layer)
        self.sigma_w2 = float(sigma_w2)
        self.sigma_b2 = float(sigma_b2)
        self.kinks = tuple(float(k) for k in layer.breakpoints)

    # -- one-dimensional expectations ------------------------------------------------------------------
    def _expect(self, g: Callable[[np.ndarray], np.ndarray], q: float) -> float:
        """``E[g(sqrt(q) z, z)]`` with ``g`` taking ``(u, z)``; split at the kinks of ``f`` (in ``z``) and graded
        geometrically towards them and towards 0 (:func:`graded_points`), so that a feature of ``f`` of width 1
        in ``u`` is resolved however narrow it is in ``z`` (at ``q = 1e8`` tanh' is a spike 1e-4 wide)."""
        r = math.sqrt(q)

        def integrand(z: np.ndarray) -> np.ndarray:
            with np.errstate(all="ignore"):
                return np.where(np.abs(z) < _CUTOFF, g(r * z, z), 0.0)

        return _expectation(integrand, graded_points(self.kinks, r, _GRADE_1D, 2.0))

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
        return self._bivariate(self.layer.f, q, c)

    def cross_slope(self, q: float, c: float) -> float:
        """``sigma_w^2 E[f'(u1) f'(u2)]``: the slope of the C-map at ``c`` (Price's theorem)."""
        if c == 1.0:
            return self.chi_1(q)
        return self.sigma_w2 * self._bivariate(self.layer.df, q, c)

    def _bivariate(self, f: Callable[[np.ndarray], np.ndarray], q: float, c: float) -> float:
        """``E[f(u1) f(u2)]`` by :func:`bivariate_expectation`. At large ``q`` a feature of width 1 in ``u`` (tanh's
        step, tanh''s spike) is narrower than the rule's panels in ``z``: there (``q > _GRADE_2D_FROM``), and
        wherever the plain rule does not converge, pseudo-kinks graded towards 0 and the kinks (in ``u``: 0.5,
        2, 8, ... up to ``sqrt(q)``) split the pieces, as in :meth:`_expect`. A rule that converges on neither is
        an internal failure (:class:`ArithmeticError`, exit 1), not bad input."""
        r = math.sqrt(q)
        if c == 0.0:  # independent: E[f(u1)] E[f(u2)], two 1-D integrals
            return self._expect(lambda u, z: f(u), q) ** 2
        if q <= _GRADE_2D_FROM:
            try:
                return bivariate_expectation(f, f, q, q, c, self.kinks, self.kinks)
            except NormstatsError:
                pass
        kinks = tuple(r * z for z in graded_points(self.kinks, r, _GRADE_2D, 4.0, panel=1.0, far=10.0,
                                                        max_levels=_MAX_LEVELS_2D))
        try:
            return bivariate_expectation(f, f, q, q, c, kinks, kinks)
        except NormstatsError as exc:
            raise ArithmeticError(f"mean field: {exc}") from None

    def c_map(self, c: float, q: float) -> float:
        """The C-map at the fixed variance ``q``: ``(sigma_w^2 E[f(u1) f(u2)] + sigma_b^2) / q``."""
        if c == 1.0:
            return 1.0
        return (self.sigma_w2 * self.cross(q, c) + self.sigma_b2) / q

    # -- fixed points -----------------------------------------------------------------------------------
    def _huge(self, q0: float) -> float:
        return _Q_HUGE * max(1.0, self.sigma_w2, self.sigma_b2, q0)

    def q_star(self, q0: float) -> float:
        """The limit of the q-map iterated from ``q0``: ``inf`` if it grows without bound, 0 if it decays to 0.

        The q-map of every registered activation increases with ``q``, so the iterates move monotonically to
        the nearest fixed point in the direction they move, which attracts them (a stable fixed point, at least
        from that side). A few iterations, then that fixed point is bracketed by steps growing geometrically in
        ``log q`` and solved with Brent's method. Only a ``q0`` exactly on an unstable fixed point stays there
        (:meth:`fixed_point` says so)."""
        huge = self._huge(q0)
        q, prev = q0, q0
        for _ in range(_ITERATIONS):
            nq = self.q_map(q)
            if not math.isfinite(nq) or nq > huge:
                return math.inf
            if nq < _Q_ZERO:
                return 0.0
            if abs(nq - q) <= 1e-15 * max(q, nq):
                return nq
            prev, q = q, nq
        return self._bracket_q(q, prev, huge)

    def _bracket_q(self, q: float, prev: float, huge: float) -> float:
        """From ``q``, in the direction the iterates move, the first significant sign change of ``q' - q``
        (steps doubling in ``log q``), solved with Brent's method. A gap within :data:`_GAP_NOISE` of ``q``
        is rounding, not a sign: the search walks through it (relu6 at ``sigma_w^2 = 2`` decays to 0 by
        ``exp(-18 / q)``-sized steps; softplus there grows by ``sqrt(q)``-sized ones), to 0 or to ``inf``."""

        def gap(t: float) -> float:
            return self.q_map(t) - t

        def sign(t: float, g: float) -> int:
            return 0 if abs(g) <= _GAP_NOISE * max(t, self.sigma_b2) else (1 if g > 0.0 else -1)

        g0 = gap(q)
        up = sign(q, g0) > 0 if sign(q, g0) else q > prev
        if q == prev or (sign(q, g0) == 0 and abs(q - prev) <= _GAP_NOISE * q):
            return q
        step = max(2.0 * abs(math.log(q / prev)), 1e-3)  # in log q; doubles until the sign of the gap changes
        while True:
            other = q * math.exp(step if up else -step)
            if other > huge:
                return math.inf
            if other < _Q_ZERO:
                return 0.0
            g1 = gap(other)
            if not math.isfinite(g1):
                return math.inf
            if sign(other, g1) == (-1 if up else 1):
                break
            q, step = other, 2.0 * step
        lo, hi = sorted((q, other))
        return float(optimize.brentq(gap, lo, hi, xtol=1e-300, rtol=8.9e-16, maxiter=200))

    def fixed_points(self, q0: float) -> tuple[QFixedPoint, ...]:
        """Every fixed point of the q-map, each with whether it attracts: 0 where ``f(0) = 0`` and there is no
        bias (stable when its slope ``sigma_w^2 f'(0)^2 < 1``), the roots of ``q' - q`` found by a scan of
        :data:`_SCAN_PER_DECADE` points a decade over ``[1e-10, 1e10] * max(1, q0, sigma_w^2, sigma_b^2)`` (a pair
        of roots closer than one step can be missed), and ``inf`` when the q-map still rises above ``q`` at the
        top of the scan (the variance grows without bound from there up)."""
        scale = min(max(1.0, q0, self.sigma_w2, self.sigma_b2), 1e280)  # the scan's top stays finite
        out: list[QFixedPoint] = []
        f0 = float(np.asarray(self.layer.f(np.zeros(1)), dtype=float)[0])
        if self.sigma_b2 == 0.0 and f0 == 0.0:
            out.append(QFixedPoint(0.0, self.q_slope(0.0) <= 1.0 + CRITICAL_TOL))
        grid = np.geomspace(1e-10 * scale, 1e10 * scale, 20 * _SCAN_PER_DECADE + 1)
        with np.errstate(all="ignore"):
            ratio = [self.q_map(float(t)) / float(t) - 1.0 for t in grid]
        # A ratio within _GAP_NOISE of 0 is rounding (a critical q-map, as relu's at sigma_w^2 = 2, is flat):
        # signs are taken between significant values only.
        signed = [(float(t), r) for t, r in zip(grid, ratio) if math.isfinite(r) and abs(r) > _GAP_NOISE]
        for (a, fa), (b, fb) in zip(signed, signed[1:]):
            if (fa > 0.0) == (fb > 0.0):
                continue
            root = float(optimize.brentq(lambda t: self.q_map(t) - t, a, b, xtol=1e-300, rtol=8.9e-16,
                                         maxiter=200))
            out.append(QFixedPoint(root, abs(self.q_slope(root)) <= 1.0 + CRITICAL_TOL))
        if ratio[-1] > _GAP_NOISE:  # still rising at the top (inf included): unbounded from there up
            out.append(QFixedPoint(math.inf, True))
        return tuple(out)

    def c_star(self, q_star: float, chi_1: float) -> float:
        """The attracting fixed point of the C-map in ``[0, 1]`` (module docstring): 1 unless ``chi_1 > 1``."""
        if chi_1 <= 1.0 + CRITICAL_TOL:
            return 1.0

        def gap(c: float) -> float:
            return self.c_map(c, q_star) - c

        if gap(0.0) <= _C_ZERO:  # C(0) = 0 (odd f, no bias; E[f] = 0 to rounding): 0 is the fixed point
            return 0.0
        eps = 0.5
        while gap(1.0 - eps) >= 0.0:  # C(c) < c just below 1 because C'(1) > 1; find where that shows
            eps /= 4.0
            if eps < 1e-13:
                return 1.0
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
        """The fixed point the q-map reaches from ``q0`` (:meth:`q_star`), the C-map's, and the slopes and depth
        scales there. ``stable`` says whether ``q*`` attracts (``|chi_q| <= 1``): only a ``q0`` exactly on an
        unstable fixed point gives False. Where ``q*`` is unbounded ``chi_1`` is its limit ``q -> inf``."""
        qs = self.q_star(q0)
        if math.isinf(qs):
            chi_inf = self.chi_1(1.0 / _Q_TINY)
            return FixedPoint(
                q_star=qs, c_star=None, c_star_from_c0=None, chi_1=chi_inf if math.isfinite(chi_inf) else None,
                chi_c=None, chi_q=None, xi_q=None, xi_c=None, phase="unbounded",
                note=f"the q-map has no fixed point above q0 = {q0:g}: the variance grows without bound; chi_1 is "
                "its limit q -> inf",
                stable=True,
            )
        chi1 = self.chi_1(qs)
        chiq = self.q_slope(qs)
        stable = abs(chiq) <= 1.0 + CRITICAL_TOL
        phase = "critical" if abs(chi1 - 1.0) <= CRITICAL_TOL else ("ordered" if chi1 < 1.0 else "chaotic")
        unstable = None if stable else (
            f"q0 = {q0:g} sits on an unstable fixed point of the q-map (chi_q = {chiq:.6g} > 1): any perturbation "
            "leaves it for the stable fixed points on either side (see the fixed points of the q-map)")
        if qs == 0.0:
            return FixedPoint(
                q_star=0.0, c_star=None, c_star_from_c0=None, chi_1=chi1, chi_c=None, chi_q=chiq,
                xi_q=depth_scale(chiq), xi_c=None, phase=phase,
                note="q* = 0: every signal decays to 0, and the C-map (divided by q*) is undefined; chi_1 and "
                "chi_q are their limits q -> 0+",
                stable=stable,
            )
        notes = [unstable] if unstable else []
        try:
            cs = self.c_star(qs, chi1)
            chic = chi1 if cs == 1.0 else self.cross_slope(qs, cs)
            from_c0 = None if c0 is None else self.c_limit(qs, c0, cs)
        except ArithmeticError as exc:  # the 2-D integral at an extreme q*: said, not guessed
            notes.append(f"c*, chi_c and xi_c not computed: {exc}")
            return FixedPoint(
                q_star=qs, c_star=None, c_star_from_c0=None, chi_1=chi1, chi_c=None, chi_q=chiq,
                xi_q=depth_scale(chiq), xi_c=None, phase=phase, note="; ".join(notes), stable=stable,
            )
        if c0 is not None and from_c0 is None:
            notes.append(f"the C-map iterated from c0 = {c0:g} did not settle within {_C_STEPS} layers")
        return FixedPoint(
            q_star=qs, c_star=cs, c_star_from_c0=from_c0, chi_1=chi1, chi_c=chic, chi_q=chiq,
            xi_q=depth_scale(chiq), xi_c=depth_scale(chic), phase=phase, note="; ".join(notes) or None,
            stable=stable,
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
                try:
                    nc = (self.sigma_w2 * self.cross(q, c) + self.sigma_b2) / nq
                except ArithmeticError:  # the 2-D integral at an extreme q: c is left undefined from here
                    nc = None
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
#: A root of chi_1 - 1 farther than this from 1 is a jump of q*, not an edge.
_EDGE_TOL = 1e-9
#: chi_1 a relative 1e-6 to either side of an edge differs from 1 by less than this (it moves continuously); a
#: leap larger than this is a jump of q*, not an edge.
_LEAP = 0.02


def edge_of_chaos(layer: Elementwise, sigma_b2: float, q0: float) -> tuple[float | None, float | None]:
    """``(sigma_w^2, q*)`` of the edge of chaos at ``sigma_b^2``, ``(None, None)`` where there is none (see
    :func:`find_edge`)."""
    edge = find_edge(layer, sigma_b2, q0)
    return edge.sigma_w2, edge.q_star


def _chi_at(layer: Elementwise, w: float, sigma_b2: float, q0: float) -> tuple[float, float]:
    """``(q*, chi_1 at q*)`` with ``q*`` the fixed point the q-map reaches from ``q0``; where ``q*`` is unbounded
    ``chi_1`` is its limit ``q -> inf``."""
    m = MeanField(layer, w, sigma_b2)
    qs = m.q_star(q0)
    chi = m.chi_1(1.0 / _Q_TINY if math.isinf(qs) else qs)
    return qs, (chi if math.isfinite(chi) else math.inf)


def find_edge(layer: Elementwise, sigma_b2: float, q0: float) -> EdgeOfChaos:
    """The edge of chaos at ``sigma_b^2``: the smallest ``sigma_w^2`` in :data:`CRITICAL_RANGE` where ``chi_1``,
    taken at the stable fixed point ``q*`` that the q-map reaches from ``q0``, passes through 1 (continuously,
    from below); with that ``q*`` and the jumps below it. Where there is none, an answer that says so, why, and
    where the fixed point is analysed instead (:func:`_no_edge`).

    The critical line is parametrised by ``q*`` (Schoenholz et al.): a fixed point ``q`` has ``sigma_w^2 = (q -
    sigma_b^2) / E[f(sqrt(q) z)^2]`` and there ``chi_1 = 1`` reads ``(q - sigma_b^2) E[f'^2] / E[f^2] = 1``, one
    equation in ``q`` with no iteration: its roots on a log grid of ``q`` (:data:`_SCAN_PER_DECADE` a decade over
    ``[1e-12, 1e12] * max(1, sigma_b^2)``, then Brent's method), and its limits ``q -> 0+`` (no bias, ``f(0) =
    0``: ``sigma_w^2 = 1 / f'(0)^2``) and ``q -> inf`` (relu-like: ``sigma_w^2 = 1 / lim E[f'^2]``), are the
    candidates. A candidate is the edge when the fixed point reached from ``q0`` there is its ``q`` (the
    candidate lies on the branch that ``q0`` sees) and ``chi_1`` is below 1 just below it and at least 1 just
    above (``sigma_w^2 (1 -+ 1e-6)``), with no leap.

    Where ``q0`` lies on an unstable fixed point (at ``sigma_w^2 = (q0 - sigma_b^2) / E[f(sqrt(q0) z)^2]``) the
    fixed point reached from ``q0`` jumps between two basins (gelu, silu without bias: from ``q* = 0`` to an
    unbounded ``q``) and ``chi_1`` may leap over 1 there without passing through it: no edge, a
    :class:`Jump`.
    Where ``q*`` is infinite at the edge (relu and the identity: the fixed point runs off to infinity as
    ``sigma_w^2`` reaches it) ``chi_1`` is its limit ``q -> inf`` there, and ``q*`` is reported as ``inf``."""
    base = MeanField(layer, 1.0, 0.0)  # E[f^2] and E[f'^2] do not depend on sigma_w^2

    def moments(q: float) -> tuple[float, float]:
        return base.second_moment(q), base.chi_1(q)

    candidates: list[tuple[float, float]] = []  # (sigma_w^2, q*)
    scale = max(1.0, sigma_b2)
    grid = [float(q) for q in np.geomspace(1e-12 * scale, 1e12 * scale, 24 * _SCAN_PER_DECADE + 1)]

    def line(q: float) -> float:
        m2, d2 = moments(q)
        return (q - sigma_b2) * d2 / m2 - 1.0 if m2 > 0.0 else math.nan

    values = [line(q) for q in grid]
    for (a, fa), (b, fb) in zip(zip(grid, values), zip(grid[1:], values[1:])):
        if math.isfinite(fa) and math.isfinite(fb) and a > sigma_b2 and (fa == 0.0 or (fa > 0.0) != (fb > 0.0)):
            q = a if fa == 0.0 else float(optimize.brentq(line, a, b, xtol=1e-300, rtol=8.9e-16, maxiter=200))
            candidates.append(((q - sigma_b2) / moments(q)[0], q))
    f0 = float(np.asarray(layer.f(np.zeros(1)), dtype=float)[0])
    if sigma_b2 == 0.0 and f0 == 0.0:
        d0 = base.chi_1(0.0)
        if d0 > 0.0:
            candidates.append((1.0 / d0, 0.0))
    d_inf = base.chi_1(1.0 / _Q_TINY)
    if math.isfinite(d_inf) and d_inf > 0.0:
        candidates.append((1.0 / d_inf, math.inf))
    jump = _jump(layer, sigma_b2, q0)
    for w, q in sorted(candidates):
        if not CRITICAL_RANGE[0] <= w <= CRITICAL_RANGE[1]:
            continue
        if jump is not None and abs(w - jump.sigma_w2) <= 1e-9 * w:
            continue  # q0 itself on the critical line: the jump, not an edge
        (q_lo, chi_lo), (q_hi, chi_hi) = (_chi_at(layer, w * (1.0 + d), sigma_b2, q0) for d in (-1e-6, 1e-6))
        if not (chi_lo <= 1.0 + _EDGE_TOL and chi_hi >= 1.0 - _EDGE_TOL and abs(chi_lo - 1.0) < _LEAP
                and abs(chi_hi - 1.0) < _LEAP):
            continue  # chi_1 leaps there: the candidate's branch is not the one reached from q0
        reached = MeanField(layer, w, sigma_b2).q_star(q0)
        if math.isinf(q):
            qs = math.inf
        elif q == 0.0 or math.isinf(reached) or abs(reached - q) > 1e-6 * q:
            qs = reached  # the limit branch q -> 0+ (or a slowly converging iteration): what q0 reaches
        else:
            qs = q
        if _chi_at(layer, w, sigma_b2, q0)[1] - 1.0 > _EDGE_TOL * 100 and not math.isinf(q):
            continue
        jumps = (jump,) if jump is not None and jump.sigma_w2 < w else ()
        return EdgeOfChaos(sigma_b2, w, qs, CRITICAL_RANGE, jumps, analysed_sigma_w2=w,
                           analysed_at="the edge of chaos")
    return _no_edge(layer, sigma_b2, q0, jump, [w for w, _ in candidates])


def _no_edge(layer: Elementwise, sigma_b2: float, q0: float, jump: Jump | None,
             line: list[float]) -> EdgeOfChaos:
    """No edge of chaos in :data:`CRITICAL_RANGE` (a valid question, answered): the reason, and the ``sigma_w^2``
    where the fixed point is analysed instead. With a jump, at the jump: there the fixed point reached from
    ``q0`` changes (``q0`` is itself an unstable fixed point, between the two basins), the closest the network
    comes to an edge, and the jump's values say what ``q*`` and ``chi_1`` are just below and just above it.
    Without one, at the end of the range where ``chi_1`` is nearest 1 (in ``|log chi_1|``). ``line`` holds the
    ``sigma_w^2`` of the critical line's points (and its limits) that were found, in the range or not."""
    lo, hi = CRITICAL_RANGE
    if jump is not None:
        reason = ("chi_1 at the stable fixed point reached from q0 leaps over 1 where that fixed point jumps, instead "
                  f"of passing through 1: {jump.text()}")
        at = jump.sigma_w2
        why = (f"the jump (sigma_w2 = {at:.10g}), where the fixed point reached from q0 = {q0:g} changes; q0 is "
               "an unstable fixed point there")
    else:
        ends = [(w, _chi_at(layer, w, sigma_b2, q0)[1]) for w in CRITICAL_RANGE]
        (_, chi_lo), (_, chi_hi) = ends
        values = f"chi_1 = {chi_lo:.6g} at sigma_w2 = {lo:g} and {chi_hi:.6g} at {hi:g}"
        if chi_lo < 1.0 and chi_hi < 1.0:
            side = "is below 1 at both ends of the range"
        elif chi_lo > 1.0 and chi_hi > 1.0:
            side = "is above 1 at both ends of the range"
        else:
            side = "changes side of 1 in the range"
        reason = (f"chi_1 at the stable fixed point reached from q0 {side} ({values}) and passes through 1 "
                  "continuously nowhere in it")

        def distance(end: tuple[float, float]) -> float:
            return abs(math.log(end[1])) if 0.0 < end[1] < math.inf else math.inf

        at = min(ends, key=distance)[0]
        why = f"the end of the searched range where chi_1 is nearest 1 (sigma_w2 = {at:g})"
    if not line:
        reason += "; the critical line chi_1 = 1 has no point with sigma_w2 > 0"
    elif not any(lo <= w <= hi for w in line):
        nearest = min(line, key=lambda w: abs(math.log(w / (lo if w < lo else hi))))
        reason += f"; the critical line chi_1 = 1 lies outside the range (its nearest point: sigma_w2 = {nearest:.6g})"
    return EdgeOfChaos(sigma_b2, None, None, CRITICAL_RANGE, () if jump is None else (jump,), reason=reason,
                       analysed_sigma_w2=at, analysed_at=why)


def _jump(layer: Elementwise, sigma_b2: float, q0: float) -> Jump | None:
    """The jump of the fixed point reached from ``q0`` where ``q0`` is an unstable fixed point, if it lies in
    :data:`CRITICAL_RANGE` and ``chi_1`` leaps over 1 there (see :func:`find_edge`)."""
    m2 = MeanField(layer, 1.0, 0.0).second_moment(q0)
    if not (q0 > sigma_b2 and m2 > 0.0):
        return None
    w = (q0 - sigma_b2) / m2
    if not CRITICAL_RANGE[0] <= w <= CRITICAL_RANGE[1] or MeanField(layer, w, sigma_b2).q_slope(q0) <= 1.0:
        return None
    (q_lo, chi_lo), (q_hi, chi_hi) = (_chi_at(layer, w * (1.0 + d), sigma_b2, q0) for d in (-1e-9, 1e-9))
    if not (chi_lo < 1.0 < chi_hi):
        return None
    return Jump(w, q_lo, q_hi, chi_lo, chi_hi)


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
