"""ReLU's compiled loops (``normstats.layers.relu_kernels``): the same elementwise numbers as numpy's passes bit
for bit (signed zeros, NaN and infinities included), row summaries within the float-rounding bound of an exact
sum, every version of the loops (plain C and AVX2) alike, arguments checked; and in a network, the engine's
tallies with them equal to those without, up to rounding, with every ReLU's records summed by the loops.

The rounding bound: a sum of ``n`` floats in any order is within ``(n - 1) eps sum |v|`` of the exact sum
(Higham, "Accuracy and Stability of Numerical Algorithms", 2nd ed., eq. 4.4); the exact sum is ``math.fsum``.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from normstats.layers import relu_kernels
from tests.row_summaries import check_rows, nan_pair

pytestmark = pytest.mark.skipif(not relu_kernels.AVAILABLE, reason="normstats was built without its compiled loops")

EPS = np.finfo(np.float64).eps
#: The versions of the loops this machine can run.
VERSIONS = ["plain"] + (["avx2"] if relu_kernels.AVAILABLE and relu_kernels.version() == "avx2" else [])


@pytest.fixture(params=VERSIONS)
def version(request):  # type: ignore[no-untyped-def]
    """Run the test under each version of the loops, and go back to the one chosen at import."""
    before = relu_kernels.version()
    relu_kernels.use(request.param)
    yield request.param
    relu_kernels.use(before)  # type: ignore[arg-type]


def _values(rows: int, width: int, seed: int) -> np.ndarray:
    """Normals with the edge cases a pass must keep as numpy does: signed zeros, the smallest subnormal, both
    infinities and NaN, at positions inside the vector loop and in its tail."""
    z = np.random.default_rng(seed).standard_normal((rows, width))
    special = [0.0, -0.0, 5e-324, -5e-324, np.inf, -np.inf, np.nan, 1e300]
    flat = z.ravel()
    for i, v in enumerate(special):
        if i * 7 < flat.size:
            flat[i * 7] = v
    return z


def _numpy_forward(z: np.ndarray, shift: float, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """What a network's numpy passes compute: ``np.maximum``, then the shift and scale unless they are 0 and 1."""
    on = np.greater(z, 0.0)
    y = np.maximum(z, 0.0)
    if shift != 0.0 or scale != 1.0:
        y = (y - shift) * scale
    return y, on


def _numpy_backward(g: np.ndarray, on: np.ndarray, scale: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):  # inf * 0 is NaN, as in the loops
        dx = np.multiply(g, on)
    if scale != 1.0:
        dx *= scale
    return dx


def _same_bits(a: np.ndarray, b: np.ndarray) -> None:
    """Equal as floats, NaN where NaN, and the same sign of every zero."""
    np.testing.assert_array_equal(a, b)
    assert np.array_equal(np.signbit(a), np.signbit(b))



@pytest.mark.parametrize("width", [1, 3, 7, 8, 9, 16, 31, 512, 515])
@pytest.mark.parametrize(("shift", "scale"), [(0.0, 1.0), (0.3989422804014327, 1.7128585504496627),
                                              (-0.25, 0.5)])
def test_forward_is_numpy_bit_for_bit_with_rows_to_rounding(version: str, width: int, shift: float,
                                                            scale: float) -> None:
    z = _values(6, width, seed=width)
    want_y, want_on = _numpy_forward(z, shift, scale)
    y, on = np.empty_like(z), np.empty(z.shape, dtype=bool)
    z_rows, y_rows = nan_pair(6), nan_pair(6)
    relu_kernels.forward(z, y, on, shift, scale, z_rows, y_rows)
    _same_bits(y, want_y)
    np.testing.assert_array_equal(on, want_on)
    check_rows(z, z_rows)
    check_rows(want_y, y_rows)


@pytest.mark.parametrize("width", [1, 5, 8, 13, 512, 515])
@pytest.mark.parametrize("scale", [1.0, 1.7128585504496627])
def test_backward_is_numpy_bit_for_bit_with_rows_to_rounding(version: str, width: int, scale: float) -> None:
    g = _values(5, width, seed=100 + width)
    on = np.random.default_rng(width).random((5, width)) < 0.5
    want = _numpy_backward(g, on, scale)
    dx = np.empty_like(g)
    g_rows, dx_rows = nan_pair(5), nan_pair(5)
    relu_kernels.backward(g, on, dx, scale, g_rows, dx_rows)
    _same_bits(dx, want)
    check_rows(g, g_rows)
    check_rows(want, dx_rows)


