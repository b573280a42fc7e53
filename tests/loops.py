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
            if mode == "max":
                best = cells[0]
                for cell in cells[1:]:
                    if xp[cell] > xp[best]:
                        best = cell
                y[a, b] = xp[best]
                dxp[best] += dy[a, b]
            else:
                total = 0.0
                for cell in cells:
                    total += xp[cell]
                y[a, b] = total / (kh * kw)
                for cell in cells:
                    dxp[cell] += dy[a, b] / (kh * kw)
    return y, dxp[padding : padding + x.shape[0], padding : padding + x.shape[1]]


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
