"""The engine at scale: identical results for any worker count and executor, stopping rules, qmc, Ctrl-C.

Blocks are made small here (``BLOCK_SCALARS``) so that short runs still have many of them and go to the
workers (``PARALLEL_MIN_SCALARS``); both are read only by the parent process, which plans the blocks.
"""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import normstats
from normstats.engine import blocks as engine
from normstats.engine.moments import DrawSums, Moments, PowerSums, Tally
from normstats.engine.stopping import INTERRUPTED, MAX_TIME, SAMPLES, TARGET_SE
from normstats.registry import make_layer
from normstats.stats import STATS
from tests.cases import all_cases, case_id
from tests.test_files_and_signals import Terminal

#: A few rows that cover weights drawn once per run (linear), uniforms (dropout), pooling and an activation.
ROWS = (
    ("sigmoid", {}),
    ("maxpool", {"k": 2}),
    ("dropout", {"p": 0.5}),
    ("linear", {"fan_in": 16, "fan_out": 8, "normalize": "fan-in"}),
)


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "BLOCK_SCALARS", 1 << 13)
    monkeypatch.setattr(engine, "SEGMENT_SCALARS", 1 << 10)
    monkeypatch.setattr(engine, "PARALLEL_MIN_SCALARS", 0)


def _table(**kw: object) -> dict:
    return normstats.table(rows=ROWS, seed=7, **kw).to_dict()  # type: ignore[arg-type]


# -- the fused accumulator -----------------------------------------------------------------------------------
@pytest.mark.parametrize("width", [1, 3])
def test_power_sums_match_the_two_pass_moments(width: int) -> None:
    rng = np.random.default_rng(0)
    data = 1e3 + rng.standard_normal((5000, width)) ** 3  # a large offset and heavy tails
    exact = Tally.of(data)
    for chunk in (1, 7, 5000):
        sums = PowerSums(width, chunk)
        for start in range(0, len(data), chunk):
            sums.add(data[start : start + chunk])
        got = sums.tally()
        for a, b in ((got.values, exact.values), (got.units, exact.units)):
            if a is None:
                continue
            for name in a.__dataclass_fields__:
                assert getattr(a, name) == pytest.approx(getattr(b, name), rel=1e-9, abs=1e-9), name


def test_draw_sums_match_the_two_pass_moments_and_the_power_sums() -> None:
    """The networks' lighter accumulator: the pooled count, mean and m2 of the two-pass moments (m2 from the
    within- and between-draw sums), and the per-draw co-moments of PowerSums (about another shift: DrawSums
    buffers its draws' summaries and takes the first buffer's means, PowerSums the first chunk's)."""
    rng = np.random.default_rng(1)
    data = 3.0 + rng.standard_normal((4000, 6)) ** 3 * np.linspace(0.5, 2.0, 6)
    exact = Tally.of(data)
    for chunk in (1, 7, 4000):
        light, full = DrawSums([6], chunk), PowerSums(6, chunk)
        for start in range(0, len(data), chunk):
            light.begin(len(data[start : start + chunk]))
            light.add(0, data[start : start + chunk])
            light.end()
            full.add(data[start : start + chunk])
        (got,) = light.tallies()
        units, full_units = got.units, full.tally().units
        assert units.n == full_units.n
        for name in ("mean_a", "mean_q", "caa", "cqq", "caq"):
            assert getattr(units, name) == pytest.approx(getattr(full_units, name), rel=1e-12), name
        for name in ("n", "mean", "m2"):
            assert getattr(got.values, name) == pytest.approx(getattr(exact.values, name), rel=1e-12), name
        assert math.isnan(got.values.m3) and math.isnan(got.values.m4)  # not kept: no se of width > 1 uses them
        assert got.std == pytest.approx(exact.std, rel=1e-12)
        assert got.se_std() == pytest.approx(exact.se_std(), rel=1e-9)
        assert got.se_mean() == pytest.approx(exact.se_mean(), rel=1e-9)
    assert DrawSums([6, 3], 4).tallies() == [Tally.empty(6), Tally.empty(3)]


