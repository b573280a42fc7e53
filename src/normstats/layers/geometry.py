"""Window geometry shared by 2-D pooling and convolution: what one draw holds, and the two array operations
every windowed layer needs (gather the windows of a map, scatter window gradients back onto it).

A draw is either

* a patch of the stationary *interior* of an unbounded map (the default). Along one axis with kernel ``k`` and
  stride ``s``, windows start at the multiples of ``s``; the statistics of the interior are periodic with
  period ``s``, so the draw counts the gradients of one period, a block of ``s`` input positions, and holds
  every window that covers a position of that block: windows ``0, s, ..., lead`` with
  ``lead = floor((k - 1) / s) * s``, a patch of ``lead + max(k, s)`` inputs and the block
  ``[lead, lead + s)`` (with ``s > k`` the inputs between windows get no gradient, and count as zeros).
  Padding only shifts the window grid of an unbounded map, so it plays no part here.
  With ``s == k`` the patch is one window, the block is that window, and a draw is exactly one window: the
  geometry of the published table. Every window of the patch is an interior window, so the forward statistics
  count all of them; the values of one draw are correlated, which :class:`~normstats.moments.Tally` allows
  for by treating the draw as the independent unit.
* a whole finite map of ``H x W`` inputs (``--size``), padded and windowed exactly as a framework does
  (``floor`` output size, no ``ceil_mode``); every output and every input gradient counts, borders included.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from normstats.errors import ParameterError
from normstats.params import Param

#: Largest side of a finite map (``--size``).
MAX_SIDE = 1024
#: The ``--size`` of the default geometry: the stationary interior of an unbounded map.
INTERIOR = "interior"
SIZE_SYNTAX = f"'{INTERIOR}', H or HxW with integers H, W in [1, {MAX_SIDE}]"


def parse_size(text: str) -> str | None:
    """``"7"`` -> ``"7x7"``, ``"7x5"`` -> ``"7x5"``, ``"interior"`` stays; ``None`` when ``text`` is not a
    valid map size."""
    if text.strip() == INTERIOR:
        return INTERIOR
    match = re.fullmatch(r"\s*(\d+)\s*(?:[xX]\s*(\d+)\s*)?", text)
    if match is None:
        return None
    h = int(match[1])
    w = int(match[2] or h)
    if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        return None
    return f"{h}x{w}"


def size_param() -> Param:
    return Param(
        "size", str, INTERIOR, "a finite H x W map, or the interior of an unbounded map",
        parse=parse_size, syntax=SIZE_SYNTAX,
    )


@dataclass(frozen=True)
class Axis:
    """One axis of a draw: its window geometry, its length, its windows and the positions it counts."""

    kernel: int
    stride: int
    padding: int
    length: int  # input positions per draw
    windows: int  # output positions per draw
    start: int  # first counted input position
    counted: int  # counted input positions
    density: float  # windows per counted input position

    @classmethod
    def interior(cls, kernel: int, stride: int) -> Axis:
        lead = (kernel - 1) // stride * stride
        return cls(kernel, stride, 0, lead + max(kernel, stride), lead // stride + 1, lead, stride, 1 / stride)

    @classmethod
    def finite(cls, size: int, kernel: int, stride: int, padding: int) -> Axis:
        windows = (size + 2 * padding - kernel) // stride + 1
        return cls(kernel, stride, padding, size, windows, 0, size, windows / size)

    @property
    def span(self) -> int:
        """Extent of the window starts, for strided slicing: ``(windows - 1) * stride + 1``."""
        return (self.windows - 1) * self.stride + 1


@dataclass(frozen=True)
class Grid:
    """The two axes of a draw's map."""

    h: Axis
    w: Axis

    @property
    def shape(self) -> tuple[int, int]:
        return self.h.length, self.w.length

    @property
    def windows(self) -> int:
        return self.h.windows * self.w.windows

    @property
    def counted(self) -> int:
        return self.h.counted * self.w.counted

    @property
    def density(self) -> float:
        """Output windows per counted input position: ``1 / (sh sw)`` in the interior (one window per
        period), ``Ho Wo / (H W)`` on a finite map."""
        return self.h.density * self.w.density

    def gather(self, maps: np.ndarray, fill: float) -> np.ndarray:
        """The windows of ``maps`` (``(..., H, W)``) as a view ``(..., Ho, Wo, kh, kw)``, after padding with
        ``fill``."""
        ph, pw = self.h.padding, self.w.padding
        if ph or pw:
            pad = [(0, 0)] * (maps.ndim - 2) + [(ph, ph), (pw, pw)]
            maps = np.pad(maps, pad, constant_values=fill)
        view = sliding_window_view(maps, (self.h.kernel, self.w.kernel), axis=(-2, -1))
        return view[..., : self.h.span : self.h.stride, : self.w.span : self.w.stride, :, :]

    def scatter(self, cols: np.ndarray) -> np.ndarray:
        """Sum window gradients ``(..., Ho, Wo, kh, kw)`` onto their input positions ``(..., H, W)``; what
        lands on padding is dropped. Kernel offsets run last to first, so each position receives its windows'
        contributions in row-major window order, the order of a plain loop over windows (the tests rely on it
        for exact equality)."""
        h, w = self.h, self.w
        out = np.zeros(cols.shape[:-4] + (h.length + 2 * h.padding, w.length + 2 * w.padding))
        for i in reversed(range(h.kernel)):
            for j in reversed(range(w.kernel)):
                out[..., i : i + h.span : h.stride, j : j + w.span : w.stride] += cols[..., i, j]
        return out[..., h.padding : h.padding + h.length, w.padding : w.padding + w.length]

    def counted_values(self, maps: np.ndarray) -> np.ndarray:
        """The counted positions of ``maps`` (``(draws, ..., H, W)``) as ``(draws, values)``."""
        h, w = self.h, self.w
        return maps[..., h.start : h.start + h.counted, w.start : w.start + w.counted].reshape(len(maps), -1)

    def counted_columns(self, channels: int = 1) -> np.ndarray:
        """The columns of a flattened ``(channels, H, W)`` draw that :meth:`counted_values` keeps."""
        index = np.arange(channels * self.h.length * self.w.length).reshape(1, channels, *self.shape)
        return self.counted_values(index)[0]

    def window_sizes(self) -> np.ndarray:
        """Real (not padding) inputs of each window, ``(Ho, Wo)``."""
        return self.gather(np.ones(self.shape), 0.0).sum(axis=(-2, -1))


def make_grid(
    layer: str,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: int,
    size: str,
    max_padding: tuple[int, int] | None = None,
) -> Grid:
    """The geometry of a draw, or :class:`ParameterError` for a geometry a framework refuses: padding above
    ``max_padding`` (pooling: half the kernel), or a kernel larger than the padded map."""
    if max_padding is not None and padding > min(max_padding):
        half = min(max_padding)
        raise ParameterError(
            f"parameter --padding of layer '{layer}' must be an integer in [0, {half}] (at most half the "
            f"kernel, as PyTorch requires); got {padding}"
        )
    if size == INTERIOR:
        return Grid(Axis.interior(kernel[0], stride[0]), Axis.interior(kernel[1], stride[1]))
    h, w = (int(t) for t in size.split("x"))
    if h + 2 * padding < kernel[0] or w + 2 * padding < kernel[1]:
        raise ParameterError(
            f"parameter --size of layer '{layer}' must be at least the kernel minus twice the padding "
            f"({kernel[0] - 2 * padding}x{kernel[1] - 2 * padding}) so that one window fits; got {size}"
        )
    return Grid(Axis.finite(h, kernel[0], stride[0], padding), Axis.finite(w, kernel[1], stride[1], padding))
