"""The streaming engine: blocks of draws, run by an executor, merged in order, stopped by a rule.

A run is cut into *blocks*, the unit of reproducibility and of parallel work. A block's random numbers depend
on the seed and the block alone (see :mod:`normstats.engine.sources`), never on which worker runs it or when;
randomness fixed for the whole run (a weight matrix) comes from ``SeedSequence(seed, spawn_key=(0,))``. A
block holds about ``BLOCK_SCALARS`` random numbers; its draws pass through the layer in cache-sized *chunks*
into preallocated buffers, and :class:`~normstats.engine.moments.PowerSums` tallies them without allocating. The chunk
size changes a result only by float rounding.

Blocks go to a ``concurrent.futures``-style executor (:mod:`normstats.engine.executors`) a few at a time and their
tallies merge strictly in block order. The stopping rule (:mod:`normstats.engine.stopping`) looks only at the merged
prefix, at *checkpoints*: after every block for ``mc``, and for ``qmc`` whenever every replicate holds the same
power-of-two number of points. So for a seed, the same stopping rule ends at the same block and gives
bit-identical numbers whatever the worker count, the schedule or the executor; only ``--max-time`` and
Ctrl-C depend on the clock.

The backward statistics come from one of two *estimators* (see :mod:`normstats.layers.base`):
``conditional`` (the default) integrates ``dy`` out and tallies ``E[dx^2 | x]`` per draw
(:class:`~normstats.engine.moments.ConditionalTally`); ``sampled`` draws ``dy`` and tallies the backward pass's
``dx``. Both read ``x`` from the same streams and cut blocks and chunks the same way, so for ``mc`` the
forward statistics of a seed are bit-identical under either estimator.

``mc`` estimates and standard errors come from the pooled tallies (:class:`~normstats.engine.moments.Tally`). ``qmc``
runs ``REPLICATES`` independently scrambled Sobol sequences; the estimates come from their pooled moments and
the standard error from a jackknife over replicates (:meth:`SobolPlan.snapshot`).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Protocol

import numpy as np
from threadpoolctl import threadpool_limits

from normstats.engine.moments import ConditionalSums, ConditionalTally, PowerSums, Tally
from normstats.engine.progress import NULL_PROGRESS, Progress
from normstats.engine.sources import BIT_GENERATOR as _BIT_GENERATOR
from normstats.engine.sources import MonteCarloSource, SobolSource, Source
from normstats.engine.stopping import INTERRUPTED, SAMPLES, StopRule
from normstats.layers.base import Layer
from normstats.stats import STATS

#: Random numbers per block (the unit of reproducibility and of parallel work).
BLOCK_SCALARS = 1 << 22
#: Random numbers per chunk (the unit of work in memory: 512 kB, so it stays in the L2 cache; 2^16 measured
#: best of 2^13..2^17 for sigmoid on a 1 MB-L2 core).
CHUNK_SCALARS = 1 << 16
#: Random numbers per ``qmc`` segment (at most; a segment holds a power-of-two number of points).
SEGMENT_SCALARS = 1 << 18
#: Points per replicate at a ``qmc`` run's first checkpoint (later ones double it): a run that meets its target
#: early stops early (2^10 x 16 = 16,384 draws at the first look).
FIRST_CHECKPOINT_POINTS = 1 << 10
#: The bit generator behind every Monte Carlo stream (by name).
BIT_GENERATOR = _BIT_GENERATOR.__name__
#: Independent scrambled Sobol sequences of a ``qmc`` run.
REPLICATES = 16
#: The 97.5% quantile of Student's t with REPLICATES - 1 = 15 degrees of freedom: a qmc 95% interval is
#: estimate +- QMC_T95 se. ``scipy.stats.t.ppf(0.975, 15)`` = 2.131449545559776 (checked in tests/test_engine.py).
QMC_T95 = 2.131449545559776
#: How the backward statistics are estimated: ``dy`` integrated out exactly, or drawn and run through the
#: backward pass.
ESTIMATORS = ("conditional", "sampled")
DEFAULT_ESTIMATOR = "conditional"
#: Runs with fewer random numbers than this stay in this process (starting workers would cost more).
PARALLEL_MIN_SCALARS = 1 << 24
#: A larger run's first blocks stay in this process too, while they hold fewer random numbers than this in all
#: (qmc's first checkpoints: a target met there is met without waiting on a worker; an mc block is larger).
HERE_SCALARS = 1 << 20


@dataclass(frozen=True)
class Accumulator:
    """The tallies of a layer's outputs (``fp``) and input gradients (``bp``) over the draws seen so far."""

    fp: Tally
    bp: Tally | ConditionalTally

    @classmethod
    def empty(cls, layer: Layer, estimator: str = DEFAULT_ESTIMATOR) -> Accumulator:
        bp = ConditionalTally if estimator == "conditional" else Tally
        return cls(Tally.empty(layer.fp_width), bp.empty(layer.bp_width))

    def merge(self, other: Accumulator) -> Accumulator:
        return Accumulator(self.fp.merge(other.fp), self.bp.merge(other.bp))  # type: ignore[arg-type]

    @property
    def draws(self) -> int:
        return self.fp.draws

    def estimates(self) -> dict[str, tuple[float, float]]:
        """``{statistic: (estimate, se)}`` from the pooled tallies."""
        return {
            "fp_mean": (self.fp.mean, self.fp.se_mean()),
            "fp_std": (self.fp.std, self.fp.se_std()),
            "bp_mean": (self.bp.mean, self.bp.se_mean()),
            "bp_std": (self.bp.std, self.bp.se_std()),
        }


