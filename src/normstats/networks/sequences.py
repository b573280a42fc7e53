"""Token geometry of a network on a token sequence (``--input TxD``): correlated input tokens, and the per-draw
figures tallied beside each layer's fp and bp statistics.

* ``--input-correlation RHO``: every input token is ``sqrt(RHO) z + sqrt(1 - RHO) e_t`` with ``z`` shared and
  ``e_t`` its own, all N(0, I) (:func:`correlate_tokens`);
* ``token_cosine``: per input, the mean over pairs of distinct tokens ``s != t`` of the cosine between the layer's
  output tokens ``y_s`` and ``y_t``: with ``u_t = y_t / |y_t|``, ``sum_{s != t} u_s . u_t = |sum_t u_t|^2 - T``,
  so it is ``(|sum_t u_t|^2 - T) / (T (T - 1))``, ``O(T D)`` a draw. A token of norm 0 (no direction) counts as
  ``u_t = 0``. Its se is over draws (inputs), like every figure's;
* ``attention_entropy``: per input, for an attention layer, the mean over heads and queries of the entropy of
  the query's attention weights (natural log) divided by ``log T``: 1 for uniform attention over all ``T`` keys,
  0 when every query attends to one key. (A causal query ``t`` sees ``t + 1`` keys, so it is below 1 even when
  uniform.)
* ``attention_logit_std``: per input, for an attention layer, the std (ddof 0) of its scaled logits
  ``S = c Q K^T``, pooled over heads, queries and the keys each query sees (the attention passes sum them as they
  run: :class:`~normstats.layers.attention.AttentionState`). Its se is over draws. With fan-in weights on
  unit-variance features, ``E[S_qk^2] = c^2 d_head`` (``W_q``, ``W_k`` independent, ``d_head`` products of
  unit variance): about 1 under ``logit_scale=sqrt`` and ``d_head^(-1/2)`` under ``mup`` (``1/d_head``), so a
  width sweep at fixed heads shows slope 0 and -1/2 (muP's ``1/d`` attention, Yang et al. 2022, Tensor Programs
  V); 0 in every draw for ``q_init=zeros``.

All need ``T >= 2``.
"""

from __future__ import annotations

import math

import numpy as np


#: numpy 2's ``vecdot`` (the tokens' squared norms in about half ``einsum``'s time), where it exists.
_VECDOT = hasattr(np, "vecdot")


def correlate_tokens(x: np.ndarray, tokens: int, rho: float) -> np.ndarray:
    """Rows of ``T`` i.i.d. N(0, I) tokens ``e_t`` mapped to tokens with the law of ``sqrt(rho) z +
    sqrt(1 - rho) e_t`` (``z`` shared, N(0, I)): every token N(0, I), any two with correlation ``rho`` per
    feature. Written with the tokens' mean ``m`` (``sqrt(T) m`` ~ N(0, I), independent of the ``e_t - m``) as
    ``sqrt(1 - rho) (e_t - m) + sqrt(rho + (1 - rho) / T) sqrt(T) m``: the same Gaussian law (variance
    ``(1 - rho)(1 - 1/T) + rho + (1 - rho)/T = 1``, covariance ``-(1 - rho)/T + rho + (1 - rho)/T = rho``),
    from the ``T D`` normals a draw already has instead of ``(T + 1) D``. A new array."""
    seq = x.reshape(len(x), tokens, -1)
    mean = seq.mean(axis=1, keepdims=True)
    a = math.sqrt(1.0 - rho)
    b = math.sqrt(tokens * rho + 1.0 - rho)
    return (a * seq + (b - a) * mean).reshape(x.shape)


def token_cosine(y: np.ndarray, tokens: int) -> np.ndarray:
    """Per row of ``y`` (``T`` tokens), the mean cosine between two distinct tokens (module docstring)."""
    seq = y.reshape(len(y), tokens, -1)
    norms = np.sqrt(np.vecdot(seq, seq) if _VECDOT else np.einsum("rtd,rtd->rt", seq, seq))
    inv = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    total = (inv[:, None, :] @ seq)[:, 0]  # sum_t u_t: a product (BLAS), about half einsum's time
    return (np.einsum("rd,rd->r", total, total) - np.count_nonzero(norms > 0, axis=1)) / (tokens * (tokens - 1))


def attention_entropy(p: np.ndarray) -> np.ndarray:
    """Per row, the mean over heads and queries of the attention weights' entropy over ``log T``, from the
    weights ``p`` of shape ``(rows, H, T, T)`` (each query's row sums to 1; ``0 log 0 = 0``)."""
    tokens = p.shape[-1]
    logs = np.log(p, out=np.zeros_like(p), where=p > 0)
    return -np.einsum("rhqk,rhqk->r", p, logs) / (p.shape[1] * tokens * math.log(tokens))
