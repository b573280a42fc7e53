"""``--sampler chi-square``: a normalization layer's group drawn from the chi-square law of its sum of squares
(:class:`~normstats.layers.norms.ChiSquareGroup`). Checked against 30-digit mpmath quantiles, the layer's own
arrays (the reduction of a draw to ``(t, R, S)`` and of ``dy`` to ``(z1, z2, W)``, value by value), the
per-draw law of the layer (Kolmogorov-Smirnov), the layer's own passes run on as many draws, the exact
references, and qmc coverage; refused in one line where it does not apply."""

from __future__ import annotations

import json
import math

import mpmath as mp
import numpy as np
import pytest
from scipy import stats

import normstats
from normstats.engine import blocks as engine
from normstats.exact.references import reference_moments
from normstats.layers.norms import ChiSquareGroup, chi_square_of_normal, chi_square_quantile
from tests.test_cli import run, run_bad
from tests.shortcuts import assert_agrees, assert_qmc_covers
from tests.test_export import VALIDATOR


def _mp_chi2(k: int, tail: float, lower: bool, near: float) -> float:
    """The chi^2_k value with lower- (or upper-) tail probability ``tail``, at 30 digits: Newton's method in
    ``y = log S`` on ``log P(k/2, S/2) = log tail`` (or ``Q``), so tiny tails keep their digits, started
    from ``near`` (the value under test: Newton converges to the root of the exact equation whatever the start
    it is given, as long as it is close)."""
    with mp.workdps(30):
        a, target = mp.mpf(k) / 2, mp.log(mp.mpf(tail))

        def part(y: mp.mpf) -> mp.mpf:
            half = mp.exp(y) / 2
            return mp.gammainc(a, 0, half, regularized=True) if lower else mp.gammainc(a, half, mp.inf,
                                                                                       regularized=True)

        def f(y: mp.mpf) -> mp.mpf:
            return mp.log(part(y)) - target

        def df(y: mp.mpf) -> mp.mpf:  # d/dy log P = S pdf(S) / P (minus that for Q)
            half = mp.exp(y) / 2
            density = mp.exp(a * mp.log(half) - half - mp.loggamma(a))  # S pdf(S) = half^a e^-half / Gamma(a)
            return (density if lower else -density) / part(y)

        return float(mp.exp(mp.findroot(f, mp.log(near), solver="newton", df=df, tol=mp.mpf(10) ** -50)))


def _mp_quantile(u: float, k: int, near: float) -> float:
    """The code's definition: the quantile at the midpoint V of u's cell on the 2^-52 grid, lower tail below
    1/2, upper tail (1 - V) above (V and 1 - V are exact doubles)."""
    with mp.workdps(30):
        v = (mp.floor(mp.mpf(u) * 2**52) + mp.mpf("0.5")) / 2**52
        return _mp_chi2(k, float(v), True, near) if v < 0.5 else _mp_chi2(k, float(1 - v), False, near)


U = [0.0, 1e-12, 0.001, 0.1, 0.4999, 0.5, 0.9, 0.999, 1 - 1e-12, 1 - 2.0**-53]


@pytest.mark.parametrize("k", [1, 2, 7, 63, 767])
def test_quantile_matches_mpmath_across_the_range_and_in_both_tails(k: int) -> None:
    got = chi_square_quantile(np.array(U), k)
    want = np.array([_mp_quantile(u, k, g) for u, g in zip(U, got)])
    assert np.all(got > 0) and np.all(np.isfinite(got))
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("k", [1, 6, 766])
def test_chi_square_of_a_normal_matches_mpmath_in_both_tails(k: int) -> None:
    z = np.array([-8.0, -3.0, -0.1, 0.0, 0.1, 3.0, 8.0])
    got = chi_square_of_normal(z, k)
    want = [
        # Phi(z) below 0, Phi(-z) = 1 - Phi(z) above
        _mp_chi2(k, float(mp.ncdf(-abs(t))), t < 0, g) for t, g in zip(z, got)
    ]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_no_degrees_of_freedom_give_zero() -> None:
    assert chi_square_quantile(np.array([0.0, 0.5]), 0).tolist() == [0.0, 0.0]


# -- the reduction, value by value ------------------------------------------------------------------------------
REDUCTION_CASES = [("layernorm", n, eps) for n in (2, 3, 8, 64) for eps in (0.0, 1e-5, 0.3)] + [
    ("layernorm", 1, 0.3), *(("rmsnorm", n, eps) for n in (1, 2, 3, 8, 64) for eps in (0.0, 1e-5, 0.3)),
]


