"""Linear and convolution layers: the vectorized convolution against a plain loop (exact equality on integer
data), the initializations and normalizations, and every reference against the exact statistics of the
weight a run draws."""

from __future__ import annotations

import numpy as np
import pytest

import normstats
from normstats.engine import blocks as engine
from normstats.layers.conv import ConvSampler
from tests import loops

Z_MAX = 4.5

CONV_GEOMETRIES = [
    {"k": 3},
    {"k": 3, "stride": 2},
    {"k": 2, "stride": 3},
    {"k": 3, "size": "5x6"},
    {"k": 3, "stride": 2, "padding": 1, "size": "6"},
    {"k": 2, "stride": 1, "padding": 3, "size": "3x4"},  # windows made of padding only at the corners
]


@pytest.mark.parametrize("geometry", CONV_GEOMETRIES, ids=str)
def test_vectorized_convolution_equals_the_loop_exactly(geometry: dict) -> None:
    """Small integers make every sum exact, so any order of summation gives the same floats."""
    layer = normstats.make_layer("conv", in_channels=2, out_channels=3, **geometry)
    g = layer.grid
    rng = np.random.default_rng(3)
    weight = rng.integers(-3, 4, (3, 2, g.h.kernel, g.w.kernel)).astype(float)
    draws = 2
    x = rng.integers(-4, 5, (draws, layer.in_dim)).astype(float)
    dy = rng.integers(-4, 5, (draws, layer.out_dim)).astype(float)
    y, dx = ConvSampler(weight, g)(x, dy, np.empty((draws, 0)))
    for d in range(draws):
        y_loop, dx_loop = _loop(layer, x[d], dy[d], weight)
        counted = dx_loop[:, g.h.start : g.h.start + g.h.counted, g.w.start : g.w.start + g.w.counted]
        assert np.array_equal(y[d], y_loop.ravel())
        assert np.array_equal(dx[d], counted.ravel())


def _loop(layer, x: np.ndarray, dy: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """One draw through the loop: a periodic map (the interior) or the finite map, padded."""
    g = layer.grid
    x_map = x.reshape(len(weight[0]), *g.shape)
    dy_map = dy.reshape(len(weight), g.h.windows, g.w.windows)
    if layer.values["size"] == "interior":
        return loops.conv_torus(x_map, dy_map, weight, g.h.stride)
    return loops.conv(x_map, dy_map, weight, g.h.stride, g.h.padding)


def _weight(layer) -> np.ndarray:  # type: ignore[no-untyped-def]
    return layer.sampler(engine.setup_rng(11)).weight


@pytest.mark.parametrize("init", ["normal", "kaiming", "xavier", "orthogonal"])
@pytest.mark.parametrize("shape", [(6, 4), (4, 6)])
def test_normalizations_put_rows_or_columns_on_the_unit_sphere(init: str, shape: tuple[int, int]) -> None:
    fan_out, fan_in = shape
    rows = _weight(normstats.make_layer("linear", fan_in=fan_in, fan_out=fan_out, init=init))
    cols = _weight(normstats.make_layer("linear", fan_in=fan_in, fan_out=fan_out, init=init, normalize="fan-out"))
    assert rows.shape == cols.shape == shape
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, rtol=1e-14)
    assert np.allclose(np.linalg.norm(cols, axis=0), 1.0, rtol=1e-14)


def test_conv_normalizes_over_channels_times_kernel() -> None:
    params = {"in_channels": 3, "out_channels": 5, "k": 3}
    w_in = _weight(normstats.make_layer("conv", **params))
    w_out = _weight(normstats.make_layer("conv", **params, normalize="fan-out"))
    assert np.allclose(np.sum(w_in**2, axis=(1, 2, 3)), 1.0, rtol=1e-14)
    assert np.allclose(np.sum(w_out**2, axis=(0, 2, 3)), 1.0, rtol=1e-14)


@pytest.mark.parametrize("shape", [(6, 4), (4, 6), (5, 5)])
def test_orthogonal_init_has_orthonormal_rows_or_columns(shape: tuple[int, int]) -> None:
    fan_out, fan_in = shape
    w = _weight(normstats.make_layer("linear", fan_in=fan_in, fan_out=fan_out, init="orthogonal", normalize="none"))
    small = min(shape)
    gram = w @ w.T if fan_out <= fan_in else w.T @ w
    assert np.allclose(gram, np.eye(small), atol=1e-13)


def test_gaussian_inits_have_their_documented_variance() -> None:
    """Entries of one large draw: N(0, 1), N(0, 2 / fan_in), N(0, 2 / (fan_in + fan_out)); the sample
    variance of m entries has relative sd sqrt(2 / m)."""
    fan_in, fan_out = 400, 300
    m = fan_in * fan_out
    for init, var in (("normal", 1.0), ("kaiming", 2 / fan_in), ("xavier", 2 / (fan_in + fan_out))):
        w = _weight(normstats.make_layer("linear", fan_in=fan_in, fan_out=fan_out, init=init, normalize="none"))
        assert abs(np.var(w) / var - 1) < Z_MAX * np.sqrt(2 / m), init


CONV_REFERENCE_CASES = [
    {"normalize": "fan-in"},
    {"normalize": "fan-out"},
    {"normalize": "fan-out", "stride": 2},
    {"normalize": "fan-in", "stride": 3, "k": 2},
    {"normalize": "fan-in", "size": "5x6", "stride": 2},
    {"normalize": "none", "init": "orthogonal"},
    {"normalize": "none", "init": "orthogonal", "out_channels": 30},
    {"normalize": "fan-out", "size": "6", "padding": 1},
    {"normalize": "none", "init": "kaiming"},
]


