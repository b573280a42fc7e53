"""The layers that end a token sequence, as a classifier head does: ``mean`` (the mean over the ``T`` tokens)
and ``token`` (one token, by index). A draw is one sequence laid out ``(T, D)`` row-major; the output is one
token's ``D`` features.

References, for i.i.d. N(0, 1) inputs and upstream gradients. ``mean``: ``y = (1/T) sum_t x_t`` has variance
``1 / T`` (the mean of ``T`` independent values) and ``dx_t = dy / T``, so fp std ``1 / sqrt(T)`` and bp std
``1 / T``. ``token``: ``y = x_i`` has std 1, and ``dx`` is ``dy`` at token ``i`` and 0 at the ``T - 1`` others,
so the pooled bp variance is ``1 / T``. Both are linear and odd: fp and bp means 0.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from normstats.errors import ParameterError
from normstats.layers.base import ConditionalSampler, ConstantRowMean, Layer, Passes
from normstats.params import Param
from normstats.registry import register_layer

_SEQUENCE = (
    Param("tokens", int, 8, "tokens T of the sequence", low=1, high=1 << 20),
    Param("features", int, 16, "features D of a token", low=1, high=1 << 20),
)


class _SequenceEnd(Layer):
    """A linear map from a ``(T, D)`` sequence to ``D`` values; the Jacobian does not depend on ``x``."""

    @property
    def in_dim(self) -> int:
        return self.values["tokens"] * self.values["features"]

    @property
    def out_dim(self) -> int:
        return self.values["features"]

    def forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def backward(self, dy: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def forward_backward(self, x: np.ndarray, dy: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.forward(x), self.backward(dy)

    def passes(self, rng: np.random.Generator) -> Passes:
        return _SequenceEndPasses(self)

    def conditional_sampler(self, rng: np.random.Generator) -> ConditionalSampler:
        return _ConstantConditional(self, full=True)

    def streaming_conditional_sampler(self, rng: np.random.Generator) -> ConditionalSampler:
        return _ConstantConditional(self, full=False)

    def formula(self) -> dict[str, float]:
        return {"fp_mean": 0.0, "bp_mean": 0.0}


class _SequenceEndPasses(Passes):
    fresh_output = True
    fresh_grad = True

    def __init__(self, layer: _SequenceEnd) -> None:
        self.layer = layer

    def forward(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, None]:
        return self.layer.forward(x), None

    def backward(self, state: None, dy: np.ndarray) -> np.ndarray:
        return self.layer.backward(dy)


class _ConstantConditional:
    """``g_i = sum_j J_ji^2``: the same for every draw (the Jacobian is fixed): ``1 / T^2`` at every input of
    ``mean``; for ``token``, 1 at the chosen token and 0 elsewhere. ``full=False`` (the engine's streaming
    form) gives one column of its row mean instead (``1 / T^2``, ``1 / T``)."""

    def __init__(self, layer: _SequenceEnd, full: bool) -> None:
        self.layer = layer
        self.full = full
        t = layer.values["tokens"]
        self.g = ConstantRowMean(1.0 / (t * t) if layer.name == "mean" else 1.0 / t)
        ones = np.ones((1, layer.out_dim))
        self.row = layer.backward(ones) ** 2 if layer.name == "token" else np.full((1, layer.in_dim), 1.0 / (t * t))

    def __call__(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y = self.layer.forward(x)
        return (y, np.repeat(self.row, len(x), axis=0)) if self.full else (y, self.g(len(x)))


@register_layer("mean", aliases=("token_mean", "mean_pool"))
class TokenMean(_SequenceEnd):
    """``y = (1/T) sum_t x_t``: a sequence's mean token; ``dx_t = dy / T``."""

    summary = "the mean of a sequence's T tokens (ends a sequence); fp std 1/sqrt(T), bp std 1/T"
    params = _SEQUENCE

    def forward(self, x: np.ndarray) -> np.ndarray:
        v = self.values
        return x.reshape(len(x), v["tokens"], v["features"]).mean(axis=1)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        t = self.values["tokens"]
        return np.repeat(dy[:, None, :] / t, t, axis=1).reshape(len(dy), -1)

    def formula(self) -> dict[str, float]:
        t = self.values["tokens"]
        return {**super().formula(), "fp_std": 1.0 / math.sqrt(t), "bp_std": 1.0 / t}


@register_layer("token", aliases=("select_token",))
class Token(_SequenceEnd):
    """``y = x_i``: one token of a sequence (``index`` counts from 0; negative from the end, as in Python);
    ``dx`` is ``dy`` at token ``i`` and 0 elsewhere."""

    summary = "one token of a sequence by index (ends a sequence); fp std 1, bp std 1/sqrt(T)"
    params = (*_SEQUENCE, Param("index", int, 0, "the token (negative: from the end)", low=-(1 << 20),
                                high=(1 << 20) - 1))
    positional = "index"  # token(3) in a network spec

    def resolve(self, values: dict[str, Any]) -> dict[str, Any]:
        t, i = values["tokens"], values["index"]
        if not -t <= i < t:
            raise ParameterError(
                f"parameter --index of layer 'token' must be in [{-t}, {t - 1}] for a sequence of {t} tokens; "
                f"got {i}"
            )
        return values

    @property
    def position(self) -> int:
        return self.values["index"] % self.values["tokens"]

    def forward(self, x: np.ndarray) -> np.ndarray:
        d = self.values["features"]
        i = self.position
        return x[:, i * d : (i + 1) * d].copy()

    def backward(self, dy: np.ndarray) -> np.ndarray:
        v = self.values
        dx = np.zeros((len(dy), v["tokens"] * v["features"]))
        i, d = self.position, v["features"]
        dx[:, i * d : (i + 1) * d] = dy
        return dx

    def formula(self) -> dict[str, float]:
        return {**super().formula(), "fp_std": 1.0, "bp_std": 1.0 / math.sqrt(self.values["tokens"])}
