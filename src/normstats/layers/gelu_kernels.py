"""Exact GELU's network passes in one pass over memory: the compiled loops of ``_gelu_kernels.c`` (built with
the package where a C compiler is found, see ``setup.py``), behind the argument checks ReLU's loops have.

A network's numpy passes of ``y = x Phi(x)`` make, forward, ``ndtr``, a product, the NormProp shift and scale,
the derivative ``x exp(-x^2/2) / sqrt(2 pi) + Phi(x)`` (five passes) and the row summaries of input and output;
backward, a product, the scale and the summaries of the gradient on either side. :func:`forward` and
:func:`backward` do each in one pass, with the same operations in the same order; ``Phi`` is libm's
``erfc(-x / sqrt 2) / 2`` where numpy's passes call ``scipy.special.ndtr``, and ``exp`` is libm's. On x86-64
Linux with AVX2 and glibc 2.35 or later, the forward loop calls glibc's vector erfc and exp (libmvec, four
values a call): 7-9 ns a value, where the scalar ones took 43-52 (on a loaded machine). A 13 x 16384 chunk's
forward and backward pass with the four row summaries: 1.4-2.2 ms, against about 5 for numpy's passes.

How close: Phi's argument is ``x * (1/sqrt 2)`` rounded in both. Where Phi(x) is a normal float (x > -37.52),
libm's and libmvec's (glibc 2.36) and scipy's Phi were measured within ``(x^2/2 + 8)`` units of roundoff of
each other, relative, on 1 000 000 points of [-40, 40] (at most 0.87 of that bound: 3.1 units for |x| < 1, 7.8 for
|x| < 2, 11 for |x| < 8, 258 at x = -33): scipy's ``erfc`` takes ``exp(-t^2)`` of a rounded ``t^2``, an error
of about ``t^2`` units far in the tail, which glibc's avoids (against mpmath at 120 bits, glibc's Phi is within
1 unit on [0.7, 2.5]). Below x = -37.52 scipy underflows to 0 before libm does: a difference under 6e-311.
``-0.0``, the infinities and NaN give numpy's values (Phi 0.5, 0 or 1, NaN; ``d`` NaN at either infinity, as
``inf * exp(-inf)``). Every other step is exact to a unit of roundoff, so the results differ from numpy's by
that much more, and the sums by float rounding (``tests/test_gelu_kernels.py``).

:data:`AVAILABLE` is ``False`` where the extension was not built; networks then run the numpy passes.
"""

from __future__ import annotations

import numpy as np

from normstats.layers.relu_kernels import check_array, check_pair, check_same, fits

try:
    from normstats.layers import _gelu_kernels as _kernels
except ImportError:  # built without a C compiler: the numpy passes run instead
    _kernels = None

#: Whether the compiled loops are there.
AVAILABLE = _kernels is not None

__all__ = ["AVAILABLE", "backward", "fits", "forward", "use", "version"]


def version() -> str | None:
    """The forward loop that runs: ``"avx2"`` (libmvec's erfc and exp), ``"plain"`` (C, libm's), or ``None``
    (not built)."""
    return _kernels.current() if _kernels is not None else None


def use(name: str) -> None:
    """Run the ``"plain"`` or ``"avx2"`` forward loop from now on (the tests compare them)."""
    _require()
    _kernels.use(name)  # type: ignore[union-attr]


def forward(z: np.ndarray, y: np.ndarray, d: np.ndarray, shift: float, scale: float,
            z_rows: tuple[np.ndarray, np.ndarray] | None, y_rows: tuple[np.ndarray, np.ndarray]) -> None:
    """``y = (z Phi(z) - shift) * scale`` and GELU's derivative ``d = Phi(z) + z phi(z)`` (``y`` may be ``z``),
    with the row summaries of ``z`` (unless ``None``) and ``y``. ``z`` is ``(rows, width)``, float64,
    C-contiguous."""
    _require()
    rows, width = check_array(z, "z")
    check_same(y, z, "y", np.float64)
    check_same(d, z, "d", np.float64)
    _kernels.forward(z, y, d, rows, width, float(shift), float(scale),  # type: ignore[union-attr]
                     *check_pair(z_rows, rows, "z_rows"), *check_pair(y_rows, rows, "y_rows", optional=False))


def backward(g: np.ndarray, d: np.ndarray, dx: np.ndarray, scale: float,
             g_rows: tuple[np.ndarray, np.ndarray] | None, dx_rows: tuple[np.ndarray, np.ndarray]) -> None:
    """``dx = (d * g) * scale`` (``dx`` may be ``g``), with the row summaries of ``g`` (unless ``None``) and
    ``dx``."""
    _require()
    rows, width = check_array(g, "g")
    check_same(d, g, "d", np.float64)
    check_same(dx, g, "dx", np.float64)
    _kernels.backward(g, d, dx, rows, width, float(scale),  # type: ignore[union-attr]
                      *check_pair(g_rows, rows, "g_rows"), *check_pair(dx_rows, rows, "dx_rows", optional=False))


def _require() -> None:
    if _kernels is None:
        raise RuntimeError("normstats was installed without its compiled GELU loops (no C compiler was found)")