def test_in_place_and_without_input_rows_give_the_same_numbers(version: str) -> None:
    """``y`` written over ``z`` (``dx`` over ``g``), and the input's rows left out (``None``): the same results,
    and the rows not asked for are not written."""
    z = _values(9, 40, seed=1)
    y, on, y_rows = np.empty_like(z), np.empty(z.shape, dtype=bool), nan_pair(9)
    relu_kernels.forward(z, y, on, 0.4, 1.7, nan_pair(9), y_rows)
    inplace, on2, rows2 = z.copy(), np.empty(z.shape, dtype=bool), nan_pair(9)
    relu_kernels.forward(inplace, inplace, on2, 0.4, 1.7, None, rows2)
    _same_bits(inplace, y)
    np.testing.assert_array_equal(on2, on)
    np.testing.assert_array_equal(rows2, y_rows)
    g = _values(9, 40, seed=2)
    dx, dx_rows = np.empty_like(g), nan_pair(9)
    relu_kernels.backward(g, on, dx, 1.7, None, dx_rows)
    relu_kernels.backward(g, on, g, 1.7, None, rows := nan_pair(9))
    _same_bits(g, dx)
    np.testing.assert_array_equal(rows, dx_rows)


def test_the_versions_agree_on_a_chunk() -> None:
    """Plain C and AVX2 give the same elementwise results, and row sums within the rounding bound of each other
    (they add in a different order)."""
    if len(VERSIONS) < 2:
        pytest.skip("this CPU has no AVX2: only the plain loops run")
    z = np.random.default_rng(5).standard_normal((64, 512))
    before = relu_kernels.version()
    out = {}
    try:
        for v in VERSIONS:
            relu_kernels.use(v)
            y, on, zr, yr = np.empty_like(z), np.empty(z.shape, dtype=bool), nan_pair(64), nan_pair(64)
            relu_kernels.forward(z, y, on, 0.4, 1.7, zr, yr)
            out[v] = (y, on, zr, yr)
    finally:
        relu_kernels.use(before)  # type: ignore[arg-type]
    (y1, on1, zr1, yr1), (y2, on2, zr2, yr2) = out["plain"], out["avx2"]
    _same_bits(y1, y2)
    np.testing.assert_array_equal(on1, on2)
    for a, b, values in ((zr1, zr2, z), (yr1, yr2, y1)):
        bound = 2 * 513 * EPS * np.abs(values).sum(axis=1)
        assert np.all(np.abs(a[0] - b[0]) * 512 <= bound)
        assert np.all(np.abs(a[1] - b[1]) <= 2 * 513 * EPS * (values * values).sum(axis=1))


def test_threads_run_the_loops_at_once_with_their_own_numbers() -> None:
    """The loops run without the GIL: two threads on their own arrays each get what one thread alone gets."""
    chunks = [np.random.default_rng(s).standard_normal((300, 512)) for s in range(4)]
    alone = []
    for z in chunks:
        y, on, rows = np.empty_like(z), np.empty(z.shape, dtype=bool), nan_pair(300)
        relu_kernels.forward(z, y, on, 0.4, 1.7, None, rows)
        alone.append((y, rows))
    together: list = [None] * 4

    def work(i: int) -> None:
        for _ in range(20):
            y, on, rows = np.empty_like(chunks[i]), np.empty(chunks[i].shape, dtype=bool), nan_pair(300)
            relu_kernels.forward(chunks[i], y, on, 0.4, 1.7, None, rows)
        together[i] = (y, rows)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    for (y1, r1), (y2, r2) in zip(alone, together):
        _same_bits(y1, y2)
        np.testing.assert_array_equal(r1, r2)


@pytest.mark.parametrize(("change", "message"), [
    (lambda a: a.update(z=np.ones((3, 4), dtype=np.float32)), "z must be a C-contiguous float64"),
    (lambda a: a.update(z=np.ones((4, 6))[:, ::2].copy().T), "z must be a C-contiguous float64"),
    (lambda a: a.update(z=np.ones(12)), "z must be a C-contiguous float64"),
    (lambda a: a.update(y=np.ones((3, 5))), "y must be a writable C-contiguous float64"),
    (lambda a: a.update(mask=np.ones((3, 4), dtype=np.uint8)), "mask must be a writable C-contiguous bool"),
    (lambda a: a.update(y_rows=(np.ones(3), np.ones(2))), "y_rows must hold writable contiguous float64"),
    (lambda a: a.update(y_rows=None), "y_rows must be a pair"),
    (lambda a: a.update(z_rows=(np.ones(3),)), "z_rows must be a pair"),
])
def test_bad_arguments_are_refused_before_the_loops_run(change, message: str) -> None:  # type: ignore[no-untyped-def]
    args = {"z": np.ones((3, 4)), "y": np.ones((3, 4)), "mask": np.ones((3, 4), dtype=bool), "shift": 0.0,
            "scale": 1.0, "z_rows": None, "y_rows": (np.ones(3), np.ones(3))}
    change(args)
    with pytest.raises(ValueError, match=message):
        relu_kernels.forward(**args)


def test_the_compiled_module_checks_buffer_sizes_itself() -> None:
    """Below the wrapper, the module refuses buffers of the wrong size (no read or write past an array)."""
    from normstats.layers import _relu_kernels

    z, mask, rows = np.ones((3, 4)), np.ones((3, 4), dtype=bool), np.ones(3)
    with pytest.raises(ValueError, match="y: expected 12 contiguous items"):
        _relu_kernels.forward(z, np.ones(11), mask, 3, 4, 0.0, 1.0, None, None, rows, rows)
    with pytest.raises(ValueError, match="dx_mean: expected 3"):
        _relu_kernels.backward(z, mask, z, 3, 4, 1.0, None, None, np.ones(2), rows)
    with pytest.raises(ValueError, match="both or neither"):
        _relu_kernels.forward(z, z, mask, 3, 4, 0.0, 1.0, rows, None, rows, rows)
    with pytest.raises(ValueError, match="no kernel 'sse9'"):
        _relu_kernels.use("sse9")


