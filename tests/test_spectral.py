"""``--sampler spectral``: a linear layer's W run through its thin SVD, ``y = U S z`` with ``z = V^T x``.
Checked draw by draw against the layer's own pass on the same W, against the layer's own passes and the exact
references on as many draws, for the same W as the layer's under a raw Gaussian init (no reference there),
and for qmc interval coverage across seeds."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import normstats
from normstats.engine import blocks as engine
from normstats.exact.references import reference_moments
from normstats.layers.base import ProbeSampler
from normstats.layers.linear import SpectralLinear
from tests.test_cli import run, run_bad
from tests.shortcuts import assert_agrees, assert_qmc_covers
from tests.test_export import VALIDATOR

SETTINGS = [
    {"fan_in": 16, "fan_out": 8, "normalize": "fan-in"},
    {"fan_in": 8, "fan_out": 16, "normalize": "fan-out"},
    {"fan_in": 8, "fan_out": 16, "init": "orthogonal", "normalize": "none", "gain": 1.5},
    {"fan_in": 4, "fan_out": 8, "normalize": "ws"},  # rows centred: rank 3 of 4, one singular value ~1e-16
    {"fan_in": 16, "fan_out": 1, "normalize": "fan-in"},  # one output: y itself, not a row summary
    {"fan_in": 1, "fan_out": 8, "normalize": "fan-out"},  # one input gradient
]


def _ids(settings: list[dict]) -> list[str]:
    return [";".join(f"{k}={v}" for k, v in p.items()) for p in settings]


def _row_stats(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return v.mean(axis=1), np.einsum("ij,ij->i", v, v) / v.shape[1]


@pytest.mark.parametrize("params", SETTINGS, ids=_ids(SETTINGS))
def test_each_draw_is_the_layers_draw_in_the_singular_coordinates(params: dict) -> None:
    """The identity the shortcut rests on, draw by draw: with the layer's own W (same seed) and its SVD,
    the stand-in run on ``z = V^T x``, ``z' = U^T dy`` gives each draw's row mean and mean square of ``y = W x``
    and ``dx = W^T dy``, up to rounding. (``z`` ~ N(0, I_r) for x ~ N(0, I): the laws agree.)"""
    layer = normstats.make_layer("linear", **params)
    weight = layer.sampler(engine.setup_rng(7)).weight
    u, _, vt = np.linalg.svd(weight, full_matrices=False)
    rng = np.random.default_rng(0)
    x, dy = rng.standard_normal((200, layer.in_dim)), rng.standard_normal((200, layer.out_dim))
    y, dx = layer.sampler(engine.setup_rng(7))(x, dy, np.empty((200, 0)))
    y2, dx2 = layer.shortcut("spectral").sampler(engine.setup_rng(7))(x @ vt.T, dy @ u, np.empty((200, 0)))
    assert y2.shape[1] == min(2, layer.out_dim) and dx2.shape[1] == min(2, layer.in_dim)
    for ours, theirs in ((y2, y), (dx2, dx)):
        (a, q), (a_ref, q_ref) = _row_stats(ours), _row_stats(theirs)
        scale = math.sqrt(float(np.mean(q_ref)))  # rounding is relative to the spread of the values
        np.testing.assert_allclose(a, a_ref, rtol=0, atol=1e-13 * scale)
        np.testing.assert_allclose(q, q_ref, rtol=1e-12, atol=1e-13 * scale * scale)


@pytest.fixture
def one_w(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every run draws the W of seed 0, whatever its seed (so two runs of different seeds share W but not their
    draws); the per-thread sampler cache is emptied so that no sampler built from another W is reused."""
    setup_rng = engine.setup_rng
    monkeypatch.setattr(engine, "setup_rng", lambda seed: setup_rng(0))
    monkeypatch.setattr(engine._LOCAL, "samplers", {}, raising=False)


@pytest.mark.parametrize("estimator", engine.ESTIMATORS)
@pytest.mark.parametrize("params", SETTINGS[:4], ids=_ids(SETTINGS[:4]))
def test_shortcut_agrees_with_the_layer_and_the_references(params: dict, estimator: str, one_w: None) -> None:
    """On the same number of independent draws (seeds 1 and 2) with the same W, each statistic of the
    stand-in and of the layer's own passes sits within 4 se of the exact reference, and the two within 4 se
    (combined) of each other; statistics with se 0 (the conditional bp, whose g does not vary) equal the
    reference on both paths. Each draw's ``(a, q)`` has the layer's law for that W, so the se's agree too (as
    in tests/test_order_statistics.py: at 2e5 draws an se's own relative sampling error is well under 1% for
    these Gaussian quadratic forms, and 5% is far outside it)."""
    layer = normstats.make_layer("linear", **params)
    refs = reference_moments(layer)
    ours = engine.execute(layer.shortcut("spectral"), 200_000, 1, estimator=estimator).estimates
    theirs = engine.execute(layer, 200_000, 2, estimator=estimator).estimates
    assert_agrees(ours, theirs, refs, same_law=True)


