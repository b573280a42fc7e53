"""Pooling on 2-D maps: the vectorized layers against a plain loop (exact equality), every reference against
an independent computation, the geometry a framework refuses, and the figures that belong to the published
geometry only."""

from __future__ import annotations

import math

import mpmath as mp
import numpy as np
import pytest

import normstats
from normstats.engine import blocks as engine
from normstats.errors import ParameterError
from normstats.layers.base import ProbeSampler
from normstats.layers.conv import ConvSampler
from normstats.published.figures import published_figures
from tests import loops
from tests.test_reference import MAX_OF_N

# (kh, kw, stride or None, padding, size or None): overlapping, gapped, rectangular, padded and odd maps.
GEOMETRIES = [
    (3, 3, 2, 0, None),
    (3, 3, 1, 0, None),
    (2, 2, 3, 0, None),
    (2, 3, 2, 0, None),
    (5, 4, 2, 0, None),  # on the torus, two windows wrap onto the first rows
    (3, 3, 2, 1, "7x7"),
    (3, 3, 2, 1, "6x5"),
    (2, 2, None, 1, "5x5"),
    (3, 2, 1, 1, "4x6"),
    (5, 5, 2, 2, "6x6"),
]


def _layer(name: str, kh: int, kw: int, stride: int | None, padding: int, size: str | None):  # type: ignore[no-untyped-def]
    params = {"kh": kh, "kw": kw, "stride": stride, "padding": padding}
    if size is not None:
        params["size"] = size
    return normstats.make_layer(name, **params)


def _loop_draw(layer, x: np.ndarray, dy: np.ndarray, mode: str) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """One draw through the loop: the draw's map is a periodic map (the interior, every gradient counts) or
    the finite map itself (the counted gradients are the block the layer counts)."""
    g = layer.grid
    x_map, dy_map = x.reshape(g.shape), dy.reshape(g.h.windows, g.w.windows)
    kernel, stride = (g.h.kernel, g.w.kernel), (g.h.stride, g.w.stride)
    if layer.values["size"] == "interior":
        y, dx = loops.pool_torus(x_map, dy_map, kernel, stride, mode)
        return y.ravel(), dx.ravel()
    y, dx = loops.pool(x_map, dy_map, kernel, stride, g.h.padding, mode)
    return y.ravel(), dx[g.h.start : g.h.start + g.h.counted, g.w.start : g.w.start + g.w.counted].ravel()


@pytest.mark.parametrize("mode", ["max", "avg"])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
@pytest.mark.parametrize("values", ["normal", "ties"])
def test_vectorized_pooling_equals_the_loop_exactly(mode: str, geometry: tuple, values: str) -> None:
    layer = _layer(mode + "pool", *geometry)
    rng = np.random.default_rng(7)
    draws = 3
    if values == "ties":  # many equal maxima: the first in row-major order must win, as in PyTorch
        x = rng.integers(0, 3, (draws, layer.in_dim)).astype(float)
    else:
        x = rng.standard_normal((draws, layer.in_dim))
    dy = rng.standard_normal((draws, layer.out_dim))
    y, dx = layer.forward_backward(x, dy, np.empty((draws, 0)))
    for d in range(draws):
        y_loop, dx_loop = _loop_draw(layer, x[d], dy[d], mode)
        assert np.array_equal(y[d], y_loop)
        assert np.array_equal(dx[d], dx_loop)


#: The maxpool geometries of the hot-loop tests: every GEOMETRIES entry, and draws that are one window.
HOT_LOOP = [*GEOMETRIES, (3, 3, None, 0, None), (2, 2, None, 0, "2x2"), (1, 1, None, 0, None)]


@pytest.mark.parametrize("geometry", HOT_LOOP, ids=str)
@pytest.mark.parametrize("values", ["normal", "ties"])
def test_max_pool_hot_loop_samplers_equal_its_passes_bit_for_bit(geometry: tuple, values: str) -> None:
    """The engine's samplers of max pooling against :meth:`MaxPool.forward_backward` (checked against the
    loop above): the sampled one gives the same outputs and gradients, ties included (its np.argmax
    fallback); the conditional one the same outputs, and one column holding the row mean of ``g`` as
    :class:`ConditionalSums` would form it from the probes' full ``g`` (an exact integer sum times
    ``1 / width``)."""
    layer = _layer("maxpool", *geometry)
    rng = np.random.default_rng(11)
    draws = 64
    if values == "ties":
        x = rng.integers(0, 3, (draws, layer.in_dim)).astype(float)
    else:
        x = rng.standard_normal((draws, layer.in_dim))
    dy, u = rng.standard_normal((draws, layer.out_dim)), np.empty((draws, 0))
    y, dx = layer.forward_backward(x, dy, u)
    sampler = layer.streaming_sampler(engine.setup_rng(0))
    for m in (draws, 5):  # a shorter chunk reuses the buffers
        y_hot, dx_hot = sampler(x[:m], dy[:m], u[:m])
        assert np.array_equal(y_hot, y[:m]) and np.array_equal(dx_hot, dx[:m])
    _, g = ProbeSampler(layer.sampler(engine.setup_rng(0)), layer.out_dim)(x, u)
    y_cond, row_mean = layer.streaming_conditional_sampler(engine.setup_rng(0))(x, u)
    assert np.array_equal(y_cond, y)
    assert row_mean.shape == (draws, 1)
    assert np.array_equal(row_mean[:, 0], np.add.reduce(g, axis=1) * (1.0 / g.shape[1]))


