"""Closed forms of ``E[f(u1) f(u2)]`` and ``E[f'(u1) f'(u2)]`` for a centred bivariate normal ``(u1, u2)`` with
variances ``q1, q2`` and correlation ``c``: the kernels of infinitely wide layers, where they are known.

* identity: ``E[u1 u2] = c sqrt(q1 q2)``, ``E[1 * 1] = 1``.
* relu, the arc-cosine kernel of degree 1 (Cho and Saul, *Kernel methods for deep learning*, NIPS 2009):
  with ``theta = arccos c``, ``E[relu(u1) relu(u2)] = sqrt(q1 q2) (sin theta + (pi - theta) cos theta) /
  (2 pi)``, and for the step ``relu'``, the degree-0 kernel ``P(u1 > 0, u2 > 0) = (pi - theta) / (2 pi)``.
* erf, the arcsine kernel (Williams, *Computing with infinite networks*, NIPS 1997): ``E[erf(u1) erf(u2)] =
  (2 / pi) arcsin(2 c sqrt(q1 q2) / sqrt((1 + 2 q1) (1 + 2 q2)))``; with ``erf'(x) = (2 / sqrt pi)
  exp(-x^2)``, a Gaussian integral gives ``E[erf'(u1) erf'(u2)] = (4 / pi) / sqrt((1 + 2 q1) (1 + 2 q2) -
  4 c^2 q1 q2)``.

They are the references the quadrature of :mod:`normstats.exact.bivariate` is tested against.
"""

from __future__ import annotations

import math


def identity_kernel(q1: float, q2: float, c: float) -> tuple[float, float]:
    """``(E[u1 u2], E[1])``."""
    return c * math.sqrt(q1 * q2), 1.0


def relu_kernel(q1: float, q2: float, c: float) -> tuple[float, float]:
    """``(E[relu(u1) relu(u2)], E[relu'(u1) relu'(u2)])`` (Cho and Saul 2009)."""
    theta = math.acos(max(-1.0, min(1.0, c)))
    value = math.sqrt(q1 * q2) * (math.sin(theta) + (math.pi - theta) * math.cos(theta)) / (2.0 * math.pi)
    return value, (math.pi - theta) / (2.0 * math.pi)


def erf_kernel(q1: float, q2: float, c: float) -> tuple[float, float]:
    """``(E[erf(u1) erf(u2)], E[erf'(u1) erf'(u2)])`` (Williams 1997)."""
    q12 = c * math.sqrt(q1 * q2)
    value = 2.0 / math.pi * math.asin(2.0 * q12 / math.sqrt((1.0 + 2.0 * q1) * (1.0 + 2.0 * q2)))
    slope = 4.0 / math.pi / math.sqrt((1.0 + 2.0 * q1) * (1.0 + 2.0 * q2) - 4.0 * q12 * q12)
    return value, slope
