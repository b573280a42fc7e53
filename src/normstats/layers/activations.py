"""Elementwise activations. Each defines ``f``, its derivative as frameworks compute it, and its kinks.

Definitions follow the PyTorch documentation of ``torch.nn.<Name>``; where a derivative is undefined at a
kink, ``df`` takes the value PyTorch's backward uses there (a set of probability zero, so the statistics do
not depend on it). Closed forms are given where they exist: piecewise polynomials through truncated normal
moments, the exponential family (elu, celu, selu) through ``E[exp(tX) 1{X<0}]``, and exact GELU through
Stein's lemma. The rest fall back on quadrature split at ``breakpoints``.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from normstats.errors import ParameterError
from normstats.exact.gaussian import (
    SERIES_T,
    Piece,
    exp_negative_moment,
    exp_negative_series,
    piecewise_moment,
    piecewise_moment_bound,
)
from normstats.layers import gelu_kernels, relu_kernels
from normstats.layers.base import Elementwise, Passes, RowSums
from normstats.lazy import special
from normstats.params import SCALE_BOUND, Param
from normstats.registry import register_layer

#: SELU's constants as PyTorch documents them (Klambauer et al., Self-Normalizing Neural Networks, 2017).
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_SCALE = 1.0507009873554804934193349852946

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def expit(x: np.ndarray) -> np.ndarray:
    """The logistic sigmoid ``1 / (1 + exp(-x))`` in numpy alone, for every float without overflow:
    ``exp(-|x|)`` lies in (0, 1], so both branches are ratios of numbers near 1. Within 3 ulp of
    ``scipy.special.expit`` wherever the result is a normal float, |x| < 708 (tested); it spares a sigmoid
    run the import of ``scipy.special``."""
    e = np.exp(-np.abs(x))
    return np.where(np.asarray(x) >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


#: Largest relative rounding error a closed form may carry; beyond it the statistic comes from quadrature.
CLOSED_FORM_RTOL = 1e-12


class PiecewisePolynomial(Elementwise):
    """An activation whose value and derivative are polynomials between kinks: closed forms for all four
    statistics follow from truncated normal moments (:func:`normstats.exact.gaussian.piecewise_moment`)."""

    def f_pieces(self) -> Sequence[Piece]:
        raise NotImplementedError

    def df_pieces(self) -> Sequence[Piece]:
        raise NotImplementedError

    def formula(self) -> dict[str, float]:
        """The closed forms, each only where its rounding error bound is within :data:`CLOSED_FORM_RTOL` (the
        mean's relative to the larger of |mean| and std, which is what a shift or a z-score sees); a
        statistic left out goes to quadrature. Far in the tail (hardtanh on [6, 7]) the variance
        ``E f^2 - (E f)^2`` cancels almost entirely."""
        mean, mean_err = piecewise_moment_bound(self.f_pieces())
        second, second_err = piecewise_moment_bound(self.f_pieces(), square=True)
        var = second - mean * mean
        var_err = second_err + 2 * abs(mean) * mean_err + 2.0**-52 * (second + mean * mean)
        out = {"bp_mean": 0.0, "bp_std": math.sqrt(piecewise_moment(self.df_pieces(), square=True))}
        if var_err <= 2 * CLOSED_FORM_RTOL * var:  # d(std)/std = d(var) / (2 var)
            out["fp_std"] = math.sqrt(var)
        if mean_err <= CLOSED_FORM_RTOL * max(abs(mean), math.sqrt(max(var, 0.0))):
            out["fp_mean"] = mean
        return out


_INF = math.inf


@register_layer("identity")
class Identity(PiecewisePolynomial):
    """x; gradient 1."""

    summary = "x"

    def f(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=float)

    def df(self, x: np.ndarray) -> np.ndarray:
        return np.ones_like(x, dtype=float)

    def f_pieces(self) -> Sequence[Piece]:
        return [(-_INF, _INF, (0.0, 1.0))]

    def df_pieces(self) -> Sequence[Piece]:
        return [(-_INF, _INF, (1.0,))]


class _Streaming:
    """Base of an activation's hot-loop sampler: it computes into buffers kept between calls, so the loop
    allocates nothing (the arrays returned are valid until the next call). Called as a sampler ``(x, dy, u)``
    it returns ``(y, f'(x) dy)``; as a conditional sampler ``(x, u)``, ``(y, f'(x)^2)``. A subclass writes
    ``y`` and ``f'(x)`` in :meth:`compute`."""

    def __init__(self) -> None:
        self._y = np.empty((0, 1))
        self._grad = np.empty((0, 1))

    def __call__(self, x: np.ndarray, *rest: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(self._y) < len(x):
            self._y, self._grad = np.empty(x.shape), np.empty(x.shape)
        y, grad = self._y[: len(x)], self._grad[: len(x)]
        self.compute(x, y, grad)
        grad *= rest[0] if len(rest) == 2 else grad
        return y, grad

    def compute(self, x: np.ndarray, y: np.ndarray, grad: np.ndarray) -> None:
        raise NotImplementedError


class _ReLUSampler(_Streaming):
    """ReLU in the hot loop: a comparison and a product (np.maximum and np.heaviside are several times
    slower). The gradient is 1 for x > 0 and 0 for x <= 0, PyTorch's (0 at 0)."""

    def __init__(self) -> None:
        super().__init__()
        self._on = np.empty((0, 1), dtype=bool)

    def compute(self, x: np.ndarray, y: np.ndarray, grad: np.ndarray) -> None:
        if len(self._on) < len(x):
            self._on = np.empty(x.shape, dtype=bool)
        on = self._on[: len(x)]
        np.greater(x, 0.0, out=on)
        np.copyto(grad, on)
        np.multiply(x, grad, out=y)


class _FusedPasses(Passes):
    """An activation's network passes with compiled summed loops (:attr:`kernels`: :mod:`relu_kernels` or
    :mod:`gelu_kernels`, the same interface): the pass, its NormProp shift and scale, and the row summaries of its
    input and output in one pass over memory, where the package was built with them; the forward pass keeps a
    state of :attr:`state_dtype` (ReLU's mask, GELU's derivative) for the backward pass."""

    kernels: Any
    state_dtype: Any

    @property
    def summed(self) -> bool:  # type: ignore[override]
        return bool(self.kernels.AVAILABLE)

    def forward_summed(self, x: np.ndarray, shift: float, scale: float, x_rows: RowSums | None, y_rows: RowSums,
                       inplace: bool) -> tuple[np.ndarray, np.ndarray]:
        state = np.empty(x.shape, dtype=self.state_dtype)
        y = x if inplace else np.empty_like(x)
        self.kernels.forward(x, y, state, shift, scale, x_rows, y_rows)
        return y, state

    def backward_summed(self, state: np.ndarray, dy: np.ndarray, scale: float, dy_rows: RowSums | None,
                        dx_rows: RowSums, inplace: bool) -> np.ndarray:
        dx = dy if inplace else np.empty_like(dy)
        self.kernels.backward(dy, state, dx, scale, dy_rows, dx_rows)
        return dx


class _ReLUPasses(_FusedPasses):
    """ReLU as a network runs it: ``y = max(x, 0)`` and ``dx = dy * (x > 0)``, with the mask ``x > 0`` (1 byte a
    value, made while ``x`` is in cache) as the state, where the generic elementwise passes keep ``x`` (8 bytes)
    and rebuild ``df(x)`` from it in the backward pass (a comparison, a cast, a product: long after ``x`` left
    the cache). ``dy * mask`` casts the mask to ``1.0``/``0.0``, so every product (and its sign at 0) is that of
    ``df(x) * dy``. Measured on ``20*(linear relu)`` at width 512, 204 draws a chunk, one BLAS thread: the
    network's CPU time over that of its matrix products alone fell from 1.44x to 1.16-1.21x."""

    fresh_output = True
    fresh_grad = True
    writes_over_input = True  # the state is the mask
    # one pass over memory each way where the package was built with its compiled loops: the passes below, the
    # NormProp shift and scale, and the row summaries of input and output, the same numbers
    kernels = relu_kernels
    state_dtype = np.bool_

    def __init__(self) -> None:  # nothing of the layer's is needed (no parameters, no weights)
        pass

    def forward(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        on = np.greater(x, 0.0)
        return np.maximum(x, 0.0), on

    def forward_inplace(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        on = np.greater(x, 0.0)
        return np.maximum(x, 0.0, out=x), on

    def backward_inplace(self, state: np.ndarray, dy: np.ndarray, scale: float) -> np.ndarray:
        np.multiply(dy, state, out=dy)
        if scale != 1.0:
            dy *= scale
        return dy

    def backward(self, state: np.ndarray, dy: np.ndarray) -> np.ndarray:
        return np.multiply(dy, state)

    def backward_scaled(self, state: np.ndarray, dy: np.ndarray, scale: float) -> np.ndarray:
        dx = np.multiply(dy, state)  # a new array: scaled in place
        dx *= scale
        return dx


@register_layer("relu")
class ReLU(PiecewisePolynomial):
    """max(x, 0); the gradient at 0 is 0, as in PyTorch and JAX."""

    summary = "max(x, 0)"
    breakpoints = (0.0,)

    def f(self, x: np.ndarray) -> np.ndarray:
        return np.maximum(x, 0.0)

    def df(self, x: np.ndarray) -> np.ndarray:
        return (x > 0).astype(float)

    def forward_backward(self, x, dy, u):  # type: ignore[no-untyped-def]
        on = x > 0
        return np.where(on, x, 0.0), np.where(on, dy, 0.0)

    def streaming_sampler(self, rng: np.random.Generator) -> _ReLUSampler:
        return _ReLUSampler()

    def passes(self, rng: np.random.Generator) -> Passes:
        return _ReLUPasses()

    def streaming_conditional_sampler(self, rng: np.random.Generator) -> _ReLUSampler:
        return _ReLUSampler()

    def f_pieces(self) -> Sequence[Piece]:
        return [(0.0, _INF, (0.0, 1.0))]

    def df_pieces(self) -> Sequence[Piece]:
        return [(0.0, _INF, (1.0,))]


@register_layer("leaky_relu", aliases=("leakyrelu",))
class LeakyReLU(PiecewisePolynomial):
    """x for x > 0, slope * x otherwise (torch.nn.LeakyReLU, negative_slope); gradient slope at 0."""

    summary = "x if x > 0 else slope * x"
    breakpoints = (0.0,)
    params = (Param("slope", float, 0.01, "negative slope (PyTorch negative_slope)", low=-SCALE_BOUND,
                    high=SCALE_BOUND),)

    def f(self, x: np.ndarray) -> np.ndarray:
        return np.where(x > 0, x, self.slope * x)

    def df(self, x: np.ndarray) -> np.ndarray:
        return np.where(x > 0, 1.0, self.slope)

    def f_pieces(self) -> Sequence[Piece]:
        return [(-_INF, 0.0, (0.0, self.slope)), (0.0, _INF, (0.0, 1.0))]

    def df_pieces(self) -> Sequence[Piece]:
        return [(-_INF, 0.0, (self.slope,)), (0.0, _INF, (1.0,))]


@register_layer("hardtanh")
class Hardtanh(PiecewisePolynomial):
    """min_val below min_val, max_val above max_val, x between; gradient 1 strictly between, else 0."""

    summary = "clip(x, min_val, max_val)"
    params = (
        Param("min_val", float, -1.0, "lower clip value", low=-SCALE_BOUND, high=SCALE_BOUND),
        Param("max_val", float, 1.0, "upper clip value (> min_val)", low=-SCALE_BOUND, high=SCALE_BOUND),
    )

    def resolve(self, values: dict[str, Any]) -> dict[str, Any]:
        if not values["min_val"] < values["max_val"]:
            raise ParameterError(
                f"parameter --max-val of layer '{self.name}' must be greater than --min-val "
                f"({values['min_val']:g}); got {values['max_val']:g}"
            )
        return values

    @property
    def breakpoints(self) -> tuple[float, ...]:  # type: ignore[override]
        # 0 is no kink but a split point: an odd integrand over a symmetric piece integrates to 0, a value
        # quad cannot reach to a relative tolerance.
        return (self.min_val, 0.0, self.max_val)

    def f(self, x: np.ndarray) -> np.ndarray:
        return np.clip(x, self.min_val, self.max_val)

    def df(self, x: np.ndarray) -> np.ndarray:
        return ((x > self.min_val) & (x < self.max_val)).astype(float)

    def f_pieces(self) -> Sequence[Piece]:
        lo, hi = self.min_val, self.max_val
        return [(-_INF, lo, (lo,)), (lo, hi, (0.0, 1.0)), (hi, _INF, (hi,))]

    def df_pieces(self) -> Sequence[Piece]:
        return [(self.min_val, self.max_val, (1.0,))]


@register_layer("relu6")
class ReLU6(Hardtanh):
    """min(max(x, 0), 6): PyTorch computes it as hardtanh(x, 0, 6), so the gradient is 0 at 0 and at 6."""

    summary = "min(max(x, 0), 6)"
    params = ()

    def resolve(self, values: dict[str, Any]) -> dict[str, Any]:
        return values

    min_val = 0.0  # type: ignore[assignment]
    max_val = 6.0  # type: ignore[assignment]


@register_layer("hardsigmoid")
class Hardsigmoid(PiecewisePolynomial):
    """0 for x <= -3, 1 for x >= 3, x/6 + 1/2 between; gradient 1/6 strictly between -3 and 3."""

    summary = "clip(x/6 + 1/2, 0, 1)"
    breakpoints = (-3.0, 3.0)

    def f(self, x: np.ndarray) -> np.ndarray:
        return np.clip(x / 6.0 + 0.5, 0.0, 1.0)

    def df(self, x: np.ndarray) -> np.ndarray:
        return np.where((x > -3.0) & (x < 3.0), 1.0 / 6.0, 0.0)

    def f_pieces(self) -> Sequence[Piece]:
        return [(-3.0, 3.0, (0.5, 1.0 / 6.0)), (3.0, _INF, (1.0,))]

    def df_pieces(self) -> Sequence[Piece]:
        return [(-3.0, 3.0, (1.0 / 6.0,))]


@register_layer("hardswish")
class Hardswish(PiecewisePolynomial):
    """0 for x <= -3, x for x >= 3, x (x + 3) / 6 between; gradient as PyTorch: 0 below -3, x/3 + 1/2 on
    [-3, 3], 1 above."""

    summary = "x * hardsigmoid(x)"
    breakpoints = (-3.0, 3.0)

    def f(self, x: np.ndarray) -> np.ndarray:
        return np.where(x <= -3.0, 0.0, np.where(x >= 3.0, x, x * (x + 3.0) / 6.0))

    def df(self, x: np.ndarray) -> np.ndarray:
        return np.where(x < -3.0, 0.0, np.where(x <= 3.0, x / 3.0 + 0.5, 1.0))

    def f_pieces(self) -> Sequence[Piece]:
        return [(-3.0, 3.0, (0.0, 0.5, 1.0 / 6.0)), (3.0, _INF, (0.0, 1.0))]

    def df_pieces(self) -> Sequence[Piece]:
        return [(-3.0, 3.0, (0.5, 1.0 / 3.0)), (3.0, _INF, (1.0,))]


class ExponentialLinear(Elementwise):
    """``scale * (x if x > 0 else alpha (exp(x / width) - 1))``: elu (width 1), celu (width alpha) and selu.

    Closed forms with ``E_t = E[exp(tX) 1{X<0}]`` and ``t = 1/width``: ``E f = scale (phi(0) + alpha (E_t -
    1/2))``, ``E f^2 = scale^2 (1/2 + alpha^2 (E_2t - 2 E_t + 1/2))``, ``E f'^2 = scale^2 (1/2 + (alpha t)^2
    E_2t)``. At x = 0 the gradient is the left one (alpha / width), as in PyTorch's backward.
    """

    breakpoints = (0.0,)

    def shape(self) -> tuple[float, float, float]:
        """``(scale, alpha, width)``."""
        raise NotImplementedError

    def f(self, x: np.ndarray) -> np.ndarray:
        scale, alpha, width = self.shape()
        return scale * np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0.0) / width))

    def df(self, x: np.ndarray) -> np.ndarray:
        scale, alpha, width = self.shape()
        return scale * np.where(x > 0, 1.0, alpha / width * np.exp(np.minimum(x, 0.0) / width))

    def formula(self) -> dict[str, float]:
        scale, alpha, width = self.shape()
        t = 1.0 / width
        e2 = exp_negative_moment(2.0 * t)
        phi0 = 1.0 / math.sqrt(2.0 * math.pi)
        if t <= SERIES_T:
            # E[(exp(tX) - 1) 1{X<0}] = -t phi(0) + S_1 and E[(exp(tX) - 1)^2 1{X<0}] = S_2, with S_1, S_2 the
            # series of exp_negative_series: for celu at large alpha (t = 1/alpha small) the closed form
            # would get the mean, about 1/(4 alpha), as phi(0) - phi(0) + ..., losing all but ~1/alpha of it.
            # alpha / width is exactly 1 for celu, so phi(0) (1 - alpha t) is exactly 0 there.
            mean = scale * (phi0 * (1.0 - alpha / width) + alpha * exp_negative_series(t, lambda k: 1.0))
            negative = exp_negative_series(t, lambda k: 2.0**k - 2.0)
        else:
            e1 = exp_negative_moment(t)
            mean = scale * (phi0 + alpha * (e1 - 0.5))
            negative = e2 - 2.0 * e1 + 0.5
        second = scale**2 * (0.5 + alpha**2 * negative)
        bp = scale**2 * (0.5 + (alpha * t) ** 2 * e2)
        return {
            "fp_mean": mean,
            "fp_std": math.sqrt(max(second - mean * mean, 0.0)),
            "bp_mean": 0.0,
            "bp_std": math.sqrt(bp),
        }


@register_layer("elu")
class ELU(ExponentialLinear):
    """x for x > 0, alpha (exp(x) - 1) otherwise (torch.nn.ELU)."""

    summary = "x if x > 0 else alpha * (exp(x) - 1)"
    params = (Param("alpha", float, 1.0, "negative saturation value", low=-SCALE_BOUND, high=SCALE_BOUND),)

    def shape(self) -> tuple[float, float, float]:
        return 1.0, self.alpha, 1.0


@register_layer("celu")
class CELU(ExponentialLinear):
    """max(0, x) + min(0, alpha (exp(x / alpha) - 1)) (torch.nn.CELU)."""

    summary = "max(0, x) + min(0, alpha * (exp(x/alpha) - 1))"
    params = (
        Param("alpha", float, 1.0, "negative saturation value", low=0.0, low_open=True, high=SCALE_BOUND),
    )

    def shape(self) -> tuple[float, float, float]:
        return 1.0, self.alpha, self.alpha


@register_layer("selu")
class SELU(ExponentialLinear):
    """scale * elu(x, alpha) with PyTorch's constants alpha = 1.6732632423543772848170429916717 and scale =
    1.0507009873554804934193349852946."""

    summary = "1.0507... * elu(x, alpha=1.6732...)"

    def shape(self) -> tuple[float, float, float]:
        return SELU_SCALE, SELU_ALPHA, 1.0


class _GELUPasses(_FusedPasses):
    """Exact GELU as a network runs it: the forward pass computes ``y = x Phi(x)`` and, while ``x`` and ``Phi(x)``
    are in cache, the derivative ``d = Phi(x) + x phi(x)`` with the operations of :meth:`GELU.df` in the same
    order (the same numbers bit for bit); ``d`` is the state (``x`` is not kept, so the output may be written
    over it), and the backward pass is ``d * dy``. ``ndtr`` runs once a value (about 16 ns, against about 2 for
    everything else GELU does).

    Where the package was built with its compiled loops (:mod:`~normstats.layers.gelu_kernels`), a network runs
    each pass with its NormProp shift and scale and the row summaries of its input and output in one pass over
    memory (:meth:`forward_summed`, :meth:`backward_summed`): the same operations, with libm's (or glibc's vector)
    ``erfc`` and ``exp`` for scipy's ``ndtr`` and numpy's ``exp`` (Phi within ``(x^2/2 + 8)`` units of roundoff
    of scipy's, relative: the module docstring of ``gelu_kernels``)."""

    fresh_output = True
    fresh_grad = True
    writes_over_input = True  # the state is the derivative
    kernels = gelu_kernels
    state_dtype = np.float64

    def __init__(self) -> None:  # GELU (exact) has no parameters
        pass

    @staticmethod
    def _derivative(x: np.ndarray, cdf: np.ndarray) -> np.ndarray:
        d = -0.5 * x  # x * exp(-x^2 / 2) / sqrt(2 pi) + Phi(x), as GELU.df orders it
        d *= x
        np.exp(d, out=d)
        np.multiply(x, d, out=d)
        d /= math.sqrt(2.0 * math.pi)
        d += cdf
        return d

    def forward(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cdf = special.ndtr(x)
        d = self._derivative(x, cdf)
        np.multiply(x, cdf, out=cdf)
        return cdf, d

    def forward_inplace(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        cdf = special.ndtr(x)
        d = self._derivative(x, cdf)
        np.multiply(x, cdf, out=x)
        return x, d

    def backward(self, state: np.ndarray, dy: np.ndarray) -> np.ndarray:
        return np.multiply(state, dy)

    def backward_scaled(self, state: np.ndarray, dy: np.ndarray, scale: float) -> np.ndarray:
        dx = np.multiply(state, dy)  # a new array: scaled in place
        dx *= scale
        return dx

    def backward_inplace(self, state: np.ndarray, dy: np.ndarray, scale: float) -> np.ndarray:
        np.multiply(state, dy, out=dy)
        if scale != 1.0:
            dy *= scale
        return dy


@register_layer("gelu")
class GELU(Elementwise):
    """x Phi(x) (approximate 'none'), or 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) ('tanh')."""

    summary = "x * Phi(x), or its tanh approximation"
    params = (Param("approximate", str, "none", "'none' (erf) or 'tanh'", choices=("none", "tanh")),)

    def f(self, x: np.ndarray) -> np.ndarray:
        if self.approximate == "tanh":
            return 0.5 * x * (1.0 + np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x**3)))
        return x * special.ndtr(x)

    def df(self, x: np.ndarray) -> np.ndarray:
        if self.approximate == "tanh":
            t = np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x**3))
            return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * _SQRT_2_OVER_PI * (1.0 + 3 * 0.044715 * x**2)
        return special.ndtr(x) + x * np.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)

    def passes(self, rng: np.random.Generator) -> Passes:
        return _GELUPasses() if self.approximate == "none" else super().passes(rng)

    def formula(self) -> dict[str, float]:
        if self.approximate == "tanh":
            return {"bp_mean": 0.0}
        # Stein's lemma, E[X g(X)] = E[g'(X)]: E[X Phi] = E[phi] = 1/(2 sqrt(pi)); E[X^2 Phi^2] = E[Phi^2] +
        # 2 E[X Phi phi] = 1/3 + 1/(2 pi sqrt 3); E[(Phi + X phi)^2] = 1/3 + 2/(3 pi sqrt 3).
        mean = 1.0 / (2.0 * math.sqrt(math.pi))
        second = 1.0 / 3.0 + 1.0 / (2.0 * math.pi * math.sqrt(3.0))
        return {
            "fp_mean": mean,
            "fp_std": math.sqrt(second - mean * mean),
            "bp_mean": 0.0,
            "bp_std": math.sqrt(1.0 / 3.0 + 2.0 / (3.0 * math.pi * math.sqrt(3.0))),
        }


