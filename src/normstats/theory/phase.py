"""The phase diagram over ``(sigma_w^2, sigma_b^2)``: ``chi_1`` (whose level 1 is the edge of chaos) and the depth
scale ``xi_c`` on a grid, for the figure of ``normstats meanfield --plot``.

The quantities are those of :mod:`normstats.theory.meanfield`, computed for the whole grid at once with a
coarse rule, so that a grid of a thousand-odd points takes seconds: one Gauss-Legendre rule of ``_NODES``
nodes on each piece of ``[-8, 8]`` between the kinks (in one and, as a tensor product with the inner kinks
moving with ``z1``, two dimensions) in place of the composite, self-checking rules of the accurate path,
``q*`` by iterating the q-map (at most ``_Q_ITERATIONS`` times), and ``c*`` by Newton's method on
``C(c) - c`` from ``c = 0`` (which climbs monotonically to ``c*``: the C-map is convex on ``[0, 1]``, see
:mod:`normstats.theory.meanfield`). It agrees with the accurate path to about 1e-6 away from the
edge of chaos (the tests check tanh and hardtanh); close to it ``c*`` nears 1, the inner integrand's kinks
crowd together and Newton's method slows, and ``xi_c`` is good to a few percent: enough for a picture, not
for a number. The numbers ``normstats meanfield`` prints come
from the accurate path.
"""

from __future__ import annotations

import functools
import math

import numpy as np

from normstats.layers.base import Elementwise
from normstats.output.results.meanfield import PhaseDiagram

#: Gauss-Legendre nodes per piece (pieces: [-Z, Z] split at the kinks), and the half-width Z.
_NODES = 32
_Z = 8.0
_Q_ITERATIONS = 400
_NEWTON_STEPS = 30
_Q_HUGE = 1e12
_Q_TINY = 1e-200
_NORM = 1.0 / math.sqrt(2.0 * math.pi)
#: Grid points along sigma_w^2 and sigma_b^2.
GRID = (48, 32)