@pytest.mark.parametrize("estimator", engine.ESTIMATORS)
def test_the_same_seed_gives_the_same_w_as_the_layer(estimator: str) -> None:
    """A raw Gaussian init has no reference: its statistics belong to the W the seed drew. With the same seed
    the stand-in's bp std (conditional: sqrt(|W|^2 / fan_in), exact) equals the layer's, and its fp std agrees
    within 4 combined se; with another seed's W it does not (the spread of |W|^2 over inits, about
    sqrt(2 / 128) = 12%, is far beyond the se). The same seed feeds both runs the same stream of normals, cut
    into draws of r and of fan_in: their estimates of ``E q`` are quadratic forms ``x^T A x``, ``x^T B x`` of
    partly shared normals with A, B positive semidefinite, so their covariance ``2 tr(A B)`` is >= 0 and the
    combined-se bound (which assumes none) is conservative."""
    layer = normstats.make_layer("linear", fan_in=16, fan_out=8, init="normal", normalize="none")
    ours = engine.execute(layer.shortcut("spectral"), 100_000, 3, estimator=estimator).estimates
    theirs = engine.execute(layer, 100_000, 3, estimator=estimator).estimates
    other = engine.execute(layer.shortcut("spectral"), 100_000, 4, estimator=estimator).estimates
    for s in ("fp_std", "bp_std"):
        (a, se_a), (b, se_b), (c, se_c) = ours[s], theirs[s], other[s]
        if se_a == 0:
            assert se_b == 0 and a == pytest.approx(b, rel=1e-14), s
        else:
            assert abs(a - b) <= 4 * math.hypot(se_a, se_b), (s, a, b)
        assert abs(a - c) > 4 * math.hypot(se_a, se_c), (s, a, c)


@pytest.mark.parametrize("params", SETTINGS, ids=_ids(SETTINGS))
def test_stand_in_conditional_sampler_is_its_backward_pass_on_every_unit_dy(params: dict) -> None:
    """The probes run the stand-in's own sampled pass on every unit ``z' = e_j``; the row mean of their
    squares (the row summary keeps each probe's mean square ``s_j^2 / fan_in``) is the stand-in's g, one
    column: ``|W|^2 / fan_in``, the same for every draw."""
    stand_in = normstats.make_layer("linear", **params).shortcut("spectral")
    x = np.random.default_rng(1).standard_normal((30, stand_in.in_dim))
    u = np.empty((30, 0))
    y, g = stand_in.conditional_sampler(engine.setup_rng(2))(x, u)
    y_probe, g_probe = ProbeSampler(stand_in.sampler(engine.setup_rng(2)), stand_in.out_dim)(x, u)
    np.testing.assert_allclose(y, y_probe, rtol=1e-14)  # the probes' batches of repeated rows: other BLAS kernels
    assert g.shape == (30, 1)
    np.testing.assert_allclose(g[:, 0], g_probe.mean(axis=1), rtol=1e-14)


@pytest.mark.slow
def test_qmc_intervals_cover_the_reference_at_small_n() -> None:
    """fan-in 8 x 4, n = 256 (16 points per replicate), across 256 seeds (a new W each): estimate +- t_15 se
    covers the exact fp mean and fp std at a rate within 4 binomial sd of 95%. (About 5 s: each run sets up
    16 scrambled Sobol engines.)"""
    layer = normstats.make_layer("linear", fan_in=8, fan_out=4, normalize="fan-in")
    refs = {k: r.value for k, r in reference_moments(layer).items() if k in ("fp_mean", "fp_std")}
    assert_qmc_covers(layer.shortcut("spectral"), refs, 256, 256)


def test_worker_counts_give_the_same_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each worker runs its own SVD of the seed's W (one BLAS thread everywhere): the same bits."""
    monkeypatch.setattr(engine, "BLOCK_SCALARS", 1 << 13)
    monkeypatch.setattr(engine, "PARALLEL_MIN_SCALARS", 0)
    rows = [
        normstats.simulate("linear", fan_in=16, fan_out=8, samples=20_000, workers=w, sampler="spectral",
                           estimator="sampled").to_dict()
        for w in (1, 2, 3)
    ]
    assert rows[0] == rows[1] == rows[2]


def test_auto_picks_spectral_and_the_cli_records_it() -> None:
    assert normstats.make_layer("linear").auto_sampler() == "spectral"
    assert normstats.make_layer("linear", init="normal", normalize="none").shortcut("auto") == SpectralLinear(
        fan_in=128, fan_out=64, init="normal", normalize="none"
    )
    doc = json.loads(run("simulate", "--layer", "linear", "--fan-in", "16", "--fan-out", "8", "-n", "4000",
                         "--sampler", "spectral", "--format", "json").stdout)
    VALIDATOR.validate(doc)
    assert doc["rows"][0]["sampler"] == "spectral" and doc["rows"][0]["samples"] == 4000
    assert run_bad("simulate", "--layer", "relu", "--sampler", "spectral") == (
        "normstats: error: --sampler must be one of: layer (for layer 'relu'); got 'spectral'"
    )
