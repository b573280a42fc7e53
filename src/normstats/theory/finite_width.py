"""A finite-width check of the mean-field trajectories: two inputs pushed through real random networks.

Each of ``networks`` independent networks of width ``N`` draws, at every layer, ``W ~ N(0, sigma_w^2 / N)``
(``N x N``) and ``b ~ N(0, sigma_b^2)``, and maps the pre-activations as ``h^(l+1) = W f(h^l) + b`` with the
layer's own ``f``. The two inputs are pre-activations ``h^0`` of exactly the given ``q0`` and ``c0``: two normal
vectors made orthogonal (Gram-Schmidt) and scaled to ``|a|^2 = |b|^2 = N``, then ``h^0_1 = sqrt(q0) a`` and
``h^0_2 = sqrt(q0) (c0 a + sqrt(1 - c0^2) b)``. Per layer it records ``q = (|h_1|^2 + |h_2|^2) / (2 N)`` and the
correlation ``h_1 . h_2 / (|h_1| |h_2|)``, and reports their means over the networks with standard errors
(sd / sqrt(networks): the networks are independent).

At width ``N`` the means differ from the mean-field values by O(1/N) (the fluctuations of ``|f(h)|^2 / N``
feed back through the next layer's nonlinearity), so they approach the infinite-width limit as ``N`` grows
but are not equal to it at any finite width: this is a check of the trend, never a z-test against the limit.
The networks run side by side in chunks of ``max(1, 2^22 // N^2)``; chunk ``j`` draws from
``SeedSequence(seed, spawn_key=(j,))`` (SFC64), so a seed, a width and a network count give the same numbers.
"""

from __future__ import annotations

import math

import numpy as np

from normstats.layers.base import Elementwise
from normstats.output.results.meanfield import FiniteWidthPoint

#: Random weights drawn at once (a chunk of networks side by side): 32 MB of float64.
_CHUNK_NUMBERS = 1 << 22


def propagate(
    layer: Elementwise, sigma_w2: float, sigma_b2: float, q0: float, c0: float, depth: int, width: int,
    networks: int, seed: int,
) -> list[FiniteWidthPoint]:
    """The finite-width ``q`` and ``c`` for layers ``0 .. depth`` (layer 0 is the input: exact, se 0)."""
    qs = np.empty((networks, depth + 1))
    cs = np.empty((networks, depth + 1))
    sw, sb = math.sqrt(sigma_w2 / width), math.sqrt(sigma_b2)
    s0 = math.sqrt(max(0.0, (1.0 - c0) * (1.0 + c0)))
    chunk = max(1, _CHUNK_NUMBERS // (width * width))
    for j, start in enumerate(range(0, networks, chunk)):
        m = min(chunk, networks - start)
        rng = np.random.Generator(np.random.SFC64(np.random.SeedSequence(seed, spawn_key=(j,))))
        a, b = rng.standard_normal((2, m, width))
        a *= math.sqrt(width) / np.linalg.norm(a, axis=1, keepdims=True)
        b -= np.einsum("mi,mi->m", a, b)[:, None] / width * a
        b *= math.sqrt(width) / np.linalg.norm(b, axis=1, keepdims=True)
        h = math.sqrt(q0) * np.stack([a, c0 * a + s0 * b], axis=2)  # (m, width, 2)
        rows = slice(start, start + m)
        for layer_index in range(depth + 1):
            if layer_index:
                w = rng.standard_normal((m, width, width))
                w *= sw
                bias = rng.standard_normal((m, width, 1)) * sb
                h = np.matmul(w, layer.f(h)) + bias
            sq = np.einsum("mij,mij->mj", h, h)
            qs[rows, layer_index] = sq.mean(axis=1) / width
            denom = np.sqrt(sq[:, 0] * sq[:, 1])
            with np.errstate(all="ignore"):
                cs[rows, layer_index] = np.where(denom > 0, np.einsum("mi,mi->m", h[:, :, 0], h[:, :, 1]) / denom,
                                                 np.nan)
    out = [FiniteWidthPoint(q0, 0.0, c0, 0.0)]  # the inputs: exactly q0 and c0 by construction
    for j in range(1, depth + 1):
        out.append(FiniteWidthPoint(*_mean_se(qs[:, j]), *_mean_se(cs[:, j])))
    return out


def _mean_se(values: np.ndarray) -> tuple[float, float]:
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan
    return mean, float(values.std(ddof=1) / math.sqrt(len(values)))
