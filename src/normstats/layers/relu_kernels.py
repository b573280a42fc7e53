"""ReLU's network passes in one pass over memory: the compiled loops of ``_relu_kernels.c`` (built with the
package where a C compiler is found, see ``setup.py``), behind checks of their arguments.

``20*(linear relu)`` at width 512 spends most of its time outside the matrix products in numpy passes over each
chunk: forward, the row summaries of the linear layer's output (a BLAS gemv and a ``vecdot``), ReLU's mask and
maximum, the NormProp shift and scale, and the row summaries of ReLU's output (seven passes); backward, the
mask, the scale and the summaries of the gradient on either side (five). :func:`forward` and :func:`backward` do
each in one pass. Their elementwise results are numpy's bit for bit (``np.maximum``'s ``+0.0`` for ``-0.0``, NaN
kept, the mask cast to ``1.0``/``0.0`` and multiplied); the sums differ from numpy's by float rounding.

Row summaries are what :class:`~normstats.engine.moments.DrawSums` buffers: each row's mean and its sum of
squares, written into the arrays given (a pair, or ``None`` for a side not tallied here).

:data:`AVAILABLE` is ``False`` where the extension was not built; networks then run the numpy passes.
"""

from __future__ import annotations

import numpy as np

try:
    from normstats.layers import _relu_kernels as _kernels
except ImportError:  # built without a C compiler: the numpy passes run instead
    _kernels = None

#: Whether the compiled loops are there.
AVAILABLE = _kernels is not None



def version() -> str | None:
    """The loops that run: ``"avx2"`` (x86-64 with AVX2), ``"plain"`` (C), or ``None`` (not built)."""
    return _kernels.current() if _kernels is not None else None


def use(name: str) -> None:
    """Run the ``"plain"`` or ``"avx2"`` loops from now on (the tests compare them)."""
    _require()
    _kernels.use(name)  # type: ignore[union-attr]


def forward(z: np.ndarray, y: np.ndarray, mask: np.ndarray, shift: float, scale: float,
            z_rows: tuple[np.ndarray, np.ndarray] | None, y_rows: tuple[np.ndarray, np.ndarray]) -> None:
    """``y = (max(z, 0) - shift) * scale`` and ``mask = z > 0`` (``y`` may be ``z``), with the row summaries
    of ``z`` (unless ``None``) and ``y``. ``z`` is ``(rows, width)``, float64, C-contiguous."""
    _require()
    rows, width = check_array(z, "z")
    check_same(y, z, "y", np.float64)
    check_same(mask, z, "mask", np.bool_)
    _kernels.forward(z, y, mask, rows, width, float(shift), float(scale),  # type: ignore[union-attr]
                     *check_pair(z_rows, rows, "z_rows"), *check_pair(y_rows, rows, "y_rows", optional=False))


def backward(g: np.ndarray, mask: np.ndarray, dx: np.ndarray, scale: float,
             g_rows: tuple[np.ndarray, np.ndarray] | None, dx_rows: tuple[np.ndarray, np.ndarray]) -> None:
    """``dx = (g * mask) * scale`` (``dx`` may be ``g``), with the row summaries of ``g`` (unless ``None``)
    and ``dx``."""
    _require()
    rows, width = check_array(g, "g")
    check_same(mask, g, "mask", np.bool_)
    check_same(dx, g, "dx", np.float64)
    _kernels.backward(g, mask, dx, rows, width, float(scale),  # type: ignore[union-attr]
                      *check_pair(g_rows, rows, "g_rows"), *check_pair(dx_rows, rows, "dx_rows", optional=False))


def fits(a: np.ndarray) -> bool:
    """Whether the loops can take ``a`` as it is: float64, C-contiguous, two axes, at least one column."""
    return a.dtype == np.float64 and a.ndim == 2 and a.shape[1] > 0 and a.flags.c_contiguous


def _require() -> None:
    if _kernels is None:
        raise RuntimeError("normstats was installed without its compiled ReLU loops (no C compiler was found)")


def check_array(a: np.ndarray, name: str) -> tuple[int, int]:
    """The ``(rows, width)`` of ``a``, refused unless :func:`fits` (GELU's loops too)."""
    if not fits(a):
        raise ValueError(f"{name} must be a C-contiguous float64 array of shape (rows, width >= 1); got "
                         f"{a.dtype} {a.shape}")
    return a.shape


def check_same(a: np.ndarray, like: np.ndarray, name: str, dtype: type) -> None:
    """Refuse ``a`` unless it is a writable C-contiguous array of ``dtype`` shaped as ``like`` (GELU's loops too)."""
    if a.dtype != dtype or a.shape != like.shape or not a.flags.c_contiguous or not a.flags.writeable:
        raise ValueError(f"{name} must be a writable C-contiguous {np.dtype(dtype)} array of shape {like.shape}; "
                         f"got {a.dtype} {a.shape}")


def check_pair(pair: tuple[np.ndarray, np.ndarray] | None, rows: int, name: str,
               optional: bool = True) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``pair`` as the loops take it, two arrays or two ``None``, once it is checked (GELU's loops too)."""
    if pair is None and optional:
        return None, None
    if pair is None or len(pair) != 2:
        raise ValueError(f"{name} must be a pair of arrays (row means, row sums of squares)")
    for a in pair:
        if a.dtype != np.float64 or a.shape != (rows,) or not a.flags.c_contiguous or not a.flags.writeable:
            raise ValueError(f"{name} must hold writable contiguous float64 arrays of {rows} values; got "
                             f"{a.dtype} {a.shape}")
    return pair[0], pair[1]
