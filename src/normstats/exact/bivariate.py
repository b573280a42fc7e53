"""Two-dimensional Gaussian expectations ``E[f(u1) g(u2)]`` for a centred bivariate normal ``(u1, u2)`` of
variances ``q1``, ``q2`` and correlation ``c``, by a tensor product of the fixed Gauss-Legendre rule of
:mod:`normstats.exact.quadrature` (numpy only).

Write ``u1 = sqrt(q1) z1`` and ``u2 = sqrt(q2) (c z1 + s z2)`` with ``s = sqrt(1 - c^2)`` and ``z1, z2``
independent standard normals. Then

    E[f(u1) g(u2)] = int phi(z1) f(sqrt(q1) z1) h(z1) dz1,   h(z1) = int phi(z2) g(sqrt(q2) (c z1 + s z2)) dz2.

Both integrals run over ``[-Z_MAX, Z_MAX]`` (the normal mass beyond 10 is 1.5e-23: enough for any ``f, g``
that grow more slowly than ``exp(z^2 / 4)``). Kinks and jumps (a relu's kink, the jump of its derivative)
would cost the fixed rule its geometric convergence, so each integral is split where its integrand is not
smooth:

* the inner integrand has a kink wherever ``sqrt(q2) (c z1 + s z2)`` meets a kink ``k`` of ``g``, at
  ``z2 = (k / sqrt(q2) - c z1) / s``: a split point that moves with ``z1``, so each row of outer nodes gets
  its own inner pieces (all rows have the same number of pieces, so the rule stays one array operation);
* the outer integrand has the kinks of ``f`` at ``z1 = k / sqrt(q1)``, and ``h`` is ``g``'s kink smoothed by a
  Gaussian of width ``s / |c|`` around ``z1 = k / (c sqrt(q2))``: near ``c = +-1`` that is almost a kink, so
  the outer pieces are graded geometrically towards it (widths ``s / |c| * 2^j``), which keeps the rule
  converging geometrically however close ``c`` is to 1.

At ``c = +-1`` the expectation is one-dimensional (``u2 = +-sqrt(q2 / q1) u1``) and goes to
:func:`normstats.exact.quadrature.gaussian_expectation`. The rule runs with panels at most 1 wide and again
with panels half as wide; when the two agree to ``_REL_TOL`` (relative to ``E|f g|``) the finer result is
returned, otherwise a third, finer pass must agree with the second, or a :class:`NormstatsError` says the
integral did not converge.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import numpy as np

from normstats.errors import NormstatsError
from normstats.exact.quadrature import _gauss_legendre, gaussian_expectation

Fn = Callable[[np.ndarray], np.ndarray]

#: Half-width of the square integrated, in standard-normal units.
Z_MAX = 10.0
#: Widest panel of the coarse pass (the next passes halve it).
_PANEL = 1.0
_REL_TOL = 1e-12
_ABS_TOL = 1e-15
_NORM = 1.0 / math.sqrt(2.0 * math.pi)


def bivariate_expectation(
    f: Fn,
    g: Fn,
    q1: float,
    q2: float,
    c: float,
    f_kinks: Iterable[float] = (),
    g_kinks: Iterable[float] = (),
) -> float:
    """``E[f(u1) g(u2)]`` with ``Var u1 = q1``, ``Var u2 = q2``, ``corr(u1, u2) = c`` (see the module
    docstring); ``f_kinks`` and ``g_kinks`` are the points (in ``u``) where ``f`` or ``g`` is not smooth."""
    if not (q1 >= 0.0 and q2 >= 0.0 and math.isfinite(q1) and math.isfinite(q2)):
        raise NormstatsError(f"the variances of a bivariate normal must be finite and >= 0; got {q1!r}, {q2!r}")
    if not -1.0 <= c <= 1.0:
        raise NormstatsError(f"a correlation must lie in [-1, 1]; got {c!r}")
    fk, gk = tuple(float(k) for k in f_kinks), tuple(float(k) for k in g_kinks)
    r1, r2 = math.sqrt(q1), math.sqrt(q2)
    if r1 == 0.0 or r2 == 0.0:  # one of them is the constant 0
        if r1 == 0.0 and r2 == 0.0:
            return float(f(np.zeros(1))[0] * g(np.zeros(1))[0])
        if r1 == 0.0:
            return float(f(np.zeros(1))[0]) * gaussian_expectation(lambda z: g(r2 * z), [k / r2 for k in gk])
        return float(g(np.zeros(1))[0]) * gaussian_expectation(lambda z: f(r1 * z), [k / r1 for k in fk])
    s = math.sqrt((1.0 - c) * (1.0 + c))
    if s == 0.0:
        return gaussian_expectation(
            lambda z: f(r1 * z) * g(c * r2 * z), [*(k / r1 for k in fk), *(k / (c * r2) for k in gk)]
        )
    previous: float | None = None
    for level in range(3):
        panel = _PANEL / 2**level
        value, scale = _tensor_rule(f, g, r1, r2, c, s, fk, gk, panel)
        if previous is not None and math.isfinite(value):
            if abs(value - previous) <= _REL_TOL * scale + _ABS_TOL:
                return value
        previous = value
    raise NormstatsError(
        f"the two-dimensional Gaussian integral at q1={q1:g}, q2={q2:g}, c={c:g} did not converge "
        f"(last two passes: {previous!r}); is the function finite and does it grow slower than exp(x^2/4)?"
    )


def _pieces_nodes(edges: Sequence[float], panel: float) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights of the composite rule over ``[edges[0], edges[-1]]``, split at every edge, each piece
    into panels at most ``panel`` wide."""
    nodes, weights = _gauss_legendre()
    xs, ws = [], []
    for a, b in zip(edges, edges[1:]):
        if b <= a:
            continue
        n = max(1, math.ceil((b - a) / panel))
        cuts = np.linspace(a, b, n + 1)
        mid, half = (cuts[1:] + cuts[:-1]) / 2, (cuts[1:] - cuts[:-1]) / 2
        xs.append((mid[:, None] + half[:, None] * nodes).ravel())
        ws.append((half[:, None] * weights).ravel())
    return np.concatenate(xs), np.concatenate(ws)


