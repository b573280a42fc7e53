"""Multi-head self-attention over a sequence of ``T`` tokens of ``D`` features, forward and backward exactly.

A draw is one sequence, laid out ``(T, D)`` row-major (token after token). With ``H`` heads of ``d = D / H``
features and four ``D x D`` projections drawn as a linear layer's weights (:mod:`normstats.layers.weights`;
``q_init=zeros`` sets ``W_q`` to 0)::

    Q = X W_q^T,  K = X W_k^T,  V = X W_v^T            (T x D each, split into H heads of d columns)
    S_h = c Q_h K_h^T                                    (T x T logits; c = 1/sqrt(d), 1/d (muP) or a number)
    P_h = softmax(S_h) over the keys (row by row; causal: key s > query t masked out)
    O = [P_1 V_1, ..., P_H V_H],   Y = O W_o^T

as ``torch.nn.MultiheadAttention`` (no biases, no dropout) computes it. Backward, from ``dY``::

    dO = dY W_o,   dV_h = P_h^T dO_h,   dP_h = dO_h V_h^T,
    dS_h = P_h * (dP_h - rowsum(dP_h * P_h)),   dQ_h = c dS_h K_h,   dK_h = c dS_h^T Q_h,
    dX = dQ W_q + dK W_k + dV W_v

the whole Jacobian (softmax and all four projections), no shortcut. Every product runs on
``(draws, H, T, d)`` arrays at once.

References. ``x -> -x`` leaves ``S`` (and ``P``) as they are and flips ``V`` and so ``Y``: fp mean is 0, and bp
mean is 0 (``dy`` has mean 0). With ``q_init=zeros`` the logits are 0, so ``P`` averages the values uniformly
(over all ``T`` keys, or the ``t + 1`` first for query ``t`` when causal): ``Y_t = W_o W_v mean_s X_s``, and
``dX_s = W_v^T W_o^T sum_t P_ts dY_t`` (the paths through ``Q`` and ``K`` vanish: ``dX`` takes ``dQ`` through
``W_q = 0``, and ``dK = c dS^T Q = 0``). For i.i.d. N(0, 1) tokens and ``dy`` the pooled variances are then
``|W_o W_v|^2 / D`` times ``1 / T`` (or ``H_T / T`` causal, ``H_T = sum_{t=1}^T 1/t``: the mean over queries of
``1 / (t + 1)``, and over keys of ``sum_{t >= s} 1 / (t + 1)^2``). ``|W_o W_v|^2`` is the same for every draw of
the weights only for a raw orthogonal init (``g^4 D`` with gain ``g``: a product of scaled orthogonal
matrices, times ``value_gain^2 out_gain^2``), so that is where the formula is given. (Over random unit-norm rows, ``E[W_o^T W_o] = I`` and
``E|W_o W_v|^2 = D``: the same figures on average over inits, not for one.)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from normstats.errors import ParameterError
from normstats.layers.base import Layer, Passes, Sampler
from normstats.layers.linear import MAX_WEIGHTS
from normstats.layers.weights import draw_weight, resolve_weight_params, weight_params
from normstats.params import Param
from normstats.registry import register_layer

#: Most attention logits (``H T^2``) one sequence may hold: 2^22 float64 values, 32 MiB. The passes hold the
#: probabilities of every sequence of a chunk for the backward pass, and about two more arrays of that size
#: while they run; a network's chunk is sized from this (``held_values``), so it is the bound per draw.
MAX_SCORES = 1 << 22
LOGIT_SCALES = ("sqrt", "mup")


def _parse_logit_scale(text: str) -> str | None:
    """``sqrt``, ``mup`` or a positive number (as ``%g``); ``None`` for anything else."""
    text = text.strip()
    if text in LOGIT_SCALES:
        return text
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value) or not 0.0 < value <= 1e6:
        return None
    return f"{value:g}"


def harmonic(n: int) -> float:
    """``H_n = sum_{t=1}^n 1 / t``."""
    return math.fsum(1.0 / t for t in range(1, n + 1))


class AttentionState(tuple):  # type: ignore[type-arg]
    """The forward pass's state: ``(q, k, v, p)`` for the backward pass, and ``logit_std``: per sequence, the std
    (ddof 0) of its scaled logits ``S = c Q K^T`` pooled over heads, queries and keys (the keys a causal query
    sees), which the forward pass sums as it goes (``O(H T^2)``; a network tallies it beside the entropy)."""

    logit_std: np.ndarray

    def __new__(cls, q: np.ndarray, k: np.ndarray, v: np.ndarray, p: np.ndarray, logit_std: np.ndarray
                ) -> AttentionState:
        state = super().__new__(cls, (q, k, v, p))
        state.logit_std = logit_std
        return state


class _AttentionPasses(Passes):
    """The forward pass keeps ``Q``, ``K``, ``V`` (by head) and ``P`` for the backward pass
    (:class:`AttentionState`)."""

    fresh_output = True
    fresh_grad = True

    def __init__(self, w_qkv: np.ndarray, w_o: np.ndarray, tokens: int, heads: int, scale: float,
                 causal: bool) -> None:
        self.w_qkv = w_qkv  # (3D, D): W_q, W_k, W_v stacked
        self.w_o = w_o
        self.tokens = tokens
        self.heads = heads
        self.scale = scale
        self.causal = causal
        d_model = w_o.shape[0]
        self.d_head = d_model // heads
        self.mask = np.triu(np.ones((tokens, tokens), dtype=bool), 1) if causal else None

    def _split(self, a: np.ndarray) -> np.ndarray:
        """``(rows, T, D) -> (rows, H, T, d)``."""
        rows = a.shape[0]
        return a.reshape(rows, self.tokens, self.heads, self.d_head).transpose(0, 2, 1, 3)

    def _merge(self, a: np.ndarray) -> np.ndarray:
        """``(rows, H, T, d) -> (rows, T, D)``."""
        rows = a.shape[0]
        return a.transpose(0, 2, 1, 3).reshape(rows, self.tokens, self.heads * self.d_head)

    def _heads(self, a: np.ndarray, part: int) -> np.ndarray:
        """Part ``part`` (Q, K, V: 0, 1, 2) of a ``(rows, T, parts, H, d)`` array as a ``(rows, H, T, d)`` view,
        no copy: its matrices have unit column stride, so BLAS reads and writes them where they lie."""
        return a[:, :, part].transpose(0, 2, 1, 3)

    def forward(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, Any]:
        rows, t, d_model, h = len(x), self.tokens, self.w_o.shape[0], self.heads
        qkv = (x.reshape(rows * t, d_model) @ self.w_qkv.T).reshape(rows, t, 3, h, self.d_head)
        q, k, v = (self._heads(qkv, i) for i in range(3))
        s = q @ k.transpose(0, 1, 3, 2)
        s *= self.scale
        logit_std = self._logit_std(s)
        if self.mask is not None:
            s[:, :, self.mask] = -np.inf
        s -= s.max(axis=-1, keepdims=True)
        np.exp(s, out=s)
        s /= s.sum(axis=-1, keepdims=True)
        p = s
        o = np.empty((rows, t, 1, h, self.d_head))  # the heads' outputs side by side, written in place
        np.matmul(p, v, out=self._heads(o, 0))
        y = o.reshape(rows * t, d_model) @ self.w_o.T
        return y.reshape(rows, t * d_model), AttentionState(q, k, v, p, logit_std)

    def _logit_std(self, s: np.ndarray) -> np.ndarray:
        """Per sequence, the std of the logits ``s`` (``(rows, H, T, T)``) over the (head, query, key) entries a
        query sees, from their sum and sum of squares (one pass each, no array of ``s``'s size)."""
        if self.mask is None:
            count = s.shape[1] * s.shape[2] * s.shape[3]
            total, squares = s.sum(axis=(1, 2, 3)), np.einsum("rhqk,rhqk->r", s, s)
        else:
            seen = (~self.mask).astype(s.dtype)
            count = s.shape[1] * int(np.count_nonzero(seen))
            total, squares = np.einsum("rhqk,qk->r", s, seen), np.einsum("rhqk,rhqk,qk->r", s, s, seen)
        mean = total / count
        return np.sqrt(np.maximum(squares / count - mean * mean, 0.0))

    def backward(self, state: Any, dy: np.ndarray) -> np.ndarray:
        q, k, v, p = state
        rows, t, d_model, h = len(dy), self.tokens, self.w_o.shape[0], self.heads
        d_o = self._heads((dy.reshape(rows * t, d_model) @ self.w_o).reshape(rows, t, 1, h, self.d_head), 0)
        d_qkv = np.empty((rows, t, 3, h, self.d_head))  # dQ, dK, dV written in place, as W_qkv's rows lie
        np.matmul(p.transpose(0, 1, 3, 2), d_o, out=self._heads(d_qkv, 2))
        d_p = d_o @ v.transpose(0, 1, 3, 2)
        d_p -= np.einsum("rhqk,rhqk->rhq", d_p, p)[..., None]  # rowsum(dP * P), without the product's array
        d_p *= p
        d_p *= self.scale  # c dS
        np.matmul(d_p, k, out=self._heads(d_qkv, 0))
        np.matmul(d_p.transpose(0, 1, 3, 2), q, out=self._heads(d_qkv, 1))
        dx = d_qkv.reshape(rows * t, 3 * d_model) @ self.w_qkv
        return dx.reshape(rows, t * d_model)


class _PassesSampler:
    """``(x, dy, u) -> (y, dx)`` through a layer's passes (picklable, unlike a closure)."""

    def __init__(self, passes: Passes) -> None:
        self.passes = passes

    def __call__(self, x: np.ndarray, dy: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y, state = self.passes.forward(x, u)
        return y, self.passes.backward(state, dy)


@register_layer("attention", aliases=("self_attention", "mha"))
class Attention(Layer):
    """Multi-head self-attention over ``T`` tokens of ``D`` features (module docstring): four ``D x D``
    projections drawn like a linear layer's weights, softmax over the keys per head."""

    summary = "multi-head self-attention over T tokens of D features; Q, K, V, O projections, softmax over keys"
    params = (
        Param("tokens", int, 8, "tokens T of the sequence", low=1, high=4096),
        Param("features", int, 16, "features D of a token (the model width)", low=1, high=16384),
        Param("heads", int, 1, "heads H (D / H features each)", low=1, high=16384),
        Param("causal", str, "false", "mask the keys after each query", choices=("false", "true")),
        Param("logit_scale", str, "sqrt", "the logits' factor c: sqrt is 1/sqrt(D/H), mup is 1/(D/H)",
              parse=_parse_logit_scale, syntax="sqrt, mup or a number in (0, 1e6]"),
        Param("q_init", str, "normal", "zeros: W_q = 0 (uniform attention at init)", choices=("normal", "zeros")),
        *weight_params("fan-in"),
        Param("value_gain", float, None, "W_v's extra factor, on top of init, normalize and gain (DeepNorm's beta)",
              low=0.0, high=1e6, low_open=True, default_text="1"),
        Param("out_gain", float, None, "W_o's extra factor, on top of init, normalize and gain (GPT-2's "
              "1/sqrt(2N), DeepNorm's beta)", low=0.0, high=1e6, low_open=True, default_text="1"),
    )

    def resolve(self, values: dict[str, Any]) -> dict[str, Any]:
        d, h, t = values["features"], values["heads"], values["tokens"]
        if d % h:
            raise ParameterError(
                f"parameter --heads of layer 'attention' must divide the features D = {d}; got {h}"
            )
        if h * t * t > MAX_SCORES:
            raise ParameterError(
                f"layer 'attention' holds H T^2 = {h} * {t}^2 = {h * t * t:,} logits a sequence "
                f"({h * t * t * 8 / 2**20:,.0f} MiB); the bound is {MAX_SCORES:,} ({MAX_SCORES * 8 / 2**20:.0f} MiB): "
                "fewer tokens or heads"
            )
        if 4 * d * d > MAX_WEIGHTS:
            raise ParameterError(
                f"parameter --features of layer 'attention' must keep its four D x D projections within "
                f"{MAX_WEIGHTS:,} weights; got D = {d} ({4 * d * d:,})"
            )
        for name in ("value_gain", "out_gain"):  # kept only when given, so other settings keep their names
            if values.get(name) is None:
                values.pop(name, None)
        return resolve_weight_params(self.name, values, d)

    @property
    def in_dim(self) -> int:
        return self.values["tokens"] * self.values["features"]

    @property
    def out_dim(self) -> int:
        return self.in_dim

    @property
    def held_values(self) -> int:
        """Values a sequence's passes hold besides its input and output: Q, K, V, P and the backward's
        temporaries (two T x T arrays per head, three T x D)."""
        v = self.values
        return 6 * v["tokens"] * v["features"] + 2 * v["heads"] * v["tokens"] ** 2

    @property
    def weight_count(self) -> int:
        return 4 * self.values["features"] ** 2

    @property
    def scale(self) -> float:
        """The logits' factor ``c``."""
        v = self.values
        d_head = v["features"] // v["heads"]
        if v["logit_scale"] == "sqrt":
            return 1.0 / math.sqrt(d_head)
        if v["logit_scale"] == "mup":
            return 1.0 / d_head
        return float(v["logit_scale"])

    def weights(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """``W_q, W_k, W_v, W_o``, drawn in that order (``W_q`` is drawn and then zeroed for ``q_init=zeros``,
        so the other three are the same as with ``q_init=normal`` on the same seed); ``W_v`` and ``W_o`` then
        times ``value_gain`` and ``out_gain`` (the recipes of :mod:`normstats.published.recipes` scale them apart
        from ``W_q`` and ``W_k``)."""
        v = self.values
        d = v["features"]
        drawn = [draw_weight(rng, d, d, 1, v["init"], v["normalize"], v.get("gain", 1.0)).reshape(d, d)
                 for _ in range(4)]
        if v["q_init"] == "zeros":
            drawn[0] = np.zeros((d, d))
        drawn[2] *= v.get("value_gain", 1.0)
        drawn[3] *= v.get("out_gain", 1.0)
        return drawn[0], drawn[1], drawn[2], drawn[3]

    def passes(self, rng: np.random.Generator) -> Passes:
        w_q, w_k, w_v, w_o = self.weights(rng)
        v = self.values
        return _AttentionPasses(np.concatenate([w_q, w_k, w_v]), w_o, v["tokens"], v["heads"], self.scale,
                                v["causal"] == "true")

    def sampler(self, rng: np.random.Generator) -> Sampler:
        return _PassesSampler(self.passes(rng))

    def formula(self) -> dict[str, float]:
        v = self.values
        out = {"fp_mean": 0.0, "bp_mean": 0.0}
        if v["q_init"] == "zeros" and v["init"] == "orthogonal" and v["normalize"] == "none":
            t = v["tokens"]
            share = harmonic(t) / t if v["causal"] == "true" else 1.0 / t
            g2 = v.get("gain", 1.0) ** 2 * v.get("value_gain", 1.0) * v.get("out_gain", 1.0)
            out["fp_std"] = out["bp_std"] = g2 * math.sqrt(share)
        return out