def test_draw_sums_of_several_records_are_each_records_own() -> None:
    """One DrawSums holds every record of a network: each record's tally is the one it gets alone, whatever
    the order the records come in within a chunk and across buffer flushes (5000 draws, 2048 a buffer)."""
    rng = np.random.default_rng(2)
    widths = [6, 3, 11]
    data = [rng.standard_normal((5000, w)) * (1 + k) + k for k, w in enumerate(widths)]
    together = DrawSums(widths, 700)
    alone = [DrawSums([w], 700) for w in widths]
    for start in range(0, 5000, 700):
        together.begin(min(700, 5000 - start))
        for k in (2, 0, 1):
            together.add(k, data[k][start : start + 700])
        together.end()
        for k, sums in enumerate(alone):
            sums.begin(min(700, 5000 - start))
            sums.add(0, data[k][start : start + 700])
            sums.end()
    for got, sums, values in zip(together.tallies(), alone, data):
        (own,) = sums.tallies()
        assert got == own
        assert got.mean == pytest.approx(Tally.of(values).mean, rel=1e-12)
        assert got.std == pytest.approx(Tally.of(values).std, rel=1e-12)
    with pytest.raises(ValueError, match="got 5 draws in a chunk of 4"):
        sums = DrawSums([3], 8)
        sums.begin(4)
        sums.add(0, np.ones((5, 3)))


def test_power_sums_of_nothing_is_empty() -> None:
    assert PowerSums(1, 4).tally().values == Moments()


@pytest.mark.parametrize("case", all_cases(), ids=case_id)
def test_every_streaming_sampler_agrees_with_the_plain_one(case: tuple[str, dict]) -> None:
    """The hot loop's samplers (buffers reused, faster arithmetic) against each layer's plain pass, on inputs
    far into the tails (x, dy ~ 8 N(0, 1)), called twice so a reused buffer cannot hide a stale value."""
    name, params = case
    layer = make_layer(name, **params)
    fast_sampler = layer.streaming_sampler(engine.setup_rng(0))
    plain_sampler = layer.sampler(engine.setup_rng(0))
    for seed in (1, 2):
        rng = np.random.default_rng(seed)
        x = rng.standard_normal((300, layer.in_dim)) * 8
        dy = rng.standard_normal((300, layer.out_dim)) * 8
        u = rng.random((300, layer.n_uniform))
        fast = [a.copy() for a in fast_sampler(x, dy, u)]
        for a, b in zip(fast, plain_sampler(x, dy, u)):
            np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-300)


# -- reproducibility -------------------------------------------------------------------------------------------
@pytest.mark.usefixtures("small_blocks")
@pytest.mark.parametrize("estimator", engine.ESTIMATORS)
@pytest.mark.parametrize("method", ["mc", "qmc"])
def test_any_worker_count_gives_identical_json(method: str, estimator: str) -> None:
    """1, 2 and 3 worker threads, and 2 and 3 worker processes: the same bytes."""
    results = [_table(samples=20_000, workers=w, method=method, estimator=estimator) for w in (1, 2, 3)]
    results += [
        _table(samples=20_000, workers=w, method=method, estimator=estimator, processes=True) for w in (2, 3)
    ]
    assert all(r == results[0] for r in results[1:])
    assert all(row["samples"] >= 20_000 for row in results[0]["rows"])


@pytest.mark.usefixtures("small_blocks")
def test_a_target_stops_at_the_same_block_for_any_worker_count() -> None:
    a, b = (_table(target_se=2e-3, workers=w) for w in (1, 2))
    assert a == b
    for row in a["rows"]:
        assert row["stop"] == TARGET_SE
        assert all(row[s]["se"] <= 2e-3 for s in STATS)


@pytest.mark.usefixtures("small_blocks")
def test_dask_gives_the_local_result() -> None:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        processes=False, n_workers=1, threads_per_worker=2, dashboard_address="127.0.0.1:0"
    ) as cluster:  # any free port: with None the scheduler's HTTP server takes 8787, or warns when it is taken
        remote = _table(samples=20_000, dask=cluster.scheduler_address)
    assert remote == _table(samples=20_000, workers=1)