@pytest.mark.parametrize("name,n,eps", REDUCTION_CASES)
def test_the_group_moments_are_the_layers_draw_by_draw(name: str, n: int, eps: float) -> None:
    """From the layer's own ``x`` and ``dy``: ``t``, ``R``, ``S`` and ``z1 = <yhat, dy>``, ``z2 = <e, dy>``,
    ``W = |dy|^2 - (sum dy)^2 / n - z1^2`` (centred) or ``|dy|^2 - z1^2 - z2^2`` (RMS norm) put through the
    stand-in's formulas give the layer's row mean and mean square of ``y`` and of ``dx``, and the row mean of
    its conditional ``g``, to rounding: the derivation in the module docstring, checked on 200 draws."""
    layer = normstats.make_layer(name, features=n, eps=eps)
    group = layer.shortcut("chi-square")
    rng = np.random.default_rng(n)
    x, dy = rng.standard_normal((200, n)), rng.standard_normal((200, n))
    y, dx = layer.forward_backward(x, dy, np.empty((200, 0)))
    _, g = layer.conditional_sampler(rng)(x, np.empty((200, 0)))
    if group.centred:
        t, r = None, np.sum((x - x.mean(axis=1, keepdims=True)) ** 2, axis=1)
        s = r
    else:
        t, s = x.sum(axis=1) / math.sqrt(n), np.sum(x * x, axis=1)
        r = s - t * t
    yhat = (y / np.linalg.norm(y, axis=1, keepdims=True)) if n > 1 or not group.centred else np.zeros_like(y)
    z1 = np.sum(yhat * dy, axis=1)
    rest = np.sum(dy * dy, axis=1) - z1 * z1
    z2 = None
    if group.centred:
        rest -= dy.sum(axis=1) ** 2 / n
    elif n > 1:
        ones = np.ones(n) - np.sum(yhat, axis=1, keepdims=True) * yhat  # the ones vector less its y part
        e = ones / np.linalg.norm(ones, axis=1, keepdims=True)
        z2 = np.sum(e * dy, axis=1)
        rest -= z2 * z2
    a, spread, g_mean, d = group.forward_moments(t, r, s)
    a_bp, q_bp = group.backward_moments(t, r, s, d, z1, z2, np.maximum(rest, 0.0))
    scale = 1.0 / d  # the size of q; the sums' rounding is relative to it
    np.testing.assert_allclose(a, y.mean(axis=1), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(a * a + spread, np.mean(y * y, axis=1), rtol=1e-9)
    np.testing.assert_allclose(g_mean, g.mean(axis=1), rtol=1e-9, atol=1e-12 * scale.max())
    np.testing.assert_allclose(a_bp, dx.mean(axis=1), rtol=1e-8, atol=1e-10 * np.sqrt(scale).max())
    np.testing.assert_allclose(q_bp, np.mean(dx * dx, axis=1), rtol=1e-8, atol=1e-10 * scale.max())


def test_the_conditional_g_is_the_mean_of_the_backward_over_dy() -> None:
    """The stand-in's backward pass is not linear in its upstream-gradient normals (they also carry W), so
    ProbeSampler does not apply; instead, at fixed uniforms, its g equals the average of its own per-draw
    mean(dx^2) over 50,000 draws of dy, within 4 se, and its outputs equal the sampled pass's."""
    for params in ({"n": 8, "eps": 0.3, "centring": "mean"}, {"n": 5, "eps": 0.3, "centring": "none"}):
        group = ChiSquareGroup(**params)
        rng = np.random.default_rng(5)
        x0, u0 = rng.standard_normal((3, group.in_dim)), rng.random((3, 1))
        y, g = group.conditional_sampler(rng)(x0, u0)
        assert g.shape == (3, 1)
        for i in range(3):
            m = 50_000
            x, u = np.repeat(x0[i : i + 1], m, axis=0), np.repeat(u0[i : i + 1], m, axis=0)
            y_s, dx = group.forward_backward(x, rng.standard_normal((m, group.out_dim)), u)
            np.testing.assert_array_equal(y_s[0], y[i])
            q = np.mean(dx * dx, axis=1)
            assert abs(q.mean() - g[i, 0]) <= 4 * q.std() / math.sqrt(m), (params, i)


# -- the per-draw law -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,params", [("batchnorm", {"batch": 6, "eps": 0.1}),
                                         ("rmsnorm", {"features": 5, "eps": 0.1})])
