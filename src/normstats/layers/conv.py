"""A 2-D convolution (cross-correlation, as frameworks compute it) with weights drawn once per run.

A draw holds ``in_channels`` maps of the geometry of :mod:`normstats.layers.geometry` (by default a periodic
map standing for the stationary interior of an unbounded map; ``--size HxW`` a finite map, zero-padded). The
forward pass is im2col (``sliding_window_view``) and one matrix product; the backward pass multiplies by the
weight and sums each window's gradients back onto the map.

References. ``y`` and ``dx`` are linear in ``x`` and ``dy``, so both means are 0. A window with no padding in
it gives output channel ``o`` the variance ``|W_o|^2``, so pooled over channels ``fp var = |W|^2 / O``.
``dx_{c,i} = sum over o and windows w covering i of W[o, c, i - w] dy_{o,w}``, with independent ``dy``, so
``E dx_{c,i}^2 = sum_{o,w} W[o, c, i - w]^2``; summed over the counted positions each (window, offset) pair
lands once on a real position when there is no padding (on the torus, at its position mod the side), so
``bp var = rho |W|^2 / C`` with ``rho`` the windows per counted input position (``1 / s^2`` in the interior,
``Ho Wo / (H W)`` on a finite map). Both hold for every W whose ``|W|^2`` is fixed (see
:mod:`normstats.layers.weights`). On a padded finite map, how much of W's mass falls on padding at the
borders depends on W itself, so there the stds have no reference.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any

import numpy as np

from normstats.errors import ParameterError
from normstats.layers.base import ConditionalSampler, Layer, Passes, Sampler
from normstats.layers.geometry import INTERIOR, Grid, make_grid, size_param
from normstats.layers.weights import (
    draw_weight,
    resolve_weight_params,
    squared_norm,
    weight_params,
)
from normstats.params import Param
from normstats.registry import register_layer

#: Most values (inputs plus outputs) one draw may hold: 32 MB of float64.
MAX_DRAW = 1 << 22
#: Most memory a run may need at once: the weight and its square (the conditional estimator's), plus one
#: draw's inputs, outputs and im2col columns (every window's inputs, C * k * k per window), all float64. 256 MB:
#: the budget of linear's largest weight (16.7M weights) and its square. (1024 x 1024 channels at k = 15 would
#: take 3.8 GB in the weights alone and run for minutes.)
MAX_MEMORY = 1 << 28


def work_bytes(values: dict[str, Any], grid: Grid) -> int:
    """The memory :data:`MAX_MEMORY` bounds, in bytes, for the parameters ``values`` on ``grid``."""
    c, o, k = values["in_channels"], values["out_channels"], values["k"]
    width = c * grid.h.length * grid.w.length + o * grid.windows
    return 8 * (2 * o * c * k * k + width + grid.windows * c * k * k)


def _megabytes(n: int) -> str:
    return f"{n / 2**30:,.1f} GB" if n >= 2**30 else f"{n / 2**20:,.0f} MB"


class ConvSampler:
    """The forward/backward pass of a fixed weight on a fixed geometry (picklable, unlike a closure)."""

    def __init__(self, weight: np.ndarray, grid: Grid) -> None:
        self.weight = weight
        self.matrix = weight.reshape(len(weight), -1)
        self.grid = grid

    def __call__(self, x: np.ndarray, dy: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.forward(x), self.backward(dy)

    def forward(self, x: np.ndarray) -> np.ndarray:
        g = self.grid
        out_ch, in_ch = self.weight.shape[:2]
        draws, oh, ow = len(x), g.h.windows, g.w.windows
        windows = g.gather(x.reshape(draws, in_ch, *g.shape), 0.0)  # (draws, C, Ho, Wo, kh, kw)
        cols = windows.transpose(0, 2, 3, 1, 4, 5).reshape(draws * oh * ow, -1)
        y = (cols @ self.matrix.T).reshape(draws, oh, ow, out_ch).transpose(0, 3, 1, 2)
        return y.reshape(draws, -1)

    def backward(self, dy: np.ndarray) -> np.ndarray:
        g = self.grid
        out_ch, in_ch, kh, kw = self.weight.shape
        draws, oh, ow = len(dy), g.h.windows, g.w.windows
        dys = dy.reshape(draws, out_ch, oh, ow).transpose(0, 2, 3, 1).reshape(-1, out_ch)
        dcols = (dys @ self.matrix).reshape(draws, oh, ow, in_ch, kh, kw)
        if g.h.periodic or g.w.periodic or g.is_one_window:
            return g.counted_values(g.scatter(dcols.transpose(0, 3, 1, 2, 4, 5)))
        return self._sum_channels_last(dcols)

    def _sum_channels_last(self, dcols: np.ndarray) -> np.ndarray:
        """On a finite map, the window gradients ``(draws, Ho, Wo, C, kh, kw)`` summed onto a channels-last map:
        :meth:`~normstats.layers.geometry.Grid.scatter` reads each kernel offset's gradients ``C * k * k``
        values apart, here they are ``k * k`` apart and land on contiguous channels (one transposing copy at the
        end), in the same order (offsets from last to first, rows outer), so every sum is the scatter's bit for
        bit (tested). 25-30% less time in the sum and the copy on the benchmark's conv net."""
        g = self.grid
        draws, in_ch, (kh, kw) = len(dcols), dcols.shape[3], dcols.shape[4:]
        h, w = g.h, g.w
        out = np.zeros((draws, h.length + 2 * h.padding, w.length + 2 * w.padding, in_ch))
        for i in reversed(range(kh)):
            rows = slice(i, i + h.span, h.stride)
            for j in reversed(range(kw)):
                out[:, rows, j : j + w.span : w.stride, :] += dcols[..., i, j]
        maps = out[:, h.padding : h.padding + h.length, w.padding : w.padding + w.length, :]
        return maps.transpose(0, 3, 1, 2).reshape(draws, -1)


