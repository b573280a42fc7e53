"""Dropout with keep probability p: one mask for the forward and the backward pass; ``--convention`` picks the
scale of kept values (``--constants`` is the option of `simulate` and `table` that picks which normalizing
constants to show)."""

from __future__ import annotations

import math

import numpy as np

from normstats.layers.base import ConditionalSampler, DiagonalSampler, Layer, Passes
from normstats.params import Param
from normstats.registry import register_layer


@register_layer("dropout")
class Dropout(Layer):
    """Keep each value with probability p and scale kept values by 1/sqrt(p) (``sqrt``, the NormProp
    convention) or 1/p (``inverted``, what PyTorch and JAX do); the gradient uses the same mask and scale."""

    summary = "keep with probability p, scale kept values"
    params = (
        Param("p", float, 0.5, "keep probability", low=0.0, high=1.0, low_open=True),
        Param("convention", str, "sqrt", "scale of kept values: 1/sqrt(p) or 1/p", choices=("sqrt", "inverted")),
    )
    in_dim = 1  # type: ignore[assignment]
    out_dim = 1  # type: ignore[assignment]
    n_uniform = 1  # type: ignore[assignment]

    @property
    def scale(self) -> float:
        p = self.values["p"]
        return 1.0 / math.sqrt(p) if self.values["convention"] == "sqrt" else 1.0 / p

    def forward_backward(self, x, dy, u):  # type: ignore[no-untyped-def]
        keep = np.where(u < self.values["p"], self.scale, 0.0)
        return x * keep, dy * keep

    def conditional_sampler(self, rng: np.random.Generator) -> ConditionalSampler:
        return DiagonalSampler(self.forward_backward, self.out_dim)  # dx_i = keep_i dy_i

    def passes(self, rng: np.random.Generator) -> Passes:
        return _DropoutPasses(self)

    def formula(self) -> dict[str, float]:
        # y = x m c with m ~ Bernoulli(p) independent of x: mean 0, E y^2 = p c^2 (1 for c = 1/sqrt(p),
        # 1/p for c = 1/p). The backward pass is the same product with dy in place of x.
        std = math.sqrt(self.values["p"]) * self.scale
        return {"fp_mean": 0.0, "fp_std": std, "bp_mean": 0.0, "bp_std": std}


class _DropoutPasses(Passes):
    """One mask from ``u`` for the forward pass, kept for the backward pass."""

    def __init__(self, layer: Dropout) -> None:
        self.layer = layer

    def forward(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keep = np.where(u < self.layer.values["p"], self.layer.scale, 0.0)
        return x * keep, keep

    def backward(self, state: np.ndarray, dy: np.ndarray) -> np.ndarray:
        return dy * state
