"""A fully connected layer y = W x whose weight rows (fan-in) or columns (fan-out) lie on the l2 unit sphere."""

from __future__ import annotations

import math

import numpy as np

from normstats.layers.base import Layer, Sampler
from normstats.params import Param
from normstats.registry import register_layer


class _LinearSampler:
    """The forward/backward pass of a fixed weight matrix (picklable, unlike a closure)."""

    def __init__(self, weight: np.ndarray) -> None:
        self.weight = weight

    def __call__(self, x: np.ndarray, dy: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return x @ self.weight.T, dy @ self.weight


@register_layer("linear", aliases=("fc", "dense", "inner_product"))
class Linear(Layer):
    """y = W x with W of shape (fan_out, fan_in), drawn once per run from N(0, 1) and normalized.

    ``fan-in``: each row of W has unit l2 norm, so every output is N(0, 1) exactly. ``fan-out``: each column
    has unit norm, so every input gradient has variance 1 exactly. The statistics pool all outputs (or all
    input gradients) of a draw; one draw is one input vector x with its upstream gradient dy.
    """

    summary = "y = W x, rows or columns of W on the l2 unit sphere"
    params = (
        Param("fan_in", int, 128, "inputs per output", low=1, high=16384),
        Param("fan_out", int, 64, "outputs", low=1, high=16384),
        Param("normalize", str, "fan-in", "unit l2 norm over rows (fan-in) or columns (fan-out)",
              choices=("fan-in", "fan-out")),
    )

    @property
    def in_dim(self) -> int:
        return self.values["fan_in"]

    @property
    def out_dim(self) -> int:
        return self.values["fan_out"]

    def sampler(self, rng: np.random.Generator) -> Sampler:
        w = rng.standard_normal((self.values["fan_out"], self.values["fan_in"]))
        axis = 1 if self.values["normalize"] == "fan-in" else 0
        w /= np.linalg.norm(w, axis=axis, keepdims=True)
        return _LinearSampler(w)

    def formula(self) -> dict[str, float]:
        # For a fixed W, y_i ~ N(0, |W_i.|^2) and dx_j ~ N(0, |W_.j|^2). Pooled over i (or j) the variance is
        # the mean squared row (column) norm, and the sum of all squared entries is fan_out with unit rows,
        # fan_in with unit columns. Hence with fan-in: fp var 1, bp var fan_out/fan_in; with fan-out:
        # fp var fan_in/fan_out, bp var 1. These hold for every W the normalization can produce.
        ratio = self.values["fan_out"] / self.values["fan_in"]
        fp_var, bp_var = (1.0, ratio) if self.values["normalize"] == "fan-in" else (1.0 / ratio, 1.0)
        return {"fp_mean": 0.0, "fp_std": math.sqrt(fp_var), "bp_mean": 0.0, "bp_std": math.sqrt(bp_var)}
