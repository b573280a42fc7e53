"""The infinite-width (mean-field) reference of a network's per-layer statistics.

In the wide limit (Poole et al. 2016, "Exponential expressivity in deep neural networks through transient
chaos"; Schoenholz et al. 2017, "Deep information propagation") a linear or convolution layer's output is
Gaussian with mean 0 and variance ``a_f E[x^2]``, where ``E[x^2]`` is the second moment of its input and
``a_f = E|W|^2 / rows`` (the mean squared norm of a row of W: 1 for unit-norm rows; ``fan_in`` times the init
variance for a Gaussian init). Every pointwise layer that follows is a function of that Gaussian, so
``y = g(z)`` with ``z ~ N(0, 1)`` and every fp mean and std is a one-dimensional Gaussian integral of the
composed function (quadrature, carried forward from layer to layer). Dropout splits ``g`` into a kept and a
dropped component (a mixture with weights ``p`` and ``1 - p``).

Backward, under the gradient-independence assumption of the same papers (the upstream gradient at a linear
layer is independent of its input, exact in the limit), ``E[dx^2] = a_b E[dy^2]`` through a linear or
convolution layer (``a_b = E|W|^2 / fan_in``, times the windows per input ``Ho Wo / (H W)`` for a
convolution), and through a run of pointwise layers between two of them ``E[dx^2] = E[dy^2] E[prod_j
d_j(z)^2]`` with ``d_j`` each layer's derivative (times its gradient scale) at its input, all functions of
the same ``z``. bp means are 0. A residual block ``x + alpha F(x / beta)`` whose branch holds a linear or
convolution layer adds independent parts: ``E[y^2] = E[x^2] + 2 alpha E[x] E[F] + alpha^2 E[F^2]`` and
``E[dx^2] = E[dy^2] (1 + (alpha / beta)^2 G_F)`` with ``G_F`` the branch's own backward gain.

Where no such limit is computed (pooling, which takes the maximum or mean of correlated values; a padded
finite map, whose border windows see part of W; normalization layers and softmax; a pointwise layer after a
residual sum of non-Gaussian parts) the reference of that layer and of everything it feeds is ``None``, and so
is every bp reference (the backward pass runs through it).
"""

from __future__ import annotations

import hashlib
import math
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Union

import numpy as np

from normstats.exact.quadrature import FAR, _fixed_rule
from normstats.layers.base import Elementwise
from normstats.layers.weights import init_variance, squared_norm
from normstats.networks import shapes
from normstats.networks.build import Block, Item, Network, Stage

Fn = Callable[[np.ndarray], np.ndarray]

#: Arrays of nodes remembered per function (a quadrature's pieces at two panel widths, a few calls).
_CACHE = 48


def _key(z: np.ndarray) -> tuple[tuple[int, ...], bytes]:
    return z.shape, hashlib.blake2b(np.ascontiguousarray(z).tobytes(), digest_size=16).digest()


class _Cached:
    """``fn`` remembered by the content of its argument. A run of pointwise layers composes ``f_l(f_{l-1}(...
    (z)))``; every layer's moments are integrated on the same nodes (the run's kinks, hence the quadrature's
    pieces, do not change along it), so with each layer's values remembered the next costs one evaluation of
    its own ``f``: the reference of an ``L``-layer run costs ``O(L)`` evaluations, not ``O(L^2)`` (and no
    recursion ``L`` calls deep)."""

    __slots__ = ("fn", "cache")

    def __init__(self, fn: Fn) -> None:
        self.fn = fn
        self.cache: OrderedDict[tuple[tuple[int, ...], bytes], np.ndarray] = OrderedDict()

    def __call__(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, dtype=float)
        key = _key(z)
        hit = self.cache.get(key)
        if hit is None:
            hit = np.asarray(self.fn(z), dtype=float)
            self.cache[key] = hit
            if len(self.cache) > _CACHE:
                self.cache.popitem(last=False)
        return hit