@pytest.mark.parametrize("name, params", ROWS)
def test_chunk_size_changes_only_rounding(name: str, params: dict) -> None:
    rows = [normstats.simulate(name, samples=30_000, seed=3, chunk_draws=c, **params) for c in (97, None)]
    for s in STATS:
        a, b = (getattr(r, s) for r in rows)
        assert a.estimate == pytest.approx(b.estimate, rel=1e-10, abs=1e-13)
        assert a.se == pytest.approx(b.se, rel=1e-8, abs=1e-13)


# -- stopping ----------------------------------------------------------------------------------------------------
def test_target_se_is_met_for_every_statistic() -> None:
    row = normstats.simulate("sigmoid", target_se=1e-4, workers=1)
    assert row.stop == TARGET_SE
    assert all(stat.se <= 1e-4 for stat in row.stats().values())


def test_samples_cap_a_run_with_an_unreachable_target() -> None:
    row = normstats.simulate("relu", target_se=1e-9, samples=10_000, workers=1, method="mc")
    assert (row.stop, row.samples) == (SAMPLES, 10_000)


def test_auto_method_runs_qmc_on_the_shortcut_with_a_target_and_mc_on_the_layer_without() -> None:
    """``method="auto"`` (the default): a target se means qmc on the layer's first exact shortcut (qmc rounds
    the cap up to a power of two per replicate); a plain sample count means mc on the layer's own passes; an
    explicit sampler is kept."""
    row = normstats.simulate("maxpool", k=2, target_se=1e-9, samples=10_000, workers=1)
    assert (row.method, row.sampler, row.stop, row.samples) == ("qmc", "order-statistics", SAMPLES, 16_384)
    row = normstats.simulate("maxpool", k=2, target_se=1e-9, samples=10_000, workers=1, sampler="layer")
    assert (row.method, row.sampler) == ("qmc", "layer")
    row = normstats.simulate("maxpool", k=2, samples=10_000, workers=1)
    assert (row.method, row.sampler, row.samples) == ("mc", "layer", 10_000)
    row = normstats.simulate("relu", target_se=1e-9, samples=10_000, workers=1)
    assert (row.method, row.sampler) == ("qmc", "layer")  # no shortcut: qmc on its own passes


def test_max_time_stops_a_long_run() -> None:
    started = time.monotonic()
    row = normstats.simulate("maxpool", k=3, max_time=0.3, workers=1)
    assert row.stop == MAX_TIME
    assert 0 < row.samples < 10**12
    assert time.monotonic() - started < 30


# -- quasi-Monte Carlo ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, params", [("maxpool", {"k": 3}), ("sigmoid", {}), ("avgpool", {"k": 2})])
def test_qmc_reaches_a_target_near_the_reference(name: str, params: dict) -> None:
    row = normstats.simulate(name, method="qmc", target_se=2e-5, workers=1, **params)
    assert (row.method, row.stop) == ("qmc", TARGET_SE)
    for s, stat in row.stats().items():
        assert stat.se <= 2e-5
        if stat.reference is not None:
            # 16 replicates: the se has 15 degrees of freedom; |t| > 6 has probability below 1e-4.
            assert abs(stat.estimate - stat.reference) <= 6 * stat.se + 1e-12, s


def test_qmc_rounds_each_replicate_up_to_a_power_of_two() -> None:
    row = normstats.simulate("relu", method="qmc", samples=1000, workers=1)
    assert row.samples == engine.REPLICATES * 64


def test_qmc_standard_error_is_the_spread_of_the_replicates() -> None:
    layer = make_layer("relu")
    plan = engine.SobolPlan(layer, 16 * 256)
    job = engine.Job(layer, 0, "qmc", 100)
    for block in plan.blocks():
        plan.add(block, engine.run_block(job, block))
    estimates, draws = plan.snapshot()
    means = [acc.fp.mean for acc in plan._accs]
    assert draws == 16 * 256
    # for a mean the jackknife over replicates is exactly the spread of their means over sqrt(16)
    assert estimates["fp_mean"] == pytest.approx((np.mean(means), np.std(means, ddof=1) / 4), rel=1e-12)
    # a std comes from the pooled moments of every replicate, not from the mean of the replicates' stds
    pooled = plan._accs[0]
    for acc in plan._accs[1:]:
        pooled = pooled.merge(acc)
    assert estimates["fp_std"][0] == pytest.approx(pooled.fp.std, rel=1e-12)
    stds = [acc.fp.std for acc in plan._accs]
    assert estimates["fp_std"][0] > np.mean(stds)  # each replicate's plug-in std is biased low