class _ConvPasses(Passes):
    """The convolution's forward and backward pass apart (the backward pass needs no state). Both return new
    arrays (the product's, or a copy out of it)."""

    fresh_output = True
    fresh_grad = True

    def __init__(self, conv: ConvSampler) -> None:
        self.conv = conv

    def forward(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, None]:
        return self.conv.forward(x), None

    def backward(self, state: None, dy: np.ndarray) -> np.ndarray:
        return self.conv.backward(dy)


class ConvConditional:
    """The forward pass, and ``g = E[dx^2 | x]``: the backward pass of the squared weights on ``dy = 1``
    (each input gradient is a sum of ``W dy`` terms, one per window and output channel covering it, so its
    conditional second moment is the sum of their squared weights); the same for every draw."""

    def __init__(self, weight: np.ndarray, grid: Grid) -> None:
        self.conv = ConvSampler(weight, grid)
        out_dim = weight.shape[0] * grid.windows
        self.g = ConvSampler(np.square(weight), grid).backward(np.ones((1, out_dim)))

    def __call__(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.conv.forward(x), np.broadcast_to(self.g, (len(x), self.g.shape[1]))


@register_layer("conv", aliases=("conv2d", "convolution"))
class Conv(Layer):
    """A k x k convolution from in_channels to out_channels maps, weights from --init, optionally l2-normalized
    per output channel (fan-in) or per input channel (fan-out), or standardized per output channel (ws). Default: the interior of an unbounded map;
    ``--size HxW``: a finite map with zero padding."""

    summary = "k x k convolution, weights from --init and --normalize; interior of an unbounded map or --size"
    params = (
        Param("in_channels", int, 4, "input channels C", low=1, high=1024),
        Param("out_channels", int, 8, "output channels O", low=1, high=1024),
        Param("k", int, 3, "kernel size: k x k", low=1, high=15),
        Param("stride", int, 1, "step between windows", low=1, high=16),
        Param("padding", int, 0, "zero padding on each side (a finite map only)", low=0, high=16),
        size_param(),
        *weight_params("fan-in"),
    )

    def resolve(self, values: dict[str, Any]) -> dict[str, Any]:
        g = self._build_grid(values)
        width = values["in_channels"] * g.h.length * g.w.length + values["out_channels"] * g.windows
        if width > MAX_DRAW:
            raise ParameterError(
                f"parameter --size of layer 'conv' must keep a draw within {MAX_DRAW:,} values (input and "
                f"output maps of all channels); got {values['size']} with {width:,}"
            )
        need = work_bytes(values, g)
        if need > MAX_MEMORY:
            raise ParameterError(
                f"parameters --in-channels, --out-channels, --k and --size of layer 'conv' must keep the weights "
                f"and one draw's work within {MAX_MEMORY / 2**20:,.0f} MB; got {values['in_channels']} x "
                f"{values['out_channels']} channels, k = {values['k']}, size {values['size']}: "
                f"{_megabytes(need)}"
            )
        return resolve_weight_params(self.name, values, values["in_channels"] * values["k"] ** 2)

    def _build_grid(self, values: dict[str, Any]) -> Grid:
        k, s = values["k"], values["stride"]
        return make_grid(self.name, (k, k), (s, s), values["padding"], values["size"])

    @cached_property
    def grid(self) -> Grid:
        return self._build_grid(self.values)

    @property
    def in_dim(self) -> int:
        return self.values["in_channels"] * self.grid.h.length * self.grid.w.length

    @property
    def out_dim(self) -> int:
        return self.values["out_channels"] * self.grid.windows

    @property
    def bp_width(self) -> int:
        return self.values["in_channels"] * self.grid.counted

    def bp_columns(self) -> np.ndarray:
        return self.grid.counted_columns(self.values["in_channels"])

    def sampler(self, rng: np.random.Generator) -> Sampler:
        v = self.values
        weight = draw_weight(
            rng, v["out_channels"], v["in_channels"], v["k"], v["init"], v["normalize"], v.get("gain", 1.0)
        )
        return ConvSampler(weight, self.grid)

    def conditional_sampler(self, rng: np.random.Generator) -> ConditionalSampler:
        return ConvConditional(self.sampler(rng).weight, self.grid)  # type: ignore[attr-defined]

    def passes(self, rng: np.random.Generator) -> Passes:
        return _ConvPasses(self.sampler(rng))  # type: ignore[arg-type]

    def formula(self) -> dict[str, float]:
        v = self.values
        out: dict[str, float] = {"fp_mean": 0.0, "bp_mean": 0.0}
        sq = squared_norm(
            v["out_channels"], v["in_channels"], v["k"], v["init"], v["normalize"], v.get("gain", 1.0)
        )
        if sq is not None and (v["size"] == INTERIOR or v["padding"] == 0):
            out.update(
                fp_std=math.sqrt(sq / v["out_channels"]),
                bp_std=math.sqrt(self.grid.density * sq / v["in_channels"]),
            )
        return out