@dataclass(frozen=True)
class _Component:
    """One part of a mixture: with probability ``weight`` the value is ``fn(z)``, ``z ~ N(0, 1)``."""

    weight: float
    fn: Fn
    affine: tuple[float, float] | None  # fn(z) = a z + c, when it is
    kinks: tuple[float, ...]  # z where fn or a derivative below has a kink
    dchain: tuple[tuple[str, Fn], ...]  # (label, d_j) of this run of pointwise layers, in forward order
    #: The backward walk's running product ``prod_{k >= j} d_k(z)^2`` per array of nodes: ``(j, product)``.
    suffix: dict = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True)
class _Moments:
    """Only the mean and second moment are known (enough for a following linear layer)."""

    mean: float
    m2: float


_State = Union[tuple[_Component, ...], _Moments, None]


def _expect(g: Fn, kinks: tuple[float, ...]) -> float:
    """``E g(z)``, ``z ~ N(0, 1)``: the fixed rule of :func:`~normstats.exact.quadrature.gaussian_expectation`,
    the same arithmetic (pieces split at 0 and ``kinks``, panels of 0.5 checked against 0.25 to 1e-13), so the
    references are those it gives; but where the two passes disagree, a third on panels of 0.125 must agree
    with the second to 1e-9, else nan (no reference), instead of its adaptive fallback, whose scalar nodes
    miss every layer's remembered values (:class:`_Cached`) and would cost a deep run ``O(L)`` a node."""
    points = sorted({0.0, *(float(k) for k in kinks if abs(float(k)) < FAR)})
    edges = [-FAR, *points, FAR]
    norm = 1.0 / math.sqrt(2 * math.pi)

    def h(t: np.ndarray) -> np.ndarray:
        return g(t) * (np.exp(-0.5 * t * t) * norm)

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            coarse, fine, scale = 0.0, [], 0.0
            for a, b in zip(edges, edges[1:]):
                c, _ = _fixed_rule(h, a, b, 0.5)
                f, size = _fixed_rule(h, a, b, 0.25)
                coarse += c
                fine.append(f)
                scale += size
            total = math.fsum(fine)
            if not math.isfinite(total):
                return math.nan
            if abs(total - coarse) <= 1e-13 * scale + 1e-15:
                return total
            finer = math.fsum(_fixed_rule(h, a, b, 0.125)[0] for a, b in zip(edges, edges[1:]))
            return finer if abs(finer - total) <= 1e-9 * scale + 1e-15 else math.nan
        except (RecursionError, OverflowError, ZeroDivisionError):
            return math.nan


def _moments(state: _State) -> tuple[float, float] | None:
    """``(mean, second moment)`` of a state."""
    if state is None:
        return None
    if isinstance(state, _Moments):
        return state.mean, state.m2
    mean = sum(c.weight * _expect(c.fn, c.kinks) for c in state)
    m2 = sum(c.weight * _expect(lambda z, f=c.fn: f(z) ** 2, c.kinks) for c in state)
    return mean, m2


def _gaussian(q: float, shift: float = 0.0, scale: float = 1.0) -> tuple[_Component, ...]:
    a = math.sqrt(q) * scale
    c = -shift * scale
    return (_Component(1.0, lambda z: a * z + c, (a, c), (), ()),)


def weight_factors(stage: Stage) -> tuple[float, float] | None:
    """``(a_f, a_b)`` of a linear or convolution layer: ``E[y^2] = a_f E[x^2]`` and ``E[dx^2] = a_b E[dy^2]``
    in the wide limit (``None`` for a padded map)."""
    v = stage.layer.values
    if stage.name == "linear":
        rows, c_in, k, density = v["fan_out"], v["fan_in"], 1, 1.0
    else:
        if v["padding"]:
            return None
        rows, c_in, k, density = v["out_channels"], v["in_channels"], v["k"], stage.layer.grid.density
    norm = _expected_squared_norm(v["init"], v["normalize"], rows, c_in, k, v.get("gain", 1.0))
    if norm is None:
        return None
    return norm / rows, density * norm / c_in


def _expected_squared_norm(init: str, normalize: str, rows: int, c_in: int, k: int, gain: float) -> float | None:
    """``E|W|^2`` for a weight of ``rows`` outputs and ``c_in k^2`` inputs per output: the fixed ``|W|^2`` of
    :func:`~normstats.layers.weights.squared_norm` where every weight has the same one, else the expectation
    over a Gaussian init (its variance times the entries, times ``gain^2``). Weight standardization has
    none here: its centred rows carry the input's variance, not its second moment."""
    if normalize == "ws":
        return None
    fixed = squared_norm(rows, c_in, k, init, normalize, gain)
    if fixed is not None:
        return fixed
    fan_in = c_in * k * k
    return gain * gain * init_variance(init, fan_in, rows * k * k) * rows * fan_in


