"""Exact GELU's compiled loops (``normstats.layers.gelu_kernels``) against the numpy passes they replace: the
forward output and derivative within the rounding bound of libm's ``erfc`` (plain loop) or libmvec's (AVX2
loop) against scipy's ``ndtr`` (over
[-40, 40], the tails, signed zeros, subnormals, infinities and NaN, where both give the same values), the
backward pass the same bit for bit, row summaries within the float-rounding bound of an exact sum, arguments
checked; and in a network, the engine's tallies with them equal to those without, up to rounding, with every
GELU's records summed by the loops. The numpy passes themselves keep ``GELU.f`` and ``GELU.df`` bit for bit.

The Phi bound, ``|Phi_libm(x) - Phi_scipy(x)| <= (x^2/2 + 8) eps Phi_scipy(x)`` where Phi is a normal float, is
measured (``gelu_kernels``' docstring: at most 0.87 of it on 10^6 points of [-40, 40], glibc 2.36, scipy's
cephes ``erfc``, libm's and libmvec's alike); the test checks it on 200 001 points of [-40, 40] and 20 003
normals, for each loop.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import normstats
from normstats.layers import gelu_kernels
from normstats.layers.activations import _GELUPasses
from normstats.lazy import special
from tests.row_summaries import check_rows, nan_pair

compiled = pytest.mark.skipif(not gelu_kernels.AVAILABLE, reason="normstats was built without its compiled loops")

EPS = np.finfo(np.float64).eps
#: Below this Phi is subnormal; where scipy's has underflowed to 0 and libm's not (x in [-38.5, -37.52]).
NORMAL = np.finfo(np.float64).tiny
SUBNORMAL_GAP = 6e-311
#: The versions of the forward loop this machine can run.
VERSIONS = ["plain"] + (["avx2"] if gelu_kernels.version() == "avx2" else [])


@pytest.fixture(params=VERSIONS)
def version(request):  # type: ignore[no-untyped-def]
    """Run the test under each version of the forward loop, and go back to the one chosen at import."""
    before = gelu_kernels.version()
    gelu_kernels.use(request.param)
    yield request.param
    gelu_kernels.use(before)  # type: ignore[arg-type]


SPECIAL = np.array([0.0, -0.0, 5e-324, -5e-324, np.inf, -np.inf, np.nan, 1e300, -1e300, 8.3, -8.3, -37.6, -38.6])


def _phi_rtol(x: np.ndarray) -> np.ndarray:
    """The measured relative bound of libm's Phi against scipy's (module docstring)."""
    return (x * x / 2 + 8) * EPS


def _values(rows: int, width: int, seed: int) -> np.ndarray:
    """Normals times 3, with the special values at positions inside the unrolled loop and in its tail."""
    z = 3 * np.random.default_rng(seed).standard_normal((rows, width))
    flat = z.ravel()
    for i, v in enumerate(SPECIAL):
        if i * 5 < flat.size:
            flat[i * 5] = v
    return z


def _numpy_forward(z: np.ndarray, shift: float, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What a network's numpy passes compute: GELU's forward pass, then the shift and scale unless they are 0 and
    1; and scipy's Phi, for the bound."""
    with np.errstate(invalid="ignore", over="ignore"):  # -inf * 0 and inf * exp(-inf) are NaN, as in the loops
        y, d = _GELUPasses().forward(z.copy(), np.empty((len(z), 0)))
        if shift != 0.0 or scale != 1.0:
            y = (y - shift) * scale
    return y, d, special.ndtr(z)


def _same_bits(a: np.ndarray, b: np.ndarray) -> None:
    """Equal as floats, NaN where NaN, and the same sign of every zero."""
    np.testing.assert_array_equal(a, b)
    assert np.array_equal(np.signbit(a), np.signbit(b))


