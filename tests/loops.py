"""Plain Python loop implementations of pooling and convolution on one map, written the way the frameworks
document the operations, as the independent reference for the vectorized layers (exact equality)."""

from __future__ import annotations

import math

import numpy as np


def _padded(x: np.ndarray, padding: int, fill: float) -> np.ndarray:
    channels, h, w = x.shape
    out = np.full((channels, h + 2 * padding, w + 2 * padding), fill)
    for c in range(channels):
        for i in range(h):
            for j in range(w):
                out[c, i + padding, j + padding] = x[c, i, j]
    return out


def _out_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


def pool(
    x: np.ndarray, dy: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], padding: int, mode: str
) -> tuple[np.ndarray, np.ndarray]:
    """Max or average pooling of one map ``x`` (H, W) with upstream gradient ``dy`` (Ho, Wo): ``(y, dx)``.
    Max: padding is -inf, the gradient goes to the first maximum in row-major order. Average: padding is 0,
    the divisor is always kh * kw (count_include_pad=True)."""
    (kh, kw), (sh, sw) = kernel, stride
    xp = _padded(x[None], padding, -math.inf if mode == "max" else 0.0)[0]
    dxp = np.zeros_like(xp)
    ho, wo = _out_size(x.shape[0], kh, sh, padding), _out_size(x.shape[1], kw, sw, padding)
    y = np.zeros((ho, wo))
    for a in range(ho):
        for b in range(wo):
            cells = [(a * sh + i, b * sw + j) for i in range(kh) for j in range(kw)]
            y[a, b] = _pool_window(xp, dxp, cells, dy[a, b], mode)
    return y, dxp[padding : padding + x.shape[0], padding : padding + x.shape[1]]


def _pool_window(x: np.ndarray, dx: np.ndarray, cells: list[tuple[int, int]], grad: float, mode: str) -> float:
    """One window over ``cells`` (in row-major order): returns its output and adds its gradient ``grad`` to
    ``dx``. Max: the first maximum in that order gets the gradient; average: each cell gets ``grad / n``."""
    if mode == "max":
        best = cells[0]
        for cell in cells[1:]:
            if x[cell] > x[best]:
                best = cell
        dx[best] += grad
        return float(x[best])
    total = 0.0
    for cell in cells:
        total += x[cell]
    for cell in cells:
        dx[cell] += grad / len(cells)
    return total / len(cells)


def conv(
    x: np.ndarray, dy: np.ndarray, weight: np.ndarray, stride: int, padding: int
) -> tuple[np.ndarray, np.ndarray]:
    """Cross-correlation of ``x`` (C, H, W) with ``weight`` (O, C, k, k), zero padding: ``(y, dx)`` for the
    upstream gradient ``dy`` (O, Ho, Wo)."""
    out_ch, in_ch, k, _ = weight.shape
    xp = _padded(x, padding, 0.0)
    dxp = np.zeros_like(xp)
    ho, wo = _out_size(x.shape[1], k, stride, padding), _out_size(x.shape[2], k, stride, padding)
    y = np.zeros((out_ch, ho, wo))
    for o in range(out_ch):
        for a in range(ho):
            for b in range(wo):
                for c in range(in_ch):
                    for i in range(k):
                        for j in range(k):
                            y[o, a, b] += weight[o, c, i, j] * xp[c, a * stride + i, b * stride + j]
                            dxp[c, a * stride + i, b * stride + j] += weight[o, c, i, j] * dy[o, a, b]
    h, w = x.shape[1:]
    return y, dxp[:, padding : padding + h, padding : padding + w]


def pool_torus(
    x: np.ndarray, dy: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], mode: str
) -> tuple[np.ndarray, np.ndarray]:
    """Max or average pooling of one periodic map ``x`` (L, M), each side a multiple of its stride, with
    upstream gradient ``dy`` (L / sh, M / sw): ``(y, dx)``. Window ``(a, b)`` starts at ``(a sh, b sw)`` and
    covers ``((a sh + i) mod L, (b sw + j) mod M)``; windows are visited in row-major order, and within a
    window the cells too (max: the first maximum in that order gets the gradient)."""
    (kh, kw), (sh, sw) = kernel, stride
    rows, cols = x.shape
    dx = np.zeros_like(x)
    y = np.zeros((rows // sh, cols // sw))
    for a in range(rows // sh):
        for b in range(cols // sw):
            cells = [((a * sh + i) % rows, (b * sw + j) % cols) for i in range(kh) for j in range(kw)]
            y[a, b] = _pool_window(x, dx, cells, dy[a, b], mode)
    return y, dx


def conv_torus(x: np.ndarray, dy: np.ndarray, weight: np.ndarray, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Cross-correlation of one periodic map ``x`` (C, L, M), each side a multiple of the stride, with
    ``weight`` (O, C, k, k), indices mod the sides: ``(y, dx)`` for the upstream gradient ``dy``
    (O, L / stride, M / stride). Trailing axes of ``x`` and ``dy`` beyond those, if any, hold a batch of maps
    (the identity as ``x`` gives the Jacobian in one call)."""
    out_ch, in_ch, k, _ = weight.shape
    rows, cols = x.shape[1:3]
    dx = np.zeros(x.shape[:3] + dy.shape[3:])
    y = np.zeros((out_ch, rows // stride, cols // stride) + x.shape[3:])
    for o in range(out_ch):
        for a in range(rows // stride):
            for b in range(cols // stride):
                for c in range(in_ch):
                    for i in range(k):
                        for j in range(k):
                            r, q = (a * stride + i) % rows, (b * stride + j) % cols
                            y[o, a, b] += weight[o, c, i, j] * x[c, r, q]
                            dx[c, r, q] += weight[o, c, i, j] * dy[o, a, b]
    return y, dx
