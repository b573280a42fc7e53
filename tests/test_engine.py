"""The engine: chunk-size invariance, reproducibility, estimates within their standard errors, and interval
coverage across seeds."""

from __future__ import annotations

import numpy as np
import pytest

import normstats
from normstats.engine import blocks as engine
from normstats.engine.moments import Z95
from normstats.exact.references import reference_moments
from tests.cases import all_cases, case_id

#: |z| beyond this fails a fixed-seed check: about 1 in 15,000 per statistic for a correct estimator.
Z_MAX = 4.0


def _summary(acc: engine.Accumulator) -> list[float]:
    return [
        acc.fp.mean, acc.fp.std, acc.fp.se_mean(), acc.fp.se_std(),
        acc.bp.mean, acc.bp.std, acc.bp.se_mean(), acc.bp.se_std(),
    ]


@pytest.mark.parametrize("name,params", [("sigmoid", {}), ("maxpool", {"k": 3}), ("dropout", {"p": 0.7})])
def test_chunk_size_changes_nothing_but_rounding(
    name: str, params: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "BLOCK_SCALARS", 4000)  # several blocks, each cut into chunks
    layer = normstats.make_layer(name, **params)
    samples = 9_001
    base = _summary(engine.run(layer, samples, seed=5))
    for chunk in (1, 7, 333, 10_000):
        other = _summary(engine.run(layer, samples, seed=5, chunk_draws=chunk))
        assert other == pytest.approx(base, rel=1e-12, abs=1e-15)


def test_blocks_cover_exactly_the_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "BLOCK_SCALARS", 1000)
    layer = normstats.make_layer("maxpool", k=3)
    plan = engine.plan_blocks(layer, 12_345)
    assert [i for i, _ in plan] == list(range(len(plan)))
    assert sum(d for _, d in plan) == 12_345
    assert engine.run(layer, 12_345, seed=0).draws == 12_345


def test_same_seed_same_result_other_seed_other_result() -> None:
    a = normstats.simulate("maxpool", k=2, samples=20_000, seed=11).to_dict()
    b = normstats.simulate("maxpool", k=2, samples=20_000, seed=11).to_dict()
    c = normstats.simulate("maxpool", k=2, samples=20_000, seed=12).to_dict()
    assert a == b
    assert a != c


