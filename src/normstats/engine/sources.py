"""Where a block's random numbers come from: plain Monte Carlo streams or scrambled Sobol points.

A *source* fills the engine's buffers ``x`` (draws x in_dim), ``dy`` (draws x out_dim) and ``u``
(draws x n_uniform) chunk after chunk; the layer's sampler never sees which kind it got.

``mc``: block ``i`` reads ``x`` from ``SeedSequence(seed, spawn_key=(1, i, 0))``, ``u`` from ``(1, i, 1)`` and
``dy`` from ``(1, i, 2)``. Each quantity has its own stream, so cutting the block into chunks of any size gives
the same numbers.

``qmc``: replicate ``r`` is a scrambled Sobol sequence (the points of ``scipy.stats.qmc.Sobol``, LMS + digital
shift, drawn by scipy's compiled core without importing scipy.stats: see :func:`scrambled_sobol`) of
dimension ``in_dim + out_dim + n_uniform`` seeded by ``SeedSequence(seed, spawn_key=(2, r))``; a block is the
segment of points ``[start, start + draws)`` of one replicate (reached with ``fast_forward``). Normal
coordinates go through the inverse normal CDF, uniforms pass through. Sobol points lie on the grid
``k / 2^30``; they are moved to the cell centres (``+ 2^-31``) so that no coordinate is 0, which caps a normal
at about 6.1 sd (a bias below 1e-7 in any second moment).
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys
import threading
import warnings
from types import ModuleType
from typing import Any, Protocol

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


_CORE_LOCK = threading.Lock()
_CORE: list[ModuleType | None] = []


def _sobol_core() -> ModuleType | None:
    """scipy's compiled Sobol core, ``scipy.stats._sobol``, loaded without the package ``scipy.stats`` around it
    (whose ``__init__`` imports all of scipy.stats: 1.0 s on the benchmark machine, four times the rest of a
    run's start). Its direction numbers are read from the same file and put in the core's cache, which
    would otherwise find the file through the package. None when this scipy is not laid out so (then
    :class:`ScrambledSobol` is not used); tests/test_engine.py checks the points against ``qmc.Sobol``."""
    with _CORE_LOCK:
        if not _CORE:
            _CORE.append(_load_sobol_core())
        return _CORE[0]


def _load_sobol_core() -> ModuleType | None:
    name = "scipy.stats._sobol"
    loaded_here = False
    try:
        import scipy

        folder = os.path.join(os.path.dirname(scipy.__file__), "stats")
        core = sys.modules.get(name)
        if core is None:
            found = importlib.machinery.PathFinder.find_spec("_sobol", [folder])
            spec = found and found.origin and importlib.util.spec_from_file_location(name, found.origin)
            if not spec or spec.loader is None:
                return None
            core = importlib.util.module_from_spec(spec)
            sys.modules[name] = core  # a later import of scipy.stats finds it here instead of loading it twice
            loaded_here = True
            spec.loader.exec_module(core)
        if np.uint32 not in core._poly_dict:
            with np.load(os.path.join(folder, "_sobol_direction_numbers.npz")) as numbers:
                core._poly_dict[np.uint32] = np.ascontiguousarray(numbers["poly"], dtype=np.uint32)
                core._vinit_dict[np.uint32] = np.ascontiguousarray(numbers["vinit"], dtype=np.uint32)
        # The core's functions only print their errors (noexcept): check that it gives the first points of
        # the unscrambled sequence in 3 dimensions before trusting it.
        sv = np.zeros((3, SOBOL_BITS), dtype=np.uint32)
        core._initialize_v(sv, dim=3, bits=SOBOL_BITS)
        quasi, points = np.zeros(3, dtype=np.uint32), np.zeros((3, 3))
        core._draw(n=3, num_gen=0, dim=3, scale=2.0**-SOBOL_BITS, sv=sv, quasi=quasi, sample=points)
        if points.tolist() != [[0.5, 0.5, 0.5], [0.75, 0.25, 0.25], [0.25, 0.75, 0.75]]:
            raise ValueError("scipy's Sobol core gave other points")
        # Every other function ScrambledSobol calls, once, with the keywords it uses: a scipy whose core
        # changed them falls back here, at load, rather than failing in a run.
        engine = ScrambledSobol(core, 2, np.random.default_rng(0))
        engine.random(2)
        engine.fast_forward(2)
        if not np.all((engine.random(4) >= 0.0) & (engine.random(4) < 1.0)):
            raise ValueError("scipy's Sobol core gave points outside [0, 1)")
        return core
    except Exception:  # another scipy layout: qmc.Sobol, through scipy.stats
        if loaded_here:
            sys.modules.pop(name, None)
        return None


class ScrambledSobol:
    """``scipy.stats.qmc.Sobol(d, scramble=True, rng=rng, bits=SOBOL_BITS)``, point for point, on scipy's
    compiled core (:func:`_sobol_core`): the same spawned generator, the same digital shift and linear matrix
    scramble drawn from it, the same ``random`` and ``fast_forward``; without the import of scipy.stats."""

    def __init__(self, core: ModuleType, d: int, rng: np.random.Generator) -> None:
        bits = SOBOL_BITS
        bit_generator: Any = rng.bit_generator
        own = np.random.Generator(type(bit_generator)(bit_generator.seed_seq.spawn(1)[0]))  # as qmc.Sobol does
        self._core, self.d, self.num_generated = core, d, 0
        self._sv = np.zeros((d, bits), dtype=np.uint32)
        core._initialize_v(self._sv, dim=d, bits=bits)
        shift = np.dot(own.integers(2, size=(d, bits), dtype=np.uint32), 2 ** np.arange(bits, dtype=np.uint32))
        ltm = np.tril(own.integers(2, size=(d, bits, bits), dtype=np.uint32))
        core._cscramble(dim=d, bits=bits, ltm=ltm, sv=self._sv)
        self._quasi = shift.copy()
        self._scale = 1.0 / 2**bits
        self._first_point = (self._quasi * self._scale).reshape(1, -1).astype(np.float64)

    def fast_forward(self, n: int) -> None:
        skip, done = (n - 1, 0) if self.num_generated == 0 else (n, self.num_generated - 1)
        self._core._fast_forward(n=skip, num_gen=done, dim=self.d, sv=self._sv, quasi=self._quasi)
        self.num_generated += n

    def random(self, n: int) -> np.ndarray:
        sample = np.empty((n, self.d))
        if self.num_generated == 0:
            if n == 1:
                sample = self._first_point.copy()
            else:
                self._core._draw(n=n - 1, num_gen=0, dim=self.d, scale=self._scale, sv=self._sv,
                                 quasi=self._quasi, sample=sample)
                sample = np.concatenate([self._first_point, sample])[:n]
        else:
            self._core._draw(n=n, num_gen=self.num_generated - 1, dim=self.d, scale=self._scale, sv=self._sv,
                             quasi=self._quasi, sample=sample)
        self.num_generated += n
        return sample


def scrambled_sobol(d: int, rng: np.random.Generator) -> Any:
    """A scrambled Sobol engine of dimension ``d`` with ``random(n)`` and ``fast_forward(n)``: a
    :class:`ScrambledSobol` where scipy's core loads alone, else ``scipy.stats.qmc.Sobol``; the same points."""
    core = _sobol_core()
    if core is not None:
        return ScrambledSobol(core, d, rng)
    from scipy.stats import qmc  # imports all of scipy.stats

    return qmc.Sobol(d, scramble=True, seed=rng, bits=SOBOL_BITS)


class SobolSource:
    """Points ``start, start + 1, ...`` of scrambled Sobol replicate ``replicate``."""

    def __init__(self, seed: int, replicate: int, start: int, dims: tuple[int, int, int]) -> None:
        self._dims = dims
        self._engine = scrambled_sobol(sum(dims), _generator(seed, 2, replicate))
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