@dataclass(frozen=True)
class RunResult:
    """What a run produced: ``{statistic: (estimate, se)}``, the draws behind them and why it stopped."""

    estimates: dict[str, tuple[float, float]]
    draws: int
    stop: str
    method: str = "mc"
    estimator: str = DEFAULT_ESTIMATOR

    @property
    def partial(self) -> bool:
        return self.stop == INTERRUPTED

    @property
    def worst_se(self) -> float:
        return worst_se(self.estimates)


def worst_se(estimates: dict[str, tuple[float, float]]) -> float:
    """The largest standard error (infinite when one is unknown)."""
    ses = [se for _, se in estimates.values()]
    return max((se if math.isfinite(se) else math.inf for se in ses), default=math.inf)


def _empty_estimates() -> dict[str, tuple[float, float]]:
    return {name: (math.nan, math.nan) for name in STATS}


# -- models ------------------------------------------------------------------------------------------------------
class Tallies(Protocol):
    """What a run keeps of its draws: merges in block order and gives ``{name: (estimate, se)}``."""

    @property
    def draws(self) -> int: ...

    def merge(self, other: Any) -> Any: ...

    def estimates(self) -> dict[str, tuple[float, float]]: ...


class ChunkSums(Protocol):
    """The hot-loop accumulator of one block: ``add`` takes what the sampler returned for a chunk. An
    accumulator that also has ``feed(sampler, x, dy, u)`` is handed the chunk and the sampler instead, and runs
    them itself (a network tallies each layer's values as they are computed, while they are in cache)."""

    def add(self, outputs: Any) -> None: ...

    def result(self) -> Tallies: ...


class Model(Protocol):
    """What the engine runs: a single layer (:class:`LayerModel`) or a whole network
    (:mod:`normstats.networks`). ``in_dim``, ``out_dim`` and ``n_uniform`` are the random numbers one draw takes
    (``x``, ``dy``, uniforms); the sampler is built once per thread from the seed; the tallies say what is
    kept of each chunk. The model must be hashable (the per-thread sampler cache is keyed by it)."""

    name: str

    @property
    def in_dim(self) -> int: ...

    @property
    def out_dim(self) -> int: ...

    @property
    def n_uniform(self) -> int: ...

    def make_sampler(self, seed: int, estimator: str) -> Any: ...

    def chunk_sums(self, capacity: int, estimator: str) -> ChunkSums: ...

    def empty(self, estimator: str) -> Tallies: ...


