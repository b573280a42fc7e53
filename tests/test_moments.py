"""Streaming moments: merges equal a two-pass computation on the whole data, and the standard errors match
their textbook forms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from normstats.engine.moments import CoMoments, Moments, Tally, cluster_se_std


def two_pass(v: np.ndarray) -> tuple[float, float, float, float]:
    d = v - v.mean()
    return v.mean(), (d**2).sum(), (d**3).sum(), (d**4).sum()


@pytest.mark.parametrize("cuts", [[1], [7, 8], [100, 250, 999], list(range(1, 1000, 37))])
def test_merge_of_any_split_equals_two_pass(cuts: list[int]) -> None:
    rng = np.random.default_rng(1)
    v = rng.gamma(2.0, size=1000) + 3.0  # skewed and off-centre, so every term of the merge matters
    parts = np.split(v, cuts)
    merged = Moments()
    for part in parts:
        merged = merged.merge(Moments.of(part))
    mean, m2, m3, m4 = two_pass(v)
    assert merged.n == v.size
    assert merged.mean == pytest.approx(mean, rel=1e-13)
    assert merged.m2 == pytest.approx(m2, rel=1e-12)
    assert merged.m3 == pytest.approx(m3, rel=1e-10)
    assert merged.m4 == pytest.approx(m4, rel=1e-11)


def test_merge_grouping_does_not_matter() -> None:
    rng = np.random.default_rng(2)
    a, b, c = (Moments.of(rng.standard_normal(n) * 2 + 1) for n in (10, 200, 3000))
    left, right = a.merge(b).merge(c), a.merge(b.merge(c))
    for field in ("mean", "m2", "m3", "m4"):
        assert getattr(left, field) == pytest.approx(getattr(right, field), rel=1e-12)


def test_empty_is_neutral() -> None:
    m = Moments.of(np.arange(5.0))
    assert m.merge(Moments()) == m
    assert Moments().merge(m) == m
    assert Moments.of(np.array([])) == Moments()


def test_se_formulas_for_iid_values() -> None:
    v = np.random.default_rng(3).standard_normal(10_000)
    m = Moments.of(v)
    s2 = v.var()
    mu4 = ((v - v.mean()) ** 4).mean()
    assert m.se_mean() == pytest.approx(math.sqrt(s2 / v.size), rel=1e-12)
    assert m.se_std() == pytest.approx(math.sqrt((mu4 - s2**2) / v.size) / (2 * math.sqrt(s2)), rel=1e-12)


def test_comoments_merge_equals_whole() -> None:
    rng = np.random.default_rng(4)
    a = rng.standard_normal(500)
    q = a**2 + rng.standard_normal(500)
    merged = CoMoments.of(a[:123], q[:123]).merge(CoMoments.of(a[123:], q[123:]))
    whole = CoMoments.of(a, q)
    for field in ("mean_a", "mean_q", "caa", "cqq", "caq"):
        assert getattr(merged, field) == pytest.approx(getattr(whole, field), rel=1e-12)


def test_cluster_se_reduces_to_iid_formula_for_one_value_per_draw() -> None:
    """With one value per draw, the per-draw delta method is the 4th-moment formula."""
    v = np.random.default_rng(5).gamma(3.0, size=20_000)
    iid = Moments.of(v)
    cluster = CoMoments.of(v, v * v)
    assert cluster_se_std(cluster) == pytest.approx(iid.se_std(), rel=1e-9)
    assert math.sqrt(cluster.caa / cluster.n**2) == pytest.approx(iid.se_mean(), rel=1e-12)


def test_tally_pools_values_and_counts_draws() -> None:
    batch = np.random.default_rng(6).standard_normal((300, 4))
    t = Tally.of(batch)
    assert t.draws == 300 and t.width == 4
    assert t.mean == pytest.approx(batch.mean(), rel=1e-12)
    assert t.std == pytest.approx(batch.std(), rel=1e-12)
    split = Tally.of(batch[:100]).merge(Tally.of(batch[100:]))
    assert split.se_std() == pytest.approx(t.se_std(), rel=1e-10)
    assert split.se_mean() == pytest.approx(t.se_mean(), rel=1e-10)


def test_cluster_se_sees_correlation_within_a_draw() -> None:
    """Four copies of one normal per draw: the pooled values look like 4n samples but carry n samples'
    information; the cluster se must be twice the naive iid se."""
    z = np.random.default_rng(7).standard_normal((10_000, 1))
    t = Tally.of(np.repeat(z, 4, axis=1))
    naive = t.values
    assert t.se_mean() == pytest.approx(2 * naive.se_mean(), rel=1e-9)
    assert t.se_std() == pytest.approx(2 * naive.se_std(), rel=1e-6)
