"""The model tap's sums in one compiled pass (``normstats.engine._power_sums.row_sums``, wrapped by
``normstats.engine.moments.row_sums``): for float32 and float64 values seen as rows, the sum, the sum of squares
and the sum of squared row sums, within the float64 rounding bound of the exact sums (``math.fsum``), both
versions of the loop (plain C and AVX2) alike, on random, shifted and special values (infinities, NaN,
subnormals); and the tap's figures by that pass equal to float64 figures, with its torch passes taking what the
compiled pass does not (a strided layout, no compiled loop).

The bound: a sum of ``n`` floats in any order is within ``(n - 1) eps sum |t|`` of the exact sum (Higham,
"Accuracy and Stability of Numerical Algorithms", 2nd ed., eq. 4.4). A float32 value's square is exact in
float64; a float64 value's is rounded once (``eps/2 |t|``), or not at all by a fused multiply-add, and where it
falls among the subnormals it is off by at most half the smallest subnormal (Higham's model with underflow,
section 2.2). So ``n eps sum |t| + n * smallest_subnormal`` covers every sum. The AVX2 loop for float32 values
first sums spans in float32, 16 values to a lane, before float64 takes over: each term carries at most 16
float32 roundings more (``16 eps32 sum |t|``, and a float32 square that underflows, at most the smallest float32
subnormal). A row sum ``r`` off by ``e`` has a square off by at most ``e (2 |r| + e)``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from normstats.engine import moments
from tests.kernel_versions import VERSIONS, kernel, needs_kernel, version  # noqa: F401 (a fixture)

pytestmark = needs_kernel

EPS = float(np.finfo(np.float64).eps)
TINY = float(np.finfo(np.float64).smallest_subnormal)



EPS32 = float(np.finfo(np.float32).eps)
TINY32 = float(np.finfo(np.float32).smallest_subnormal)


def _bound(terms: np.ndarray, spans: bool = False) -> float:
    """How far a sum of ``terms`` by the loop may be from the exact sum; ``spans``: by float32 spans first."""
    size = math.fsum(np.abs(terms).tolist())
    bound = len(terms) * EPS * size + len(terms) * TINY
    return bound + (16 * EPS32 * size + len(terms) * TINY32 if spans else 0.0)


def _check_finite(got: tuple[float, float, float], values: np.ndarray, width: int) -> None:
    """``got`` against the exact sums of ``values`` (finite) as rows of ``width``, within the rounding bound."""
    spans = values.dtype == np.float32 and kernel.current() == "avx2"
    v = values.astype(np.float64).reshape(-1)
    squares = v * v  # exact for float32 values; rounded once for float64 (in the bound)
    assert abs(got[0] - math.fsum(v.tolist())) <= _bound(v, spans), (got[0], math.fsum(v.tolist()))
    assert abs(got[1] - math.fsum(squares.tolist())) <= _bound(squares, spans), (got[1], math.fsum(squares.tolist()))
    rows = v.reshape(-1, width) if v.size else np.zeros((0, width))
    exact = np.array([math.fsum(r.tolist()) for r in rows])
    errors = np.array([_bound(r, spans) for r in rows])
    squared = exact * exact
    off = errors * (2 * np.abs(exact) + errors)  # how far each computed squared row sum may be from the exact
    bound = float(np.sum(off)) + _bound(squared + off)
    assert abs(got[2] - math.fsum(squared.tolist())) <= bound, (got[2], math.fsum(squared.tolist()), bound)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("rows, width", [(0, 5), (1, 1), (3, 3), (2, 4), (5, 7), (4, 15), (3, 16), (3, 17),
                                         (16, 49), (2, 1000), (1, 65_537)])
@pytest.mark.parametrize("shift", [0.0, 0.31, -250.0])
def test_the_sums_are_exact_to_rounding(version: str, dtype: type, rows: int, width: int, shift: float) -> None:
    v = (np.random.default_rng(rows * width).standard_normal((rows, width)) * 1.7 + shift).astype(dtype)
    _check_finite(moments.row_sums(v, width), v, width)
    _check_finite(moments.row_sums(v, max(v.size, 1)), v, max(v.size, 1))  # the whole as one row


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_subnormals_and_huge_values_are_summed_in_float64(version: str, dtype: type) -> None:
    """Subnormal values (and, for float64, squares that underflow), and float32 values whose squares overflow
    float32 but not float64."""
    info = np.finfo(dtype)
    rng = np.random.default_rng(7)
    sub = (rng.integers(1, 1000, size=(6, 37)) * info.smallest_subnormal).astype(dtype)
    sub[::2] *= -1
    _check_finite(moments.row_sums(sub, 37), sub, 37)
    mixed = sub.copy()
    mixed[:, 5] = rng.standard_normal(6)
    _check_finite(moments.row_sums(mixed, 37), mixed, 37)
    if dtype == np.float32:  # squares near 1e60, beyond float32: the AVX2 loop's float32 spans summed again
        huge = (rng.standard_normal((3, 700)) * 1e30).astype(np.float32)
        huge[1] = rng.standard_normal(700)  # a row of ordinary values between them
        got = moments.row_sums(huge, 700)
        assert all(math.isfinite(g) for g in got)
        _check_finite(got, huge, 700)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("width", [21, 300])  # float32 rows of 300: the AVX2 loop's float32 spans, summed again
@pytest.mark.parametrize("case", ["nan", "inf", "-inf", "inf and -inf in a row", "inf and -inf in two rows"])
def test_infinities_and_nan_follow_ieee_sums(version: str, dtype: type, width: int, case: str) -> None:
    """Whatever the order of the additions, a sum with a NaN, or with both infinities, is NaN, and one with
    infinities of one sign is that infinity: the same as numpy's float64 sums of the same rows."""
    v = np.random.default_rng(1).standard_normal((4, width)).astype(dtype)
    last = width - 1
    if case == "nan":
        v[2, last] = np.nan
    elif case == "inf":
        v[1, 3] = v[3, last - 2] = np.inf
    elif case == "-inf":
        v[0, 9] = -np.inf
    elif case == "inf and -inf in a row":
        v[1, 0], v[1, last - 3] = np.inf, -np.inf
    else:
        v[0, 16], v[3, 4] = np.inf, -np.inf
    d = v.astype(np.float64)
    with np.errstate(invalid="ignore"):
        row = d.sum(axis=1)
        want = [float(d.sum()), float((d * d).sum()), float((row * row).sum())]
    got = moments.row_sums(v, width)
    for g, w in zip(got, want):
        assert not math.isfinite(w)
        assert (math.isnan(g) and math.isnan(w)) or g == w, (case, got, want)


