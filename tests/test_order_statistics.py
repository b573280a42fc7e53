"""``--sampler order-statistics``: max pooling's window maximum drawn from one uniform through its quantile
function. Checked against 30-digit mpmath quantiles, the exact distribution function (Kolmogorov-Smirnov),
the layer's own passes run on the same number of draws, and the exact references, where a draw is one window
and where windows overlap, repeat or lie apart (the same expectations, the stand-in's own se); refused in one
line where a window holds padding."""

from __future__ import annotations

import json

import mpmath as mp
import numpy as np
import pytest
from scipy import stats

import normstats
from normstats.engine import blocks as engine
from normstats.engine.moments import ConditionalSums
from normstats.errors import ParameterError
from normstats.exact.references import reference_moments
from normstats.layers.base import ProbeSampler
from normstats.layers.pooling import MaxOfNormals, max_of_normals_quantile
from tests.test_cli import run, run_bad
from tests.shortcuts import assert_agrees, assert_qmc_covers
from tests.test_export import VALIDATOR


def _mp_quantile(u: float, n: int) -> float:
    """Phi^-1(V^(1/n)) at 30 digits, V the midpoint of u's cell on the 2^-52 grid (as the code defines it)."""
    with mp.workdps(30):
        v = (mp.floor(mp.mpf(u) * 2**52) + mp.mpf("0.5")) / 2**52
        return float(mp.sqrt(2) * mp.erfinv(2 * v ** (mp.mpf(1) / n) - 1))


@pytest.mark.parametrize("n", [1, 2, 9, 100, 1024])
def test_quantile_matches_mpmath_across_the_range_and_in_both_tails(n: int) -> None:
    u = np.array([0.0, 1e-12, 0.001, 0.1, 0.5, 0.9, 0.999, 1 - 1e-12, 1 - 2.0**-53])
    got = max_of_normals_quantile(u, n)
    want = np.array([_mp_quantile(float(x), n) for x in u])
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-13)


def test_quantile_of_one_is_the_normal_and_is_antisymmetric_at_the_ends() -> None:
    ends = max_of_normals_quantile(np.array([0.0, 1 - 2.0**-53]), 1)
    assert ends[0] == -ends[1] and 8.0 < ends[1] < 8.3


@pytest.mark.parametrize("n", [2, 9, 25])
def test_quantile_draws_have_the_distribution_of_the_max(n: int) -> None:
    """Kolmogorov-Smirnov against P(max <= y) = Phi(y)^n, on 10^5 uniforms of a fixed seed: the test's p-value
    is uniform under the exact distribution, so the 1e-3 threshold fails a correct sampler once in 1000 seeds
    and this fixed seed never."""
    u = np.random.default_rng(n).random(100_000)
    y = max_of_normals_quantile(u, n)
    assert stats.kstest(y, lambda t: stats.norm.cdf(t) ** n).pvalue > 1e-3


@pytest.mark.parametrize("estimator", engine.ESTIMATORS)
@pytest.mark.parametrize("k", [1, 2, 3])
def test_shortcut_agrees_with_the_layer_and_the_references(k: int, estimator: str) -> None:
    """On the same number of draws, each of the four statistics of the shortcut and of the layer's own passes
    sits within 4 se of the exact reference, and the two within 4 se (combined) of each other; statistics
    with se 0 (the conditional bp) equal the reference exactly on both paths."""
    layer = normstats.make_layer("maxpool", k=k)
    refs = reference_moments(layer)
    ours = engine.execute(layer.shortcut("order-statistics"), 200_000, 1, estimator=estimator).estimates
    theirs = engine.execute(layer, 200_000, 2, estimator=estimator).estimates
    assert_agrees(ours, theirs, refs, same_law=True)


