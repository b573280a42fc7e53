"""The two estimators of the backward statistics: ``conditional`` (dy integrated out) against ``sampled`` (dy
drawn and run through the backward pass), and every layer's shortcut for ``E[dx^2 | x]`` against the generic
probes of its own backward pass."""

from __future__ import annotations

import json

import numpy as np
import pytest

import normstats
from normstats.engine import blocks as engine
from normstats.layers.base import ProbeSampler
from tests.cases import all_cases, case_id
from tests.test_cli import run, run_bad

#: |z| beyond this fails a fixed-seed check: about 1 in 15,000 per statistic for a correct estimator.
Z_MAX = 4.0


def _inputs(layer: normstats.Layer, draws: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((draws, layer.in_dim)), rng.random((draws, layer.n_uniform))


@pytest.mark.parametrize("case", all_cases(), ids=case_id)
def test_every_shortcut_equals_the_backward_pass_run_on_every_unit_dy(case: tuple[str, dict]) -> None:
    """``g_i = sum_j dx_i(e_j)^2``: the layer's backward pass on each unit upstream gradient, squared and
    summed, is diag(J^T J) for any layer; every layer's conditional sampler must give the same, and the same
    outputs as its forward pass. Its streaming form may pass fewer columns with the same row means (all the
    tally reads; max pooling passes one), never different ones."""
    name, params = case
    layer = normstats.make_layer(name, **params)
    x, u = _inputs(layer, 37, seed=1)
    y_probe, g_probe = ProbeSampler(layer.sampler(engine.setup_rng(4)), layer.out_dim)(x, u)
    assert g_probe.shape == (37, layer.bp_width)
    for make in (layer.conditional_sampler, layer.streaming_conditional_sampler):
        y, g = make(engine.setup_rng(4))(x, u)
        np.testing.assert_allclose(y, y_probe, rtol=1e-12, atol=1e-15)
        if make == layer.streaming_conditional_sampler and g.shape[1] != layer.bp_width:
            g, g_probe = g.mean(axis=1), g_probe.mean(axis=1)
        np.testing.assert_allclose(g, g_probe, rtol=1e-12, atol=1e-15)


def test_the_probes_can_tell_a_wrong_shortcut() -> None:
    """The check above can fail: squaring the routing of max pooling is right, squaring the averaging weights
    of average pooling is not the same as scaling them (1/9 against 1/81 per window)."""
    layer = normstats.make_layer("avgpool", k=3, stride=2)
    x, u = _inputs(layer, 5, seed=2)
    _, g_probe = ProbeSampler(layer.sampler(engine.setup_rng(0)), layer.out_dim)(x, u)
    _, once = layer.forward_backward(x, np.ones((5, layer.out_dim)), u)
    assert not np.allclose(once, g_probe)
    np.testing.assert_allclose(once / 9, g_probe, rtol=1e-12)


@pytest.mark.parametrize("case", all_cases(), ids=case_id)
def test_the_estimators_agree(case: tuple[str, dict]) -> None:
    """Same seed, same x: the forward statistics are bit-identical; the bp estimates differ by the dy noise
    the conditional one removes, whose variance is Var(sampled) - Var(conditional) <= se_sampled^2. The
    conditional se is never the larger (Rao-Blackwell), and its bp mean is exactly 0."""
    name, params = case
    layer = normstats.make_layer(name, **params)
    cond = engine.run(layer, 20_000, seed=7, estimator="conditional").estimates()
    samp = engine.run(layer, 20_000, seed=7, estimator="sampled").estimates()
    assert cond["fp_mean"] == samp["fp_mean"] and cond["fp_std"] == samp["fp_std"]
    assert cond["bp_mean"] == (0.0, 0.0)
    (c, se_c), (s, se_s) = cond["bp_std"], samp["bp_std"]
    assert se_c <= se_s
    if se_s == 0.0:  # no randomness at all (dropout with p = 1 and a unit Jacobian)
        assert c == pytest.approx(s, rel=1e-12)
    else:
        assert abs(c - s) < Z_MAX * se_s, (c, se_c, s, se_s)


def test_qmc_with_the_conditional_estimator_integrates_a_one_dimensional_bp() -> None:
    """With dy integrated out an activation's bp std is a one-dimensional integral, where scrambled Sobol
    points excel: at the same points its se is far below the sampled estimator's."""
    cond = normstats.simulate("sigmoid", samples=2**16, method="qmc", estimator="conditional")
    samp = normstats.simulate("sigmoid", samples=2**16, method="qmc", estimator="sampled")
    assert cond.bp_std.se < samp.bp_std.se / 100
    for row in (cond, samp):
        assert abs(row.bp_std.z) < Z_MAX
    assert cond.estimator == "conditional" and samp.estimator == "sampled"


def test_the_conditional_estimator_draws_no_upstream_gradient(monkeypatch: pytest.MonkeyPatch) -> None:
    """It uses only x (and u): a source asked for dy numbers would show here."""
    from normstats.engine import sources

    widths = []
    fill = sources.MonteCarloSource.fill

    def spy(self, x, dy, u):  # type: ignore[no-untyped-def]
        widths.append(dy.shape[1])
        fill(self, x, dy, u)

    monkeypatch.setattr(sources.MonteCarloSource, "fill", spy)
    engine.run(normstats.make_layer("maxpool", k=3, stride=2), 1000, seed=0, estimator="conditional")
    assert widths and set(widths) == {0}
    engine.run(normstats.make_layer("maxpool", k=3, stride=2), 1000, seed=0, estimator="sampled")
    assert set(widths) == {0, normstats.make_layer("maxpool", k=3, stride=2).out_dim}


def test_cli_records_the_estimator_and_refuses_an_unknown_one() -> None:
    out = json.loads(run("simulate", "--layer", "relu", "-n", "1000", "-q", "--format", "json").stdout)
    assert out["metadata"]["estimator"] == "conditional" and out["rows"][0]["estimator"] == "conditional"
    out = json.loads(
        run("simulate", "--layer", "relu", "-n", "1000", "-q", "--estimator", "sampled", "--format", "json").stdout
    )
    assert out["metadata"]["estimator"] == "sampled" and out["rows"][0]["estimator"] == "sampled"
    line = run_bad("simulate", "--layer", "relu", "--estimator", "exact")
    assert "--estimator" in line and "conditional" in line and "sampled" in line and "exact" in line


def test_api_refuses_an_unknown_estimator() -> None:
    with pytest.raises(normstats.NormstatsError, match=r"--estimator must be one of conditional, sampled; got 'x'"):
        normstats.simulate("relu", samples=10, estimator="x")


def test_a_custom_formula_gets_the_conditional_estimator_too() -> None:
    """``--expr`` layers are elementwise: g = f'(x)^2 from their dual-number derivative; both estimators agree
    with each other and with the quadrature reference."""
    cond = normstats.simulate(expr="x * tanh(log1p(exp(x)))", samples=50_000, seed=3)
    samp = normstats.simulate(expr="x * tanh(log1p(exp(x)))", samples=50_000, seed=3, estimator="sampled")
    assert cond.fp_std.estimate == samp.fp_std.estimate
    assert cond.bp_std.se < samp.bp_std.se
    assert abs(cond.bp_std.estimate - samp.bp_std.estimate) < Z_MAX * samp.bp_std.se
    assert abs(cond.bp_std.z) < Z_MAX
