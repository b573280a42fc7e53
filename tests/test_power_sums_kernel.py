"""The engine's power sums in one compiled pass (``normstats.engine._power_sums``): within the float-rounding
bound of the exact sums (``math.fsum`` of numpy's own ``d = v - c`` and its powers), both versions of the loop
(plain C and AVX2) alike, and ``PowerSums`` with it equal to ``PowerSums`` on numpy's passes up to rounding,
including for batches it cannot take (strided, not float64), which go to numpy's passes.

The bound: a sum of ``n`` floats in any order is within ``(n - 1) eps sum |t|`` of the exact sum (Higham,
"Accuracy and Stability of Numerical Algorithms", 2nd ed., eq. 4.4); the terms themselves (``d^2``, ``d^3``,
``d^4``) are formed by the same products in both, one rounding each.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from normstats.engine import moments
from tests.kernel_versions import VERSIONS, kernel, needs_kernel, version  # noqa: F401 (a fixture)

pytestmark = needs_kernel

EPS = np.finfo(np.float64).eps



def _terms(v: np.ndarray, shift: float) -> list[np.ndarray]:
    d = v - shift
    d2 = d * d
    return [d, d2, d2 * d, d2 * d2]


@pytest.mark.parametrize("n", [0, 1, 3, 7, 8, 9, 17, 1000, 65536])
@pytest.mark.parametrize("shift", [0.0, 0.31, -2.5])
def test_the_sums_are_exact_to_rounding(version: str, n: int, shift: float) -> None:
    v = np.random.default_rng(n).standard_normal(n) * 1.7 + 0.4
    got = kernel.power_sums(v, shift)
    for p, terms in enumerate(_terms(v, shift)):
        exact = math.fsum(terms.tolist())
        bound = max(n - 1, 0) * EPS * math.fsum(np.abs(terms).tolist())
        assert abs(got[p] - exact) <= bound, (p, got[p], exact, bound)


def test_the_versions_agree() -> None:
    if len(VERSIONS) < 2:
        pytest.skip("this CPU has no AVX2: only the plain loop runs")
    v = np.random.default_rng(3).standard_normal(100_003)
    before = kernel.current()
    try:
        out = {}
        for name in VERSIONS:
            kernel.use(name)
            out[name] = kernel.power_sums(v, 0.2)
    finally:
        kernel.use(before)
    for p, terms in enumerate(_terms(v, 0.2)):
        bound = 2 * len(v) * EPS * float(np.abs(terms).sum())
        assert abs(out["plain"][p] - out["avx2"][p]) <= bound


def test_the_loop_refuses_what_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="expected float64 items"):
        kernel.power_sums(np.ones(4, dtype=np.float32), 0.0)
    with pytest.raises(ValueError, match="not C-contiguous"):  # numpy will not hand a strided array as one block
        kernel.power_sums(np.ones((4, 4))[:, ::2], 0.0)
    with pytest.raises(ValueError, match="no kernel 'neon'"):
        kernel.use("neon")


@pytest.mark.parametrize("width", [1, 5])
@pytest.mark.parametrize("layout", ["contiguous", "strided", "float32"])
def test_power_sums_tally_the_same_on_either_path(width: int, layout: str, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Chunks of 500 draws into ``PowerSums``, with the loop and with numpy's passes: the same count and
    moments up to rounding (relative 1e-12 on the mean, m2, m3, m4 of 3,000 values about 1e-15 apart)."""
    rng = np.random.default_rng(width)
    chunks = [rng.standard_normal((500, 2 * width)) * 0.8 + 0.3 for _ in range(6)]
    if layout == "strided":
        chunks = [c[:, ::2] for c in chunks]
    else:
        chunks = [c[:, :width].copy() for c in chunks]
        if layout == "float32":
            chunks = [c.astype(np.float32) for c in chunks]
    calls = []

    class Spy:  # the loop, counting its calls
        @staticmethod
        def power_sums(values, shift):  # type: ignore[no-untyped-def]
            calls.append(values.shape)
            return kernel.power_sums(values, shift)

    tallies = []
    for path in (Spy, None):
        monkeypatch.setattr(moments, "_power_sums", path)
        sums = moments.PowerSums(width, 500)
        for c in chunks:
            sums.add(c)
        tallies.append(sums.tally())
    a, b = tallies
    assert a.values.n == b.values.n == 3000 * width
    np.testing.assert_allclose([a.values.mean, a.values.m2, a.values.m3, a.values.m4],
                               [b.values.mean, b.values.m2, b.values.m3, b.values.m4], rtol=1e-12)
    assert len(calls) == (6 if layout == "contiguous" else 0)  # strided and float32 batches go to numpy