def _within(got: np.ndarray, want: np.ndarray, bound: np.ndarray) -> None:
    """``got`` within ``bound`` of ``want`` where both are finite, and the same values (bit for bit) elsewhere."""
    finite = np.isfinite(want)
    special_ = ~finite | ~np.isfinite(got)
    _same_bits(got[special_], want[special_])
    err = np.abs(got[finite] - want[finite])
    assert np.all(err <= bound[finite]), (err / bound[finite]).max()


def _forward_bounds(z: np.ndarray, cdf: np.ndarray, y: np.ndarray, d: np.ndarray, shift: float,
                    scale: float) -> tuple[np.ndarray, np.ndarray]:
    """How far the loops' y and d may lie from numpy's: Phi's difference carried through, a unit of roundoff or
    two a step (exp: libm's and numpy's within 4 units each), and where scipy's Phi is subnormal or 0, libm's
    within SUBNORMAL_GAP of it."""
    with np.errstate(invalid="ignore", over="ignore"):
        ax = np.abs(z)
        dphi = np.where(cdf >= NORMAL, _phi_rtol(z) * cdf, SUBNORMAL_GAP)
        y_bound = abs(scale) * (ax * dphi + 4 * EPS * (ax * cdf + abs(shift))) + 4 * EPS * np.abs(y) + 1e-320
        e = np.abs(d - cdf)  # |x phi(x)|, numpy's
        d_bound = dphi + 8 * EPS * e + 2 * EPS * np.abs(d) + 1e-320
    return y_bound, d_bound



def test_the_numpy_passes_are_gelu_f_and_df_bit_for_bit() -> None:
    """The state the numpy forward pass keeps is ``GELU.df`` and its output ``GELU.f``, in place or not, and the
    backward pass is ``df * dy`` (times the scale): the numbers of the layer's own functions."""
    layer = normstats.make_layer("gelu")
    z = _values(4, 33, seed=3)
    with np.errstate(invalid="ignore", over="ignore"):
        f, df = layer.f(z), layer.df(z)
        y, d = _GELUPasses().forward(z, np.empty((4, 0)))
        y2, d2 = _GELUPasses().forward_inplace(x := z.copy(), np.empty((4, 0)))
    for a, b in ((y, f), (d, df), (y2, f), (d2, df)):
        _same_bits(a, b)
    assert y2 is x
    g = _values(4, 33, seed=4)
    with np.errstate(invalid="ignore"):
        _same_bits(_GELUPasses().backward(d, g), df * g)
        _same_bits(_GELUPasses().backward_scaled(d, g, 1.7), df * g * 1.7)
        _same_bits(_GELUPasses().backward_inplace(d, gi := g.copy(), 1.7), df * g * 1.7)
    np.testing.assert_array_equal(gi, df * g * 1.7)


@compiled
def test_phi_of_libm_is_within_its_bound_of_scipys_over_the_whole_range(version: str) -> None:
    """libm's Phi (plain) and libmvec's (avx2) on [-40, 40]: the loops' output at shift 0, scale 1 is
    ``x Phi(x)``, so ``y / x`` is their Phi (to a unit of roundoff); within the bound of scipy's where that is
    normal, within SUBNORMAL_GAP below."""
    x = np.concatenate([np.linspace(-40.0, 40.0, 200_001),
                        3 * np.random.default_rng(0).standard_normal(20_003)])[None, :]
    y, d, rows = np.empty_like(x), np.empty_like(x), nan_pair(1)
    gelu_kernels.forward(x, y, d, 0.0, 1.0, None, rows)
    want = special.ndtr(x)
    with np.errstate(invalid="ignore", divide="ignore"):
        got = np.where(x != 0, y / x, 0.5)
    normal = want >= NORMAL
    rel = np.abs(got - want)[normal] / want[normal]
    assert np.all(rel <= _phi_rtol(x[normal]) + 2 * EPS), (rel / _phi_rtol(x[normal])).max()
    assert np.all(np.abs(got - want)[~normal] <= SUBNORMAL_GAP)
    assert x[~normal].max() < -37.5  # Phi is normal from there up: the bound holds on all but the far tail