class _LayerSums:
    """One block of a single layer: power sums of its outputs and of its input gradients (or, for the
    conditional estimator, of ``E[dx^2 | x]``)."""

    def __init__(self, layer: Layer, capacity: int, estimator: str) -> None:
        self.fp = PowerSums(layer.fp_width, capacity)
        conditional = estimator == "conditional"
        self.bp = ConditionalSums(layer.bp_width, capacity) if conditional else PowerSums(layer.bp_width, capacity)

    def add(self, outputs: tuple[np.ndarray, np.ndarray]) -> None:
        y, dx = outputs
        self.fp.add(y)
        self.bp.add(dx)  # type: ignore[arg-type]  # for ``conditional``: E[dx^2 | x, u]

    def result(self) -> Accumulator:
        return Accumulator(self.fp.tally(), self.bp.tally())  # type: ignore[arg-type]


@dataclass(frozen=True)
class LayerModel:
    """A registered layer as the engine runs it: its own sampler (or a conditional one) and the tallies of its
    outputs and input gradients."""

    layer: Layer

    @property
    def name(self) -> str:
        return self.layer.name

    @property
    def in_dim(self) -> int:
        return self.layer.in_dim

    @property
    def out_dim(self) -> int:
        return self.layer.out_dim

    @property
    def n_uniform(self) -> int:
        return self.layer.n_uniform

    def make_sampler(self, seed: int, estimator: str) -> Any:
        layer = self.layer
        make = layer.streaming_conditional_sampler if estimator == "conditional" else layer.streaming_sampler
        return make(setup_rng(seed))

    def chunk_sums(self, capacity: int, estimator: str) -> _LayerSums:
        return _LayerSums(self.layer, capacity, estimator)

    def empty(self, estimator: str) -> Accumulator:
        return Accumulator.empty(self.layer, estimator)


def as_model(target: Layer | Model) -> Model:
    """A layer becomes its :class:`LayerModel`; a model stays as it is."""
    return LayerModel(target) if isinstance(target, Layer) else target


# -- blocks ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Block:
    """One unit of work: ``draws`` draws; for ``qmc`` the points ``[start, start + draws)`` of a replicate."""

    index: int
    draws: int
    replicate: int = 0
    start: int = 0


@dataclass(frozen=True)
class Job:
    """Everything a worker needs besides the block (picklable)."""

    layer: Layer | Model
    seed: int
    method: str
    chunk_draws: int
    estimator: str = DEFAULT_ESTIMATOR


def draw_width(layer: Layer | Model) -> int:
    """Random numbers one draw of the ``sampled`` estimator consumes: ``x``, ``dy`` and the uniforms. Blocks
    and chunks are sized by it under both estimators (``conditional`` skips ``dy``), so both see the same
    ``x``."""
    return layer.in_dim + layer.out_dim + layer.n_uniform


def random_width(layer: Layer | Model, estimator: str) -> int:
    """Random numbers one draw actually consumes under ``estimator``."""
    return draw_width(layer) - (layer.out_dim if estimator == "conditional" else 0)