class _Walk:
    """The references found so far, and the states after each item of every residual branch (for the
    backward walk)."""

    def __init__(self) -> None:
        self.out: dict[str, float | None] = {}
        self.branch_after: dict[str, list[_State]] = {}


def mean_field(net: Network) -> dict[str, float | None]:
    """``{"label|statistic": value}`` of the wide limit for every layer (``None`` where it is not computed)."""
    walk = _Walk()
    x0 = (_Component(1.0, lambda z: z, (1.0, 0.0), (), ()),)
    states = _forward(net.items, x0, walk)
    _backward(net.items, states, x0, 1.0, walk)
    # A value that left double precision (or a nan from a quadrature that could not be computed) is no
    # reference: None, as where the limit is not computed.
    return {k: v if v is None or math.isfinite(v) else None for k, v in walk.out.items()}


def _forward(items: tuple[Item, ...], state: _State, walk: _Walk) -> list[_State]:
    """Push ``state`` through ``items``; the state after each item, and fp references into ``walk.out``."""
    after: list[_State] = []
    out = walk.out
    for item in items:
        state = _block_forward(item, state, walk) if isinstance(item, Block) else _stage_forward(item, state)
        mom = _moments(state)
        if mom is None:
            out[f"{item.label}|fp_mean"] = out[f"{item.label}|fp_std"] = None
        else:
            mean, m2 = mom
            out[f"{item.label}|fp_mean"] = mean
            out[f"{item.label}|fp_std"] = math.sqrt(max(m2 - mean * mean, 0.0))
        after.append(state)
    return after


def _stage_forward(stage: Stage, state: _State) -> _State:
    if state is None:
        return None
    if stage.name in shapes.WEIGHTED:
        factors = weight_factors(stage)
        mom = _moments(state)
        if factors is None or mom is None:
            return None
        return _gaussian(factors[0] * mom[1], stage.shift, stage.fwd_scale)
    if stage.kind != shapes.POINTWISE or isinstance(state, _Moments):
        return None
    layer = stage.layer
    shift, fwd, grad = stage.shift, stage.fwd_scale, stage.grad_scale
    out: list[_Component] = []
    if stage.name == "dropout":
        # Dropped values are the constant -shift * fwd whatever came before, and their derivative chain holds a
        # 0 at this layer (so every gradient moment through it from below is 0): the dropped parts of all
        # components are one component. The mixture grows by one per dropout, not twofold.
        p = layer.values["p"]
        c = layer.scale
        for comp in state:
            out.append(_Component(comp.weight * p, _Cached(lambda z, f=comp.fn: (c * f(z) - shift) * fwd),
                                  None, comp.kinks, comp.dchain + ((stage.label, lambda z: np.full_like(z, c * grad)),)))
        if p < 1.0:
            first = state[0]
            zero = lambda z: np.zeros_like(z)  # noqa: E731
            out.append(_Component(sum(comp.weight for comp in state) * (1 - p),
                                  lambda z: np.full_like(z, -shift * fwd), None, first.kinks,
                                  tuple((lab, zero) for lab, _ in first.dchain) + ((stage.label, zero),)))
        return tuple(out)
    if not isinstance(layer, Elementwise):
        return None
    for comp in state:
        kinks = comp.kinks
        if comp.affine is not None and comp.affine[0] != 0.0:
            a, c0 = comp.affine
            kinks = tuple(sorted({*kinks, *((b - c0) / a for b in layer.breakpoints)}))
        out.append(_Component(
            comp.weight,
            _Cached(lambda z, f=comp.fn: (layer.f(f(z)) - shift) * fwd),
            None,
            kinks,
            comp.dchain + ((stage.label, lambda z, f=comp.fn: grad * layer.df(f(z))),),
        ))
    return tuple(out)


def _has_weights(items: tuple[Item, ...]) -> bool:
    return any(isinstance(i, Stage) and i.name in shapes.WEIGHTED or isinstance(i, Block) and _has_weights(i.branch)
               for i in items)