def _exact_given_weight(layer, weight: np.ndarray) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Pooled fp and bp variances for this weight: the Jacobian J of a draw, by the loop on unit inputs;
    fp var = mean over outputs of |J row|^2, bp var = mean over counted inputs of |J column|^2."""
    g = layer.grid
    out_ch, in_ch = weight.shape[:2]
    if layer.values["size"] == "interior":  # all unit inputs at once, as a batch of maps
        units = np.eye(layer.in_dim).reshape(in_ch, *g.shape, layer.in_dim)
        zero_dy = np.zeros((out_ch, g.h.windows, g.w.windows, 1))
        jac = loops.conv_torus(units, zero_dy, weight, g.h.stride)[0].reshape(layer.out_dim, layer.in_dim)
    else:
        jac = np.zeros((layer.out_dim, layer.in_dim))
        for col in range(layer.in_dim):
            unit = np.zeros(layer.in_dim)
            unit[col] = 1.0
            y, _ = _loop(layer, unit, np.zeros(layer.out_dim), weight)
            jac[:, col] = y.ravel()
    return float(np.mean(np.sum(jac**2, axis=1))), float(np.mean(np.sum(jac[:, layer.bp_columns()] ** 2, axis=0)))


@pytest.mark.parametrize("params", CONV_REFERENCE_CASES, ids=str)
def test_conv_references_equal_the_exact_statistics_of_the_drawn_weight(params: dict) -> None:
    """Where a reference exists it must hold for every weight the setting draws (three seeds here); where the
    statistics depend on the weight (raw Gaussian init, padded finite map) there is none."""
    layer = normstats.make_layer("conv", **{"in_channels": 3, "out_channels": 4, "k": 3, **params})
    refs = layer.formula()
    assert refs["fp_mean"] == refs["bp_mean"] == 0.0
    for seed in range(3):
        weight = layer.sampler(engine.setup_rng(seed)).weight
        fp_var, bp_var = _exact_given_weight(layer, weight)
        if "fp_std" in refs:
            assert refs["fp_std"] ** 2 == pytest.approx(fp_var, rel=1e-12)
            assert refs["bp_std"] ** 2 == pytest.approx(bp_var, rel=1e-12)
    padded = params.get("padding", 0) > 0 and "size" in params
    weight_free = params["normalize"] != "none" or params.get("init") == "orthogonal"
    assert ("fp_std" in refs) == ("bp_std" in refs) == (weight_free and not padded)


@pytest.mark.parametrize("init", ["normal", "kaiming", "xavier", "orthogonal"])
@pytest.mark.parametrize("normalize", ["none", "fan-in", "fan-out"])
def test_linear_references_equal_the_statistics_of_the_drawn_weight(init: str, normalize: str) -> None:
    layer = normstats.make_layer("linear", fan_in=12, fan_out=7, init=init, normalize=normalize)
    refs = layer.formula()
    w = _weight(layer)
    if "fp_std" in refs:
        assert refs["fp_std"] ** 2 == pytest.approx(np.mean(np.sum(w**2, axis=1)), rel=1e-12)
        assert refs["bp_std"] ** 2 == pytest.approx(np.mean(np.sum(w**2, axis=0)), rel=1e-12)
    assert ("fp_std" in refs) == (normalize != "none" or init == "orthogonal")


@pytest.mark.parametrize(("normalize", "stat"), [("fan-in", "fp_std"), ("fan-out", "bp_std")])
def test_linear_512_to_256_has_unit_std_where_normalized(normalize: str, stat: str) -> None:
    row = normstats.simulate("linear", samples=4000, seed=5, fan_in=512, fan_out=256, normalize=normalize)
    s = row.stats()[stat]
    assert s.reference == 1.0
    if stat == "bp_std":  # dy integrated out: |W|^2 / fan_in in every draw, so exact, never z-tested
        assert s.exact and s.estimate == 1.0 and s.z is None, s
    else:
        assert abs(s.z) < Z_MAX, s
    for other in row.stats().values():
        if other.exact:  # the conditional bp mean, 0 in every draw: the reference itself, never z-tested
            assert other.estimate == other.reference and other.z is None, other
            continue
        assert other.z is not None and abs(other.z) < Z_MAX, other


@pytest.mark.parametrize("estimator", engine.ESTIMATORS)
@pytest.mark.parametrize("init", ["normal", "kaiming"])
def test_raw_init_estimates_match_the_drawn_weight(init: str, estimator: str) -> None:
    """Without normalization there is no reference for every W, but the statistics of the run's own W are
    |W|^2 / fan_out and |W|^2 / fan_in: the estimate must sit within a few se of them (the conditional
    estimator knows the bp std exactly, since the Jacobian is W whatever x: se 0 and the exact value)."""
    layer = normstats.make_layer("linear", fan_in=24, fan_out=10, init=init, normalize="none")
    seed = 9
    w = layer.sampler(engine.setup_rng(seed)).weight
    acc = engine.run(layer, 20_000, seed=seed, estimator=estimator)
    sq = float(np.sum(w**2))
    assert abs(acc.fp.std - np.sqrt(sq / 10)) < Z_MAX * acc.fp.se_std()
    if estimator == "conditional":
        assert acc.bp.se_std() == 0.0
        assert acc.bp.std == pytest.approx(np.sqrt(sq / 24), rel=1e-12)
    else:
        assert abs(acc.bp.std - np.sqrt(sq / 24)) < Z_MAX * acc.bp.se_std()