@compiled
@pytest.mark.parametrize("width", [1, 3, 4, 7, 9, 64, 257])
@pytest.mark.parametrize(("shift", "scale"), [(0.0, 1.0), (0.28209479177387814, 1.7009430977006432),
                                              (-0.25, 0.5)])
def test_forward_is_numpy_to_its_bound_with_rows_to_rounding(version: str, width: int, shift: float,
                                                              scale: float) -> None:
    z = _values(6, width, seed=width)
    want_y, want_d, cdf = _numpy_forward(z, shift, scale)
    y, d = np.empty_like(z), np.empty_like(z)
    z_rows, y_rows = nan_pair(6), nan_pair(6)
    gelu_kernels.forward(z, y, d, shift, scale, z_rows, y_rows)
    y_bound, d_bound = _forward_bounds(z, cdf, want_y, want_d, shift, scale)
    _within(y, want_y, y_bound)
    _within(d, want_d, d_bound)
    check_rows(z, z_rows)
    check_rows(y, y_rows)


@compiled
def test_special_values_are_numpys_exactly(version: str) -> None:
    """Signed zeros, subnormal inputs, both infinities, NaN and |x| = 1e300 give numpy's y and d bit for bit
    (y = -0.0 at -0.0 and at -1e300; NaN at -inf for y, and at both infinities for d)."""
    z = np.tile(SPECIAL[[0, 1, 2, 3, 4, 5, 6, 7, 8]], (2, 1))
    want_y, want_d, _ = _numpy_forward(z, 0.0, 1.0)
    y, d = np.empty_like(z), np.empty_like(z)
    gelu_kernels.forward(z, y, d, 0.0, 1.0, None, nan_pair(2))
    _same_bits(y, want_y)
    _same_bits(d, want_d)
    assert np.isnan(y[0, 5]) and np.isnan(d[0, 4]) and np.isnan(d[0, 5]) and np.signbit(y[0, 1])


@compiled
@pytest.mark.parametrize("width", [1, 5, 8, 13, 256, 259])
@pytest.mark.parametrize("scale", [1.0, 1.7009430977006432])
def test_backward_is_numpy_bit_for_bit_with_rows_to_rounding(width: int, scale: float) -> None:
    g = _values(5, width, seed=100 + width)
    _, d, _ = _numpy_forward(_values(5, width, seed=width), 0.0, 1.0)
    with np.errstate(invalid="ignore"):
        want = _GELUPasses().backward_at(d, g, scale)
    dx = np.empty_like(g)
    g_rows, dx_rows = nan_pair(5), nan_pair(5)
    gelu_kernels.backward(g, d, dx, scale, g_rows, dx_rows)
    _same_bits(dx, want)
    check_rows(g, g_rows)
    check_rows(want, dx_rows)


@compiled
def test_in_place_and_without_input_rows_give_the_same_numbers(version: str) -> None:
    """``y`` written over ``z`` (``dx`` over ``g``), and the input's rows left out (``None``): the same results,
    and the rows not asked for are not written."""
    z = _values(9, 40, seed=1)
    y, d, y_rows = np.empty_like(z), np.empty_like(z), nan_pair(9)
    gelu_kernels.forward(z, y, d, 0.4, 1.7, nan_pair(9), y_rows)
    inplace, d2, rows2 = z.copy(), np.empty_like(z), nan_pair(9)
    gelu_kernels.forward(inplace, inplace, d2, 0.4, 1.7, None, rows2)
    _same_bits(inplace, y)
    _same_bits(d2, d)
    np.testing.assert_array_equal(rows2, y_rows)
    g = _values(9, 40, seed=2)
    dx, dx_rows = np.empty_like(g), nan_pair(9)
    gelu_kernels.backward(g, d, dx, 1.7, None, dx_rows)
    gelu_kernels.backward(g, d, g, 1.7, None, rows := nan_pair(9))
    _same_bits(g, dx)
    np.testing.assert_array_equal(rows, dx_rows)