def test_stand_in_conditional_sampler_is_its_backward_pass_on_every_unit_dy() -> None:
    """Its g, passed as one column of row means (all the tally reads), is the row mean of the probes of its own
    backward pass: 1 at the routed input, 0 at the others."""
    stand_in = MaxOfNormals(n=4)
    u = np.random.default_rng(0).random((50, 1))
    y, g = stand_in.conditional_sampler(np.random.default_rng(0))(np.empty((50, 0)), u)
    y_probe, g_probe = ProbeSampler(stand_in.sampler(np.random.default_rng(0)), stand_in.out_dim)(
        np.empty((50, 0)), u
    )
    np.testing.assert_array_equal(y, y_probe)
    assert g_probe.tolist() == [[1.0, 0.0, 0.0, 0.0]] * 50
    assert g.shape == (50, 1) and g[:, 0].tolist() == g_probe.mean(axis=1).tolist()


def test_conditional_sums_read_only_row_means() -> None:
    """The summary contract the stand-in relies on: one column of row means tallies as the full g."""
    g = np.random.default_rng(3).random((1000, 4))
    full, summary = ConditionalSums(4, 1000), ConditionalSums(4, 1000)
    full.add(g)
    summary.add(g.mean(axis=1, keepdims=True))
    a, b = full.tally(), summary.tally()
    assert a.std == pytest.approx(b.std, rel=1e-14) and a.se_std() == pytest.approx(b.se_std(), rel=1e-10)


def test_worker_counts_give_the_same_row(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "BLOCK_SCALARS", 1 << 13)
    monkeypatch.setattr(engine, "PARALLEL_MIN_SCALARS", 0)
    rows = [
        normstats.simulate("maxpool", k=3, samples=30_000, workers=w, sampler="order-statistics").to_dict()
        for w in (1, 2, 3)
    ]
    assert rows[0] == rows[1] == rows[2]
    assert rows[0]["sampler"] == "order-statistics"


#: Geometries where every window holds n real inputs but a draw is not one window: overlapping (rho = 1/4),
#: apart (k < stride: rho = 1/9 with n = 4), and a finite map without padding (rho = 9/49, not 1/m: c < 1).
WHOLE_WINDOWS = [{"k": 3, "stride": 2}, {"k": 2, "stride": 3}, {"k": 3, "stride": 2, "size": "7"}]
WHOLE_IDS = ["overlapping", "apart", "finite"]


@pytest.mark.parametrize("estimator", engine.ESTIMATORS)
@pytest.mark.parametrize("params", WHOLE_WINDOWS, ids=WHOLE_IDS)
def test_shortcut_where_windows_overlap_agrees_with_the_layer_and_the_references(
    params: dict, estimator: str
) -> None:
    """The stand-in has the layer's four expectations but not its per-draw law (one window, not the draw's
    correlated windows), so its se is its own: each statistic of either path sits within 4 of its own se of
    the exact reference, and the two within 4 combined se of each other; se-0 statistics equal the reference."""
    layer = normstats.make_layer("maxpool", **params)
    refs = reference_moments(layer)
    ours = engine.execute(layer.shortcut("order-statistics"), 100_000, 1, estimator=estimator).estimates
    theirs = engine.execute(layer, 100_000, 2, estimator=estimator).estimates
    assert_agrees(ours, theirs, refs, same_law=False)


@pytest.mark.parametrize("params", WHOLE_WINDOWS, ids=WHOLE_IDS)
def test_overlapping_stand_in_routes_the_density_rho_not_one_over_n(params: dict) -> None:
    """g's row mean is the layer's density rho = windows per counted input (1/4, 1/9, 9/49 here), not 1/n,
    and equals the row mean of the probes of the stand-in's own backward pass (c^2 at the routed input)."""
    layer = normstats.make_layer("maxpool", **params)
    stand_in = layer.shortcut("order-statistics")
    u = np.random.default_rng(0).random((50, 1))
    y, g = stand_in.conditional_sampler(np.random.default_rng(0))(np.empty((50, 0)), u)
    y_probe, g_probe = ProbeSampler(stand_in.sampler(np.random.default_rng(0)), stand_in.out_dim)(
        np.empty((50, 0)), u
    )
    np.testing.assert_array_equal(y, y_probe)
    rho = stand_in.windows / stand_in.positions  # one rounding; the grid's 3/7 * 3/7 may differ by an ulp
    assert g.shape == (50, 1) and np.all(g == rho) and rho != 1 / layer.window
    assert rho == pytest.approx(layer.grid.density, rel=1e-15)
    np.testing.assert_allclose(g_probe.mean(axis=1), rho, rtol=1e-15)
    assert np.count_nonzero(g_probe, axis=1).tolist() == [1] * 50