def test_the_versions_agree_on_a_large_map() -> None:
    if len(VERSIONS) < 2:
        pytest.skip("this CPU has no AVX2: only the plain loop runs")
    v = (np.random.default_rng(3).standard_normal((64, 3136)) + 0.5).astype(np.float32)
    before = kernel.current()
    out = {}
    try:
        for name in VERSIONS:
            kernel.use(name)
            out[name] = moments.row_sums(v, 3136)
    finally:
        kernel.use(before)
    d = v.astype(np.float64)
    row = d.sum(axis=1)
    scales = [float(np.abs(d).sum()), float((d * d).sum()), float((row * row).sum())]
    for p, plain, avx2, scale in zip(range(3), out["plain"], out["avx2"], scales):  # avx2: float32 spans
        assert abs(plain - avx2) <= (2 * v.size * EPS + 2 * 16 * EPS32) * scale, (p, plain, avx2)


def test_the_loop_refuses_what_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="expected float32 or float64 items, got format 'i'"):
        moments.row_sums(np.ones(4, dtype=np.int32), 2)
    with pytest.raises(ValueError, match="got format '>d'"):  # not in this machine's byte order
        moments.row_sums(np.ones(4, dtype=">f8"), 2)
    with pytest.raises(ValueError, match="not C-contiguous"):
        moments.row_sums(np.ones((4, 4), dtype=np.float32)[:, ::2], 2)
    with pytest.raises(ValueError, match="positive divisor of the 4 values, got 3"):
        moments.row_sums(np.ones(4), 3)
    with pytest.raises(ValueError, match="got 0"):
        moments.row_sums(np.ones(0), 0)
    assert moments.row_sums(np.ones(0, dtype=np.float32), 5) == (0.0, 0.0, 0.0)


def test_without_the_compiled_loops_there_is_no_row_sums(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(moments, "_power_sums", None)
    assert moments.vector_row_sums() is False
    with pytest.raises(RuntimeError, match="built without its compiled loops"):
        moments.row_sums(np.ones(4), 2)