def test_a_longer_run_extends_a_shorter_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first blocks of a longer run are the blocks of a shorter run (streams depend on the block index
    only), so more samples refine an estimate instead of replacing it."""
    monkeypatch.setattr(engine, "BLOCK_SCALARS", 1000)
    layer = normstats.make_layer("sigmoid")
    short = list(engine.iter_blocks(layer, 1500, seed=3))
    long = list(engine.iter_blocks(layer, 5000, seed=3))
    assert [_summary(a) for a in short[:-1]] == [_summary(a) for a in long[: len(short) - 1]]


#: Draws per case where a draw is costly (attention: four projections and a softmax per token, in Python per
#: chunk); the tolerance is in se, so fewer draws only widen it honestly.
CASE_DRAWS = {"attention": 40_000}


@pytest.mark.parametrize("case", all_cases(), ids=case_id)
def test_estimates_sit_within_a_few_se_of_their_references(case: tuple[str, dict]) -> None:
    name, params = case
    row = normstats.simulate(name, samples=CASE_DRAWS.get(name, 200_000), seed=2024, **params)
    checked = 0
    for stat_name, stat in row.stats().items():
        if stat.reference is None:
            continue
        checked += 1
        if stat.se == 0.0:  # a statistic that does not vary (e.g. dropout with p = 1 has no randomness)
            assert stat.estimate == pytest.approx(stat.reference, rel=1e-12, abs=1e-12), stat_name
        else:
            assert abs(stat.z) < Z_MAX, (stat_name, stat)
    assert checked > 0


COVERAGE_LAYERS = [
    ("relu", {}),
    ("sigmoid", {}),
    ("maxpool", {"k": 3}),  # 9 gradients per draw, exactly one non-zero
    ("avgpool", {"k": 3}),  # 9 identical gradients per draw
    ("dropout", {"p": 0.5}),  # heavy tails: kurtosis 6
    ("linear", {"fan_in": 16, "fan_out": 8, "normalize": "fan-in"}),  # 8 outputs sharing one x
]
SEEDS = 400
DRAWS = 2_000


def _coverage_bounds(n: int, p: float = 0.95) -> tuple[float, float]:
    sd = (n * p * (1 - p)) ** 0.5
    return n * p - 4 * sd, n * p + 4 * sd


@pytest.mark.slow
@pytest.mark.parametrize("estimator", engine.ESTIMATORS)
@pytest.mark.parametrize("name,params", COVERAGE_LAYERS, ids=[n for n, _ in COVERAGE_LAYERS])
def test_95_percent_intervals_cover_the_reference_95_percent_of_the_time(
    name: str, params: dict, estimator: str
) -> None:
    """Across SEEDS independent runs the count of intervals containing the reference is Binomial(SEEDS,
    0.95) if the se is honest; it must lie within 4 sd of 380 (that is, in [362.6, 397.4]). A statistic the
    conditional estimator knows without randomness (bp mean always; bp std where E[dx^2 | x] does not depend
    on x) reports se 0 and must then equal its reference in every run, up to float rounding."""
    layer = normstats.make_layer(name, **params)
    refs = {k: r.value for k, r in reference_moments(layer).items() if r is not None}
    hits = dict.fromkeys(refs, 0)
    exact: set[str] = set()
    for seed in range(SEEDS):
        est = engine.run(layer, DRAWS, seed=seed, estimator=estimator).estimates()
        for stat, ref in refs.items():
            value, se = est[stat]
            if se == 0.0:
                assert value == pytest.approx(ref, rel=1e-12, abs=1e-15), (stat, seed)
                exact.add(stat)
            else:
                hits[stat] += abs(value - ref) <= Z95 * se
    lo, hi = _coverage_bounds(SEEDS)
    for stat, count in hits.items():
        if stat not in exact:
            assert lo <= count <= hi, (stat, count, (lo, hi))
    if estimator == "sampled":
        assert not exact
    else:
        assert "bp_mean" in exact


#: The 97.5% quantile of Student's t with 15 degrees of freedom: a qmc se comes from 16 replicates.
#: scipy.stats.t.ppf(0.975, 15) = 2.131449545559776 (checked in the test).
T15_975 = engine.QMC_T95
QMC_SEEDS = 400


@pytest.mark.slow
def test_qmc_intervals_cover_the_reference_at_small_n() -> None:
    """3x3 max pooling, n = 256 (16 points per replicate), across QMC_SEEDS seeds: estimate +- t_15 se covers
    the reference 95% of the time, within 4 binomial sd. A replicate's own plug-in std is biased by O(1/16)
    here; averaging those (the former estimate) covered fp std about 89% of the time, mean z -0.7."""
    from scipy import stats

    assert stats.t.ppf(0.975, engine.REPLICATES - 1) == pytest.approx(T15_975, rel=1e-12)
    layer = normstats.make_layer("maxpool", k=3)
    refs = {k: r.value for k, r in reference_moments(layer).items() if r is not None}
    hits = {"fp_mean": 0, "fp_std": 0}
    for seed in range(QMC_SEEDS):
        est = engine.execute(layer, 256, seed, method="qmc").estimates
        for stat in hits:
            value, se = est[stat]
            hits[stat] += abs(value - refs[stat]) <= T15_975 * se
    lo, hi = _coverage_bounds(QMC_SEEDS)
    for stat, count in hits.items():
        assert lo <= count <= hi, (stat, count, (lo, hi))


def test_the_naive_iid_se_would_fail_the_coverage_check() -> None:
    """The coverage check can fail: the iid se of the pooled gradients of average pooling (9 equal values
    per draw) is 3 times too small, and its intervals cover the reference far less than 95% of the time."""
    layer = normstats.make_layer("avgpool", k=3)
    hits = 0
    for seed in range(100):
        acc = engine.run(layer, DRAWS, seed=seed, estimator="sampled")
        hits += abs(acc.bp.mean) <= Z95 * acc.bp.values.se_mean()
    lo, _ = _coverage_bounds(100)
    assert hits < lo
    # The cluster se is sqrt(9) = 3 times the naive one here.
    acc = engine.run(layer, DRAWS, seed=0, estimator="sampled")
    assert acc.bp.se_mean() == pytest.approx(3 * acc.bp.values.se_mean(), rel=1e-6)


def test_stream_is_independent_of_how_it_is_asked_for() -> None:
    """The property chunking relies on: numpy's Generator yields the same normals in one call or many."""
    one = np.random.Generator(np.random.PCG64(1)).standard_normal(1000)
    gen = np.random.Generator(np.random.PCG64(1))
    parts = [gen.standard_normal(n) for n in (1, 299, 700)]
    assert np.array_equal(one, np.concatenate(parts))


def test_a_qmc_row_reports_its_interval_with_the_t_quantile() -> None:
    row = normstats.simulate("sigmoid", samples=4096, seed=3, method="qmc")
    lo, hi = row.fp_std.ci95
    assert (hi - lo) / 2 == pytest.approx(engine.QMC_T95 * row.fp_std.se, rel=1e-12)
    mc = normstats.simulate("sigmoid", samples=4096, seed=3)
    assert (mc.fp_std.ci95[1] - mc.fp_std.ci95[0]) / 2 == pytest.approx(Z95 * mc.fp_std.se, rel=1e-12)


