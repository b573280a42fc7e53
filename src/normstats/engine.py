"""The streaming Monte Carlo engine.

A run of ``samples`` draws is cut into *blocks*, the unit of reproducibility: block ``i`` draws its normals
and uniforms from generators seeded by ``SeedSequence(seed, spawn_key=(1, i, 0))`` and ``(1, i, 1)``, so its
numbers depend on the seed and its index alone, never on which worker runs it or when. Randomness fixed for
the whole run (a weight matrix) comes from ``spawn_key=(0,)``. A block holds about ``BLOCK_SCALARS`` random
numbers; its draws pass through the layer in cache-sized *chunks*. Splitting a block into chunks does not
change its random numbers (a numpy Generator yields the same stream whether asked in one call or many), so
the chunk size changes a result only by float rounding. Partial tallies merge in block order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np

from normstats.layers.base import Layer, Sampler
from normstats.moments import Tally

#: Random numbers per block (the unit of reproducibility and of parallel work).
BLOCK_SCALARS = 1 << 20
#: Random numbers per chunk (the unit of work in memory: a few hundred kB, so it stays in cache).
CHUNK_SCALARS = 1 << 15
#: The bit generator behind every stream.
BIT_GENERATOR = "PCG64"


@dataclass(frozen=True)
class Accumulator:
    """The tallies of a layer's outputs (``fp``) and input gradients (``bp``) over the draws seen so far."""

    fp: Tally
    bp: Tally

    @classmethod
    def empty(cls, layer: Layer) -> Accumulator:
        return cls(Tally.empty(layer.fp_width), Tally.empty(layer.bp_width))

    def merge(self, other: Accumulator) -> Accumulator:
        return Accumulator(self.fp.merge(other.fp), self.bp.merge(other.bp))

    @property
    def draws(self) -> int:
        return self.fp.draws


def draw_width(layer: Layer) -> int:
    """Random numbers one draw consumes: ``x``, ``dy`` and the uniforms."""
    return layer.in_dim + layer.out_dim + layer.n_uniform


def block_draws(layer: Layer) -> int:
    """Draws per block: fixed by the layer's shape, so a seed means the same numbers on every machine."""
    return max(1, BLOCK_SCALARS // draw_width(layer))


def default_chunk_draws(layer: Layer) -> int:
    return max(1, CHUNK_SCALARS // draw_width(layer))


def setup_rng(seed: int) -> np.random.Generator:
    """The generator for what stays fixed during a run (weights)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(0,))))


def block_rngs(seed: int, index: int) -> tuple[np.random.Generator, np.random.Generator]:
    """The normal and uniform generators of block ``index``."""
    return tuple(  # type: ignore[return-value]
        np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(1, index, stream))))
        for stream in (0, 1)
    )


def run_block(
    layer: Layer, sampler: Sampler, seed: int, index: int, draws: int, chunk_draws: int
) -> Accumulator:
    """Tally the first ``draws`` draws of block ``index``, ``chunk_draws`` at a time."""
    normal_rng, uniform_rng = block_rngs(seed, index)
    d_in, d_out, d_u = layer.in_dim, layer.out_dim, layer.n_uniform
    size = min(chunk_draws, draws)
    z_buf = np.empty((size, d_in + d_out))
    u_buf = np.empty((size, d_u))
    acc = Accumulator.empty(layer)
    done = 0
    while done < draws:
        m = min(size, draws - done)
        z, u = z_buf[:m], u_buf[:m]
        normal_rng.standard_normal(out=z)
        if d_u:
            uniform_rng.random(out=u)
        y, dx = sampler(z[:, :d_in], z[:, d_in:], u)
        acc = acc.merge(Accumulator(Tally.of(y), Tally.of(dx)))
        done += m
    return acc


def plan_blocks(layer: Layer, samples: int) -> list[tuple[int, int]]:
    """``(index, draws)`` of every block of a run of ``samples`` draws."""
    per_block = block_draws(layer)
    count = math.ceil(samples / per_block)
    return [(i, min(per_block, samples - i * per_block)) for i in range(count)]


def iter_blocks(
    layer: Layer, samples: int, seed: int, chunk_draws: int | None = None
) -> Iterator[Accumulator]:
    """Yield each block's tally in order (serially, in this process)."""
    sampler = layer.sampler(setup_rng(seed))
    chunk = chunk_draws or default_chunk_draws(layer)
    for index, draws in plan_blocks(layer, samples):
        yield run_block(layer, sampler, seed, index, draws, chunk)


def run(
    layer: Layer,
    samples: int,
    seed: int,
    chunk_draws: int | None = None,
    on_block: Callable[[Accumulator], None] | None = None,
) -> Accumulator:
    """Run ``samples`` draws of ``layer`` and return the merged tallies."""
    total = Accumulator.empty(layer)
    for acc in iter_blocks(layer, samples, seed, chunk_draws):
        total = total.merge(acc)
        if on_block is not None:
            on_block(total)
    return total
