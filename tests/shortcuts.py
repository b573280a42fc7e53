"""The checks every exact shortcut (``--sampler``) must pass, shared by its test files: its four statistics
against the layer's own passes and the exact references, and the coverage of its qmc intervals."""

from __future__ import annotations

import math
from typing import Any

import pytest

from normstats.engine import blocks as engine
from normstats.stats import STATS


def assert_agrees(
    ours: dict[str, tuple[float, float]], theirs: dict[str, tuple[float, float]], refs: dict[str, Any],
    *, same_law: bool, se_rel: float = 0.05,
) -> None:
    """``ours`` (the stand-in's ``{statistic: (estimate, se)}``) and ``theirs`` (the layer's own passes, an
    independent run): each within 4 of its own se of the exact reference, and the two within 4 combined se of
    each other. A statistic the stand-in knows exactly (se 0) equals the reference on both paths, to rounding.
    ``same_law``: each draw of the stand-in has the layer's law, so the se's agree to ``se_rel`` too."""
    for s in STATS:
        (a, se_a), (b, se_b), ref = ours[s], theirs[s], refs[s].value
        assert math.isfinite(a) and math.isfinite(se_a), s
        if se_a == 0:
            assert a == pytest.approx(ref, abs=1e-15) and b == pytest.approx(ref, abs=1e-15), (s, a, b, ref)
            continue
        # a statistic exact in every draw (e.g. the bp mean of centred weights) has an estimate and an se made
        # of rounding errors alone, about 1e-18, on either path; their digits are the summation order's
        if abs(a - ref) <= 1e-15 and abs(b - ref) <= 1e-15:
            continue
        assert abs(a - ref) <= 4 * se_a, (s, a, ref, se_a)
        assert abs(b - ref) <= 4 * se_b or abs(b - ref) <= 1e-15, (s, b, ref, se_b)
        assert abs(a - b) <= 4 * math.hypot(se_a, se_b), (s, a, b)
        if same_law:
            assert se_a == pytest.approx(se_b, rel=se_rel), s  # the same distribution: the same spread


def coverage_bounds(n: int, p: float = 0.95) -> tuple[float, float]:
    """Where a Binomial(n, p) count of covering intervals lies but for a 4-sd fluke."""
    sd = (n * p * (1 - p)) ** 0.5
    return n * p - 4 * sd, n * p + 4 * sd


def assert_qmc_covers(
    model: Any, refs: dict[str, float], samples: int, seeds: int, estimator: str = engine.DEFAULT_ESTIMATOR
) -> None:
    """Across ``seeds`` qmc runs of ``samples`` draws, ``estimate +- t_15 se`` covers each reference in
    ``refs`` a Binomial(seeds, 0.95) number of times, within 4 sd; a statistic with se 0 must equal its
    reference (and counts as covered)."""
    hits = dict.fromkeys(refs, 0)
    for seed in range(seeds):
        estimates = engine.execute(model, samples, seed, method="qmc", estimator=estimator).estimates
        for s, ref in refs.items():
            value, se = estimates[s]
            if se == 0:
                assert value == pytest.approx(ref, abs=1e-15), (s, value, ref)
                hits[s] += 1
            else:
                hits[s] += abs(value - ref) <= engine.QMC_T95 * se
    lo, hi = coverage_bounds(seeds)
    for s, count in hits.items():
        assert lo <= count <= hi, (s, count, (lo, hi))
