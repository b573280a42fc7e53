"""Window geometry shared by 2-D pooling and convolution: what one draw holds, and the two array operations
every windowed layer needs (gather the windows of a map, scatter window gradients back onto it).

A draw is either

* a periodic map (a torus) standing for the stationary interior of an unbounded map (the default). Along one
  axis with kernel ``k`` and stride ``s``, the windows of an unbounded map start at the multiples of ``s``
  and its statistics are periodic with period ``s``. The draw is a ring of
  ``L = ceil((lead + max(k, s)) / s) * s`` inputs, ``lead = floor((k - 1) / s) * s``: the smallest multiple
  of ``s`` (so the ring keeps the window grid) at least as long as the smallest patch holding every window
  that covers one period. It holds ``L / s`` windows, starting at ``0, s, ..., L - s``; a window starting at
  ``a`` covers ``a, ..., a + k - 1`` taken mod ``L``, so the last ones wrap around the end. Every window
  counts for the forward statistics and every input for the backward ones, ``1 / s`` windows per input as on
  the unbounded map. For example ``k = 3, s = 2`` gives ``L = 6`` and 3 windows per axis, ``k = 3, s = 1``
  ``L = 5`` and 5 windows.

  Why this is exact: a window holds ``k <= L`` distinct inputs, and the windows covering one input start
  within ``lead`` of each other, so together they span at most ``lead + k <= L`` consecutive positions and
  never meet themselves around the ring. Each output and each input gradient is therefore the same function
  of the same independent inputs and upstream gradients as in the interior of an unbounded map, and every
  per-position first and second moment (what the pooled mean and std are made of) is exactly the
  interior's; a ring is ``L / s`` whole periods, so the pooled expectations are those of one period.
  With ``s >= k``, ``L = s`` and no window wraps: the ring is one window and ``s - k`` inputs after it that
  get no gradient (and count as zeros, as between the windows of an unbounded map); with ``s == k`` a draw is
  exactly one window, the geometry of the published table. Padding only shifts the window grid of an
  unbounded map, so it plays no part here. The values of one draw are correlated, which
  :class:`~normstats.engine.moments.Tally` allows for by treating the draw as the independent unit.
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
    """One axis of a draw: its window geometry, its length, its windows and the positions it counts, and
    whether it is periodic (the interior: window inputs are taken mod ``length``) or finite."""

    kernel: int
    stride: int
    padding: int
    length: int  # input positions per draw
    windows: int  # output positions per draw
    start: int  # first counted input position
    counted: int  # counted input positions
    density: float  # windows per counted input position
    periodic: bool = False  # the window inputs wrap around the end (the interior)

    @classmethod
    def interior(cls, kernel: int, stride: int) -> Axis:
        """The ring of ``L = ceil((lead + max(k, s)) / s) * s`` inputs with ``L / s`` windows, all counted."""
        lead = (kernel - 1) // stride * stride
        length = -(-(lead + max(kernel, stride)) // stride) * stride
        return cls(kernel, stride, 0, length, length // stride, 0, length, 1 / stride, periodic=True)

    @classmethod
    def finite(cls, size: int, kernel: int, stride: int, padding: int) -> Axis:
        windows = (size + 2 * padding - kernel) // stride + 1
        return cls(kernel, stride, padding, size, windows, 0, size, windows / size)

    @property
    def span(self) -> int:
        """Extent of the window starts, for strided slicing: ``(windows - 1) * stride + 1``."""
        return (self.windows - 1) * self.stride + 1

    @property
    def overhang(self) -> int:
        """Inputs the windows reach past the end of a periodic axis, ``k - s`` when windows overlap (they
        wrap onto the first ones); 0 on a finite axis."""
        return max(self.kernel - self.stride, 0) if self.periodic else 0

    def landing(self, offset: int, wrapped: bool) -> tuple[slice, slice] | None:
        """Where the input at kernel ``offset`` of each window lands: ``(positions, windows)``, a slice of the
        (padded) axis and the matching slice of the window axis; ``wrapped`` selects the windows whose input
        wraps around the end of a periodic axis (``None`` when there are none: always on a finite axis).
        Window ``a`` lands at ``a s + offset``; with ``offset = q s + r``, windows ``0 .. n - q - 1`` stay
        below ``L`` and the last ``q`` wrap to ``r, r + s, ..., r + (q - 1) s``."""
        s = self.stride
        if not self.periodic:
            return None if wrapped else (slice(offset, offset + self.span, s), slice(None))
        q, r = divmod(offset, s)
        if wrapped:
            return (slice(r, r + q * s, s), slice(self.windows - q, None)) if q else None
        return slice(offset, self.length, s), slice(0, self.windows - q)


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
        period, ``(L / s)^2`` windows on ``L^2`` inputs), ``Ho Wo / (H W)`` on a finite map."""
        return self.h.density * self.w.density

    @property
    def is_one_window(self) -> bool:
        """Whether a draw is one window covering the whole map (stride = kernel in the interior, or a finite
        map the size of the kernel, without padding)."""
        return all(a.windows == 1 and a.padding == 0 and a.kernel == a.length for a in (self.h, self.w))

    def gather(self, maps: np.ndarray, fill: float) -> np.ndarray:
        """The windows of ``maps`` (``(..., H, W)``) as a view ``(..., Ho, Wo, kh, kw)``, after padding with
        ``fill`` (a finite map) or repeating the first ``overhang`` inputs past the end (a periodic map; a view
        of ``maps`` itself when no window wraps)."""
        ph, pw = self.h.padding, self.w.padding
        if ph or pw:
            pad = [(0, 0)] * (maps.ndim - 2) + [(ph, ph), (pw, pw)]
            maps = np.pad(maps, pad, constant_values=fill)
        eh, ew = self.h.overhang, self.w.overhang
        if eh or ew:
            maps = np.pad(maps, [(0, 0)] * (maps.ndim - 2) + [(0, eh), (0, ew)], mode="wrap")
        view = sliding_window_view(maps, (self.h.kernel, self.w.kernel), axis=(-2, -1))
        return view[..., : self.h.span : self.h.stride, : self.w.span : self.w.stride, :, :]

    def scatter(self, cols: np.ndarray) -> np.ndarray:
        """Sum window gradients ``(..., Ho, Wo, kh, kw)`` onto their input positions ``(..., H, W)``; what
        lands on padding is dropped, what wraps around a periodic map lands mod its length.

        Each position receives its windows' contributions in row-major window order, the order of a plain
        loop over windows (the tests rely on it for exact equality). Windows are numbered by their start
        (``0, s, ...``), rows outer; on a periodic map that loop adds each window's gradients at positions
        taken mod ``L``, so a position near the start receives the windows that start before it first and the
        ones that wrap onto it (the last windows) after. Along one axis, window ``a`` reaches position ``p``
        through kernel offset ``p - a s`` (``p - a s + L`` when it wraps), so the order is kept by adding,
        per axis, the windows that land without wrapping before those that wrap, each by kernel offset from
        last to first; rows outer, columns inner. On a finite map nothing wraps and this is one pass over
        the offsets. A draw that is exactly one window (stride = kernel, no padding) has nothing to add up:
        the window's gradients are the map's."""
        h, w = self.h, self.w
        if self.is_one_window:
            return cols.reshape(cols.shape[:-4] + self.shape)
        out = np.zeros(cols.shape[:-4] + (h.length + 2 * h.padding, w.length + 2 * w.padding))
        for h_wrapped in (False, True):
            for i in reversed(range(h.kernel)):
                rows = h.landing(i, h_wrapped)
                if rows is None:
                    continue
                for w_wrapped in (False, True):
                    for j in reversed(range(w.kernel)):
                        columns = w.landing(j, w_wrapped)
                        if columns is None:
                            continue
                        out[..., rows[0], columns[0]] += cols[..., rows[1], columns[1], i, j]
        return out[..., h.padding : h.padding + h.length, w.padding : w.padding + w.length]

    def route(self, offsets: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Send each window's weight to one of its inputs: ``offsets`` (``(draws, Ho, Wo)``) is the kernel
        offset, row-major within the window, of that input; returns ``(draws, H, W)``, the sum at each input
        of the weights sent to it (max pooling's backward pass). ``np.bincount`` adds in the order of its
        input, which is row-major window order, so the sums are those of a plain loop over windows (as in
        :meth:`scatter`), bit for bit. The input must be a real one, not padding."""
        h, w = self.h, self.w
        draws = offsets.shape[0]
        di, dj = np.divmod(offsets, w.kernel)
        rows = np.arange(h.windows)[:, None] * h.stride + di - h.padding
        cols = np.arange(w.windows)[None, :] * w.stride + dj - w.padding
        if h.periodic:
            rows %= h.length
        if w.periodic:
            cols %= w.length
        index = rows * w.length + cols
        index += (np.arange(draws) * (h.length * w.length))[:, None, None]
        out = np.bincount(index.ravel(), weights=weights.ravel(), minlength=draws * h.length * w.length)
        return out.reshape(draws, h.length, w.length)

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