@register_layer("silu", aliases=("swish",))
class SiLU(Elementwise):
    """x sigmoid(beta x): torch.nn.SiLU for beta = 1, the Swish of Ramachandran et al. otherwise."""

    summary = "x * sigmoid(beta * x)"
    params = (Param("beta", float, 1.0, "slope inside the sigmoid", low=-SCALE_BOUND, high=SCALE_BOUND),)

    def f(self, x: np.ndarray) -> np.ndarray:
        return x * expit(self.beta * x)

    def df(self, x: np.ndarray) -> np.ndarray:
        s = expit(self.beta * x)
        return s + self.beta * x * s * (1.0 - s)


@register_layer("mish")
class Mish(Elementwise):
    """x tanh(softplus(x)) (torch.nn.Mish)."""

    summary = "x * tanh(softplus(x))"

    def f(self, x: np.ndarray) -> np.ndarray:
        return x * np.tanh(np.logaddexp(0.0, x))

    def df(self, x: np.ndarray) -> np.ndarray:
        t = np.tanh(np.logaddexp(0.0, x))
        return t + x * expit(x) * (1.0 - t * t)


@register_layer("softplus")
class Softplus(Elementwise):
    """log(1 + exp(beta x)) / beta, and x itself where beta x > threshold (torch.nn.Softplus: PyTorch reverts
    to the identity there "for numerical stability", which makes a jump of about exp(-threshold)/beta; the
    references integrate exactly this function, split at threshold/beta)."""

    summary = "log(1 + exp(beta * x)) / beta; x where beta * x > threshold"
    params = (
        # below 1e-4, log(2)/beta dwarfs the std (about 1/2) and quadrature loses the variance to roundoff
        Param("beta", float, 1.0, "sharpness", low=1e-4, high=SCALE_BOUND),
        Param("threshold", float, 20.0, "beta * x above which the output is x", low=0.0, high=SCALE_BOUND),
    )

    @property
    def breakpoints(self) -> tuple[float, ...]:  # type: ignore[override]
        return (self.threshold / self.beta,)

    def f(self, x: np.ndarray) -> np.ndarray:
        bx = self.beta * x
        return np.where(bx > self.threshold, x, np.logaddexp(0.0, np.minimum(bx, self.threshold)) / self.beta)

    def df(self, x: np.ndarray) -> np.ndarray:
        bx = self.beta * x
        return np.where(bx > self.threshold, 1.0, expit(bx))