def grid_ranges(sigma_w2: float, sigma_b2: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """The plotted ranges: sigma_w^2 in [0.25, max(4, 1.5 sigma_w2)], sigma_b^2 in [0, max(0.3, 1.5 sigma_b2)]
    (so the chosen point is always inside)."""
    return (0.25, max(4.0, 1.5 * sigma_w2)), (0.0, max(0.3, 1.5 * sigma_b2))


@functools.cache
def _legendre() -> tuple[np.ndarray, np.ndarray]:
    from numpy.polynomial.legendre import leggauss

    return leggauss(_NODES)


def _split_rule(kinks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights (each ``kinks.shape[:-1] + (pieces * _NODES,)``) of ``int_{-Z}^{Z} ... phi(z) dz``, split
    at the points ``kinks[..., :]`` (clipped to the interval; a piece of length 0 gets weight 0)."""
    t, tw = _legendre()
    lead = kinks.shape[:-1]
    inner = np.sort(np.clip(kinks, -_Z, _Z), axis=-1)
    edges = np.concatenate([np.full(lead + (1,), -_Z), inner, np.full(lead + (1,), _Z)], axis=-1)
    a, b = edges[..., :-1, None], edges[..., 1:, None]
    z = (a + b) / 2 + (b - a) / 2 * t
    w = (b - a) / 2 * tw * np.exp(-0.5 * z * z) * _NORM
    return z.reshape(lead + (-1,)), w.reshape(lead + (-1,))


def _graded(kinks: np.ndarray, r_max: float) -> np.ndarray:
    """The split points (in ``u``) of the 1-D rule: the kinks, and where ``q`` is large (``sqrt(q) > 4``: a feature
    of width 1 in ``u`` narrower than a quarter in ``z``) points at distances 1/2, 2, 8, ... below ``sqrt(q)``
    on both sides of each, so that tanh' at ``q = 1e8`` (a spike 1e-4 wide in ``z``) is resolved; below, the
    kinks alone (the grid of the usual plots is as before)."""
    if not r_max > 4.0:
        return kinks
    d = 0.5 * 4.0 ** np.arange(max(1, math.ceil(math.log(2.0 * r_max, 4.0))))
    return np.sort(np.concatenate([kinks, (kinks[:, None] + d).ravel(), (kinks[:, None] - d).ravel()]))


def phase_diagram(layer: Elementwise, sigma_w2: float, sigma_b2: float, q0: float = 1.0,
                  grid: tuple[int, int] = GRID) -> PhaseDiagram:
    (w_lo, w_hi), (b_lo, b_hi) = grid_ranges(sigma_w2, sigma_b2)
    ws = np.linspace(w_lo, w_hi, grid[0])
    bs = np.linspace(b_lo, b_hi, grid[1])
    W, B = np.meshgrid(ws, bs)  # rows: sigma_b2
    kinks = np.asarray(sorted({0.0, *(float(k) for k in layer.breakpoints)}))
    f, df = layer.f, layer.df

    def e1(g, q: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
        r = np.sqrt(q)[..., None]
        z, w = _split_rule(_graded(kinks, float(np.max(r, initial=0.0))) / r)
        return np.sum(g(r * z) * w, axis=-1)

    with np.errstate(all="ignore"):
        q = np.full(W.size, float(q0))
        live = np.ones(W.size, dtype=bool)
        todo = np.arange(W.size)  # points still iterating
        wf, bf = W.ravel(), B.ravel()
        for _ in range(_Q_ITERATIONS):
            old = q[todo]
            nq = wf[todo] * e1(lambda u: f(u) ** 2, np.maximum(old, _Q_TINY)) + bf[todo]
            bad = ~(np.isfinite(nq) & (nq < _Q_HUGE))
            live[todo[bad]] = False
            q[todo] = np.where(bad, np.inf, nq)
            keep = ~bad & (np.abs(nq - old) > 1e-13 * np.maximum(nq, old))
            todo = todo[keep]
            if not len(todo):
                break
        else:  # still moving after every iteration: unbounded if the q-map still rises far above (relu past 2)
            far = 1e10 * np.maximum(q[todo], 1.0)
            rises = wf[todo] * e1(lambda u: f(u) ** 2, far) + bf[todo] > far
            live[todo[rises]] = False
            q[todo[rises]] = np.inf
        q, live = q.reshape(W.shape), live.reshape(W.shape)
        unbounded = ~live
        qf = np.where(live, np.maximum(q, _Q_TINY), 1.0)
        # Where q* is unbounded, chi_1 is its limit q -> inf (as in the edge-of-chaos search).
        chi_1 = W * e1(lambda u: df(u) ** 2, np.where(live, qf, 1.0 / _Q_TINY))
        xi_c = np.full(W.shape, np.nan)
        ordered = live & (chi_1 < 1.0)
        xi_c[ordered] = -1.0 / np.log(chi_1[ordered])
        chaotic = live & (chi_1 > 1.0) & (q > 0)
        if np.any(chaotic):
            xi = _chaotic_depth_scale(f, df, kinks, W[chaotic], B[chaotic], q[chaotic])
            # Where the C-map sends 0 to 0 (odd f, no bias: C(0) = (sigma_w^2 E[f]^2 + sigma_b^2) / q* = 0), c* = 0
            # and chi_c = sigma_w^2 E[f']^2: 1-D integrals, graded at large q as chi_1's are (the 2-D rule is not).
            qc = q[chaotic]
            zero = (W[chaotic] * e1(f, qc) ** 2 + B[chaotic]) / qc <= 1e-14
            if np.any(zero):
                chi_c = W[chaotic][zero] * e1(df, q[chaotic][zero]) ** 2
                xi[zero] = np.where(chi_c < 1.0, -1.0 / np.log(chi_c), np.inf)
            xi_c[chaotic] = xi
        xi_c[live & (chi_1 == 1.0)] = np.inf
    return PhaseDiagram(ws, bs, chi_1, xi_c, unbounded)


def _chaotic_depth_scale(f, df, kinks, w, b, q):  # type: ignore[no-untyped-def]
    """``-1 / log chi_c`` at ``c*`` for points of the chaotic phase (1-D arrays ``w, b, q``)."""
    r = np.sqrt(q)[:, None]
    z1, w1 = _split_rule(kinks / r)  # (P, K)
    u1 = r * z1
    f1, d1 = f(u1), df(u1)

    def maps(c: np.ndarray, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The C-map and its slope at ``c[at]`` for the points ``at``."""
        ca, ra, za = c[at][:, None, None], r[at][:, :, None], z1[at][..., None]
        s = np.sqrt(np.clip((1.0 - ca) * (1.0 + ca), 1e-300, None))
        z2, w2 = _split_rule((kinks / ra - ca * za) / s)  # (P, K, K2): the inner kinks move with z1
        u2 = ra * (ca * za + s * z2)
        value = (w[at] * np.einsum("pk,pk,pkj,pkj->p", w1[at], f1[at], w2, f(u2)) + b[at]) / q[at]
        slope = w[at] * np.einsum("pk,pk,pkj,pkj->p", w1[at], d1[at], w2, df(u2))
        return value, slope

    c = np.zeros_like(q)
    todo = np.arange(len(q))  # points still moving
    for _ in range(_NEWTON_STEPS):
        value, slope = maps(c, todo)
        step = (value - c[todo]) / (1.0 - slope)
        step = np.where(np.isfinite(step), step, 0.0)
        c[todo] = np.clip(c[todo] + step, 0.0, 1.0)
        todo = todo[np.abs(step) >= 1e-12]
        if not len(todo):
            break
    _, chi_c = maps(c, np.arange(len(q)))
    return np.where(chi_c < 1.0, -1.0 / np.log(chi_c), np.inf)
