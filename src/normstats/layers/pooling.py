"""Max and average pooling on 2-D maps, forward and backward exactly as PyTorch computes them.

Geometry (see :mod:`normstats.layers.geometry`): by default a draw is a periodic map (a torus) whose every
window and every input has exactly the statistics of the stationary interior of an unbounded map, so the
figures do not depend on an arbitrary map size; ``--size H`` or ``--size HxW`` makes a draw one finite map,
borders and padding included. Max pooling pads with -inf and routes each window's gradient to its first
maximum (row-major), as PyTorch does; average pooling pads with zeros and divides by ``kh * kw`` whether or
not the window overlaps the padding (PyTorch's default ``count_include_pad=True``). Where windows overlap, the
gradients a position receives add up.

References, for ``n = kh * kw``, a window with ``r`` real (non-padding) inputs (``r = n`` in the interior: a
window of the torus holds ``n`` distinct inputs), and ``rho`` output windows per counted input position
(``1 / (sh sw)`` in the interior, one window per period; ``Ho Wo / (H W)`` on a finite map). ``dy`` has mean
0 and is independent of ``x``, so both layers have ``bp_mean = 0``, and the cross terms ``E[dy_w dy_v] = 0``
(``w != v``) drop out of every ``E dx^2``.

* Average, forward: a window's output is the sum of its ``r`` real inputs over ``n``: mean 0, variance
  ``r / n^2`` (``1 / n`` in the interior), pooled over the windows ``mean(r) / n^2``.
* Average, backward: ``dx_i = sum over windows w covering i of dy_w / n``, so ``E dx_i^2 = c_i / n^2`` with
  ``c_i`` the number of windows covering ``i``. Summed over positions, ``sum_i c_i = sum_w r_w``, so the pooled
  variance is ``rho mean(r) / n^2``: ``1 / (n sh sw)`` in the interior, ``1 / n^2 = 1 / k^4`` when ``s = k``.
* Max, backward: ``dx_i = sum over windows w covering i of dy_w 1[i is the argmax of w]``, so
  ``E dx_i^2 = sum_w P(i is the argmax of w) = sum_w 1 / r_w`` (iid continuous inputs: each real input of a
  window is its maximum with probability ``1 / r_w``). Summed over positions every window contributes exactly
  1, so the pooled variance is ``rho``: ``1 / (sh sw)`` in the interior whatever the kernel, ``1 / k^2`` when
  ``s = k``, 1 when ``s = 1``.
* The backward figures average over the positions of a period (the torus holds whole periods), which differ
  where windows overlap: with 3x3 windows and stride 2 an input sits in 4, 2, 2 or 1 windows, so max pooling
  gives ``E dx^2`` = 4/9, 2/9, 2/9 and 1/9 at the four positions of a period, 1/4 on average.
* Max, forward: a window's output is the largest of ``r`` iid N(0, 1); its mean ``mu_r`` and std
  ``sigma_r`` come from order statistics by quadrature (:func:`~normstats.exact.references.max_normal_moments`).
  Pooled over windows: mean ``mean(mu_r)``, variance ``mean(sigma_r^2 + mu_r^2) - mean(mu_r)^2``.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any

import numpy as np

from normstats.errors import ParameterError
from normstats.exact.order_statistics import max_normal_moments
from normstats.layers.base import ConditionalSampler, ConstantRowMean, EqualEntriesSampler, Layer, Passes
from normstats.layers.geometry import Grid, make_grid, size_param
from normstats.lazy import special
from normstats.params import Param
from normstats.registry import register_layer

_POOL_PARAMS = (
    Param("k", int, 2, "window size: k x k inputs per window", low=1, high=32),
    Param("stride", int, None, "step between windows (both axes)", low=1, high=32, default_text="the kernel"),
    Param("padding", int, 0, "padding on each side, at most half the kernel (a finite map only)", low=0, high=16),
    size_param(),
    Param("kh", int, None, "window height (overrides k)", low=1, high=32, default_text="k"),
    Param("kw", int, None, "window width (overrides k)", low=1, high=32, default_text="k"),
)


class _Pool(Layer):
    params = _POOL_PARAMS
    #: Value of the padding (-inf for max pooling, 0 for average pooling).
    fill: float = 0.0

    def resolve(self, values: dict[str, Any]) -> dict[str, Any]:
        """Canonical values: ``k`` for a square window, ``kh`` and ``kw`` otherwise; the stride is left out
        only for a rectangular window that takes the kernel as its stride (PyTorch's default)."""
        kh, kw = values["kh"] or values["k"], values["kw"] or values["k"]
        out: dict[str, Any] = {"k": kh} if kh == kw else {"kh": kh, "kw": kw}
        if values["stride"] is not None or kh == kw:
            out["stride"] = values["stride"] or kh
        out.update(padding=values["padding"], size=values["size"])
        self._build_grid(out)
        return out

    def _build_grid(self, values: dict[str, Any]) -> Grid:
        kernel = (values.get("kh", values.get("k")), values.get("kw", values.get("k")))
        stride = (values["stride"],) * 2 if "stride" in values else kernel
        half = (kernel[0] // 2, kernel[1] // 2)
        return make_grid(self.name, kernel, stride, values["padding"], values["size"], max_padding=half)

    @cached_property
    def grid(self) -> Grid:
        return self._build_grid(self.values)

    @property
    def window(self) -> int:
        """Inputs per window, ``n = kh * kw``."""
        return self.grid.h.kernel * self.grid.w.kernel

    @property
    def in_dim(self) -> int:
        return self.grid.h.length * self.grid.w.length

    @property
    def out_dim(self) -> int:
        return self.grid.windows

    @property
    def bp_width(self) -> int:
        return self.grid.counted

    def bp_columns(self) -> np.ndarray:
        return self.grid.counted_columns()

    def conditional_sampler(self, rng: np.random.Generator) -> ConditionalSampler:
        return EqualEntriesSampler(self.forward_backward, self.out_dim, self.jacobian_entry)

    #: The nonzero entries of the Jacobian are all equal to this (so ``J^2 = jacobian_entry * J``).
    jacobian_entry: float = 1.0


@register_layer("maxpool", aliases=("max_pool", "maxpool2d"))
class MaxPool(_Pool):
    """The largest input of each window; backward routes the window's dy to its first maximum (row-major).
    Default: the interior of an unbounded map; ``--size HxW``: a finite map, padded with -inf."""

    summary = "max over kh x kw windows; interior of an unbounded map, or a finite map with --size"
    fill = -math.inf
    shortcuts = ("order-statistics",)

    def _shortcut(self, sampler: str) -> Layer:
        """``order-statistics``: :class:`MaxOfNormals`, valid where every window holds ``n = kh kw`` real
        inputs: the interior (any stride, overlapping or not) and a finite map without padding. Then every
        output is the maximum of ``n`` iid N(0, 1), so the pooled fp mean and std are one window's, and the
        pooled ``E dx^2`` is the density ``rho`` of windows per counted input (each window's routed gradient
        adds exactly 1; see the module docstring); windows share inputs only in ways that change the se, not
        an expectation. A padded finite map has border windows of fewer real inputs (a mixture of maxima), and
        is refused."""
        g = self.grid
        sizes = g.window_sizes()
        if not np.all(sizes == self.window):
            raise ParameterError(
                f"--sampler order-statistics needs every window to hold kh*kw = {self.window} real inputs (the "
                f"interior, or a finite map without padding); the smallest window here holds {int(sizes.min())}: "
                f"got maxpool {self.describe()}"
            )
        # rho = windows / positions: one window per sh*sw inputs in the interior, Ho*Wo on H*W on a finite map
        windows, positions = (1, g.h.stride * g.w.stride) if g.h.periodic else (g.windows, g.counted)
        common = math.gcd(windows, positions)
        return MaxOfNormals(n=self.window, windows=windows // common, positions=positions // common)

    def streaming_sampler(self, rng: np.random.Generator) -> _MaxPoolSampler:
        return _MaxPoolSampler(self)

    def passes(self, rng: np.random.Generator) -> Passes:
        return _MaxPoolPasses(self)

    def streaming_conditional_sampler(self, rng: np.random.Generator) -> ConditionalSampler:
        """The hot loop's conditional sampler: the forward pass alone (:class:`_MaxPoolConditional`) where
        every input counts, as on every grid of max pooling; the full ``g`` otherwise."""
        if self.grid.counted == self.in_dim:
            return _MaxPoolConditional(self)
        return self.conditional_sampler(rng)

    def forward_backward(self, x, dy, u):  # type: ignore[no-untyped-def]
        g = self.grid
        windows = g.gather(x.reshape(-1, *g.shape), self.fill)
        flat = windows.reshape(*windows.shape[:-2], -1)
        arg = np.argmax(flat, axis=-1)
        y = np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]
        dy = dy.reshape(arg.shape)
        if g.is_one_window:  # the window's one-hot gradient is the map's: nothing to add up
            maps = ((np.arange(flat.shape[-1]) == arg[..., None]) * dy[..., None]).reshape(len(x), *g.shape)
        else:  # every window holds a real input, so its maximum is never the -inf padding
            maps = g.route(arg, dy)
        return y.reshape(len(x), -1), g.counted_values(maps)

    def formula(self) -> dict[str, float]:
        return {"bp_mean": 0.0, "bp_std": math.sqrt(self.grid.density)}

    def conditional_exact_statistics(self) -> dict[str, float]:
        """Under the conditional estimator every window sends ``g = 1`` to its argmax, a real input (the -inf
        padding never wins), and every input position counts on every grid, so each draw's ``g`` sums to the
        number of windows: bp std ``sqrt(windows / counted) = sqrt(density)`` in every draw, overlapping windows
        and padding included (:class:`_MaxPoolConditional` relies on the same fact). Were some inputs left
        uncounted, an argmax there would change the sum from draw to draw: nothing declared then."""
        if self.grid.counted != self.in_dim:
            return {}
        return {"bp_std": math.sqrt(self.grid.density)}

    def quadrature(self) -> dict[str, float]:
        sizes, counts = np.unique(self.grid.window_sizes(), return_counts=True)
        weights = counts / counts.sum()
        moments = np.array([max_normal_moments(int(r)) for r in sizes])
        mean = float(weights @ moments[:, 0])
        second = float(weights @ (moments[:, 1] ** 2 + (moments[:, 0] - mean) ** 2))
        return {"fp_mean": mean, "fp_std": math.sqrt(second)}


class _MaxPoolPasses(Passes):
    """Max pooling as a network runs it, with the windows' argmax as the state. The generic passes run the
    whole sampler twice: in the forward pass on ``dy = 0`` (the argmax, and a routing of zeros) and again in the
    backward pass (the argmax again, and the routing of ``dy``). Here the forward pass finds the argmax once
    and the backward pass routes ``dy`` with it: the operations of :meth:`MaxPool.forward_backward`, each
    once, so the same numbers bit for bit."""

    fresh_output = True  # y is taken out of the windows (a new array), never a view of x
    fresh_grad = True  # the routed gradients land on a new map

    def __init__(self, layer: MaxPool) -> None:
        self.grid = layer.grid
        self.fill = layer.fill

    def forward(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g = self.grid
        windows = g.gather(x.reshape(-1, *g.shape), self.fill)
        flat = windows.reshape(*windows.shape[:-2], -1)
        arg = np.argmax(flat, axis=-1)
        y = np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]
        return y.reshape(len(x), -1), arg

    def backward(self, state: np.ndarray, dy: np.ndarray) -> np.ndarray:
        g, arg = self.grid, state
        dy = dy.reshape(arg.shape)
        if g.is_one_window:  # the window's one-hot gradient is the map's: nothing to add up
            size = g.h.kernel * g.w.kernel
            maps = ((np.arange(size) == arg[..., None]) * dy[..., None]).reshape(len(arg), *g.shape)
        else:  # every window holds a real input, so its maximum is never the -inf padding
            maps = g.route(arg, dy)
        return g.counted_values(maps)


class _MaxPoolForward:
    """Max pooling's forward pass in the hot loop: the window maxima as a chain of ``np.maximum`` over the
    ``kh kw`` kernel offsets (each a strided view of the windows) into a buffer kept between calls. The maximum
    is one of the inputs, so the outputs are those of ``argmax`` and ``take_along_axis`` bit for bit, at a
    tenth of the cost (3x3 windows: 5 ns a draw against 50 ns for the argmax alone, whose reduction along a
    row of 9 is slow). The arrays returned are valid until the next call."""

    def __init__(self, layer: MaxPool) -> None:
        self.grid = layer.grid
        self.fill = layer.fill
        self._y = np.empty((0, self.grid.h.windows, self.grid.w.windows))

    def maxima(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(y, windows)``: the maxima ``(draws, Ho, Wo)`` and the windows ``(draws, Ho, Wo, kh, kw)``."""
        g = self.grid
        if g.is_one_window:  # the draw is its window (gather's view, without its 90 us a call)
            windows = x.reshape(len(x), 1, 1, g.h.kernel, g.w.kernel)
        else:
            windows = g.gather(x.reshape(-1, *g.shape), self.fill)
        if len(self._y) < len(x):
            self._y = np.empty((len(x), g.h.windows, g.w.windows))
        y = self._y[: len(x)]
        kh, kw = windows.shape[-2:]
        offsets = [(i, j) for i in range(kh) for j in range(kw)]
        if len(offsets) == 1:
            np.copyto(y, windows[..., 0, 0])
        else:
            np.maximum(windows[..., 0, 0], windows[..., 0, 1] if kw > 1 else windows[..., 1, 0], out=y)
            for i, j in offsets[2:]:
                np.maximum(y, windows[..., i, j], out=y)
        return y, windows


class _MaxPoolConditional(_MaxPoolForward):
    """The hot loop's conditional sampler of max pooling where every input counts: ``g = E[dx^2 | x]`` is the
    routing of :class:`~normstats.layers.base.EqualEntriesSampler` (each window sends 1 to its argmax), and
    the tally reads only its row mean (:class:`~normstats.engine.moments.ConditionalSums`). Every window's
    argmax is a real input (a window holds at least one, and the -inf padding never wins), so the row sums
    to the number of windows whatever ``x``, and the row mean is ``windows / counted`` for every draw: it is
    passed as one constant column (:class:`~normstats.layers.base.ConstantRowMean`), and the backward pass (argmax and scatter) is
    skipped. The constant is rounded as :class:`ConditionalSums` rounds the full row (an exact integer
    sum times ``1 / width``), so the tally is the same."""

    def __init__(self, layer: MaxPool) -> None:
        super().__init__(layer)
        if layer.grid.counted != layer.in_dim:
            raise ValueError("the row mean of max pooling's g is constant only where every input counts")
        self.g = ConstantRowMean(layer.grid.windows * (1.0 / layer.grid.counted))

    def __call__(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y, _ = self.maxima(x)
        return y.reshape(len(x), -1), self.g(len(x))


class _MaxPoolSampler(_MaxPoolForward):
    """The hot loop's sampler of max pooling (the ``sampled`` estimator), with the values of
    :meth:`MaxPool.forward_backward` (its zeros may carry the other sign, which no sum sees): the maxima of
    :class:`_MaxPoolForward`; ``hit``, where an input equals its window's maximum (one
    ``np.equal`` a kernel offset, or one for the whole draw when it is one window); where every window has
    exactly one hit (always, but for exact ties among its inputs) the argmax's offset is ``hit @ (0, 1, ...,
    n - 1)`` (exact small integers, a BLAS gemv), and ``dy`` goes there: into a zeroed buffer for a draw that
    is one window, through :meth:`~normstats.layers.geometry.Grid.route` otherwise. A chunk with a tie falls
    back on ``np.argmax``, whose first maximum wins. ``np.argmax`` along a row of 9 costs 40 ns a draw; this
    about 15. The arrays returned are valid until the next call."""

    def __init__(self, layer: MaxPool) -> None:
        super().__init__(layer)
        self.layer = layer
        self._offsets = np.arange(layer.window, dtype=float)
        self._hit = np.empty((0, layer.window), dtype=bool)
        self._onehot = np.empty((0, layer.window))
        self._dx = np.empty((0, layer.in_dim))
        self._first = np.empty(0, dtype=np.intp)  # the flat index of each draw's first input (one window)

    def __call__(self, x: np.ndarray, dy: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g, m = self.grid, len(x)
        n, windows = self.layer.window, g.windows
        y, patches = self.maxima(x)
        if len(self._dx) < m:
            self._hit = np.empty((m * windows, n), dtype=bool)
            self._onehot = np.empty((m * windows, n))
            self._dx = np.empty((m, x.shape[1]))
            self._first = np.arange(m) * x.shape[1]
        hit = self._hit[: m * windows]
        if g.is_one_window:  # the draw is the window: one comparison with its maximum
            np.equal(x, y.reshape(m, 1), out=hit)
        else:
            kw = patches.shape[-1]
            cells = hit.reshape(*y.shape, n)
            for offset in range(n):
                np.equal(patches[..., offset // kw, offset % kw], y, out=cells[..., offset])
        if np.count_nonzero(hit) != y.size:  # a tie: the first maximum, as np.argmax finds it
            return self.layer.forward_backward(x, dy, u)
        onehot = self._onehot[: m * windows]
        np.copyto(onehot, hit)
        arg = (onehot @ self._offsets).astype(np.intp)
        if g.is_one_window:
            dx = self._dx[:m]
            dx.fill(0.0)
            arg += self._first[:m]
            dx.ravel()[arg] = dy.ravel()
            return y.reshape(m, -1), dx
        arg = arg.reshape(y.shape)
        return y.reshape(m, -1), g.counted_values(g.route(arg, dy.reshape(arg.shape)))


def max_of_normals_quantile(u: np.ndarray, n: int) -> np.ndarray:
    """The largest of ``n`` iid N(0, 1) drawn from one uniform ``u`` in [0, 1) (as numpy or a Sobol point
    gives it): ``P(max <= y) = Phi(y)^n``, so ``y = Phi^-1(V^(1/n))`` for ``V`` uniform.

    ``V`` is the midpoint of ``u``'s cell on the grid of 2^-52 (exact in float64, never 0 or 1, so ``y`` is
    finite, ``|y| < 9.1`` for ``n <= 1024``; what is cut is the half cell, 2^-53 of probability, at each end of
    the distribution). ``Phi^-1`` is taken on the smaller
    of ``p = V^(1/n)`` and ``1 - p = -expm1(log V / n)``, so neither tail loses digits to ``1 - p``."""
    v = np.floor(u * 2.0**52)
    v += 0.5
    v *= 2.0**-52
    t = np.log(v)
    t /= n
    p, q = np.exp(t), -np.expm1(t)
    y = special.ndtri(np.minimum(p, q))
    return np.where(p < q, y, -y)


class MaxOfNormals(Layer):
    """``--sampler order-statistics`` for max pooling where every window holds ``n`` real inputs and there are
    ``rho = windows / positions`` windows per counted input position (``1 / n`` where windows tile the map).

    A draw is one window's maximum, drawn from one uniform through its quantile function
    (:func:`max_of_normals_quantile`) instead of from ``n`` normals and an argmax: every output of the layer
    has this law, so the pooled fp mean and std are the same expectations. The backward pass sends ``c dy``
    to the first of ``m = floor(positions / windows)`` gradient positions (``m = 1 / rho`` and ``c = 1``
    where that is an integer: ``n`` when windows tile the map, ``sh sw`` in the interior; otherwise
    ``c = sqrt(rho m)``): the draw's gradient mean ``a = c dy / m`` has expectation 0 and its mean square
    ``q = c^2 dy^2 / m`` has expectation ``rho``, the layer's pooled bp mean and second moment. Where a draw
    of the layer is exactly one window (``rho = 1 / n``) this is its routing up to which input receives
    ``dy``, which no reported statistic sees, so the four statistics have exactly the layer's distribution;
    where windows overlap or repeat, only the expectations agree and the se is this estimator's own. Not
    registered: it is what :meth:`MaxPool.shortcut` returns."""

    name = "maxpool"
    summary = "max of n iid N(0, 1) by its quantile function"
    params = (
        Param("n", int, 4, "inputs per window", low=1, high=1024),
        Param("windows", int, 1, "windows per `positions` input positions (with it, the density rho)", low=1,
              high=1 << 20),
        Param("positions", int, None, "input positions per `windows` windows", low=1, high=1 << 20,
              default_text="n"),
    )

    def resolve(self, values: dict[str, Any]) -> dict[str, Any]:
        if values["positions"] is None:
            values["positions"] = values["n"]
        if values["windows"] > values["positions"]:
            raise ParameterError(
                f"parameter --windows of 'maxpool' (order-statistics) must be at most --positions (a density "
                f"of at most one window per input); got {values['windows']} > {values['positions']}"
            )
        return values

    @property
    def density(self) -> float:
        """``rho``, windows per counted input position."""
        return self.windows / self.positions

    @property
    def in_dim(self) -> int:
        return 0

    @property
    def out_dim(self) -> int:
        return 1

    @property
    def bp_width(self) -> int:
        return self.positions // self.windows

    @property
    def gradient_scale(self) -> float:
        """``c``, the factor of the routed ``dy``: ``c^2 / m = rho``; exactly 1 where ``m = 1 / rho``."""
        m = self.bp_width
        return 1.0 if m * self.windows == self.positions else math.sqrt(self.windows * m / self.positions)

    @property
    def n_uniform(self) -> int:
        return 1

    def forward_backward(self, x, dy, u):  # type: ignore[no-untyped-def]
        dx = np.zeros((len(u), self.bp_width))
        c = self.gradient_scale
        dx[:, :1] = dy if c == 1.0 else c * dy
        return max_of_normals_quantile(u, self.n), dx

    def conditional_sampler(self, rng: np.random.Generator) -> ConditionalSampler:
        return _RoutedDensity(self.n, self.density)


class _RoutedDensity:
    """The conditional sampler of :class:`MaxOfNormals`: ``g = E[dx^2 | u]`` is ``c^2`` at the routed input and 0
    at the other ``m - 1``, so every draw's row mean is ``c^2 / m = rho`` (``1 / n`` where windows tile the
    map), passed as one column (the tally reads only row means) instead of ``m``: a 16x16 window would
    otherwise carry 256 numbers a draw."""

    def __init__(self, n: int, density: float) -> None:
        self.n = n
        self.g = ConstantRowMean(density)

    def __call__(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return max_of_normals_quantile(u, self.n), self.g(len(u))


@register_layer("avgpool", aliases=("avg_pool", "avgpool2d"))
class AvgPool(_Pool):
    """The sum of each window's inputs over kh*kw (padding counts as zeros: count_include_pad=True); backward
    spreads dy / (kh*kw) over the window. Default: the interior of an unbounded map; ``--size HxW``: a finite
    map."""

    summary = "mean over kh x kw windows; interior of an unbounded map, or a finite map with --size"

    @property
    def jacobian_entry(self) -> float:  # type: ignore[override]
        return 1.0 / self.window

    def forward_backward(self, x, dy, u):  # type: ignore[no-untyped-def]
        g = self.grid
        windows = g.gather(x.reshape(-1, *g.shape), self.fill)
        y, cols = self.pool(windows, dy.reshape(-1, g.h.windows, g.w.windows))
        return y.reshape(len(x), -1), g.counted_values(g.scatter(cols))

    def pool(self, windows: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Outputs ``(draws, Ho, Wo)`` of ``windows`` (``(draws, Ho, Wo, kh, kw)``) and the gradient each
        window sends to its inputs, shaped like ``windows``."""
        kh, kw = windows.shape[-2:]
        total = windows[..., 0, 0].copy()
        for i in range(kh):
            for j in range(kw):
                if i or j:
                    total += windows[..., i, j]
        cols = np.broadcast_to((dy / self.window)[..., None, None], windows.shape)
        return total / self.window, cols

    def formula(self) -> dict[str, float]:
        mean_r = float(self.grid.window_sizes().mean())
        n2 = self.window**2
        return {
            "fp_mean": 0.0,
            "fp_std": math.sqrt(mean_r / n2),
            "bp_mean": 0.0,
            "bp_std": math.sqrt(self.grid.density * mean_r / n2),
        }

    def conditional_exact_statistics(self) -> dict[str, float]:
        """The Jacobian (``1 / n`` from each window to each of its inputs) does not depend on ``x``, so under the
        conditional estimator every draw's ``g`` is the same, and its pooled mean is the bp variance of
        :meth:`formula`: bp std is that value in every draw, on every grid."""
        return {"bp_std": self.formula()["bp_std"]}


__all__ = ["AvgPool", "MaxOfNormals", "MaxPool"]
