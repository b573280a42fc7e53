"""Two correlated inputs a draw through a vector network (``--input N --input-correlation RHO``).

Every draw's input ``x1`` is the engine's (so every fp and bp statistic is the one the run without the option
gives, number for number); its partner is ``x2 = RHO x1 + sqrt(1 - RHO^2) e`` with ``e ~ N(0, I)`` independent of
``x1``, so ``x2 ~ N(0, I)`` and every pair of coordinates ``(x1_i, x2_i)`` has correlation ``RHO``. Both go
forward through the same weights (and the same dropout masks: the draw's uniforms); only ``x1`` goes back.

``e`` is not one of the engine's streams (adding one would move the blocks, hence every draw, of the run): it
is a function of the draw's own ``x1``, by a counter-based generator keyed by a hash of it (:func:`partner`), so
it is the same however the draws are chunked or shared between workers, and independent of ``x1`` for every
purpose short of inverting the hash. Under ``--method qmc`` ``x1`` is a quasi-random point and ``e``
pseudo-random.

Per draw and layer, the tallied figure is the cosine of the two outputs, ``sum(y1 y2) / sqrt(sum y1^2 sum
y2^2)`` (not centred): at infinite width it tends to ``E[y1 y2] / E[y^2]``, which for the output of a linear
layer (centred) is the mean-field correlation ``c^l`` of Poole et al. (2016) and for an activation's output is
the ``c`` the next linear layer inherits (a linear layer maps the uncentred second moments ``E[y1 y2]`` and
``E[y^2]`` by the same factor), so the figures along the network follow the C-map layer by layer. The centred
version would differ from ``c^l`` at every activation with a non-zero mean (relu). A draw whose output is 0
(no direction) counts as cosine 0.
"""

from __future__ import annotations

import math

import numpy as np

from normstats.lazy import special

#: SplitMix64 (Steele, Lea and Flood 2014, "Fast splittable pseudorandom number generators", OOPSLA; the
#: constants are Vigna's, as in Java's SplittableRandom): its output function and its stream increment.
_MIX1, _MIX2, _GAMMA = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
_MULTIPLIERS: dict[int, np.ndarray] = {}


def _mix(z: np.ndarray) -> np.ndarray:
    """SplitMix64's output function (a bijection of 64-bit words that mixes every bit into every other), on a
    new array; arithmetic modulo 2^64."""
    z = z ^ (z >> _S30)
    z *= _MIX1
    z ^= z >> _S27
    z *= _MIX2
    z ^= z >> _S31
    return z


def _multipliers(n: int) -> np.ndarray:
    """``n`` fixed odd 64-bit words, one per coordinate (the hash's key)."""
    m = _MULTIPLIERS.get(n)
    if m is None:
        m = np.random.Generator(np.random.PCG64(0x5EED)).integers(0, 2**64, size=n, dtype=np.uint64,
                                                                   endpoint=False) | np.uint64(1)
        _MULTIPLIERS[n] = m
    return m


def partner(x: np.ndarray, rho: float) -> np.ndarray:
    """``RHO x + sqrt(1 - RHO^2) e`` per row of ``x`` (a draw); a new array. The row's key is ``mix(sum_j
    mix(bits(x_j) * m_j))`` (a hash of its 64-bit words with fixed odd multipliers ``m_j``, modulo 2^64), and
    ``e_i = Phi^-1(u_i)``, ``u_i`` the top 53 bits of SplitMix64's ``i``-th output from that key (offset by half
    a step: never 0 or 1), all as array operations."""
    rows = np.ascontiguousarray(x, dtype=np.float64)
    n = rows.shape[1]
    with np.errstate(over="ignore"):
        key = _mix(rows.view(np.uint64) * _multipliers(n))
        key = _mix(np.add.reduce(key, axis=1, dtype=np.uint64))
        state = key[:, None] + np.arange(1, n + 1, dtype=np.uint64) * _GAMMA
    u = (_mix(state) >> _S11).astype(np.float64)
    u += 0.5
    u *= 2.0**-53
    e = special.ndtri(u)
    e *= math.sqrt((1.0 - rho) * (1.0 + rho))
    e += rho * rows
    return e


def pair_cosine(y1: np.ndarray, y2: np.ndarray) -> np.ndarray:
    """Per row, ``sum(y1 y2) / sqrt(sum y1^2 sum y2^2)`` (0 where either is 0)."""
    a = np.einsum("rd,rd->r", y1, y2)
    norms = np.sqrt(np.einsum("rd,rd->r", y1, y1) * np.einsum("rd,rd->r", y2, y2))
    return np.divide(a, norms, out=np.zeros_like(a), where=norms > 0)
