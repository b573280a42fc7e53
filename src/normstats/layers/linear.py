"""A fully connected layer ``y = W x``, W drawn once per run from a named init and optionally l2-normalized."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from normstats.errors import ParameterError
from normstats.layers.base import ConditionalSampler, Layer, Passes, Sampler
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

    def formula(self) -> dict[str, float]:
        v = self.values
        out: dict[str, float] = {"fp_mean": 0.0, "bp_mean": 0.0}
        sq = squared_norm(v["fan_out"], v["fan_in"], 1, v["init"], v["normalize"], v.get("gain", 1.0))
        if sq is not None:
            out.update(fp_std=math.sqrt(sq / v["fan_out"]), bp_std=math.sqrt(sq / v["fan_in"]))
        return out
