"""The infinite-width spectrum of a deep network's input-output Jacobian, from free probability.

A chain of square linear layers ``W_l`` (``N x N``) with pointwise activations between them has the Jacobian
``J = D_L W_L ... D_1 W_1`` with ``D_l = diag(d_l(h_l))``, ``d_l`` the derivative of the run of pointwise layers
after ``W_l`` (times their NormProp gradient scales) at the pre-activations ``h_l``. In the wide limit the
factors ``W_l W_l^T`` and ``D_l^2`` are asymptotically free (Pennington, Schoenholz and Ganguli 2017,
"Resurrecting the sigmoid in deep learning through dynamical isometry: theory and practice"; 2018, "The
emergence of spectral universality in deep networks"), so the spectrum of ``J J^T`` is the free multiplicative
convolution of theirs: its S-transform is the product ``S_{JJ^T} = prod_l S_{W_l W_l^T} S_{D_l^2}``.

**The S-transform to second order.** For a positive element with moments ``m_k`` let ``psi(z) = sum_k m_k z^k``
and ``chi`` its compositional inverse; ``S(w) = chi(w) (1 + w) / w``. Inverting ``psi(z) = m_1 z + m_2 z^2 + ...``
gives ``chi(w) = w / m_1 - m_2 w^2 / m_1^3 + O(w^3)``, so ``S(w) = (1 / m_1) (1 - v w + O(w^2))`` with ``v = m_2 /
m_1^2 - 1``, the relative variance ``Var / mean^2``. A product of S-transforms multiplies the leading terms and
adds the first-order ones, hence for ``J J^T``:

* the mean squared singular value is the product of the factors' means:
  ``E[lambda] = prod_l a_l mu_1^(l)``, with ``a_l = E|W_l|^2 / N`` (``sigma_w^2``) and ``mu_k^(l) = E[d_l(h)^(2k)]``,
  ``h ~ N(0, q_l)``; at a fixed point ``q_l = q*`` this is ``(sigma_w^2 mu_1)^L``, 1 at ``chi_1 = 1``;
* the relative variance is the sum of the factors': ``Var[lambda] / E[lambda]^2 = sum_l (v_W + mu_2^(l) /
  mu_1^(l)^2 - 1)``, with ``v_W = 1`` for Gaussian weights (``W W^T`` is Marchenko-Pastur of ratio 1: ``m_2 = 2
  m_1^2``) and ``v_W = 0`` for orthogonal ones (``W W^T = sigma_w^2 I``). At a fixed point it grows linearly in
  depth, ``L (mu_2 / mu_1^2 - 1 + v_W)``: Pennington et al.'s ``L (mu_2 / mu_1^2 - 1 - s_1)`` with ``s_1 = -v_W``
  the first coefficient of the normalized weights' S-transform. ReLU has ``mu_2 / mu_1^2 = 2`` (``d^2`` is 0 or
  1 with probability 1/2) whatever ``q``, so a ReLU chain has ``Var = 2 L`` with Gaussian and ``L`` with
  orthogonal weights at He init; no ReLU network is isometric. A deep linear chain with Gaussian weights has
  ``Var / E^2 = L``.

The pre-activation variances ``q_l`` follow the network forward: ``q_1 = a_1 E[x^2] = a_1`` for ``x ~ N(0, I)``,
then ``q_{l+1} = a_{l+1} E[g_l(h_l)^2]`` with ``g_l`` the run of pointwise layers (the mean-field q-map without
biases, :mod:`normstats.theory.meanfield`, which the tests check it against). The networks of ``normstats
jacobian`` have no biases (``sigma_b^2 = 0``).

**Higher moments.** :func:`free_product_moments` carries the S-transforms to any order as power series (a
different computation from the closed forms above, which the tests compare). For ``L`` Gaussian factors of
mean 1 the moments are the Fuss-Catalan numbers ``FC_L(k) = binom((L + 1) k, k) / (L k + 1)`` (Penson and
Zyczkowski 2011, "Product of Ginibre matrices: Fuss-Catalan and Raney distributions"), whose density has the
support ``[0, (L + 1)^(L + 1) / L^L]``: the largest squared singular value's limit (:func:`fuss_catalan_edge`).

Where the chain holds anything else (pooling, normalization layers, dropout, residual blocks, convolutions,
non-square linear layers, weights with no known spectrum) there is no prediction from there on (``None``); so
too where an activation meets a pre-activation variance ``q`` beyond float64 (0 or ``inf``: ``--sigma-w2 1e-300``
or ``1e6`` over many layers), at which its derivative's moments cannot be computed.
"""