@pytest.mark.parametrize("dims", [1, 2, 11])
def test_the_sobol_engine_gives_the_points_of_scipys(dims: int) -> None:
    """The qmc source's engine, on scipy's compiled core without scipy.stats, against ``qmc.Sobol`` itself:
    the same seed gives the same points, from the start and after a fast-forward, over several calls."""
    import warnings

    from scipy.stats import qmc

    from normstats.engine import sources

    assert sources._sobol_core() is not None  # this scipy is laid out as the engine expects
    for replicate in range(3):
        for start, sizes in ((0, (1, 63, 64)), (0, (128,)), (4096, (4096, 5)), (37, (3,))):
            ours = sources.scrambled_sobol(dims, sources._generator(9, 2, replicate))
            assert isinstance(ours, sources.ScrambledSobol)
            theirs = qmc.Sobol(dims, scramble=True, seed=sources._generator(9, 2, replicate), bits=sources.SOBOL_BITS)
            if start:
                ours.fast_forward(start)
                theirs.fast_forward(start)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # scipy on balance, for sizes not powers of two
                for n in sizes:
                    assert np.array_equal(ours.random(n), theirs.random(n))


def test_without_scipys_core_the_source_falls_back_on_qmc_sobol_with_the_same_numbers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where scipy's Sobol core cannot be loaded alone (another scipy layout), ``qmc.Sobol`` draws the points:
    a qmc run gives the same numbers either way."""
    from normstats.engine import sources

    with_core = normstats.simulate("sigmoid", samples=1 << 14, seed=5, method="qmc")
    monkeypatch.setattr(sources, "_CORE", [None])
    assert not isinstance(sources.scrambled_sobol(2, sources._generator(5, 2, 0)), sources.ScrambledSobol)
    assert normstats.simulate("sigmoid", samples=1 << 14, seed=5, method="qmc") == with_core


def test_blocks_still_running_when_a_run_stops_keep_one_blas_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """A target se met, the run returns only after the blocks its worker threads had begun, so the BLAS
    threads it restores never run under them (multithreaded dot products made such a block 10x slower)."""
    import time

    from threadpoolctl import threadpool_info, threadpool_limits

    from normstats.engine.executors import ThreadExecutor
    from normstats.engine.stopping import StopRule

    monkeypatch.setattr(engine, "BLOCK_SCALARS", 1 << 12)
    original, seen = engine.run_block, []

    def run_block(job: engine.Job, block: engine.Block) -> object:
        result = original(job, block)
        time.sleep(0.05)  # still at work when the first block has met the target
        seen.append(max((i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"), default=1))
        return result

    monkeypatch.setattr(engine, "run_block", run_block)
    executor = ThreadExecutor(2)
    # two BLAS threads outside the run, whatever the environment says (a test worker starts with one): the
    # one thread seen inside must be the run's doing
    with threadpool_limits(limits=2, user_api="blas"):
        assert {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"} == {2}
        try:
            result = engine.execute(normstats.make_layer("sigmoid"), 10**6, 0, stop=StopRule(target_se=1.0),
                                    executor=executor, parallel_min_scalars=0)
            ended = len(seen)
        finally:
            executor.shutdown()
    assert result.stop == "target-se"
    assert ended == len(seen) >= 2 and set(seen) == {1}


class _CountingPool:
    """An executor that runs a block when it is submitted and counts the blocks it was given."""

    depth = 2

    def __init__(self) -> None:
        self.blocks = 0

    def submit(self, fn, *args):  # type: ignore[no-untyped-def]
        self.blocks += 1
        return engine.IN_PROCESS.submit(fn, *args)


def test_a_runs_first_small_blocks_stay_here_and_large_ones_go_to_the_pool() -> None:
    """A qmc run that meets its target at its first checkpoint (16,384 sigmoid draws, well under HERE_SCALARS
    random numbers) never hands a block to the pool; an mc block (2^21 sigmoid draws, as many random numbers
    under the conditional estimator) goes there from the first; and where the blocks ran changes no number."""
    from normstats.engine.stopping import StopRule

    layer = normstats.make_layer("sigmoid")
    pool = _CountingPool()
    run = engine.execute(layer, 10**12, 0, method="qmc", stop=StopRule(1e-4), executor=pool)
    assert (run.stop, run.draws, pool.blocks) == ("target-se", 16_384, 0)
    samples = 10 * engine.block_draws(layer)  # 2^21 draws a block: 21M random numbers, past PARALLEL_MIN_SCALARS
    assert samples > engine.PARALLEL_MIN_SCALARS
    pool = _CountingPool()
    run = engine.execute(layer, samples, 0, executor=pool)
    assert pool.blocks == 10
    assert run.estimates == engine.execute(layer, samples, 0).estimates
