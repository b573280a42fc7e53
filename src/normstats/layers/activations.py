"""Elementwise activations. Each defines ``f``, its derivative as frameworks compute it, and its kinks."""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from normstats.layers.base import Elementwise
from normstats.registry import register_layer


@register_layer("relu")
class ReLU(Elementwise):
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

    def formula(self) -> dict[str, float]:
        # X ~ N(0,1): E max(X,0) = phi(0) = 1/sqrt(2 pi); E max(X,0)^2 = 1/2; E 1[X>0]^2 = 1/2.
        return {
            "fp_mean": 1.0 / math.sqrt(2.0 * math.pi),
            "fp_std": math.sqrt(0.5 - 1.0 / (2.0 * math.pi)),
            "bp_mean": 0.0,
            "bp_std": math.sqrt(0.5),
        }


@register_layer("sigmoid", aliases=("logistic",))
class Sigmoid(Elementwise):
    """1 / (1 + exp(-x)); gradient s(x) (1 - s(x))."""

    summary = "1 / (1 + exp(-x))"

    def f(self, x: np.ndarray) -> np.ndarray:
        return special.expit(x)

    def df(self, x: np.ndarray) -> np.ndarray:
        s = special.expit(x)
        return s * (1.0 - s)

    def forward_backward(self, x, dy, u):  # type: ignore[no-untyped-def]
        s = special.expit(x)
        return s, s * (1.0 - s) * dy

    def formula(self) -> dict[str, float]:
        # s(x) - 1/2 is odd, so E s(X) = 1/2 exactly; fp std and bp std have no closed form (quadrature).
        return {"fp_mean": 0.5, "bp_mean": 0.0}
