"""The model tap's figures by its one compiled pass over a CPU tensor (``normstats.models.tap._reduce`` over
``normstats.engine.moments.row_sums``): float64 figures of the values up to the kernel's rounding, for float32,
float64 and half-precision tensors, maps and whole tensors; and what that pass does not take (a channels_last or
strided tensor, an install without the compiled loops) through torch's passes with the same figures up to
float32 rounding. The kernel's own sums are checked against ``math.fsum`` in ``tests/test_row_sums_kernel.py``."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from normstats.engine import moments  # noqa: E402

EPS = float(np.finfo(np.float64).eps)
EPS32 = float(np.finfo(np.float32).eps)


def _want(t: torch.Tensor, maps: bool) -> list[float]:
    """The figures in float64 from the values (``normstats.models.tap.figures``' definitions)."""
    d = t.detach().double()
    want = [float(d.mean()), float((d * d).mean())]
    if maps:
        means = d.mean(dim=(2, 3))
        want += [float((means * means).mean()), float(d.var(dim=(2, 3), unbiased=False).mean())]
    return want


def _figures(t: torch.Tensor, maps: bool) -> tuple[str, list[float]]:
    from normstats.models.tap import _reduce, _Slots, figures

    slots = _Slots()
    entry = _reduce(t, maps, slots)
    return entry[0], figures(entry, slots.to_host())


def _close(got: list[float], want: list[float], relative: float) -> None:
    """Within ``relative`` of each figure's scale (the mean square, which bounds ``|a|``, the squared channel means
    and the channel variance)."""
    q = want[1]
    for g, w in zip(got, want):
        assert abs(g - w) <= relative * max(q, math.sqrt(q)), (got, want)


needs_avx2 = pytest.mark.skipif(not moments.vector_row_sums(), reason="the tap takes the compiled pass with AVX2 only")


@needs_avx2
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16"])
@pytest.mark.parametrize("maps", [True, False])
def test_the_tap_takes_a_contiguous_cpu_tensor_in_one_compiled_pass(dtype: str, maps: bool) -> None:
    """Half-precision tensors as float32 copies, tensors that need a gradient as detached views. The bound: float64
    rounding of sums of ``n`` terms, and for float32 values the kernel's float32 spans (16 roundings a term), four
    times, for the subtraction that forms the channel variance (a float32 pass over all the values would be off
    by about ``n eps32``, 50 times as much)."""
    gen = torch.Generator().manual_seed(0)
    t = (torch.randn(4, 6, 7, 9, generator=gen) * 1.3 + 0.4).to(getattr(torch, dtype)).requires_grad_()
    kind, got = _figures(t * 1, maps)
    assert kind == "done"
    _close(got, _want(t, maps), 4 * (t.numel() * EPS + (16 * EPS32 if dtype != "float64" else 0.0)))


@pytest.mark.parametrize("layout", ["channels_last", "strided view", "no compiled loop"])
def test_what_the_compiled_pass_does_not_take_goes_through_torch(layout: str,
                                                                 monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The same figures, up to float32 rounding of torch's sums."""
    gen = torch.Generator().manual_seed(1)
    t = torch.randn(4, 6, 8, 10, generator=gen).relu() * 1.7 + 0.1
    if layout == "channels_last":
        t = t.contiguous(memory_format=torch.channels_last)
    elif layout == "strided view":
        t = torch.randn(4, 6, 8, 20, generator=gen)[..., ::2]
    else:
        monkeypatch.setattr(moments, "_power_sums", None)  # as installed without a C compiler
    for maps in (True, False):
        kind, got = _figures(t, maps)
        assert kind == ("map" if maps else "whole")
        _close(got, _want(t, maps), 4 * t.numel() * EPS32)  # float32 sums of n terms


@needs_avx2
def test_a_model_has_the_same_figures_by_either_path(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Every row of a small convolutional model, both passes, forward and backward, one draw: the same figures
    up to float32 rounding of the torch path's sums (the largest tensor has 4 x 8 x 10 x 10 values)."""
    from normstats.models.tap import Tap

    nn = torch.nn
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Flatten(),
                          nn.Linear(800, 10))
    runs = []
    for compiled in (True, False):
        monkeypatch.setattr(moments, "vector_row_sums", lambda compiled=compiled: compiled)
        gen = torch.Generator().manual_seed(5)
        x = torch.randn(4, 3, 10, 10, generator=gen, requires_grad=True)
        with Tap(model) as tap:
            tap.begin()
            y = model(x)
            torch.autograd.grad(y, [x], torch.randn(y.shape, generator=gen))
            runs.append(tap.end())
    bound = 4 * 3200 * float(torch.finfo(torch.float32).eps)
    (fp_a, bp_a), (fp_b, bp_b) = runs
    assert fp_a.keys() == fp_b.keys() and bp_a.keys() == bp_b.keys() and len(fp_a) == 6 and len(bp_a) >= 4
    for a, b in [(fp_a[k], fp_b[k]) for k in fp_a] + [(bp_a[k], bp_b[k]) for k in bp_a]:
        assert len(a) == len(b) and all(math.isfinite(u) for u in a)
        scale = max(a[1], math.sqrt(a[1]))
        assert all(abs(u - v) <= bound * scale for u, v in zip(a, b)), (a, b)
