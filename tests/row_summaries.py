"""Checks shared by the tests of the compiled summed passes (tests/test_relu_kernels.py,
tests/test_gelu_kernels.py): the row summaries they write, against the exact sums."""

from __future__ import annotations

import math

import numpy as np

EPS = np.finfo(np.float64).eps
#: The smallest subnormal float64.
TINY = 5e-324


def check_rows(values: np.ndarray, rows: tuple[np.ndarray, np.ndarray]) -> None:
    """Row means and sums of squares within the rounding bound of the exact sums (finite rows only): the sum's
    bound (Higham, "Accuracy and Stability of Numerical Algorithms", 2nd ed., eq. 4.4), one rounding more for
    the mean's division, and the underflow of a subnormal (at most the smallest subnormal, TINY, a value; a
    square of a subnormal is 0)."""
    mean, sq = rows
    width = values.shape[1]
    for i, row in enumerate(values):
        if not np.all(np.isfinite(row)) or np.any(np.abs(row) > 1e150):
            continue
        exact = math.fsum(row.tolist())
        bound = (width + 1) * EPS * math.fsum(np.abs(row).tolist()) + width * TINY
        assert abs(mean[i] * width - exact) <= bound + abs(exact) * EPS, (i, mean[i] * width, exact)
        exact_sq = math.fsum((np.abs(row) ** 2).tolist())
        tiny = sum(1 for v in row if 0 < abs(v) < 1e-154)
        assert abs(sq[i] - exact_sq) <= 2 * (width + 1) * EPS * exact_sq + tiny * 1e-308, (i, sq[i], exact_sq)


def nan_pair(rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-summary buffers for ``rows`` rows, filled with NaN so that a row the pass does not write shows."""
    return np.full(rows, np.nan), np.full(rows, np.nan)