# -- the command line ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, needle",
    [
        (["--workers", "0"], "--workers must be an integer in [1, 1024]; got '0'"),
        (["--target-se", "-1"], "--target-se must be a positive number"),
        (["--max-time", "abc"], "--max-time must be a positive duration"),
        (["--method", "sobol"], "--method"),
        (["--processes", "--dask", "tcp://127.0.0.1:1"], "give one of them; got --processes and --dask tcp://"),
    ],
)
def test_bad_run_options_exit_2_with_one_line(args: list[str], needle: str) -> None:
    proc = _cli("simulate", "--layer", "relu", *args)
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_stop_reason_and_draws_are_reported() -> None:
    for method in ("mc", "auto"):
        proc = _cli("simulate", "--layer", "relu", "--target-se", "1e-3", "-j", "1", "--format", "json",
                    "--method", method)
        assert proc.returncode == 0, proc.stderr
        row = json.loads(proc.stdout)["rows"][0]
        ran = "qmc" if method == "auto" else "mc"
        assert (row["stop"], row["partial"], row["method"]) == (TARGET_SE, False, ran)
        assert f"{row['samples']:,} draws ({ran}), stopped by target-se" in proc.stderr


@pytest.mark.parametrize("pool", [[], ["--processes"]], ids=["threads", "processes"])
def test_ctrl_c_prints_partial_results_and_exits_130(pool: list[str]) -> None:
    """Ctrl-C once the progress bar counts merged draws (not after a fixed sleep: a loaded machine took more
    than 6 s to start the worker processes)."""
    child = Terminal("simulate", "--layer", "maxpool", "--k", "3", "-n", "1e11", "-j", "2", *pool,
                     "--format", "json")
    status, out, err = child.interrupt(signal.SIGINT)
    assert status == 130, err
    assert "Traceback" not in err and "partial" in err
    doc = json.loads(out)
    row = doc["rows"][0]
    assert doc["partial"] and row["partial"] and row["stop"] == INTERRUPTED
    assert 0 < row["samples"] < 10**11
    assert all(math.isfinite(row[s]["se"]) for s in STATS)


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "normstats.cli", *args], capture_output=True, text=True, timeout=120
    )


# -- progress --------------------------------------------------------------------------------------------------
def test_progress_is_silent_off_a_terminal_and_a_bar_on_one() -> None:
    import io

    from rich.console import Console

    from normstats.engine.progress import NULL_PROGRESS, BarProgress, make_progress

    assert make_progress(quiet=False) is NULL_PROGRESS  # pytest's stderr is no terminal
    assert make_progress(quiet=True) is NULL_PROGRESS
    buf = io.StringIO()
    bar = BarProgress(Console(file=buf, force_terminal=True, width=120))
    row = normstats.simulate("relu", samples=10**6, workers=1, target_se=1e-3, progress=bar)
    assert row.stop == TARGET_SE
    assert "relu" in buf.getvalue() and "target" in buf.getvalue()


def test_row_squares_without_vecdot_is_the_same_sum(monkeypatch: pytest.MonkeyPatch) -> None:
    """numpy before 2.0 has no ``vecdot``: the einsum fallback gives the same sums of squares (to rounding), into
    ``out`` as well, on a strided batch too."""
    from normstats.engine import moments

    rng = np.random.default_rng(3)
    batch = rng.standard_normal((50, 40))[:, ::2]
    exact = (batch.astype(np.longdouble) ** 2).sum(axis=1)
    fast = moments.row_squares(batch)
    monkeypatch.setattr(moments, "_VECDOT", None)
    out = np.empty(50)
    slow = moments.row_squares(batch, out=out)
    assert slow is out
    for got in (fast, slow):
        np.testing.assert_allclose(got, exact.astype(float), rtol=1e-14)
