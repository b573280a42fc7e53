"""References at extreme but accepted parameters, against mpmath at 40 digits: a hardtanh window far in the
tail (where E f^2 - (E f)^2 cancels, so the variance goes to quadrature) and celu with a large alpha (whose
mean comes from a series instead of phi(0) - phi(0) + ...). Each must hold to 1e-12 relative."""

from __future__ import annotations

from typing import Callable

import mpmath as mp
import pytest

from normstats.exact.references import reference_moments
from normstats.registry import make_layer

RTOL = 1e-12


def _mp_mean_std(f: Callable[[mp.mpf], mp.mpf], cuts: list[float]) -> tuple[mp.mpf, mp.mpf]:
    with mp.workdps(40):
        phi = lambda x: mp.exp(-x * x / 2) / mp.sqrt(2 * mp.pi)  # noqa: E731
        points = [-mp.inf, *map(mp.mpf, cuts), mp.inf]
        mean = mp.quad(lambda x: f(x) * phi(x), points)
        var = mp.quad(lambda x: (f(x) - mean) ** 2 * phi(x), points)
        return mean, mp.sqrt(var)


def _check(layer: str, params: dict[str, float], f: Callable[[mp.mpf], mp.mpf], cuts: list[float]) -> None:
    refs = reference_moments(make_layer(layer, **params))
    mean, std = _mp_mean_std(f, cuts)
    assert refs["fp_std"] is not None and refs["fp_mean"] is not None
    assert abs(refs["fp_std"].value - std) <= RTOL * std, (refs["fp_std"], std)
    # the mean relative to the larger of |mean| and std: what a shift or a z-score sees
    assert abs(refs["fp_mean"].value - mean) <= RTOL * max(abs(mean), std), (refs["fp_mean"], mean)


@pytest.mark.parametrize(("lo", "hi"), [(-1, 1), (3, 4), (6, 7), (8, 9), (-9, -8), (12, 13), (2, 2.001)])
def test_hardtanh_far_in_the_tail(lo: float, hi: float) -> None:
    _check("hardtanh", {"min_val": lo, "max_val": hi}, lambda x: min(max(x, mp.mpf(lo)), mp.mpf(hi)), [lo, hi])


def test_a_tail_window_leaves_the_variance_to_quadrature() -> None:
    refs = reference_moments(make_layer("hardtanh", min_val=6, max_val=7))
    assert refs["fp_std"].kind == "quadrature" and refs["fp_mean"].kind == "closed_form"  # type: ignore[union-attr]
    assert reference_moments(make_layer("hardtanh"))["fp_std"].kind == "closed_form"  # type: ignore[union-attr]


@pytest.mark.parametrize("alpha", [1e-3, 0.5, 1.0, 2.0, 10.0, 1e3, 1e5, 1e6])
def test_celu_at_any_alpha(alpha: float) -> None:
    a = mp.mpf(alpha)
    _check("celu", {"alpha": alpha}, lambda x: x if x > 0 else a * mp.expm1(x / a), [0])


@pytest.mark.parametrize("alpha", [-1e6, -1.0, 1e-6, 1.0, 1e6])
def test_elu_at_any_alpha(alpha: float) -> None:
    a = mp.mpf(alpha)
    _check("elu", {"alpha": alpha}, lambda x: x if x > 0 else a * mp.expm1(x), [0])