def test_per_draw_summaries_have_the_layers_law(name: str, params: dict) -> None:
    """Two-sample Kolmogorov-Smirnov, 20,000 draws each, fixed seeds: the stand-in's per-draw fp mean square
    (and mean, for RMS norm) and sampled bp mean and mean square against the layer's. A correct sampler fails
    the 1e-3 threshold once in 1000 seeds."""
    layer = normstats.make_layer(name, **params)
    group = _plain(layer)
    m = 20_000
    rng = np.random.default_rng(11)
    y, dx = layer.forward_backward(rng.standard_normal((m, layer.in_dim)), rng.standard_normal((m, layer.out_dim)),
                                   np.empty((m, 0)))
    ys, dxs = group.forward_backward(rng.standard_normal((m, group.in_dim)),
                                     rng.standard_normal((m, group.out_dim)), rng.random((m, 1)))
    pairs = {"fp q": (np.mean(y * y, 1), np.mean(ys * ys, 1)), "bp q": (np.mean(dx * dx, 1), np.mean(dxs * dxs, 1))}
    if not group.centred:
        pairs["fp a"] = (y.mean(1), ys.mean(1))
        pairs["bp a"] = (dx.mean(1), dxs.mean(1))
    for what, (theirs, ours) in pairs.items():
        assert stats.ks_2samp(theirs, ours).pvalue > 1e-3, what


# -- statistics against the layer and the references ------------------------------------------------------------
AGREEMENT = [
    ("batchnorm", {"batch": 8}, True),
    ("batchnorm", {"batch": 4, "features": 3}, False),  # three groups a draw: the layer averages them
    ("layernorm", {"features": 64}, True),
    ("layernorm", {"features": 8, "eps": 0.0}, True),
    ("rmsnorm", {"features": 16}, True),
    ("rmsnorm", {"features": 1, "eps": 0.5}, True),
    ("groupnorm", {"groups": 2, "channels": 4, "positions": 3}, False),
]


@pytest.mark.parametrize("estimator", engine.ESTIMATORS)
@pytest.mark.parametrize("name,params,same_law", AGREEMENT, ids=[f"{n}-{p}" for n, p, _ in AGREEMENT])
def test_shortcut_agrees_with_the_layer_and_the_references(
    name: str, params: dict, same_law: bool, estimator: str
) -> None:
    """On 100,000 draws each: every statistic of the stand-in within 4 se of the exact reference and within 4
    combined se of the layer's own passes; one the stand-in knows exactly (se 0: the centred means, the
    conditional bp mean) equals the reference, and so does the layer's, to rounding. The same for the plain
    stand-in (``smoothing=none``), whose per-draw law is the layer's with one group a draw, so there the se agree too."""
    layer = normstats.make_layer(name, **params)
    refs = reference_moments(layer)
    theirs = engine.execute(layer, 100_000, 2, estimator=estimator).estimates
    for group in (layer.shortcut("chi-square"), _plain(layer)):
        ours = engine.execute(group, 100_000, 1, estimator=estimator).estimates
        assert_agrees(ours, theirs, refs, same_law=same_law and group.values["smoothing"] == "none", se_rel=0.1)


@pytest.mark.parametrize("estimator", engine.ESTIMATORS)
def test_infinite_and_zero_moments(estimator: str) -> None:
    """eps = 0: a batch of 3 has an infinite bp std (the stand-in, like the layer, reports finite numbers and
    never NaN); a batch of 2 has bp std 0 (J = 0), which the stand-in reports exactly."""
    inf_layer = normstats.make_layer("batchnorm", batch=3, eps=0.0)
    assert reference_moments(inf_layer)["bp_std"].value == math.inf
    est = engine.execute(inf_layer.shortcut("chi-square"), 50_000, 0, estimator=estimator).estimates
    assert all(math.isfinite(v) and math.isfinite(se) for v, se in est.values())
    est = engine.execute(normstats.make_layer("batchnorm", batch=2, eps=0.0).shortcut("chi-square"), 10_000, 0,
                         estimator=estimator).estimates
    assert est["bp_std"] == (0.0, 0.0) and est["fp_std"][0] == pytest.approx(1.0, rel=1e-15)


@pytest.mark.parametrize("estimator", engine.ESTIMATORS)
def test_qmc_intervals_cover_the_reference(estimator: str) -> None:
    """RMS norm of 6 values, eps 0.1 (every statistic random, bounded integrands), qmc with 256 draws (16 per
    replicate), 200 seeds (100 for the sampled estimator, whose draws cost more): estimate +- QMC_T95 se covers the reference a Binomial(200, 0.95) number of times,
    within 4 sd. A statistic with se 0 (the conditional bp mean) equals its reference."""
    layer = normstats.make_layer("rmsnorm", features=6, eps=0.1)
    refs = {k: r.value for k, r in reference_moments(layer).items()}
    assert_qmc_covers(layer.shortcut("chi-square"), refs, 256, 200 if estimator == "conditional" else 100, estimator)