def block_draws(layer: Layer | Model) -> int:
    """Draws per block: fixed by the layer's shape, so a seed means the same numbers on every machine. A model
    whose draws are costly (a network: matrix products, many values a draw) names its own, smaller, count as
    ``block_draws`` (so that a run still has enough blocks to share between workers), never more."""
    per = max(1, BLOCK_SCALARS // draw_width(layer))
    own = getattr(layer, "block_draws", None)
    return per if own is None else max(1, min(own, per))


def default_chunk_draws(layer: Layer | Model) -> int:
    return max(1, CHUNK_SCALARS // draw_width(layer))


def setup_rng(seed: int) -> np.random.Generator:
    """The generator for what stays fixed during a run (weights)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(0,))))


_LOCAL = threading.local()


def _sampler(model: Model, seed: int, estimator: str) -> Any:
    """The run's sampler (:data:`~normstats.layers.base.Sampler`, a conditional one, or a network's), built once
    per thread (a worker runs many blocks of the same run; a sampler may keep buffers, so threads of one
    process, as in a Dask worker, do not share it)."""
    cache: dict[tuple[Model, int, str], Any] = _LOCAL.__dict__.setdefault("samplers", {})
    key = (model, seed, estimator)
    if key not in cache:
        if len(cache) > 16:
            cache.clear()
        cache[key] = model.make_sampler(seed, estimator)
    return cache[key]


def _source(job: Job, block: Block) -> Source:
    if job.method == "qmc":
        model = as_model(job.layer)
        dy_dim = 0 if job.estimator == "conditional" else model.out_dim
        return SobolSource(job.seed, block.replicate, block.start, (model.in_dim, dy_dim, model.n_uniform))
    return MonteCarloSource(job.seed, block.index)


def run_block(job: Job, block: Block) -> Tallies:
    """Tally the draws of one block, ``job.chunk_draws`` at a time (runs in a worker)."""
    model = as_model(job.layer)
    sampler = _sampler(model, job.seed, job.estimator)
    conditional = job.estimator == "conditional"
    source = _source(job, block)
    size = max(1, min(job.chunk_draws, block.draws))
    x_buf = np.empty((size, model.in_dim))
    dy_buf = np.empty((size, 0 if conditional else model.out_dim))
    u_buf = np.empty((size, model.n_uniform))
    sums = model.chunk_sums(size, job.estimator)
    feed = None if conditional else getattr(sums, "feed", None)
    done = 0
    while done < block.draws:
        m = min(size, block.draws - done)
        x, dy, u = x_buf[:m], dy_buf[:m], u_buf[:m]
        source.fill(x, dy, u)
        if feed is not None:
            feed(sampler, x, dy, u)
        else:
            sums.add(sampler(x, u) if conditional else sampler(x, dy, u))
        done += m
    return sums.result()


# -- plans -------------------------------------------------------------------------------------------------------
class MonteCarloPlan:
    """Blocks ``0, 1, 2, ...`` of ``block_draws`` draws up to ``samples``; a checkpoint after every block."""

    method = "mc"

    def __init__(self, layer: Layer | Model, samples: int, estimator: str = DEFAULT_ESTIMATOR) -> None:
        model = as_model(layer)
        self.per_block = block_draws(model)
        self.samples = samples
        self.count = math.ceil(samples / self.per_block)
        self.scalars = samples * random_width(model, estimator)
        self._total = model.empty(estimator)

    def blocks(self) -> Iterator[Block]:
        for i in range(self.count):
            yield Block(i, min(self.per_block, self.samples - i * self.per_block))

    def add(self, block: Block, acc: Tallies) -> bool:
        """Merge the next block in order; True at a checkpoint."""
        self._total = self._total.merge(acc)
        return True

    def snapshot(self) -> tuple[dict[str, tuple[float, float]], int]:
        return self._total.estimates(), self._total.draws


class SobolPlan:
    """``REPLICATES`` scrambled Sobol sequences grown together, stage by stage.

    Checkpoints fall where every replicate holds the same power-of-two number of points: after
    ``FIRST_CHECKPOINT_POINTS`` points each (or fewer, if the run asks for fewer), then at every doubling. A stage
    (the points between two checkpoints) runs as blocks of at most ``segment`` points, every replicate in
    turn; every block is a power of two long and starts at a multiple of its length, so each is a balanced
    Sobol segment. ``samples`` is the total over the replicates, rounded up to a checkpoint.
    """

    method = "qmc"

    def __init__(
        self, layer: Layer | Model, samples: int, estimator: str = DEFAULT_ESTIMATOR, replicates: int = REPLICATES
    ) -> None:
        layer = as_model(layer)
        self.replicates = replicates
        per_replicate = _next_power_of_two(math.ceil(samples / replicates))
        self.segment = min(_previous_power_of_two(max(1, SEGMENT_SCALARS // draw_width(layer))), per_replicate)
        self.first = min(FIRST_CHECKPOINT_POINTS, per_replicate)
        self.per_replicate = per_replicate
        self.scalars = replicates * per_replicate * random_width(layer, estimator)
        self._accs = [layer.empty(estimator) for _ in range(replicates)]

    def stages(self) -> Iterator[tuple[int, int]]:
        """``(start, end)`` points of each replicate between consecutive checkpoints."""
        start, end = 0, self.first
        while end <= self.per_replicate:
            yield start, end
            start, end = end, 2 * end

    def blocks(self) -> Iterator[Block]:
        index = 0
        for lo, hi in self.stages():
            step = min(self.segment, hi - lo)
            for start in range(lo, hi, step):
                for r in range(self.replicates):
                    yield Block(index, step, r, start)
                    index += 1

    def add(self, block: Block, acc: Tallies) -> bool:
        self._accs[block.replicate] = self._accs[block.replicate].merge(acc)
        end = block.start + block.draws
        stage_end = end % self.first == 0 and (end // self.first) & (end // self.first - 1) == 0
        return block.replicate == self.replicates - 1 and stage_end

    def snapshot(self) -> tuple[dict[str, tuple[float, float]], int]:
        """Each statistic from the pooled moments of every replicate, with a jackknife se over replicates.

        A replicate's own plug-in std, from its m points, is biased by O(1/m), and averaging replicates
        keeps that bias while the se shrinks: at small m the intervals would sit low (3x3 max pool, 16 x 16
        points: coverage 0.86, mean z -0.71). The pooled moments carry the bias of all R m points, O(1/(R m)),
        as plain Monte Carlo does. The se is the jackknife's: the leave-one-replicate-out pooled estimates
        theta_i give ``se^2 = (R - 1)/R sum (theta_i - mean theta)^2``; for a mean it equals the spread of the
        replicates' means over sqrt(R), as before."""
        accs, count = self._accs, len(self._accs)
        prefix = [accs[0]]  # prefix[i]: replicates 0..i merged; suffix[i]: replicates i..R-1
        for acc in accs[1:]:
            prefix.append(prefix[-1].merge(acc))
        suffix = [accs[-1]]
        for acc in reversed(accs[:-1]):
            suffix.append(acc.merge(suffix[-1]))
        suffix.reverse()
        pooled = prefix[-1].estimates()
        left_out = [suffix[1].estimates(), *(prefix[i - 1].merge(suffix[i + 1]).estimates()
                                            for i in range(1, count - 1)), prefix[-2].estimates()]
        out = {}
        for name in pooled:
            theta = np.array([e[name][0] for e in left_out])
            spread = float(np.sqrt((count - 1) / count * np.sum((theta - theta.mean()) ** 2)))
            out[name] = (pooled[name][0], spread)
        return out, prefix[-1].draws


def _next_power_of_two(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _previous_power_of_two(n: int) -> int:
    return 1 << (n.bit_length() - 1)


def make_plan(
    layer: Layer | Model, samples: int, method: str, estimator: str = DEFAULT_ESTIMATOR
) -> MonteCarloPlan | SobolPlan:
    plan = SobolPlan if method == "qmc" else MonteCarloPlan
    return plan(layer, samples, estimator)


# -- running -----------------------------------------------------------------------------------------------------
class _InProcess:
    """Runs a block when it is submitted; a one-block run never needs more."""

    depth = 1

    def submit(self, fn: Callable[..., Any], *args: Any) -> Any:
        from concurrent.futures import Future

        future: Future[Any] = Future()
        future.set_result(fn(*args))
        return future


IN_PROCESS = _InProcess()


def _run_one_here(pending: deque[tuple[Block, Any]], job: Job) -> None:
    """While the next block in order is still running elsewhere, take the latest queued block that no worker
    has started and run it in this process (so this process works too, from the moment the pool starts).
    Which process ran a block never changes its numbers."""
    from concurrent.futures import Future

    for i in range(len(pending) - 1, 0, -1):
        block, future = pending[i]
        if future.cancel():
            here: Future[Tallies] = Future()
            here.set_result(run_block(job, block))
            pending[i] = (block, here)
            return
    pending[0][1].result()  # nothing left to take: wait


def execute(
    layer: Layer | Model,
    samples: int,
    seed: int,
    *,
    method: str = "mc",
    estimator: str = DEFAULT_ESTIMATOR,
    stop: StopRule | None = None,
    executor: Any = None,
    progress: Progress = NULL_PROGRESS,
    chunk_draws: int | None = None,
    parallel_min_scalars: int | None = None,
) -> RunResult:
    """Run ``layer`` (a layer or a :class:`Model`) for up to ``samples`` draws (or until ``stop`` says so) and
    return the estimates.

    ``executor`` needs ``submit(fn, *args) -> future`` and a ``depth`` (blocks kept in flight); without one,
    blocks run here, one after the other; so do runs of fewer than ``parallel_min_scalars`` random numbers
    (default :data:`PARALLEL_MIN_SCALARS`; a model whose draws are costly passes 0). Ctrl-C ends the run with the estimates of the merged prefix (at the
    last checkpoint) and ``stop == "interrupted"``.
    """
    model = as_model(layer)
    plan = make_plan(model, samples, method, estimator)
    stop = stop or StopRule()
    job = Job(model, seed, method, chunk_draws or default_chunk_draws(model), estimator)
    blocks = plan.blocks()
    threshold = PARALLEL_MIN_SCALARS if parallel_min_scalars is None else parallel_min_scalars
    pool = IN_PROCESS if executor is None or plan.scalars < threshold else executor
    # A run's first small blocks (qmc's first checkpoints) run here, one after the other, up to HERE_SCALARS
    # random numbers: a run that meets its target there never waits on a worker. The first block too large
    # for that, and every block after it, goes to the pool.
    here = min(threshold, HERE_SCALARS)
    width = random_width(model, estimator)
    executor = IN_PROCESS
    pending: deque[tuple[Block, Any]] = deque()
    estimates, draws, reason = _empty_estimates(), 0, SAMPLES
    progress.start(model.name, samples, stop.target_se)
    # Blocks that run here get one BLAS thread, as in the workers: the same arithmetic, the same bits.
    limits = threadpool_limits(limits=1)
    try:
        while True:
            while len(pending) < executor.depth:
                block = next(blocks, None)
                if block is None:
                    break
                here -= block.draws * width
                if here < 0:
                    executor = pool
                pending.append((block, executor.submit(run_block, job, block)))
            if not pending:
                break
            if getattr(executor, "shares_work", False) and not pending[0][1].done():
                _run_one_here(pending, job)
                continue
            block, future = pending.popleft()
            if plan.add(block, future.result()):
                estimates, draws = plan.snapshot()
                progress.update(draws, worst_se(estimates))
                ended = stop.check(estimates)
                if ended:
                    reason = ended
                    break
    except KeyboardInterrupt:
        reason = INTERRUPTED
    finally:
        started = [future for _, future in pending if not future.cancel()]
        if reason != INTERRUPTED and started:
            # Blocks that a worker had begun when the run stopped (a target se met) run to their end, and worker
            # threads share this process's BLAS: restoring its threads under them made their dot products
            # multithreaded, 10x slower on a busy machine (sigmoid --target-se -j 2: 3 s instead of 0.2 s).
            # Their results are not used; waiting costs nothing, as the executor's shutdown waits for them too.
            from concurrent.futures import wait

            wait(started)
        limits.restore_original_limits()
        progress.stop()
    return RunResult(estimates, draws, reason, method, estimator)


def plan_blocks(layer: Layer, samples: int) -> list[tuple[int, int]]:
    """``(index, draws)`` of every block of a Monte Carlo run of ``samples`` draws."""
    return [(block.index, block.draws) for block in MonteCarloPlan(layer, samples).blocks()]


def iter_blocks(
    layer: Layer | Model, samples: int, seed: int, chunk_draws: int | None = None,
    estimator: str = DEFAULT_ESTIMATOR,
) -> Iterator[Tallies]:
    """Yield each Monte Carlo block's tally in order (serially, in this process)."""
    job = Job(layer, seed, "mc", chunk_draws or default_chunk_draws(layer), estimator)
    for block in MonteCarloPlan(layer, samples, estimator).blocks():
        yield run_block(job, block)


def run(
    layer: Layer | Model, samples: int, seed: int, chunk_draws: int | None = None,
    estimator: str = DEFAULT_ESTIMATOR,
) -> Any:
    """Run ``samples`` Monte Carlo draws of ``layer`` here and return the merged tallies (the blocks and
    ``run_block`` of :func:`execute`, serially, without a stopping rule)."""
    total = as_model(layer).empty(estimator)
    for acc in iter_blocks(layer, samples, seed, chunk_draws, estimator):
        total = total.merge(acc)
    return total