def _block_forward(block: Block, state: _State, walk: _Walk) -> _State:
    out = walk.out
    branch_in: _State
    if state is None or isinstance(state, _Moments) or not _has_weights(block.branch):
        branch_in = None
    else:
        inv = 1.0 / block.beta
        branch_in = tuple(
            _Component(c.weight, lambda z, f=c.fn: f(z) * inv,
                       None if c.affine is None else (c.affine[0] * inv, c.affine[1] * inv), c.kinks, ())
            for c in state
        )
    after = _forward(block.branch, branch_in, walk)
    walk.branch_after[block.label] = after
    f_state = after[-1] if after else None
    f_mom, x_mom = _moments(f_state), _moments(state)
    if f_mom is None or x_mom is None or branch_in is None:
        out[f"{block.label}|branch_var"] = None
        return None
    out[f"{block.label}|branch_var"] = f_mom[1] - f_mom[0] ** 2
    a = block.alpha
    mean = x_mom[0] + a * f_mom[0]
    m2 = x_mom[1] + 2 * a * x_mom[0] * f_mom[0] + a * a * f_mom[1]
    if _is_centred_gaussian(state) and _is_centred_gaussian(f_state):
        return _gaussian(m2)
    return _Moments(mean, m2)


def _is_centred_gaussian(state: _State) -> bool:
    return (isinstance(state, tuple) and len(state) == 1 and state[0].affine is not None
            and state[0].affine[1] == 0.0 and state[0].weight == 1.0)


def _backward(items: tuple[Item, ...], after: list[_State], before: _State, g_top: float | None,
              walk: _Walk) -> float | None:
    """Walk ``items`` from the top with ``E[g^2] = g_top`` arriving; bp references into ``walk.out``; returns
    ``E[dx^2]`` at the chain's input."""
    out = walk.out
    g = g_top
    seg_state, seg_g = (after[-1] if after else before), g_top
    for i in range(len(items) - 1, -1, -1):
        item = items[i]
        below = after[i - 1] if i > 0 else before
        if isinstance(item, Block):
            gb = None if g is None else _backward(item.branch, walk.branch_after[item.label], None,
                                                  g * (item.alpha * item.alpha), walk)
            g = None if g is None or gb is None or after[i] is None else g + gb / (item.beta * item.beta)
            seg_state, seg_g = below, g
        elif item.name in shapes.WEIGHTED:
            factors = weight_factors(item)
            g = None if g is None or factors is None or after[i] is None else g * factors[1] * item.grad_scale**2
            seg_state, seg_g = below, g
        elif item.kind == shapes.POINTWISE and isinstance(seg_state, tuple) and seg_g is not None:
            g = seg_g * _chain_moment(seg_state, item.label)
        else:
            g = None
        out[f"{item.label}|bp_mean"] = None if g is None else 0.0
        out[f"{item.label}|bp_std"] = None if g is None else math.sqrt(g)
    return g


def _chain_moment(state: tuple[_Component, ...], label: str) -> float:
    """``sum_k w_k E[prod_{j >= label} d_j(z)^2]`` over the components of the run's top state. The backward walk
    asks for the labels from the top down: each component keeps its running product per array of nodes, so
    each layer multiplies in one factor (linear in the run's length)."""
    total = 0.0
    for comp in state:
        labels = [lab for lab, _ in comp.dchain]
        if label not in labels:
            return math.nan
        start = labels.index(label)
        fns = [d for _, d in comp.dchain]

        def h(z: np.ndarray, comp: _Component = comp, fns: list[Fn] = fns, start: int = start) -> np.ndarray:
            z = np.asarray(z, dtype=float)
            key = _key(z)
            known = comp.suffix.get(key)
            if known is not None and known[0] == start + 1:
                prod = known[1] * fns[start](z) ** 2
            elif known is not None and known[0] == start:
                return known[1]
            else:
                prod = np.ones_like(z)
                for d in fns[start:]:
                    prod = prod * d(z) ** 2
            comp.suffix[key] = (start, prod)
            if len(comp.suffix) > _CACHE:
                comp.suffix.pop(next(iter(comp.suffix)))
            return prod

        total += comp.weight * _expect(h, comp.kinks)
    return total
