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

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Union

import numpy as np

from normstats.exact.quadrature import gaussian_expectation
from normstats.layers.base import Elementwise
from normstats.layers.weights import init_variance, squared_norm
from normstats.networks import shapes
from normstats.networks.build import Block, Item, Network, Stage

Fn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class _Component:
    """One part of a mixture: with probability ``weight`` the value is ``fn(z)``, ``z ~ N(0, 1)``."""

    weight: float
    fn: Fn
    affine: tuple[float, float] | None  # fn(z) = a z + c, when it is
    kinks: tuple[float, ...]  # z where fn or a derivative below has a kink
    dchain: tuple[tuple[str, Fn], ...]  # (label, d_j) of this run of pointwise layers, in forward order


@dataclass(frozen=True)
class _Moments:
    """Only the mean and second moment are known (enough for a following linear layer)."""

    mean: float
    m2: float


_State = Union[tuple[_Component, ...], _Moments, None]


def _expect(g: Fn, kinks: tuple[float, ...]) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy's IntegrationWarning from the adaptive fallback at hidden kinks
        return gaussian_expectation(g, kinks)


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
    return walk.out


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
        p = layer.values["p"]
        c = layer.scale
        for comp in state:
            out.append(_Component(comp.weight * p, lambda z, f=comp.fn: (c * f(z) - shift) * fwd,
                                  None, comp.kinks, comp.dchain + ((stage.label, lambda z: np.full_like(z, c * grad)),)))
            if p < 1.0:
                out.append(_Component(comp.weight * (1 - p), lambda z: np.full_like(z, -shift * fwd), None,
                                      comp.kinks, comp.dchain + ((stage.label, lambda z: np.zeros_like(z)),)))
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
            lambda z, f=comp.fn: (layer.f(f(z)) - shift) * fwd,
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
                                                  g * item.alpha**2, walk)
            g = None if g is None or gb is None or after[i] is None else g + gb / item.beta**2
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
    """``sum_k w_k E[prod_{j >= label} d_j(z)^2]`` over the components of the run's top state."""
    total = 0.0
    for comp in state:
        labels = [lab for lab, _ in comp.dchain]
        if label not in labels:
            return math.nan
        fns = [d for _, d in comp.dchain[labels.index(label):]]

        def h(z: np.ndarray, fns: list[Fn] = fns) -> np.ndarray:
            prod = np.ones_like(z)
            for d in fns:
                prod = prod * d(z)
            return prod * prod

        total += comp.weight * _expect(h, comp.kinks)
    return total