@pytest.mark.slow
def test_qmc_intervals_stay_honest_where_the_chi_square_tail_is_steep() -> None:
    """Batch norm of 8 (``S ~ chi^2_7``): the bp integrand grows like ``u^(-2/7)`` at the edge of the uniform,
    where a few points of each scrambled net decide the replicate's error, so the 16 replicates' errors are
    skewed and their t interval is too short. Measured with the plain quantile (``smoothing=none``) at 2^14
    draws over these 256 seeds: 216 intervals of 256 covered both the fp and the bp std, below the bound
    (229.3). The stand-in draws ``S`` at the quantile ``phi(V)`` with weight ``phi'(V)`` (the smoothstep of
    degree 7), which makes the integrand vanish smoothly at both edges: its intervals must cover the reference
    a Binomial(256, 0.95) number of times, within 4 sd."""
    layer = normstats.make_layer("batchnorm", batch=8)
    group = layer.shortcut("chi-square")
    assert group.values["smoothing"] == "heptic"
    refs = {s: reference_moments(layer)[s].value for s in ("fp_std", "bp_std")}
    assert_qmc_covers(group, refs, 1 << 14, 256)


@pytest.mark.parametrize("k", [1, 7, 63, 767])
def test_smoothed_quantile_is_a_change_of_variables(k: int) -> None:
    """``E[phi'(V) h(S(phi(V)))] = E h(chi^2_k)``: on the midpoints of 2^16 cells of [0, 1] (a rule exact to
    about 1e-12 for these smooth integrands) the weights integrate to 1 and the weighted ``S``, ``S^2`` and
    ``S / (S + 1)`` to the chi-square's ``k``, ``k (k + 2)`` and their adaptive quadrature (scipy), and the
    quantile is scipy's at ``phi(V)``."""
    from scipy import integrate, stats as st

    from normstats.layers.norms import chi_square_smoothed, smoothstep7

    v = (np.arange(1 << 16) + 0.5) / (1 << 16)
    s, w = chi_square_smoothed(v, k)
    assert np.mean(w) == pytest.approx(1.0, abs=1e-12)
    assert np.mean(w * s) == pytest.approx(k, rel=1e-10)
    assert np.mean(w * s * s) == pytest.approx(k * (k + 2), rel=1e-10)
    lo, hi = max(0.0, k - 40 * np.sqrt(2 * k)), k + 40 * np.sqrt(2 * k) + 60  # all but ~1e-30 of the mass
    ratio = integrate.quad(lambda t: t / (t + 1) * st.chi2.pdf(t, k), lo, hi, points=[k], epsabs=1e-14,
                           epsrel=1e-13, limit=200)[0]
    assert np.mean(w * s / (s + 1)) == pytest.approx(ratio, rel=1e-9)
    low = v < 0.5
    # scipy's chi2.ppf and our gammaincinv path differ by up to 1.2e-10 (relative) at probability 1e-38 (k = 1)
    np.testing.assert_allclose(s[low], st.chi2.ppf(smoothstep7(v[low]), k), rtol=1e-9)
    np.testing.assert_allclose(s[~low], st.chi2.isf(smoothstep7(1 - v[~low]), k), rtol=1e-9)


def _plain(layer: normstats.Layer) -> ChiSquareGroup:
    """The stand-in with the plain quantile (``smoothing=none``): one draw has exactly the layer's law of one
    group."""
    group = layer.shortcut("chi-square")
    return ChiSquareGroup(**{**group.values, "smoothing": "none"})


# -- the API and the CLI --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,params", [("batchnorm", {}), ("layernorm", {}), ("rmsnorm", {}),
                                         ("groupnorm", {}), ("layernorm", {"features": 1})])
def test_every_normalization_offers_it_and_auto_takes_it(name: str, params: dict) -> None:
    layer = normstats.make_layer(name, **params)
    assert layer.shortcuts == ("chi-square",) and layer.auto_sampler() == "chi-square"
    group = layer.shortcut("chi-square")
    assert group == ChiSquareGroup(n=layer.group_size, eps=layer.eps,
                                   centring="none" if name == "rmsnorm" else "mean")


def test_cli_records_the_sampler_and_refuses_it_in_one_line() -> None:
    doc = json.loads(run("simulate", "--layer", "layernorm", "--features", "8", "-n", "4000", "--sampler",
                         "chi-square", "--format", "json").stdout)
    VALIDATOR.validate(doc)
    assert doc["rows"][0]["sampler"] == "chi-square" and doc["rows"][0]["layer"] == "layernorm"
    doc = json.loads(run("simulate", "--layer", "rmsnorm", "--features", "16", "--target-se", "1e-2",
                         "--format", "json").stdout)
    assert doc["rows"][0]["sampler"] == "chi-square" and doc["rows"][0]["method"] == "qmc"
    line = run_bad("simulate", "--layer", "relu", "--sampler", "chi-square")
    assert line == "normstats: error: --sampler must be one of: layer (for layer 'relu'); got 'chi-square'"
    line = run_bad("simulate", "--layer", "batchnorm", "--sampler", "order-statistics")
    assert line == (
        "normstats: error: --sampler must be one of: layer, chi-square (for layer 'batchnorm'); got "
        "'order-statistics'"
    )