@register_layer("softsign")
class Softsign(Elementwise):
    """x / (1 + |x|); gradient 1 / (1 + |x|)^2 (its second derivative jumps at 0)."""

    summary = "x / (1 + |x|)"
    breakpoints = (0.0,)

    def f(self, x: np.ndarray) -> np.ndarray:
        return x / (1.0 + np.abs(x))

    def df(self, x: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.abs(x)) ** 2

    def formula(self) -> dict[str, float]:
        return {"fp_mean": 0.0, "bp_mean": 0.0}  # odd function


@register_layer("tanh")
class Tanh(Elementwise):
    """tanh(x); gradient 1 - tanh(x)^2."""

    summary = "tanh(x)"

    def f(self, x: np.ndarray) -> np.ndarray:
        return np.tanh(x)

    def df(self, x: np.ndarray) -> np.ndarray:
        return 1.0 - np.tanh(x) ** 2

    def streaming_sampler(self, rng: np.random.Generator) -> _TanhSampler:
        return _TanhSampler()

    def streaming_conditional_sampler(self, rng: np.random.Generator) -> _TanhSampler:
        return _TanhSampler()

    def formula(self) -> dict[str, float]:
        return {"fp_mean": 0.0, "bp_mean": 0.0}  # odd function


class _TanhSampler(_Streaming):
    """tanh in the hot loop: one tanh, and the gradient ``1 - y^2`` from it."""

    def compute(self, x: np.ndarray, y: np.ndarray, grad: np.ndarray) -> None:
        np.tanh(x, out=y)
        np.multiply(y, y, out=grad)
        np.subtract(1.0, grad, out=grad)


