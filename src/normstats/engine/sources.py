"""Where a block's random numbers come from: plain Monte Carlo streams or scrambled Sobol points.

A *source* fills the engine's buffers ``x`` (draws x in_dim), ``dy`` (draws x out_dim) and ``u``
(draws x n_uniform) chunk after chunk; the layer's sampler never sees which kind it got.

``mc``: block ``i`` reads ``x`` from ``SeedSequence(seed, spawn_key=(1, i, 0))``, ``u`` from ``(1, i, 1)`` and
``dy`` from ``(1, i, 2)``. Each quantity has its own stream, so cutting the block into chunks of any size gives
the same numbers.

``qmc``: replicate ``r`` is a scrambled Sobol sequence (``scipy.stats.qmc.Sobol``, LMS + digital shift) of
dimension ``in_dim + out_dim + n_uniform`` seeded by ``SeedSequence(seed, spawn_key=(2, r))``; a block is the
segment of points ``[start, start + draws)`` of one replicate (reached with ``fast_forward``). Normal
coordinates go through the inverse normal CDF, uniforms pass through. Sobol points lie on the grid
``k / 2^30``; they are moved to the cell centres (``+ 2^-31``) so that no coordinate is 0, which caps a normal
at about 6.1 sd (a bias below 1e-7 in any second moment).
"""

from __future__ import annotations

import warnings
from typing import Protocol

import numpy as np

from normstats.lazy import special

METHODS = ("mc", "qmc")
#: Bits of a Sobol coordinate (scipy's default; ``fast_forward`` needs <= 32).
SOBOL_BITS = 30
_HALF_CELL = 2.0 ** -(SOBOL_BITS + 1)


class Source(Protocol):
    def fill(self, x: np.ndarray, dy: np.ndarray, u: np.ndarray) -> None:
        """Write the next ``len(x)`` draws into the buffers."""


#: The bit generator of the Monte Carlo streams: SFC64 draws normals about 13% faster than PCG64 here (see
#: bench/bench_engine.py) and is among numpy's recommended generators.
BIT_GENERATOR = np.random.SFC64


def _generator(seed: int, *key: int) -> np.random.Generator:
    return np.random.Generator(BIT_GENERATOR(np.random.SeedSequence(seed, spawn_key=key)))


class MonteCarloSource:
    """Independent standard normals (``x``, ``dy``) and uniforms (``u``) for block ``index``."""

    def __init__(self, seed: int, index: int) -> None:
        self._seed, self._index = seed, index
        self._x = _generator(seed, 1, index, 0)
        # made on first use: most layers need no uniforms, and the conditional estimator no dy
        self._u: np.random.Generator | None = None
        self._dy: np.random.Generator | None = None

    def fill(self, x: np.ndarray, dy: np.ndarray, u: np.ndarray) -> None:
        self._x.standard_normal(out=x)
        if dy.shape[1]:
            if self._dy is None:
                self._dy = _generator(self._seed, 1, self._index, 2)
            self._dy.standard_normal(out=dy)
        if u.shape[1]:
            if self._u is None:
                self._u = _generator(self._seed, 1, self._index, 1)
            self._u.random(out=u)


class SobolSource:
    """Points ``start, start + 1, ...`` of scrambled Sobol replicate ``replicate``."""

    def __init__(self, seed: int, replicate: int, start: int, dims: tuple[int, int, int]) -> None:
        from scipy.stats import (
            qmc,  # imports all of scipy.stats: only qmc runs pay for it
        )

        self._dims = dims
        self._engine = qmc.Sobol(sum(dims), scramble=True, seed=_generator(seed, 2, replicate), bits=SOBOL_BITS)
        if start:
            self._engine.fast_forward(start)

    def fill(self, x: np.ndarray, dy: np.ndarray, u: np.ndarray) -> None:
        d_in, d_out, _ = self._dims
        with warnings.catch_warnings():
            # Segments are powers of two and a replicate's total is one at every stage boundary; scipy cannot
            # know that and warns about balance when it sees a segment that does not start at 0.
            warnings.simplefilter("ignore", UserWarning)
            points = self._engine.random(len(x))
        points += _HALF_CELL
        special.ndtri(points[:, :d_in], out=x)
        special.ndtri(points[:, d_in : d_in + d_out], out=dy)
        u[...] = points[:, d_in + d_out :]