from __future__ import annotations

import math
import warnings
from math import comb
from typing import Callable, Sequence

import numpy as np

from normstats.exact.quadrature import gaussian_expectation
from normstats.layers.base import Elementwise
from normstats.networks import shapes
from normstats.networks.build import Network, Stage
from normstats.networks.wide_limit import weight_factors
from normstats.output.results.jacobian import Factor, SpectrumPrediction

Fn = Callable[[np.ndarray], np.ndarray]

GAUSSIAN, ORTHOGONAL, DERIVATIVES = "gaussian_weights", "orthogonal_weights", "derivatives"
#: Relative variance of ``W W^T`` in the limit, by kind of weights.
WEIGHT_RELATIVE_VARIANCE = {GAUSSIAN: 1.0, ORTHOGONAL: 0.0}


def _expect(g: Fn, kinks: Sequence[float]) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's IntegrationWarning from the adaptive fallback at hidden kinks
        return gaussian_expectation(g, list(kinks))


def weight_kind(stage: Stage) -> str | None:
    """``gaussian_weights`` or ``orthogonal_weights`` for a square linear layer whose ``W W^T`` has a known limit
    spectrum; None otherwise. Unit-norm rows or columns of a Gaussian draw have the Gaussian limit (the norms
    concentrate at 1 to ``O(N^-1/2)``), and normalizing a square orthogonal matrix leaves it orthogonal."""
    if stage.name != "linear":
        return None
    v = stage.layer.values
    if v["fan_in"] != v["fan_out"] or v["normalize"] not in ("none", "fan-in", "fan-out"):
        return None
    return ORTHOGONAL if v["init"] == "orthogonal" else GAUSSIAN