@pytest.mark.parametrize("geometry", [GEOMETRIES[0], GEOMETRIES[5], (3, 3, None, 0, None)], ids=str)
@pytest.mark.parametrize("estimator", ["conditional", "sampled"])
def test_max_pool_hot_loop_gives_the_runs_of_its_generic_samplers(
    geometry: tuple, estimator: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run through the hot-loop samplers and one through the generic ones (forward_backward, and the
    backward pass on dy = 1) give the same estimates and standard errors, bit for bit."""
    layer = _layer("maxpool", *geometry)
    fast = engine.run(layer, 3000, seed=5, chunk_draws=700, estimator=estimator).estimates()
    cls = type(layer)
    monkeypatch.setattr(cls, "streaming_sampler", lambda self, rng: self.sampler(rng))
    monkeypatch.setattr(cls, "streaming_conditional_sampler", lambda self, rng: self.conditional_sampler(rng))
    engine._LOCAL.__dict__.clear()  # the per-thread sampler cache
    try:
        generic = engine.run(layer, 3000, seed=5, chunk_draws=700, estimator=estimator).estimates()
    finally:
        engine._LOCAL.__dict__.clear()
    assert fast == generic


def _torus_side(k: int, s: int) -> int:
    """The side of the interior torus, from its definition: the smallest multiple of s at least as long as
    the patch ``lead + max(k, s)`` that holds every window covering one period, ``lead = floor((k-1)/s) s``."""
    patch = (k - 1) // s * s + max(k, s)
    return next(side for side in range(s, patch + s, s) if side >= patch)


@pytest.mark.parametrize(
    ("k", "stride", "side", "windows", "counted"),
    [
        (3, 2, 6, 9, 36),  # patch 2 + 3 = 5, rounded up to 6: 3 windows per axis, all 36 inputs count
        (3, 1, 5, 25, 25),
        (2, 2, 2, 1, 4),  # stride = k: one window, the whole draw, as in the published table
        (3, 3, 3, 1, 9),
        (2, 3, 3, 1, 9),  # a gap: the input after each window gets no gradient and counts as 0
        (5, 2, 10, 25, 100),
    ],
)
def test_interior_torus_geometry(k: int, stride: int, side: int, windows: int, counted: int) -> None:
    assert _torus_side(k, stride) == side
    g = normstats.make_layer("maxpool", k=k, stride=stride).grid
    assert (g.shape, g.windows, g.counted, g.h.start) == ((side, side), windows, counted, 0)
    assert g.density == pytest.approx(1 / stride**2, rel=1e-15)


@pytest.mark.parametrize("geometry", [g for g in GEOMETRIES if g[4] is None], ids=str)
def test_every_torus_position_sees_the_windows_of_the_unbounded_map(geometry: tuple) -> None:
    """The exactness of the torus: in the unbounded map an input at (p, q) is covered once by each window
    whose start is congruent to it, through the kernel offsets ``(i, j)`` with ``i = p mod sh``,
    ``j = q mod sw``, and each window holds kh kw distinct inputs. A one-channel convolution on the layer's
    grid with weight ``2^(i kw + j)`` reads this off its Jacobian (columns of unit inputs): a window wrapping
    onto itself, or a window missing or counted twice, would change an entry or the number of entries.
    Every mean and second moment the statistics pool depends only on this structure (dy is independent
    with mean 0, so E dx_p^2 is a sum over the windows covering p of a term of that window alone)."""
    kh, kw, stride = geometry[:3]
    g = _layer("maxpool", *geometry).grid
    weight = 2.0 ** np.arange(kh * kw).reshape(1, 1, kh, kw)
    sampler = ConvSampler(weight, g)
    n_in = g.shape[0] * g.shape[1]
    jac = np.stack([sampler(np.eye(n_in)[[c]], np.zeros((1, g.windows)), None)[0][0] for c in range(n_in)], 1)
    for row in jac:
        assert sorted(row[row != 0]) == sorted(weight.ravel())
    for col, (p, q) in zip(jac.T, np.ndindex(g.shape)):
        expected = [weight[0, 0, i, j] for i in range(kh) for j in range(kw) if i % stride == p % stride
                    and j % stride == q % stride]
        assert sorted(col[col != 0]) == sorted(expected), (p, q)


def _windows_by_loop(layer) -> list[list[tuple[int, int]]]:  # type: ignore[no-untyped-def]
    """The real (unpadded) input cells of each window of a draw, by plain loops; on the interior torus the
    cells are taken mod the sides (and must be distinct)."""
    g = layer.grid
    torus = layer.values["size"] == "interior"
    out = []
    for a in range(g.h.windows):
        for b in range(g.w.windows):
            cells = []
            for i in range(g.h.kernel):
                for j in range(g.w.kernel):
                    r, c = a * g.h.stride + i - g.h.padding, b * g.w.stride + j - g.w.padding
                    if torus:
                        cells.append((r % g.h.length, c % g.w.length))
                    elif 0 <= r < g.h.length and 0 <= c < g.w.length:
                        cells.append((r, c))
            assert len(set(cells)) == len(cells)
            out.append(cells)
    return out


def _counted(layer, cell: tuple[int, int]) -> bool:  # type: ignore[no-untyped-def]
    g = layer.grid
    return g.h.start <= cell[0] < g.h.start + g.h.counted and g.w.start <= cell[1] < g.w.start + g.w.counted


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_backward_references_equal_exact_enumeration(geometry: tuple) -> None:
    """bp var = (1 / counted) sum over counted cells i of E dx_i^2, enumerated window by window:
    max pooling gives each real cell of window w the argmax with probability 1 / r_w, average pooling sends
    (dy_w / n)^2; the dy of different windows are independent with mean 0, so nothing else contributes."""
    for name in ("maxpool", "avgpool"):
        layer = _layer(name, *geometry)
        n = layer.grid.h.kernel * layer.grid.w.kernel
        total = 0.0
        for cells in _windows_by_loop(layer):
            inside = sum(_counted(layer, c) for c in cells)
            total += inside / len(cells) if name == "maxpool" else inside / n**2
        refs = layer.formula()
        assert refs["bp_mean"] == 0.0
        assert refs["bp_std"] ** 2 == pytest.approx(total / layer.bp_width, rel=1e-12)


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=str)
def test_average_forward_reference_equals_exact_enumeration(geometry: tuple) -> None:
    """A window's output is (sum of its r real inputs) / n: variance r / n^2."""
    layer = _layer("avgpool", *geometry)
    n = layer.grid.h.kernel * layer.grid.w.kernel
    windows = _windows_by_loop(layer)
    expected = sum(len(cells) / n**2 for cells in windows) / len(windows)
    assert layer.formula()["fp_std"] ** 2 == pytest.approx(expected, rel=1e-12)


def _max_moments_mpmath(r: int) -> tuple[mp.mpf, mp.mpf]:
    """Mean and second moment of the largest of r iid N(0, 1), by mpmath quadrature."""
    phi = lambda t: mp.exp(-t * t / 2) / mp.sqrt(2 * mp.pi)  # noqa: E731
    density = lambda t: r * phi(t) * mp.ncdf(t) ** (r - 1)  # noqa: E731
    pieces = [-mp.inf, 0, 2, mp.inf]
    return mp.quad(lambda t: t * density(t), pieces), mp.quad(lambda t: t * t * density(t), pieces)


@pytest.mark.parametrize("geometry", [g for g in GEOMETRIES if g[4] is not None], ids=str)
def test_max_forward_on_a_padded_map_is_the_mixture_of_order_statistics(geometry: tuple) -> None:
    """Windows at a padded border hold fewer real inputs; the pooled output is the mixture over windows of
    the largest of r_w normals (r_w counted by the loop, moments by mpmath)."""
    layer = _layer("maxpool", *geometry)
    sizes = [len(cells) for cells in _windows_by_loop(layer)]
    with mp.workdps(20):
        moments = {r: _max_moments_mpmath(r) for r in set(sizes)}
        mean = mp.fsum(moments[r][0] for r in sizes) / len(sizes)
        second = mp.fsum(moments[r][1] for r in sizes) / len(sizes)
        std = mp.sqrt(second - mean**2)
    refs = layer.quadrature()
    assert refs["fp_mean"] == pytest.approx(float(mean), abs=1e-9)
    assert refs["fp_std"] == pytest.approx(float(std), abs=1e-9)


@pytest.mark.parametrize(("k", "stride"), [(3, 2), (3, 1), (5, 5), (2, 1)])
def test_interior_references_in_closed_form(k: int, stride: int) -> None:
    """Interior: max bp std 1/s whatever k; average fp std 1/k, bp std 1/(k s); max fp from the order
    statistics of k^2 normals (mpmath values of tests/test_reference.py)."""
    maxpool = normstats.make_layer("maxpool", k=k, stride=stride)
    avgpool = normstats.make_layer("avgpool", k=k, stride=stride)
    assert maxpool.formula()["bp_std"] == pytest.approx(1 / stride, rel=1e-15)
    assert avgpool.formula()["fp_std"] == pytest.approx(1 / k, rel=1e-15)
    assert avgpool.formula()["bp_std"] == pytest.approx(1 / (k * stride), rel=1e-15)
    mean, std = MAX_OF_N[k * k]
    assert maxpool.quadrature()["fp_mean"] == pytest.approx(mean, abs=1e-9)
    assert maxpool.quadrature()["fp_std"] == pytest.approx(std, abs=1e-9)


@pytest.mark.parametrize(
    ("name", "params"),
    [("maxpool", {"k": 3, "stride": 1}), ("avgpool", {"k": 3, "stride": 2}), ("maxpool", {"k": 2, "size": "5"})],
)
@pytest.mark.parametrize("estimator", engine.ESTIMATORS)
def test_standard_errors_match_the_spread_between_seeds(name: str, params: dict, estimator: str) -> None:
    """Overlapping windows make the values of a draw correlated. Over SEEDS independent runs the sample
    spread of each estimate must match the reported se: the ratio has sd about 1 / sqrt(2 (SEEDS - 1)) and
    must lie within 4.5 of those of 1. An se of 0 (what the conditional estimator knows exactly) must come
    with no spread at all."""
    seeds, draws = 60, 1500
    layer = normstats.make_layer(name, **params)
    runs = [engine.run(layer, draws, seed=s, estimator=estimator) for s in range(seeds)]
    tol = 4.5 / math.sqrt(2 * (seeds - 1))
    for part in ("fp", "bp"):
        tallies = [getattr(r, part) for r in runs]
        for estimate, se in (("mean", "se_mean"), ("std", "se_std")):
            values = [getattr(t, estimate) for t in tallies]
            spread = np.std(values, ddof=1)
            reported = np.sqrt(np.mean([getattr(t, se)() ** 2 for t in tallies]))
            if reported == 0.0:
                assert estimator == "conditional" and part == "bp", (part, estimate)
                assert np.ptp(values) <= 1e-15 * max(1.0, abs(values[0])), (part, estimate, values)
                continue
            assert abs(spread / reported - 1) < tol, (part, estimate, spread, reported)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"k": 3, "size": "2"}, r"--size of layer 'maxpool' must be at least .* \(3x3\) .*; got 2x2"),
        ({"k": 5, "padding": 1, "size": "2x9"}, r"--size .* must be at least .*; got 2x9"),
        ({"k": 3, "stride": 0}, r"--stride of layer 'maxpool' must be an integer in \[1, 32\]; got 0"),
        ({"k": 3, "padding": -1}, r"--padding of layer 'maxpool' must be an integer in \[0, 16\]; got -1"),
        ({"k": 3, "padding": 2}, r"--padding of layer 'maxpool' must be an integer in \[0, 1\] .*; got 2"),
        ({"kh": 4, "kw": 2, "padding": 2}, r"--padding .* must be an integer in \[0, 1\]"),
        ({"size": "7y7"}, r"--size of layer 'maxpool' must be 'interior', H or HxW .*; got '7y7'"),
        ({"size": "0x3"}, r"--size .* integers H, W in \[1, 1024\]; got '0x3'"),
    ],
)
def test_bad_geometry_is_refused_in_one_line(params: dict, message: str) -> None:
    with pytest.raises(ParameterError, match=message) as info:
        normstats.make_layer("maxpool", **params)
    assert "\n" not in str(info.value)


def test_sizes_are_written_canonically() -> None:
    assert normstats.make_layer("avgpool", size=" 7 ").values["size"] == "7x7"
    assert normstats.make_layer("avgpool", size="7X5").values["size"] == "7x5"
    assert normstats.make_layer("avgpool", kh=2, kw=3).values == {"kh": 2, "kw": 3, "padding": 0, "size": "interior"}


@pytest.mark.parametrize(
    ("name", "params", "published"),
    [
        ("maxpool", {"k": 3}, True),
        ("avgpool", {"k": 2, "stride": 2}, True),
        ("maxpool", {"k": 3, "stride": 2}, False),
        ("avgpool", {"k": 3, "stride": 2}, False),
        ("maxpool", {"k": 2, "padding": 1}, False),
        ("avgpool", {"k": 2, "size": "8"}, False),
        ("maxpool", {"kh": 3, "kw": 2}, False),
    ],
)
def test_published_figures_attach_only_to_the_published_geometry(name: str, params: dict, published: bool) -> None:
    assert bool(published_figures(normstats.make_layer(name, **params))) is published
