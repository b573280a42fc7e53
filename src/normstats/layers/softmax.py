"""Softmax over ``n`` logits with a temperature: ``y = softmax(x / T)``, as ``torch.softmax(x / T, -1)``.

Backward. ``dy_i / dx_j = y_i (delta_ij - y_j) / T``, so ``dx_j = sum_i dy_i y_i (delta_ij - y_j) / T
= y_j (dy_j - sum_i y_i dy_i) / T``. Conditional sampler: ``g_j = sum_i J_ij^2
= (y_j^2 / T^2) ((1 - y_j)^2 + sum_{i != j} y_i^2) = (y_j^2 / T^2) (1 - 2 y_j + Q)`` with ``Q = sum_i y_i^2``.

References. The outputs sum to 1, so the pooled fp mean is ``1 / n`` exactly, and bp mean is 0. By
exchangeability the pooled fp variance is ``E y_1^2 - 1 / n^2`` and the pooled bp variance is
``E g_1 = (E y_1^2 - 2 E y_1^3 + E y_1^4 + (n - 1) E y_1^2 y_2^2) / T^2``. Each term is
``E[e^{(a_1 X_1 + a_2 X_2) / T} / S^k]`` with ``S = sum_j e^{X_j / T}`` and ``k = a_1 + a_2``; by
``1 / S^k = (1 / Gamma(k)) int_0^inf t^{k-1} e^{-t S} dt`` and the independence of the ``X_j``,

    E[e^{(a_1 X_1 + a_2 X_2) / T} / S^k] = (1 / Gamma(k)) int_0^inf t^{k-1} phi_{a_1}(t) phi_{a_2}(t)
                                           phi_0(t)^{n - 2} dt,
    phi_a(t) = E[e^{a X / T} exp(-t e^{X / T})],  X ~ N(0, 1)

(``phi_0`` to the power ``n - 1`` when ``a_2 = 0``): a one-dimensional integral over ``tau = log t`` of
products of one-dimensional Gaussian expectations. Both are taken with composite Gauss-Legendre rules, on
panels scaled to the temperature (the step ``exp(-t e^{x / T})`` is ``T`` wide in ``x``, and the ``tau``
integrand varies on the scale ``min(1, 1 / T)``), and computed twice, with panels half as wide the second
time. The reference is given where the two agree to 1e-12 (relative) and the temperature lies in
[1/4, 4]; outside that range the log-normal terms ``e^{X / T}`` spread the integrands over so many panels
that the fixed grids become slow (quadratic in ``1 / T``) without the check being any more meaningful, so
the reference is left out (None) rather than guessed.

Small temperatures. As ``T -> 0`` the output is one-hot except in near-ties: when the top two logits are ``d``
apart, ``y = (p, 1 - p)`` with ``p = sigma(d / T)`` and ``sum_j g_j = 4 p^2 (1 - p)^2 / T^2``. The gap between
the top two of ``n`` logits has density ``n (n - 1) I_n`` at 0, ``I_n = int phi(x)^2 Phi(x)^{n-2} dx``, and
``int_0^inf 4 sigma(u)^2 (1 - sigma(u))^2 du = 1/3``, so

    bp var = (n - 1) I_n / (3 T) + O(1)

(checked by ``normstats simulate --layer softmax --temperature T`` at 1e6 draws, n = 16, ``I_16 = 0.00735830``:
bp std 1.9075 ± 0.0051 at T = 0.01 against 1.918 from the leading term, 6.098 ± 0.052 at T = 1e-3 against
6.066). The whole bp variance thus comes from draws whose top gap is within a few ``T``, a fraction about
``n (n - 1) I_n T`` of them (at least ``0.56 T``, for n = 2): Monte Carlo sees them only if the draws number
well over ``1 / T``. Below that it sees none, every gradient underflows to exactly 0, and it would report bp
std ``0 ± 0``, confidently wrong. Hence the bound :data:`MIN_TEMPERATURE`: at 1e-3 the default 1e6 draws see
several hundred near-ties (the se then describes the estimate; fewer draws widen it).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from normstats.layers.base import ConditionalSampler, Layer, Passes
from normstats.params import Param
from normstats.registry import register_layer

#: Temperatures for which the quadrature reference is computed (see the module docstring).
QUADRATURE_TEMPERATURES = (0.25, 4.0)
#: The smallest temperature taken: below it Monte Carlo misses the near-ties that carry the bp variance
#: (module docstring, "Small temperatures").
MIN_TEMPERATURE = 1e-3
#: The two resolutions of the quadrature must agree to this (relative).
_AGREE = 1e-12


def softmax(x: np.ndarray, temperature: float) -> np.ndarray:
    with np.errstate(over="ignore"):
        z = x / temperature
        if not np.isfinite(z).all() and np.isfinite(x).all():
            # a temperature so small that x / T overflows: the same softmax from x - max(x) <= 0, whose
            # quotient overflows only to -inf (e^-inf = 0, the exact limit there)
            z = (x - x.max(axis=-1, keepdims=True)) / temperature
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@register_layer("softmax")
class Softmax(Layer):
    """``y = softmax(x / T)`` over a draw's ``n`` logits; ``dx = y (dy - sum(y dy)) / T``."""

    summary = "softmax of n logits at temperature T; fp mean 1/n"
    params = (
        Param("n", int, 16, "logits per softmax", low=1, high=65536),
        Param("temperature", float, 1.0, "T: y = softmax(x / T) (at least 1e-3: below, bp std rests on ties "
              "Monte Carlo does not see)", low=MIN_TEMPERATURE, high=1e6),
    )

    @property
    def in_dim(self) -> int:
        return self.values["n"]

    @property
    def out_dim(self) -> int:
        return self.values["n"]

    def forward_backward(self, x: np.ndarray, dy: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y = softmax(x, self.values["temperature"])
        return y, _grad(y, dy, self.values["temperature"])

    def passes(self, rng: np.random.Generator) -> Passes:
        return _SoftmaxPasses(self.values["temperature"])

    def conditional_sampler(self, rng: np.random.Generator) -> ConditionalSampler:
        return _SoftmaxConditional(self.values["temperature"])

    def formula(self) -> dict[str, float]:
        return {"fp_mean": 1.0 / self.values["n"], "bp_mean": 0.0}

    def exact_statistics(self) -> dict[str, float]:
        """Every draw's outputs sum to 1 (fp mean ``1/n``) and its gradient to 0 (``sum dx = (sum y dy - sum y
        sum(y dy)) / T = 0``); a single logit has ``y = 1`` and ``dx = 0``."""
        if self.values["n"] == 1:
            return {"fp_mean": 1.0, "fp_std": 0.0, "bp_mean": 0.0, "bp_std": 0.0}
        return {"fp_mean": 1.0 / self.values["n"], "bp_mean": 0.0}

    def quadrature(self) -> dict[str, float]:
        n, t = self.values["n"], self.values["temperature"]
        if n == 1:  # y = 1, J = 0
            return {"fp_std": 0.0, "bp_std": 0.0}
        lo, hi = QUADRATURE_TEMPERATURES
        if not lo <= t <= hi:
            return {}
        found = _moments(n, t)
        return {} if found is None else {"fp_std": found[0], "bp_std": found[1]}


def _grad(y: np.ndarray, dy: np.ndarray, temperature: float) -> np.ndarray:
    with np.errstate(over="ignore"):  # at a tiny T, a near tie's gradient ~ 1 / T may pass float64: inf
        return y * (dy - np.sum(y * dy, axis=-1, keepdims=True)) / temperature


class _SoftmaxPasses(Passes):
    """The forward pass keeps ``y``."""

    def __init__(self, temperature: float) -> None:
        self.temperature = temperature

    def forward(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, Any]:
        y = softmax(x, self.temperature)
        return y, y

    def backward(self, state: Any, dy: np.ndarray) -> np.ndarray:
        return _grad(state, dy, self.temperature)


class _SoftmaxConditional:
    """``g_j = y_j^2 (1 - 2 y_j + sum_i y_i^2) / T^2`` (module docstring)."""

    def __init__(self, temperature: float) -> None:
        self.temperature = temperature

    def __call__(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y = softmax(x, self.temperature)
        y2 = y * y
        q = y2.sum(axis=-1, keepdims=True)
        return y, y2 * (1.0 - 2.0 * y + q) / self.temperature**2


@functools.lru_cache(maxsize=64)
def _moments(n: int, temperature: float) -> tuple[float, float] | None:
    """``(fp std, bp std)`` from the Laplace-transform integrals at two resolutions, or None where they
    disagree beyond :data:`_AGREE`."""
    coarse, fine = _integrals(n, temperature, 1.0), _integrals(n, temperature, 0.5)
    if not all(math.isfinite(f) and abs(f - c) <= _AGREE * abs(f) for c, f in zip(coarse, fine)):
        return None
    m2, m3, m4, m22 = fine
    fp_var = m2 - 1.0 / n**2
    bp_var = (m2 - 2.0 * m3 + m4 + (n - 1) * m22) / temperature**2
    return math.sqrt(fp_var), math.sqrt(bp_var)


def _rule(a: float, b: float, panel: float) -> tuple[np.ndarray, np.ndarray]:
    """Composite 20-node Gauss-Legendre nodes and weights on ``[a, b]``, panels at most ``panel`` wide."""
    nodes, weights = np.polynomial.legendre.leggauss(20)
    m = max(1, math.ceil((b - a) / panel))
    cuts = np.linspace(a, b, m + 1)
    mid, half = (cuts[1:] + cuts[:-1]) / 2, (cuts[1:] - cuts[:-1]) / 2
    return (mid[:, None] + half[:, None] * nodes).ravel(), (half[:, None] * weights).ravel()


def _integrals(n: int, t: float, scale: float) -> tuple[float, float, float, float]:
    """``E y_1^2, E y_1^3, E y_1^4, E y_1^2 y_2^2`` with panels ``scale`` times the base width.

    The ``x`` range ``[-10, 10 + 4 / T]`` holds every ``e^{a x / T} phi(x)`` with ``a <= 4`` to ``e^{-32}`` of
    its peak; the ``tau`` range runs from 30 below ``-log E S = -log n - 1 / (2 T^2)`` (the ``t^{k-1}`` factor,
    ``k >= 2``, falls like ``e^{k tau}`` there) to ``14 / T + 10`` above it (``phi`` falls like a Gaussian of
    width ``1 / T`` in ``tau``)."""
    x, wx = _rule(-10.0, 10.0 + 4.0 / t, 0.5 * min(1.0, t) * scale)
    gauss = wx * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    ex = x / t
    weights = np.stack([gauss * np.exp(a * ex) for a in (0, 2, 3, 4)], axis=1)  # (nx, 4)
    tau0 = -math.log(n) - 0.5 / t**2
    tau, wt = _rule(tau0 - 30.0, tau0 + 14.0 / t + 10.0, 0.5 * min(1.0, 1.0 / t) * scale)
    phis = []
    for start in range(0, len(tau), 256):
        with np.errstate(over="ignore"):
            step = np.exp(-np.exp(tau[start : start + 256, None] + ex[None, :]))
        phis.append(step @ weights)
    phi0, phi2, phi3, phi4 = np.concatenate(phis).T
    # phi_0 ** (n - 2) underflows harmlessly to 0 far right; phi_0 > 0 everywhere.
    with np.errstate(under="ignore"):
        base = phi0 ** (n - 2)
    e = np.exp(tau)
    m2 = np.sum(wt * e**2 * phi2 * phi0 * base)
    m3 = np.sum(wt * e**3 * phi3 * phi0 * base) / 2.0
    m4 = np.sum(wt * e**4 * phi4 * phi0 * base) / 6.0
    m22 = np.sum(wt * e**4 * phi2 * phi2 * base) / 6.0
    return float(m2), float(m3), float(m4), float(m22)