@compiled
def test_threads_run_the_loops_at_once_with_their_own_numbers() -> None:
    """The loops run without the GIL: four threads on their own arrays each get what one thread alone gets."""
    chunks = [np.random.default_rng(s).standard_normal((100, 256)) for s in range(4)]
    alone = []
    for z in chunks:
        y, d, rows = np.empty_like(z), np.empty_like(z), nan_pair(100)
        gelu_kernels.forward(z, y, d, 0.4, 1.7, None, rows)
        alone.append((y, d, rows))
    together: list = [None] * 4

    def work(i: int) -> None:
        for _ in range(10):
            y, d, rows = np.empty_like(chunks[i]), np.empty_like(chunks[i]), nan_pair(100)
            gelu_kernels.forward(chunks[i], y, d, 0.4, 1.7, None, rows)
        together[i] = (y, d, rows)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    for (y1, d1, r1), (y2, d2, r2) in zip(alone, together):
        _same_bits(y1, y2)
        _same_bits(d1, d2)
        np.testing.assert_array_equal(r1, r2)


@compiled
@pytest.mark.parametrize(("change", "message"), [
    (lambda a: a.update(z=np.ones((3, 4), dtype=np.float32)), "z must be a C-contiguous float64"),
    (lambda a: a.update(z=np.ones(12)), "z must be a C-contiguous float64"),
    (lambda a: a.update(y=np.ones((3, 5))), "y must be a writable C-contiguous float64"),
    (lambda a: a.update(d=np.ones((3, 4), dtype=bool)), "d must be a writable C-contiguous float64"),
    (lambda a: a.update(y_rows=(np.ones(3), np.ones(2))), "y_rows must hold writable contiguous float64"),
    (lambda a: a.update(y_rows=None), "y_rows must be a pair"),
])
def test_bad_arguments_are_refused_before_the_loops_run(change, message: str) -> None:  # type: ignore[no-untyped-def]
    args = {"z": np.ones((3, 4)), "y": np.ones((3, 4)), "d": np.ones((3, 4)), "shift": 0.0, "scale": 1.0,
            "z_rows": None, "y_rows": (np.ones(3), np.ones(3))}
    change(args)
    with pytest.raises(ValueError, match=message):
        gelu_kernels.forward(**args)


@compiled
def test_the_compiled_module_checks_buffer_sizes_itself() -> None:
    """Below the wrapper, the module refuses buffers of the wrong size or kind (no read or write past an
    array)."""
    from normstats.layers import _gelu_kernels

    z, rows = np.ones((3, 4)), np.ones(3)
    with pytest.raises(ValueError, match="y: expected 12 contiguous items"):
        _gelu_kernels.forward(z, np.ones(11), z, 3, 4, 0.0, 1.0, None, None, rows, rows)
    with pytest.raises(ValueError, match="d: expected 12 contiguous items of 8 bytes"):
        _gelu_kernels.backward(z, np.ones((3, 4), dtype=bool), z, 3, 4, 1.0, None, None, rows, rows)
    with pytest.raises(ValueError, match="dx_mean: expected 3"):
        _gelu_kernels.backward(z, z, z, 3, 4, 1.0, None, None, np.ones(2), rows)
    with pytest.raises(ValueError, match="both or neither"):
        _gelu_kernels.forward(z, z, z, 3, 4, 0.0, 1.0, rows, None, rows, rows)
    with pytest.raises(ValueError, match="no kernel 'sse9'"):
        _gelu_kernels.use("sse9")