class _Run:
    """A run of pointwise layers after a linear layer (or at the input): ``u_0 = sqrt(q) z``, then every layer's
    ``(f(u) - shift) * fwd``; the derivative is the product of ``grad * f'(u)``."""

    def __init__(self, q: float) -> None:
        self.q = q
        self.layers: list[Stage] = []

    def values(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u = math.sqrt(self.q) * z
        d = np.ones_like(z)
        for st in self.layers:
            layer = st.layer
            d = d * (st.grad_scale * layer.df(u))  # type: ignore[attr-defined]
            u = (layer.f(u) - st.shift) * st.fwd_scale  # type: ignore[attr-defined]
        return u, d

    @property
    def kinks(self) -> list[float]:
        if not self.layers:
            return []
        r = math.sqrt(self.q)
        return [b / r for b in self.layers[0].layer.breakpoints]  # type: ignore[attr-defined]

    def moment(self, which: str) -> float:
        def g(z: np.ndarray) -> np.ndarray:
            with np.errstate(all="ignore"):
                u, d = self.values(z)
            return {"m2": u * u, "mu1": d * d, "mu2": d**4}[which]

        return _expect(g, self.kinks)

    def factor(self) -> Factor | None:
        if not self.layers:
            return None
        mu1, mu2 = self.moment("mu1"), self.moment("mu2")
        if not mu1 > 0:
            return Factor(self.layers[-1].label, DERIVATIVES, mu1, math.nan, self.q)
        return Factor(self.layers[-1].label, DERIVATIVES, mu1, mu2 / mu1**2 - 1.0, self.q)


def predict(net: Network) -> list[SpectrumPrediction | None]:
    """The infinite-width spectrum of the Jacobian of the first ``d`` top-level items, for ``d = 1 ..
    len(net.items)`` (None from the first item with no prediction on)."""
    out: list[SpectrumPrediction | None] = []
    factors: list[Factor] = []
    run = _Run(1.0)  # the input: x ~ N(0, I)
    dead = False
    for item in net.items:
        if not dead and isinstance(item, Stage):
            kind = weight_kind(item) if item.name in shapes.WEIGHTED else None
            if kind is not None:
                done = run.factor()
                if done is not None:
                    factors.append(done)
                m2 = run.moment("m2") if run.layers else run.q
                a = weight_factors(item)[0]  # type: ignore[index]
                fwd, grad = item.fwd_scale, item.grad_scale
                factors.append(Factor(item.label, kind, a * grad * grad, WEIGHT_RELATIVE_VARIANCE[kind],
                                      None))
                run = _Run(a * m2 * fwd * fwd)
            elif item.kind == shapes.POINTWISE and isinstance(item.layer, Elementwise) and 0.0 < run.q < math.inf:
                run.layers.append(item)
            else:
                dead = True
        else:
            dead = True
        if dead:
            out.append(None)
            continue
        last = run.factor()
        out.append(combine(factors + ([last] if last is not None else [])))
    return out


def combine(factors: Sequence[Factor]) -> SpectrumPrediction:
    """Mean and variance of the free product of ``factors`` (module docstring), and its largest value where it
    is known: a chain whose only random factors are Gaussian weights (Fuss-Catalan edge; 1 factor-mean for an
    orthogonal chain)."""
    mean = math.prod(f.mean for f in factors)
    rel = sum(f.relative_variance for f in factors)
    constant_d = all(f.kind != DERIVATIVES or f.relative_variance == 0.0 for f in factors)
    largest = log10_cond = None
    if constant_d and math.isfinite(mean):
        gaussians = sum(f.kind == GAUSSIAN for f in factors)
        largest = mean * fuss_catalan_edge(gaussians)
        if gaussians == 0:
            log10_cond = 0.0  # every singular value equal
    return SpectrumPrediction(mean, rel * mean * mean, rel, largest, log10_cond, tuple(factors))


def fuss_catalan(order: int, k: int) -> int:
    """``FC_order(k) = binom((order + 1) k, k) / (order k + 1)``: the ``k``-th moment of the product of ``order``
    free Marchenko-Pastur (ratio 1, mean 1) elements."""
    return comb((order + 1) * k, k) // (order * k + 1)


def fuss_catalan_edge(order: int) -> float:
    """The right end of the Fuss-Catalan density's support, ``(L + 1)^(L + 1) / L^L`` (1 for ``L = 0``)."""
    if order == 0:
        return 1.0
    return (order + 1) ** (order + 1) / order**order


# -- power series of S-transforms ----------------------------------------------------------------------------
def _mul(a: np.ndarray, b: np.ndarray, n: int) -> np.ndarray:
    return np.convolve(a, b)[:n]


def _inverse(coef: np.ndarray, n: int) -> np.ndarray:
    """Compositional inverse of ``f(z) = sum_{k>=1} coef[k] z^k`` (``coef[0] = 0``, ``coef[1] != 0``) to order
    ``n - 1``, by fixed-point iteration ``g = (w - sum_{k>=2} coef[k] g^k) / coef[1]``."""
    w = np.zeros(n)
    w[1] = 1.0
    g = w / coef[1]
    for _ in range(n):
        total = np.zeros(n)
        power = _mul(g, g, n)
        for k in range(2, n):
            total += coef[k] * power
            power = _mul(power, g, n)
        g = (w - total) / coef[1]
    return g


def s_transform(moments: Sequence[float], order: int) -> np.ndarray:
    """The coefficients ``s_0 .. s_{order-1}`` of ``S(w)`` from the moments ``m_1 .. m_order``."""
    n = order + 1
    psi = np.zeros(n)
    psi[1:] = np.asarray(moments, dtype=float)[:order]
    chi = _inverse(psi, n)  # chi[0] = 0
    s = chi[1:]  # chi(w) / w
    one_plus = np.zeros(order)
    one_plus[0] = 1.0
    if order > 1:
        one_plus[1] = 1.0
    return _mul(s, one_plus, order)


def free_product_moments(factor_moments: Sequence[Sequence[float]], order: int) -> np.ndarray:
    """The moments ``m_1 .. m_order`` of the free multiplicative convolution of elements with the given moments
    (each at least ``order`` of them): the product of their S-transforms, turned back into moments."""
    s = np.zeros(order)
    s[0] = 1.0
    for m in factor_moments:
        s = _mul(s, s_transform(m, order), order)
    # chi(w) = w S(w) / (1 + w); psi is its compositional inverse.
    inv = np.array([(-1.0) ** k for k in range(order)])  # 1 / (1 + w)
    chi = np.zeros(order + 1)
    chi[1:] = _mul(s, inv, order)
    return _inverse(chi, order + 1)[1:]
