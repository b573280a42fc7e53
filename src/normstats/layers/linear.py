"""A fully connected layer ``y = W x``, W drawn once per run from a named init and optionally l2-normalized,
and its exact shortcut ``--sampler spectral`` (:class:`SpectralLinear`)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from normstats.errors import ParameterError
from normstats.layers.base import ConditionalSampler, ConstantRowMean, Layer, Passes, Sampler
from normstats.layers.weights import (
    draw_weight,
    resolve_weight_params,
    squared_norm,
    weight_params,
)
from normstats.params import Param
from normstats.registry import register_layer

#: Largest weight matrix (entries) a run may hold: 2^24 float64 values are 128 MiB, copied into every worker.
MAX_WEIGHTS = 1 << 24


class _LinearSampler:
    """The forward/backward pass of a fixed weight matrix (picklable, unlike a closure)."""

    def __init__(self, weight: np.ndarray) -> None:
        self.weight = weight

    def __call__(self, x: np.ndarray, dy: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return x @ self.weight.T, dy @ self.weight


class _LinearPasses(Passes):
    """``y = x W^T``; ``dx = dy W`` (the backward pass needs no state)."""

    fresh_output = True
    fresh_grad = True

    def __init__(self, weight: np.ndarray) -> None:
        self.weight = weight

    def forward(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, None]:
        return x @ self.weight.T, None

    def backward(self, state: None, dy: np.ndarray) -> np.ndarray:
        return dy @ self.weight


class _LinearConditional:
    """``y = W x`` and ``g_i = sum_j W_ji^2``, the backward pass of the squared weights on ``dy = 1``: the
    same for every draw, since the Jacobian is W whatever x."""

    def __init__(self, weight: np.ndarray) -> None:
        self.weight = weight
        self.g = np.ones((1, weight.shape[0])) @ np.square(weight)

    def __call__(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return x @ self.weight.T, np.broadcast_to(self.g, x.shape)


@register_layer("linear", aliases=("fc", "dense", "inner_product"))
class Linear(Layer):
    """y = W x with W of shape (fan_out, fan_in), drawn once per run (see :mod:`normstats.layers.weights`).

    The statistics pool all outputs (or all input gradients) of a draw; one draw is one input vector x with
    its upstream gradient dy. For a fixed W, ``y_i ~ N(0, |W_i.|^2)`` and ``dx_j ~ N(0, |W_.j|^2)``, so the
    pooled variances are ``|W|^2 / fan_out`` and ``|W|^2 / fan_in``. With ``--normalize fan-in`` (unit rows)
    ``|W|^2 = fan_out``: fp std 1 and bp std ``sqrt(fan_out / fan_in)``; with ``fan-out`` (unit columns)
    ``|W|^2 = fan_in``: fp std ``sqrt(fan_in / fan_out)`` and bp std 1; with ``ws`` (scaled weight
standardization, rows centred with norm ``gain``) ``|W|^2 = gain^2 fan_out``: fp std ``gain`` and bp std
``gain sqrt(fan_out / fan_in)``; all hold for every W. With
    ``--normalize none`` the statistics are those of the raw init: exact for ``orthogonal``
    (``|W|^2 = min(fan_in, fan_out)``), and for a Gaussian init they depend on the W drawn (the seed), so there
    is no reference and the estimate is the figure to compare with the normalized ones.
    """

    summary = "y = W x; W from --init, rows (fan-in) or columns (fan-out) of W on the l2 unit sphere"
    params = (
        Param("fan_in", int, 128, "inputs per output", low=1, high=16384),
        Param("fan_out", int, 64, "outputs", low=1, high=16384),
        *weight_params("fan-in"),
    )

    def resolve(self, values: dict[str, Any]) -> dict[str, Any]:
        if values["fan_in"] * values["fan_out"] > MAX_WEIGHTS:
            raise ParameterError(
                f"parameters --fan-in and --fan-out of layer 'linear' must keep W within {MAX_WEIGHTS:,} weights "
                f"(fan_in * fan_out); got {values['fan_in']} * {values['fan_out']} = "
                f"{values['fan_in'] * values['fan_out']:,}"
            )
        return resolve_weight_params(self.name, values, values["fan_in"])

    @property
    def in_dim(self) -> int:
        return self.values["fan_in"]

    @property
    def out_dim(self) -> int:
        return self.values["fan_out"]

    def sampler(self, rng: np.random.Generator) -> Sampler:
        v = self.values
        w = draw_weight(rng, v["fan_out"], v["fan_in"], 1, v["init"], v["normalize"], v.get("gain", 1.0))
        return _LinearSampler(w.reshape(v["fan_out"], v["fan_in"]))

    def conditional_sampler(self, rng: np.random.Generator) -> ConditionalSampler:
        return _LinearConditional(self.sampler(rng).weight)  # type: ignore[attr-defined]

    def passes(self, rng: np.random.Generator) -> Passes:
        return _LinearPasses(self.sampler(rng).weight)  # type: ignore[attr-defined]

    shortcuts = ("spectral",)

    def _shortcut(self, sampler: str) -> Layer:
        """``spectral``: :class:`SpectralLinear`, valid for every setting (the same W, through its SVD)."""
        return SpectralLinear(**self.values)

    def formula(self) -> dict[str, float]:
        v = self.values
        out: dict[str, float] = {"fp_mean": 0.0, "bp_mean": 0.0}
        sq = squared_norm(v["fan_out"], v["fan_in"], 1, v["init"], v["normalize"], v.get("gain", 1.0))
        if sq is not None:
            out.update(fp_std=math.sqrt(sq / v["fan_out"]), bp_std=math.sqrt(sq / v["fan_in"]))
        return out

    def conditional_exact_statistics(self) -> dict[str, float]:
        """Under the conditional estimator every draw's ``g`` is the column sums of ``W^2`` (the Jacobian is
        ``W`` whatever ``x``), whose mean is ``|W|^2 / fan_in``: bp std is the same in every draw, and its value
        is known where ``|W|^2`` is the same for every ``W`` (a normalized or orthogonal init, see
        :meth:`formula`). A raw Gaussian init's bp std is also the same in every draw, but at the value of the
        ``W`` drawn, which no declaration knows before the run: not declared."""
        bp = self.formula().get("bp_std")
        return {} if bp is None else {"bp_std": bp}


class _RowSummary:
    """Each draw's row mean ``a = c . z`` and row mean square ``q = (s^2 / width) . z^2`` of ``y = U S z``
    (``c = S U^T 1 / width``), returned as the two values ``a + d, a - d`` with ``d = sqrt(q - a^2)``: their
    mean is ``a`` and their mean square ``q``, all the tally of a draw of width > 1 reads (its pooled mean and
    variance, and the per-draw covariance of ``(a, q)`` behind the se). With ``width == 1`` the one value ``a``
    itself (``q = a^2``). Costs ``O(r)`` a draw instead of the ``O(r width)`` of the product."""

    def __init__(self, basis: np.ndarray, s: np.ndarray) -> None:
        width = basis.shape[0]
        self.width = min(width, 2)
        self.c = (basis.sum(axis=0) * s) / width  # S U^T 1 / width
        self.s2 = s * s / width

    def __call__(self, z: np.ndarray) -> np.ndarray:
        a = z @ self.c
        if self.width == 1:
            return a[:, None]
        q = np.square(z) @ self.s2
        d = q - a * a  # >= 0 up to rounding: a mean square is at least the squared mean
        np.maximum(d, 0.0, out=d)
        np.sqrt(d, out=d)
        out = np.empty((len(z), 2))
        np.add(a, d, out=out[:, 0])
        np.subtract(a, d, out=out[:, 1])
        return out


class _SpectralSampler:
    """``(z, z', u) -> (y, dx)`` of :class:`SpectralLinear`, as row summaries (picklable)."""

    def __init__(self, fp: _RowSummary, bp: _RowSummary) -> None:
        self.fp, self.bp = fp, bp

    def __call__(self, x: np.ndarray, dy: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.fp(x), self.bp(dy)


class _SpectralConditional:
    """``(z, u) -> (y, g)``: the row summary of ``y`` and the row mean of ``g_i = sum_j W_ji^2`` (the same for
    every draw, computed as :class:`_LinearConditional` has it), as one column."""

    def __init__(self, fp: _RowSummary, g_mean: float) -> None:
        self.fp = fp
        self.g = ConstantRowMean(g_mean)

    def __call__(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.fp(x), self.g(len(x))


class SpectralLinear(Layer):
    """``--sampler spectral`` for ``linear``: the same W (drawn from the run's generator by
    :meth:`Linear.sampler`), run through its thin SVD ``W = U S V^T`` of rank ``r = min(fan_in, fan_out)``.

    For x ~ N(0, I_fan_in), ``z = V^T x`` ~ N(0, I_r) (V has orthonormal columns), so ``y = W x = U S z`` has
    exactly the law of ``U S z`` for z ~ N(0, I_r); likewise ``dx = W^T dy = V S z'`` with ``z' = U^T dy``.
    A draw here is ``(z, z')``: ``2 r`` normals instead of ``fan_in + fan_out``. In these coordinates a
    draw's row mean square ``q = sum_k s_k^2 z_k^2 / width`` is a sum of one-dimensional terms and its row mean
    ``a`` is linear in z, which scrambled Sobol points integrate far better than the quadratic form
    ``x^T W^T W x`` of the layer's own coordinates. Each draw's ``(a, q)`` (of y and of dx) has exactly the
    law of the layer's, so the statistics and, for ``mc``, their standard errors have the same distribution.
    Only ``(a, q)`` is formed (:class:`_RowSummary`): the outputs are two values a draw with the same mean and
    mean square, not the layer's ``fan_out`` (a stand-in for the statistics, not for a network). Not
    registered: it is what :meth:`Linear.shortcut` returns."""

    name = "linear"
    summary = "y = W x through the singular values of W"
    params = Linear.params

    def resolve(self, values: dict[str, Any]) -> dict[str, Any]:
        return Linear.resolve(self, values)  # type: ignore[arg-type]

    @property
    def rank(self) -> int:
        return min(self.values["fan_in"], self.values["fan_out"])

    @property
    def in_dim(self) -> int:
        return self.rank

    @property
    def out_dim(self) -> int:
        return self.rank

    @property
    def fp_width(self) -> int:
        return min(self.values["fan_out"], 2)

    @property
    def bp_width(self) -> int:
        return min(self.values["fan_in"], 2)

    def _weight(self, rng: np.random.Generator) -> np.ndarray:
        return Linear(**self.values).sampler(rng).weight  # type: ignore[attr-defined]

    def _summaries(self, weight: np.ndarray) -> tuple[_RowSummary, _RowSummary]:
        u, s, vt = np.linalg.svd(weight, full_matrices=False)
        return _RowSummary(u, s), _RowSummary(vt.T, s)

    def sampler(self, rng: np.random.Generator) -> Sampler:
        return _SpectralSampler(*self._summaries(self._weight(rng)))

    def conditional_sampler(self, rng: np.random.Generator) -> ConditionalSampler:
        weight = self._weight(rng)
        return _SpectralConditional(self._summaries(weight)[0], float(np.mean(_LinearConditional(weight).g)))