@compiled
def test_the_versions_agree_on_a_chunk() -> None:
    """The AVX2 loop (libmvec) and the plain one (libm) within twice the Phi bound of each other, elementwise,
    and row sums within the rounding bound of each other (they add in a different order)."""
    if len(VERSIONS) < 2:
        pytest.skip("no AVX2 or no libmvec here: only the plain loop runs")
    z = 2 * np.random.default_rng(5).standard_normal((16, 515))
    before = gelu_kernels.version()
    out = {}
    try:
        for v in VERSIONS:
            gelu_kernels.use(v)
            y, d, zr, yr = np.empty_like(z), np.empty_like(z), nan_pair(16), nan_pair(16)
            gelu_kernels.forward(z, y, d, 0.4, 1.7, zr, yr)
            out[v] = (y, d, zr, yr)
    finally:
        gelu_kernels.use(before)  # type: ignore[arg-type]
    (y1, d1, zr1, yr1), (y2, d2, zr2, yr2) = out["plain"], out["avx2"]
    _, _, cdf = _numpy_forward(z, 0.4, 1.7)
    y_bound, d_bound = _forward_bounds(z, cdf, y1, d1, 0.4, 1.7)
    _within(y2, y1, 2 * y_bound)
    _within(d2, d1, 2 * d_bound)
    for a, b, values in ((zr1, zr2, z), (yr1, yr2, y1)):
        assert np.all(np.abs(a[0] - b[0]) * 515 <= 2 * 516 * EPS * np.abs(values).sum(axis=1))
        assert np.all(np.abs(a[1] - b[1]) <= 2 * 516 * EPS * (values * values).sum(axis=1))


# -- in a network -------------------------------------------------------------------------------------------------

NETWORKS = [
    ("3*(linear gelu)", (24,)),
    ("linear(fan_out=1) gelu linear(fan_out=6) gelu relu gelu", (5,)),  # records of one value: numpy's passes
    ("res(layernorm linear gelu linear) gelu res(gelu linear, alpha=0.3, beta=auto)", (8, 6)),
]


def _run(spec: str, shape: tuple[int, ...], summed: bool, monkeypatch) -> tuple[dict, int]:  # type: ignore[no-untyped-def]
    """The engine's estimates over 60 draws in chunks of 17, and how many times GELU's loops ran."""
    from normstats.engine import blocks as engine
    from normstats.layers import activations
    from normstats.networks import propagate
    from normstats.networks.build import build_network

    monkeypatch.setattr(propagate, "_SUMMED", summed)
    calls = [0]

    def count(fn):  # type: ignore[no-untyped-def]
        def wrapped(*args, **kwargs):  # type: ignore[no-untyped-def]
            calls[0] += 1
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(activations.gelu_kernels, "forward", count(gelu_kernels.forward))
    monkeypatch.setattr(activations.gelu_kernels, "backward", count(gelu_kernels.backward))
    net = build_network(spec, shape, normprop="fp")
    model = propagate.NetworkModel(net, 0, 11)
    result = engine.run_block(engine.Job(model, 11, "mc", 17, "sampled"), engine.Block(0, 60))
    return result.estimates(), calls[0]


@compiled
@pytest.mark.parametrize(("spec", "shape"), NETWORKS, ids=[n[0] for n in NETWORKS])
def test_a_network_tallies_the_same_with_the_loops(spec: str, shape: tuple[int, ...], monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The engine's estimates and standard errors with GELU's loops equal those of numpy's passes to float
    rounding (relative 1e-11: the elementwise results a few units of roundoff apart, the summaries of at most
    48 values 1e-15 apart, and the se from differences of their squares), and the loops ran once each way for
    every GELU of every chunk, except where a record holds one value a draw (its tally needs the values)."""
    from normstats.networks.build import build_network

    with_loops, calls = _run(spec, shape, True, monkeypatch)
    monkeypatch.undo()
    without, no_calls = _run(spec, shape, False, monkeypatch)
    assert with_loops.keys() == without.keys()
    np.testing.assert_allclose([with_loops[k] for k in without], [without[k] for k in without], rtol=1e-11,
                               atol=1e-15)
    assert no_calls == 0
    net = build_network(spec, shape, normprop="fp")
    gelus = [s for s in net.walk() if getattr(s, "name", None) == "gelu" and net.batch * s.out_values > 1]
    assert gelus
    assert calls == 2 * len(gelus) * -(-60 // 17)
