"""The :class:`Layer` base class: parameter bookkeeping, the sampler interface and the reference hooks.

A layer maps an input batch ``x`` of shape ``(draws, in_dim)`` to an output ``y`` of shape
``(draws, out_dim)``, and an upstream gradient ``dy`` of shape ``(draws, out_dim)`` to the input gradient
``dx = J(x)^T dy`` of shape ``(draws, in_dim)``, exactly as a framework's forward and backward pass compute
them. One row of the batch is one *draw*: the independent unit over which standard errors are computed.

The engine hands the sampler its randomness: ``x`` and ``dy`` are independent standard normals and ``u`` holds
``n_uniform`` uniforms on [0, 1) per draw (a dropout mask, say). A sampler never draws random numbers of its
own, so one sampler serves plain and quasi-Monte Carlo alike. Randomness that is fixed for a whole run (a
weight matrix) comes from :meth:`Layer.sampler`, which receives a generator derived from the seed.

The backward statistics can be estimated two ways (the engine's ``--estimator``). *sampled*: draw ``dy`` and
run the backward pass on it, as a framework does in training. *conditional* (the default): integrate ``dy``
out exactly. ``dx = J(x)^T dy`` is linear in ``dy`` ~ N(0, I), so given ``x`` (and ``u``) each ``dx_i`` is
normal with mean 0 and variance ``g_i = sum_j J_ji^2``, so ``E[dx_i] = 0`` and ``E[dx_i^2] = E[g_i]``: the
same expectations with a smaller variance (Rao-Blackwell) and without the random numbers of ``dy``.
:meth:`Layer.conditional_sampler` returns ``(y, g)``; its generic form (:class:`ProbeSampler`) runs the
layer's own backward pass on every unit vector ``dy = e_j`` and sums the squares. Layers override it with an
exact shortcut through the same backward code (a diagonal Jacobian: ``g = backward(1)^2``), and the tests
check every override against the probes.

References are supplied by two optional hooks, tried in this order by :mod:`normstats.exact.references`:
:meth:`Layer.formula` (closed forms) and :meth:`Layer.quadrature` (numerical integration). Each returns the
statistics it knows, a subset of :data:`STATS`.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar

import numpy as np

from normstats.errors import ParameterError
from normstats.params import Param

Sampler = Callable[[np.ndarray, np.ndarray, np.ndarray], "tuple[np.ndarray, np.ndarray]"]
#: ``(x, u) -> (y, g)`` with ``g = E[dx^2 | x, u]`` (the conditional estimator; see the module docstring). Only
#: the row means of ``g`` are tallied, so ``g`` may have fewer columns than ``bp_width`` with the same row means.
ConditionalSampler = Callable[[np.ndarray, np.ndarray], "tuple[np.ndarray, np.ndarray]"]
#: Where a summed pass writes the row summaries of an array: (row means, row sums of squares), one value a row.
RowSums = tuple[np.ndarray, np.ndarray]

#: What ``--sampler`` may name: ``layer`` runs the layer's own forward and backward pass; the others are exact
#: shortcuts that some layers offer (:meth:`Layer.shortcut`): ``order-statistics`` (max pooling: a window's
#: maximum from one uniform), ``chi-square`` (normalization layers: a group through the chi-square law of its
#: sum of squares), ``spectral`` (linear: ``W x`` through the singular values of ``W``).
SAMPLERS: tuple[str, ...] = ("layer", "order-statistics", "chi-square", "spectral")
DEFAULT_SAMPLER = "layer"
#: ``--sampler auto``: each layer's first exact shortcut that its settings allow, else its own passes.
AUTO_SAMPLER = "auto"

#: Most scalars the probes of :class:`ProbeSampler` hold at once (32 MB of float64).
_PROBE_SCALARS = 1 << 22


class ProbeSampler:
    """The generic conditional sampler: ``g_i = sum_j dx_i(e_j)^2``, the backward pass of ``sampler`` run on
    every unit upstream gradient ``e_j`` (``dx(e_j)`` is row ``j`` of ``J``, so the sum is ``diag(J^T J)``).
    It costs ``out_dim`` backward passes per draw: the slow, always-valid path that every layer's shortcut is
    tested against (picklable, unlike a closure)."""

    def __init__(self, sampler: Sampler, out_dim: int) -> None:
        self.sampler = sampler
        self.out_dim = out_dim

    def __call__(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = self.out_dim
        step = max(1, _PROBE_SCALARS // (k * (x.shape[1] + k + u.shape[1])))
        ys, gs = [], []
        for start in range(0, len(x), step):
            xs, us = x[start : start + step], u[start : start + step]
            m = len(xs)
            y, dx = self.sampler(np.repeat(xs, k, axis=0), np.tile(np.eye(k), (m, 1)), np.repeat(us, k, axis=0))
            ys.append(np.array(y).reshape(m, k, -1)[:, 0])
            dx = np.asarray(dx).reshape(m, k, -1)
            gs.append(np.einsum("mjc,mjc->mc", dx, dx))
        return np.concatenate(ys), np.concatenate(gs)


class ConstantRowMean:
    """The ``g`` of a conditional sampler whose row mean is the same for every draw (the squared Jacobian
    entries of a draw sum to a constant: a linear layer's, max pooling's routing): that constant as one column,
    all the tally reads (:class:`~normstats.engine.moments.ConditionalSums` takes row means), from a buffer
    kept between calls instead of a row of ``bp_width`` values a draw."""

    def __init__(self, value: float) -> None:
        self.value = value
        self._column = np.empty((0, 1))

    def __call__(self, draws: int) -> np.ndarray:
        if len(self._column) < draws:
            self._column = np.full((draws, 1), self.value)
        return self._column[:draws]


class _BackwardOfOnes:
    """Base of the conditional samplers that need one backward pass, on ``dy = 1`` (a buffer kept between
    calls), where the Jacobian's shape makes ``g`` a simple function of it (picklable, unlike a closure)."""

    def __init__(self, sampler: Sampler, out_dim: int) -> None:
        self.sampler = sampler
        self.out_dim = out_dim
        self._ones = np.ones((0, out_dim))

    def backward_of_ones(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if len(self._ones) < len(x):
            self._ones = np.ones((len(x), self.out_dim))
        return self.sampler(x, self._ones[: len(x)], u)


class DiagonalSampler(_BackwardOfOnes):
    """The conditional sampler of a layer with a diagonal Jacobian (``dx_i = c_i(x, u) dy_i``: activations,
    dropout): ``g = backward(1)^2``."""

    def __call__(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y, dx = self.backward_of_ones(x, u)
        return y, np.square(dx)


class EqualEntriesSampler(_BackwardOfOnes):
    """The conditional sampler of a layer whose nonzero Jacobian entries all equal ``entry`` (1 for max
    pooling's routing, ``1 / (kh kw)`` for averaging): then ``J_ji^2 = entry J_ji`` and
    ``g = entry backward(1)``."""

    def __init__(self, sampler: Sampler, out_dim: int, entry: float) -> None:
        super().__init__(sampler, out_dim)
        self.entry = entry

    def __call__(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y, total = self.backward_of_ones(x, u)
        return y, total * self.entry if self.entry != 1.0 else total


class Passes:
    """A layer's forward and backward pass run apart, as a network runs them: ``forward(x, u)`` returns the
    output and the state the backward pass needs, ``backward(state, dy)`` the input gradient. Every output and
    every input counts (the layer is built on a finite map, never the periodic interior).

    This generic form derives both from the layer's combined sampler: the forward pass runs it on ``dy = 0``
    and keeps ``(x, u)``; the backward pass runs it again on the real ``dy``. Layers whose passes split
    naturally (activations, linear, conv, dropout) override :meth:`Layer.passes` to skip the second forward.
    """

    #: Whether the output of :meth:`forward` is a new array that the state does not hold, so the caller may
    #: overwrite it (a network's NormProp shift and scale, in place), unless it shares memory with ``x``.
    fresh_output = False
    #: Whether the gradient :meth:`backward` returns is a new array that nothing else holds (the caller may
    #: overwrite it: the next layer back, in place), unless it shares memory with ``dy``.
    fresh_grad = False
    #: Whether :meth:`forward_inplace` and :meth:`backward_inplace` write their result over their input (which
    #: the state then never holds); otherwise they are :meth:`forward` and :meth:`backward` themselves.
    writes_over_input = False
    #: Whether :meth:`forward_summed` and :meth:`backward_summed` exist: the pass, its NormProp shift and scale,
    #: and the row summaries of what it reads and writes, in one pass over memory (ReLU's compiled loops).
    summed = False

    def __init__(self, sampler: Sampler, out_dim: int) -> None:
        self.sampler = sampler
        self.out_dim = out_dim

    def forward(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, Any]:
        y, _ = self.sampler(x, np.zeros((len(x), self.out_dim)), u)
        return y, (x, u)

    def backward(self, state: Any, dy: np.ndarray) -> np.ndarray:
        x, u = state
        return self.sampler(x, dy, u)[1]

    def backward_scaled(self, state: Any, dy: np.ndarray, scale: float) -> np.ndarray:
        """``backward(state, scale * dy)`` (a network's NormProp gradient scale); a layer may do it in fewer
        passes."""
        return self.backward(state, dy * scale)

    def forward_inplace(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, Any]:
        """:meth:`forward`, free to overwrite ``x`` (the caller is done with it): a layer may write its output
        there instead of into a new array, with the same numbers. By default it does not."""
        return self.forward(x, u)

    def backward_at(self, state: Any, dy: np.ndarray, scale: float) -> np.ndarray:
        """:meth:`backward` at a NormProp gradient scale (:meth:`backward_scaled` unless it is 1)."""
        return self.backward(state, dy) if scale == 1.0 else self.backward_scaled(state, dy, scale)

    def backward_inplace(self, state: Any, dy: np.ndarray, scale: float) -> np.ndarray:
        """:meth:`backward_at`, free to overwrite ``dy``, with the same numbers. By default it does not."""
        return self.backward_at(state, dy, scale)

    def forward_summed(self, x: np.ndarray, shift: float, scale: float, x_rows: RowSums | None, y_rows: RowSums,
                       inplace: bool) -> tuple[np.ndarray, Any]:
        """``(f(x) - shift) * scale`` and the state, as :meth:`forward` and a network's NormProp shift and
        scale give them (the same numbers), with the row summaries of ``x`` (unless ``x_rows`` is ``None``) and
        of the result written to ``x_rows`` and ``y_rows``: each row's mean and its sum of squares. ``x`` is
        ``(rows, width)``, float64 and C-contiguous; the result is written over it if ``inplace``. Only where
        :attr:`summed`."""
        raise NotImplementedError(f"{type(self).__name__} has no summed passes")

    def backward_summed(self, state: Any, dy: np.ndarray, scale: float, dy_rows: RowSums | None,
                        dx_rows: RowSums, inplace: bool) -> np.ndarray:
        """:meth:`backward_at` (the same numbers) with the row summaries of ``dy`` (unless ``None``) and of the
        result, as :meth:`forward_summed`; the state is reshaped as ``dy`` by the caller."""
        raise NotImplementedError(f"{type(self).__name__} has no summed passes")


class _ElementwisePasses(Passes):
    """``y = f(x)``, and ``dx = f'(x) dy`` from the kept ``x``.

    The output is the caller's to overwrite (``fresh_output``) unless it shares memory with ``x`` (the identity
    returns ``x`` itself): the state is ``x`` alone. :meth:`backward_scaled` gives ``scale * dx`` with one pass
    less than scaling ``dy`` first (a network's NormProp gradient scale)."""

    fresh_output = True
    fresh_grad = True

    def __init__(self, layer: Elementwise) -> None:
        self.layer = layer

    def forward(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, Any]:
        return self.layer.f(x), x

    def backward(self, state: Any, dy: np.ndarray) -> np.ndarray:
        return self.layer.df(state) * dy

    def backward_scaled(self, state: Any, dy: np.ndarray, scale: float) -> np.ndarray:
        dx = self.layer.df(state) * dy  # a new array: scaled in place
        dx *= scale
        return dx


class Layer:
    """Base class of every registered layer; a subclass declares ``params`` and implements the sampler."""

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    params: ClassVar[tuple[Param, ...]] = ()
    #: The parameter a network spec may give without its name (``token(3)`` for ``token(index=3)``); None: every
    #: parameter is named.
    positional: ClassVar[str | None] = None

    def __init__(self, **values: Any) -> None:
        declared = {p.name: p for p in self.params}
        for key in values:
            if key not in declared:
                have = ", ".join(p.option for p in self.params) or "none"
                raise ParameterError(
                    f"layer '{self.name}' has no parameter --{key.replace('_', '-')}; its parameters: {have}"
                )
        resolved: dict[str, Any] = {}
        for p in self.params:
            value = values.get(p.name)
            value = p.default if value is None else value
            resolved[p.name] = None if value is None else p.validate(value, self.name)
        self.values: dict[str, Any] = self.resolve(resolved)

    # -- parameters ------------------------------------------------------------------------------------------
    def resolve(self, values: dict[str, Any]) -> dict[str, Any]:
        """Fill derived defaults and check constraints between parameters; returns the final values."""
        return values

    def __getattr__(self, key: str) -> Any:
        values = self.__dict__.get("values")
        if values is not None and key in values:
            return values[key]
        raise AttributeError(key)

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def describe(self) -> str:
        """Parameters as ``k=3;stride=3`` (empty for a layer without parameters)."""
        return ";".join(f"{k}={v}" for k, v in self.values.items())

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.values.items())
        return f"{type(self).__name__}({args})"

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and other.values == self.values  # type: ignore[attr-defined]

    def __hash__(self) -> int:
        return hash((type(self).__name__, tuple(self.values.items())))

    # -- sampling --------------------------------------------------------------------------------------------
    @property
    def in_dim(self) -> int:
        """Input values per draw (also the number of input gradients)."""
        raise NotImplementedError

    @property
    def out_dim(self) -> int:
        """Output values per draw (also the number of upstream gradients)."""
        raise NotImplementedError

    @property
    def fp_width(self) -> int:
        """Output values per draw that the statistics count (the columns of ``y`` the sampler returns)."""
        return self.out_dim

    @property
    def bp_width(self) -> int:
        """Input gradients per draw that the statistics count (the columns of ``dx`` the sampler returns)."""
        return self.in_dim

    def bp_columns(self) -> np.ndarray:
        """The columns of ``x`` whose gradients the sampler returns, in the order of ``dx``'s columns."""
        return np.arange(self.in_dim)

    @property
    def n_uniform(self) -> int:
        """Uniform random numbers the sampler needs per draw."""
        return 0

    @property
    def held_values(self) -> int:
        """Values per draw that the passes hold besides the input and the output (attention's ``T x T``
        probabilities): a network sizes its chunks from them. 0 for most layers."""
        return 0

    def sampler(self, rng: np.random.Generator) -> Sampler:
        """The forward/backward function for one run; ``rng`` draws what stays fixed for the run."""
        return self.forward_backward

    def streaming_sampler(self, rng: np.random.Generator) -> Sampler:
        """The sampler the engine runs: like :meth:`sampler`, but it may return views of buffers that it
        overwrites on its next call (the engine tallies the outputs first), so the hot loop allocates nothing.
        Defaults to :meth:`sampler`."""
        return self.sampler(rng)

    def conditional_sampler(self, rng: np.random.Generator) -> ConditionalSampler:
        """``(x, u) -> (y, g)``: the outputs and ``g = E[dx^2 | x, u]`` for the draws' counted input gradients
        (``dy`` integrated out; ``rng`` as for :meth:`sampler`, so the same seed gives the same weights).
        Defaults to :class:`ProbeSampler`; a layer overrides it with an exact shortcut."""
        return ProbeSampler(self.sampler(rng), self.out_dim)

    def streaming_conditional_sampler(self, rng: np.random.Generator) -> ConditionalSampler:
        """:meth:`conditional_sampler` for the engine's hot loop (it may return views of buffers it reuses)."""
        return self.conditional_sampler(rng)

    def passes(self, rng: np.random.Generator) -> Passes:
        """The forward and backward pass apart, for a network (``rng`` as for :meth:`sampler`)."""
        return Passes(self.sampler(rng), self.out_dim)

    #: Whether one draw of this layer spans a batch of inputs (batch norm): a network then hands it the
    #: ``batch`` rows of a draw side by side, ``(draws, batch * width)``, instead of one row per input.
    spans_batch: ClassVar[bool] = False

    #: The exact shortcuts (names from :data:`SAMPLERS`) this layer offers besides its own passes.
    shortcuts: ClassVar[tuple[str, ...]] = ()

    def auto_sampler(self) -> str:
        """What ``--sampler auto`` runs: the first of :attr:`shortcuts` that this layer's settings allow (its
        :meth:`_shortcut` does not refuse them), else ``layer``."""
        for name in self.shortcuts:
            try:
                self._shortcut(name)
            except ParameterError:
                continue
            return name
        return DEFAULT_SAMPLER

    def shortcut(self, sampler: str) -> Layer:
        """The layer the engine runs for ``--sampler sampler``: this one for ``layer``; for one of
        :attr:`shortcuts`, a stand-in whose outputs and gradients have the same distribution (so the same four
        statistics) but cost fewer random numbers or less arithmetic. The layer's own passes stay the
        default, and the tests check every shortcut against them."""
        if sampler == AUTO_SAMPLER:
            sampler = self.auto_sampler()
        if sampler == DEFAULT_SAMPLER:
            return self
        if sampler not in self.shortcuts:
            offered = ", ".join((DEFAULT_SAMPLER, *self.shortcuts))
            raise ParameterError(f"--sampler must be one of: {offered} (for layer '{self.name}'); got {sampler!r}")
        return self._shortcut(sampler)

    def _shortcut(self, sampler: str) -> Layer:
        raise NotImplementedError

    def forward_backward(
        self, x: np.ndarray, dy: np.ndarray, u: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(y, dx)`` for a batch of draws: ``y`` has ``fp_width`` columns and ``dx`` has ``bp_width``
        (by default all outputs and all inputs; a layer may count only some, e.g. the interior of a map)."""
        raise NotImplementedError

    # -- references ------------------------------------------------------------------------------------------
    def formula(self) -> dict[str, float]:
        """Closed-form values of the statistics this layer knows exactly."""
        return {}

    def exact_statistics(self) -> dict[str, float]:
        """``{statistic: value}`` of the statistics that take that value in every draw at these settings (a
        centred normalization's fp mean: its outputs sum to 0), reported as exact, with no se
        (:mod:`normstats.engine.exactness`). Declared, never inferred from the numbers."""
        return {}

    def conditional_exact_statistics(self) -> dict[str, float]:
        """``{statistic: value}`` of the statistics that take that value in every draw under the ``conditional``
        estimator only, where a draw contributes ``E[dx^2 | x] = sum_i J_ij^2`` instead of a sampled ``dx^2``:
        a bp std whose row mean of ``g`` is the same for every ``x`` (a Jacobian that does not depend on ``x``,
        or routes each output to exactly one input), at a value known before the run. Declared, never inferred;
        added by :func:`normstats.engine.exactness.exact_statistics` to :meth:`exact_statistics`."""
        return {}

    def quadrature(self) -> dict[str, float]:
        """Values computed by numerical integration (see :mod:`normstats.exact.references`)."""
        return {}


class Elementwise(Layer):
    """An activation applied element by element: ``y = f(x)`` and ``dx = f'(x) dy``.

    A subclass supplies :meth:`f`, :meth:`df` and the points where ``f`` or ``f'`` has a kink
    (``breakpoints``); quadrature references then come for free: fp mean and std are ``E f(X)`` and
    ``sd f(X)``, and since ``dy`` is independent of ``x`` with mean 0, bp mean is 0 and bp std is
    ``sqrt(E f'(X)^2)``, all for ``X ~ N(0, 1)``.
    """

    breakpoints: ClassVar[tuple[float, ...]] = ()

    in_dim = 1  # type: ignore[assignment]
    out_dim = 1  # type: ignore[assignment]

    def f(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def df(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def forward_backward(
        self, x: np.ndarray, dy: np.ndarray, u: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        return self.f(x), self.df(x) * dy

    def conditional_sampler(self, rng: np.random.Generator) -> ConditionalSampler:
        return DiagonalSampler(self.sampler(rng), self.out_dim)

    def passes(self, rng: np.random.Generator) -> Passes:
        return _ElementwisePasses(self)

    def formula(self) -> dict[str, float]:
        return {"bp_mean": 0.0}

    def quadrature(self) -> dict[str, float]:
        from normstats.exact.quadrature import gaussian_expectation, gaussian_mean_std

        mean, std = gaussian_mean_std(self.f, self.breakpoints)
        bp_var = gaussian_expectation(lambda t: self.df(t) ** 2, self.breakpoints)
        return {"fp_mean": mean, "fp_std": std, "bp_std": float(np.sqrt(bp_var))}