def _outer_edges(r1: float, r2: float, c: float, s: float, fk: Sequence[float], gk: Sequence[float],
                 panel: float) -> list[float]:
    """The outer split points: ``f``'s kinks, and around each near-kink of ``h`` a geometric grading."""
    points = {-Z_MAX, Z_MAX, 0.0, *(k / r1 for k in fk)}
    if c != 0.0:
        width = s / abs(c)
        for k in gk:
            centre = k / (c * r2)
            points.add(centre)
            d = width
            while d < panel:
                points.update((centre - d, centre + d))
                d *= 2.0
    return sorted(p for p in points if -Z_MAX <= p <= Z_MAX)


def _tensor_rule(f: Fn, g: Fn, r1: float, r2: float, c: float, s: float, fk: Sequence[float],
                 gk: Sequence[float], panel: float) -> tuple[float, float]:
    """One pass of the tensor rule: ``(E[f g], an upper bound of E|f g|)``; nan where a value is not finite."""
    z1, w1 = _pieces_nodes(_outer_edges(r1, r2, c, s, fk, gk, panel), panel)
    nodes, weights = _gauss_legendre()
    m = len(z1)
    # The inner pieces of each row: [-Z, kinks of that row (clipped, sorted), Z].
    if gk:
        moving = (np.asarray(gk)[None, :] / r2 - c * z1[:, None]) / s
        moving = np.sort(np.clip(moving, -Z_MAX, Z_MAX), axis=1)
        edges = np.concatenate([np.full((m, 1), -Z_MAX), moving, np.full((m, 1), Z_MAX)], axis=1)
    else:
        edges = np.tile([-Z_MAX, Z_MAX], (m, 1))
    panels = math.ceil(2 * Z_MAX / panel)
    a, b = edges[:, :-1], edges[:, 1:]  # (m, pieces)
    width = (b - a) / panels
    left = a[..., None] + width[..., None] * np.arange(panels)  # (m, pieces, panels)
    z2 = left[..., None] + width[..., None, None] * ((nodes + 1.0) / 2.0)  # (m, pieces, panels, nodes)
    w2 = width[..., None, None] / 2.0 * weights
    with np.errstate(all="ignore"):
        inner_terms = g(r2 * (c * z1[:, None, None, None] + s * z2)) * (np.exp(-0.5 * z2 * z2) * _NORM) * w2
        inner = inner_terms.reshape(m, -1)
        h, h_abs = inner.sum(axis=1), np.abs(inner).sum(axis=1)
        outer = f(r1 * z1) * (np.exp(-0.5 * z1 * z1) * _NORM) * w1
        terms, bound = outer * h, np.abs(outer) * h_abs
    if not (np.all(np.isfinite(terms)) and np.all(np.isfinite(bound))):
        return math.nan, math.nan
    return float(np.sum(terms)), float(np.sum(bound))