@register_layer("log_sigmoid", aliases=("logsigmoid",))
class LogSigmoid(Elementwise):
    """log(1 / (1 + exp(-x))) = -softplus(-x); gradient sigmoid(-x)."""

    summary = "log(sigmoid(x))"

    def f(self, x: np.ndarray) -> np.ndarray:
        return -np.logaddexp(0.0, -x)

    def df(self, x: np.ndarray) -> np.ndarray:
        return expit(-x)


class _SigmoidSampler(_Streaming):
    """Sigmoid in the hot loop. ``1 / (1 + exp(-x))`` is about three times faster than
    ``scipy.special.expit`` and agrees with it to rounding for every x a normal draw reaches (|x| < 40)."""

    def compute(self, x: np.ndarray, y: np.ndarray, grad: np.ndarray) -> None:
        np.negative(x, out=y)
        np.exp(y, out=y)
        y += 1.0
        np.divide(1.0, y, out=y)  # numpy's reciprocal is not vectorized: twice as slow
        np.subtract(1.0, y, out=grad)
        grad *= y


@register_layer("sigmoid", aliases=("logistic",))
class Sigmoid(Elementwise):
    """1 / (1 + exp(-x)); gradient s(x) (1 - s(x))."""

    summary = "1 / (1 + exp(-x))"

    def f(self, x: np.ndarray) -> np.ndarray:
        return expit(x)

    def df(self, x: np.ndarray) -> np.ndarray:
        s = expit(x)
        return s * (1.0 - s)

    def forward_backward(self, x, dy, u):  # type: ignore[no-untyped-def]
        s = expit(x)
        return s, s * (1.0 - s) * dy

    def streaming_sampler(self, rng: np.random.Generator) -> _SigmoidSampler:
        return _SigmoidSampler()

    def streaming_conditional_sampler(self, rng: np.random.Generator) -> _SigmoidSampler:
        return _SigmoidSampler()

    def formula(self) -> dict[str, float]:
        # s(x) - 1/2 is odd, so E s(X) = 1/2 exactly; fp std and bp std have no closed form (quadrature).
        return {"fp_mean": 0.5, "bp_mean": 0.0}


#: The activations of issue 6 (``tests/cases.py`` and ``normstats audit`` use this list).
ACTIVATIONS: tuple[str, ...] = (
    "identity", "relu", "leaky_relu", "elu", "celu", "selu", "gelu", "silu", "mish", "softplus", "softsign",
    "tanh", "hardtanh", "relu6", "hardsigmoid", "hardswish", "log_sigmoid", "sigmoid",
)