@pytest.mark.slow
def test_qmc_intervals_of_the_overlapping_stand_in_cover_the_reference_at_small_n() -> None:
    """3x3 windows, stride 2: n = 256 (16 points per replicate), across 256 seeds, estimate +- t_15 se covers
    the exact fp mean and fp std at a rate within 4 binomial sd of 95%."""
    layer = normstats.make_layer("maxpool", k=3, stride=2)
    refs = {k: r.value for k, r in reference_moments(layer).items() if k in ("fp_mean", "fp_std")}
    assert_qmc_covers(layer.shortcut("order-statistics"), refs, 256, 256)


@pytest.mark.parametrize(
    "params,smallest",
    [({"k": 3, "size": "3", "padding": 1}, 4), ({"k": 3, "stride": 2, "size": "7", "padding": 1}, 4)],
    ids=["one-window", "several-windows"],
)
def test_shortcut_is_refused_where_windows_hold_padding(params: dict, smallest: int) -> None:
    """A padded finite map has border windows of fewer real inputs: its outputs are a mixture of maxima."""
    with pytest.raises(ParameterError, match=f"needs every window to hold kh\\*kw = 9 real inputs .* the "
                                             f"smallest window here holds {smallest}"):
        normstats.make_layer("maxpool", **params).shortcut("order-statistics")


@pytest.mark.parametrize(
    "params,expected",
    [({"k": 3, "stride": 2}, (9, 1, 4)), ({"k": 3, "stride": 1, "padding": 1}, (9, 1, 1)),
     ({"kh": 2, "kw": 3, "stride": 2}, (6, 1, 4)), ({"k": 2, "size": "6"}, (4, 1, 4)),
     ({"k": 3, "stride": 2, "size": "7"}, (9, 9, 49))],
    ids=["interior", "interior-padding-plays-no-part", "rectangular", "finite-tiled", "finite"],
)
def test_stand_in_holds_n_and_the_density_in_lowest_terms(params: dict, expected: tuple) -> None:
    layer = normstats.make_layer("maxpool", **params)
    n, windows, positions = expected
    assert layer.shortcut("order-statistics") == MaxOfNormals(n=n, windows=windows, positions=positions)
    assert windows / positions == pytest.approx(layer.grid.density, rel=1e-15)
    assert layer.auto_sampler() == "order-statistics"


def test_a_finite_map_the_size_of_the_window_is_one_window() -> None:
    stand_in = normstats.make_layer("maxpool", k=3, size="3").shortcut("order-statistics")
    assert stand_in == MaxOfNormals(n=9)


def test_cli_records_the_sampler_and_refuses_it_in_one_line() -> None:
    doc = json.loads(run("simulate", "--layer", "maxpool", "--k", "2", "-n", "4000", "--sampler",
                         "order-statistics", "--format", "json").stdout)
    VALIDATOR.validate(doc)
    assert doc["rows"][0]["sampler"] == "order-statistics"
    assert json.loads(run("simulate", "--layer", "relu", "-n", "100", "--format", "json").stdout)["rows"][0][
        "sampler"
    ] == "layer"
    line = run_bad("simulate", "--layer", "avgpool", "--sampler", "order-statistics")
    assert line == (
        "normstats: error: --sampler must be one of: layer (for layer 'avgpool'); got 'order-statistics'"
    )
    assert "the smallest window here holds 4" in run_bad(
        "simulate", "--layer", "maxpool", "--k", "3", "--stride", "2", "--size", "7", "--padding", "1",
        "--sampler", "order-statistics"
    )
    assert "'--sampler'" in run_bad("simulate", "--layer", "maxpool", "--sampler", "fast")