# -- in a network -------------------------------------------------------------------------------------------------

NETWORKS = [
    ("4*(linear relu)", (24,), 1),
    ("linear(fan_out=1) relu linear(fan_out=6) relu relu", (5,), 1),  # records of one value: numpy's passes
    ("res(linear relu linear, alpha=0.5, beta=auto) relu res(relu linear, alpha=0.3, beta=auto)", (7,), 1),
    ("conv(out_channels=3,k=3,padding=1) relu maxpool(k=2) relu", (2, 6, 6), 1),
    ("linear(fan_out=6) batchnorm(batch=4) relu linear relu", (5,), 4),
]


def _run(spec: str, shape: tuple[int, ...], batch: int, summed: bool, monkeypatch) -> tuple[dict, int]:  # type: ignore[no-untyped-def]
    """The engine's estimates over 3 blocks' worth of chunks of 17 draws, and how many times the loops ran."""
    from normstats.engine import blocks as engine
    from normstats.layers import activations
    from normstats.networks import propagate
    from normstats.networks.build import build_network

    monkeypatch.setattr(propagate, "_SUMMED", summed)
    calls = [0]
    forward, backward = relu_kernels.forward, relu_kernels.backward

    def count(fn):  # type: ignore[no-untyped-def]
        def wrapped(*args, **kwargs):  # type: ignore[no-untyped-def]
            calls[0] += 1
            return fn(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(activations.relu_kernels, "forward", count(forward))
    monkeypatch.setattr(activations.relu_kernels, "backward", count(backward))
    net = build_network(spec, shape, normprop="fp")
    assert net.batch == batch
    model = propagate.NetworkModel(net, 0, 11)
    result = engine.run_block(engine.Job(model, 11, "mc", 17, "sampled"), engine.Block(0, 60))
    return result.estimates(), calls[0]


@pytest.mark.parametrize(("spec", "shape", "batch"), NETWORKS, ids=[n[0] for n in NETWORKS])
def test_a_network_tallies_the_same_with_the_loops(spec: str, shape: tuple[int, ...], batch: int,
                                                   monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The engine's estimates and standard errors with ReLU's loops equal those of numpy's passes to float
    rounding (relative 1e-11: 60 draws' summaries of at most 300 values each, about 1e-15 apart, and the se
    from differences of their squares), and the loops ran once each way for every ReLU of every chunk, except
    where a record holds one value a draw (its tally needs the values)."""
    from normstats.networks.build import build_network

    with_loops, calls = _run(spec, shape, batch, True, monkeypatch)
    monkeypatch.undo()
    without, no_calls = _run(spec, shape, batch, False, monkeypatch)
    assert with_loops.keys() == without.keys()
    np.testing.assert_allclose([with_loops[k] for k in without], [without[k] for k in without], rtol=1e-11,
                               atol=1e-15)
    assert no_calls == 0
    net = build_network(spec, shape, normprop="fp")
    relus = [s for s in net.walk() if getattr(s, "name", None) == "relu" and net.batch * s.out_values > 1]
    chunks = -(-60 // 17)
    assert calls == 2 * len(relus) * chunks


def test_relu_sums_the_record_of_the_layer_before_it_even_after_a_maps_channel_figures(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A conv's and a max pool's outputs are maps, whose channel figures go to the sink between the layer's
    record and the ReLU after it: the record still waits for the ReLU, which sums it as it reads it (every
    forward call gets rows for its input), and the tallies are those of numpy's passes to rounding."""
    from normstats.engine import blocks as engine
    from normstats.layers import activations
    from normstats.networks import propagate
    from normstats.networks.build import build_network

    spec, shape = "conv(out_channels=3,k=3,padding=1) relu maxpool(k=2) relu", (2, 6, 6)
    with_input_rows = []
    forward = relu_kernels.forward

    def spy(z, y, mask, shift, scale, z_rows, y_rows):  # type: ignore[no-untyped-def]
        with_input_rows.append(z_rows is not None)
        return forward(z, y, mask, shift, scale, z_rows, y_rows)

    monkeypatch.setattr(activations.relu_kernels, "forward", spy)
    net = build_network(spec, shape, normprop="fp")
    model = propagate.NetworkModel(net, 0, 11)
    fused = engine.run_block(engine.Job(model, 11, "mc", 17, "sampled"), engine.Block(0, 34)).estimates()
    assert with_input_rows == [True] * 4  # 2 ReLUs, 2 chunks
    monkeypatch.setattr(propagate, "_SUMMED", False)
    plain = engine.run_block(engine.Job(model, 11, "mc", 17, "sampled"), engine.Block(0, 34)).estimates()
    np.testing.assert_allclose([fused[k] for k in plain], [plain[k] for k in plain], rtol=1e-11, atol=1e-15)
