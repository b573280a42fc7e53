"""The infinite-width reference of the correlation of a vector network's two inputs (``--input N
--input-correlation RHO``, :mod:`normstats.networks.pairs`): the mean-field correlation map.

At infinite width (Poole et al., *Exponential expressivity in deep neural networks through transient chaos*,
NIPS 2016) the outputs of a linear layer for the two inputs are, coordinate by coordinate, a centred bivariate
normal ``(u1, u2)`` of variance ``q`` each and correlation ``c``; every elementwise layer that follows is a
function ``g`` of it, so after a run of them the pair is ``(g(u1), g(u2))``. The next linear layer, whose
weights give ``E[y^2] = a_f E[x^2]`` (``a_f = E|W|^2 / rows``: the ``sigma_w^2`` of the papers, from the
network's own init and weight normalisation, :func:`~normstats.networks.wide_limit.weight_factors`; normstats
has no biases, so ``sigma_b^2 = 0``), maps it to

    q' = a_f E[g(u)^2],    c' = E[g(u1) g(u2)] / E[g(u)^2],

Poole et al.'s ``c -> (sigma_w^2 E[phi(u1) phi(u2)] + sigma_b^2) / q'`` with the layer's own ``q`` (the
trajectory from the finite input: ``q^0 = 1``, ``c^0 = RHO``), not only at the fixed point ``q*``. The
reference of every layer is ``E[g(u1) g(u2)] / E[g(u)^2]``, the limit of the per-draw cosine of its two outputs:
``c`` itself at a linear layer's output, the next layer's ``c`` at an activation's. NormProp's shift and scale
of a layer are part of ``g`` (a linear layer's output ``(u - shift) scale`` gives ``(c q + shift^2) / (q +
shift^2)``, in closed form). The two-dimensional expectations are :func:`~normstats.exact.bivariate.
bivariate_expectation`'s (the same rule as :meth:`normstats.theory.meanfield.MeanField.cross`, which
tests/test_correlation_map.py checks it against, with the closed forms of Cho and Saul 2009 for relu and mpmath
for tanh).

Computed for chains of linear layers, elementwise activations, dropout, layer and RMS norms and residual
blocks from the input:

* dropout masks both inputs alike, so after it the pair is a mixture, ``(k g(u1), k g(u2))`` with probability
  ``p`` (``k`` its scale) and ``(0, 0)`` otherwise, whose moments are the weighted sums (a later activation maps
  each part; a dropped part stays a constant);
* layer and RMS norm over the features of one input are, at infinite width, affine maps with the population's
  mean and variance (the same for both inputs): layer norm turns the cosine into the centred one;
* a residual block on a centred normal pair adds its branch's pair as an independent one (:func:`_block`);
* the kinks of an activation behind a non-affine ``g`` (relu behind tanh) are found in ``u`` where ``g``
  crosses them.

Where the theory above does not hold, the reference of that layer and of every layer after it is ``None`` ("no
reference"): batch norm (over the inputs of a batch), softmax and the other layers, a residual block whose input
is not a centred normal pair (after an activation) or whose branch has no linear layer, what follows a block
whose sum is not normal (a branch that ends with an activation), and a quadrature that does not converge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from normstats.errors import NormstatsError
from normstats.exact.bivariate import Z_MAX, bivariate_expectation
from normstats.exact.quadrature import gaussian_expectation
from normstats.layers.base import Elementwise
from normstats.lazy import optimize
from normstats.networks.build import Block, Item, Network, Stage
from normstats.networks.wide_limit import weight_factors

Fn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class _Part:
    """With probability ``weight`` (a dropout mask, the same for both inputs) the pair is ``(g(u1), g(u2))``;
    ``affine = (a, b)`` when ``g(u) = a u + b`` (``a = 0``: a constant, a dropped value); ``kinks`` where ``g`` is
    not smooth (in ``u``)."""

    weight: float
    g: Fn
    affine: tuple[float, float] | None
    kinks: tuple[float, ...] = ()

    def moments(self, q: float, c: float) -> tuple[float, float]:
        """``(E[g(u)^2], E[g(u1) g(u2)])``: in closed form for an affine ``g``, else by quadrature."""
        if self.affine is not None:
            a, b = self.affine
            return a * a * q + b * b, a * a * c * q + b * b
        r = math.sqrt(q)
        g = self.g
        m2 = gaussian_expectation(lambda z: g(r * z) ** 2, [k / r for k in self.kinks] if r > 0 else [])
        cross = bivariate_expectation(g, g, q, q, c, self.kinks, self.kinks)
        return m2, cross

    def mean(self, q: float) -> float:
        """``E[g(u)]``."""
        if self.affine is not None:
            return self.affine[1]
        r = math.sqrt(q)
        g = self.g
        return gaussian_expectation(lambda z: g(r * z), [k / r for k in self.kinks] if r > 0 else [])

    def scaled(self, a: float, b: float) -> _Part:
        """``a g + b``."""
        g = self.g
        affine = None if self.affine is None else (a * self.affine[0], a * self.affine[1] + b)
        return _Part(self.weight, lambda u: a * g(u) + b, affine, self.kinks)

    def then(self, weight: float, f: Fn, affine: tuple[float, float] | None,
             breakpoints: tuple[float, ...], r: float) -> _Part:
        """This part followed by the elementwise ``f`` (of kinks ``breakpoints``; ``affine`` when the composite
        is known to be), with probability ``weight``; ``r = sqrt(q)``."""
        inner = self.g
        kinks = set(self.kinks)
        if self.affine is not None and self.affine[0] != 0.0:
            a, b = self.affine
            kinks.update((float(k) - b) / a for k in breakpoints)
        elif self.affine is None:
            for k in breakpoints:
                kinks.update(_crossings(inner, float(k), r))
        return _Part(weight, lambda u: f(inner(u)), affine, tuple(sorted(kinks)))


@dataclass(frozen=True)
class _Pair:
    """The two inputs' values after a run of elementwise layers (and dropouts): a mixture of :class:`_Part` of
    ``(u1, u2)``, a centred normal of variance ``q`` each and correlation ``c``."""

    q: float
    c: float
    parts: tuple[_Part, ...]

    def moments(self) -> tuple[float, float]:
        m2 = cross = 0.0
        for part in self.parts:
            a, b = part.moments(self.q, self.c)
            m2 += part.weight * a
            cross += part.weight * b
        return m2, cross


def correlation_limit(net: Network) -> dict[str, float | None]:
    """``{"label|correlation": c}`` for every item of ``net`` (``None`` where there is no reference; empty for a
    network that does not pair its inputs)."""
    if not net.input_correlation or len(net.input) != 1:
        return {}
    out: dict[str, float | None] = {f"{item.label}|correlation": None for item in net.walk()}
    _chain(net.items, _gaussian(1.0, net.input_correlation), out)
    return out


Moments = tuple[float, float]  # (E[g^2], E[g(u1) g(u2)])


def _gaussian(q: float, c: float) -> tuple[_Pair, Moments]:
    """A centred normal pair of variance ``q`` and correlation ``c``, with its moments."""
    return _Pair(q, c, (_Part(1.0, lambda u: u, (1.0, 0.0)),)), (q, c * q)


def _chain(items: tuple[Item, ...], start: tuple[_Pair, Moments], out: dict[str, float | None]
           ) -> tuple[_Pair | None, Moments] | None:
    """Push ``start`` through ``items``, each item's reference into ``out``; the pair after the last (``None``
    where it is known only by its moments) and its moments, or ``None`` where the map stopped."""
    pair: _Pair | None = start[0]
    moments = start[1]
    for item in items:
        if pair is None:
            return None
        if isinstance(item, Block):
            done = _block(item, pair, moments, out)
            if done is None:
                return None
            pair, moments = done
        else:
            pair = _step(item, pair, moments)
            if pair is None:
                return None
            try:
                moments = pair.moments()
            except (NormstatsError, ArithmeticError, OverflowError):
                return None
        m2, cross = moments
        if not (m2 > 0.0 and math.isfinite(m2) and math.isfinite(cross)):
            return None
        out[f"{item.label}|correlation"] = cross / m2
    return pair, moments


def _centred_gaussian(pair: _Pair) -> bool:
    return len(pair.parts) == 1 and pair.parts[0].weight == 1.0 and pair.parts[0].affine is not None and \
        pair.parts[0].affine[0] != 0.0 and pair.parts[0].affine[1] == 0.0


def _has_weights(items: tuple[Item, ...]) -> bool:
    return any(isinstance(i, Stage) and i.name == "linear" or isinstance(i, Block) and _has_weights(i.branch)
               for i in items)


def _block(block: Block, pair: _Pair, moments: Moments, out: dict[str, float | None]
           ) -> tuple[_Pair | None, Moments] | None:
    """``y = x + alpha F(x / beta)`` on a centred normal pair ``x`` (Yang and Schoenholz 2017, *Mean field
    residual networks*): a branch with a linear layer is, at infinite width, independent of ``x`` coordinate by
    coordinate (its weights are centred and independent of ``x``), so with ``E[x] = 0`` the cross terms vanish:
    ``E[y1 y2] = E[x1 x2] + alpha^2 E[F1 F2]`` and ``E[y^2] = E[x^2] + alpha^2 E[F^2]``. The sum is again a
    centred normal pair when ``F`` is (a branch that ends with a linear layer); otherwise only its moments are
    known, and the layers after the block have no reference."""
    if not (_centred_gaussian(pair) and _has_weights(block.branch)):
        return None
    qx, cx = moments
    beta2 = block.beta * block.beta
    done = _chain(block.branch, _gaussian(qx / beta2, cx / qx), out)
    if done is None:
        return None
    f_pair, (f_m2, f_cross) = done
    a2 = block.alpha * block.alpha
    m2, cross = qx + a2 * f_m2, cx + a2 * f_cross
    if f_pair is None or not _centred_gaussian(f_pair) or not m2 > 0.0:
        return None if f_pair is None else (None, (m2, cross))
    return _gaussian(m2, max(-1.0, min(1.0, cross / m2)))[0], (m2, cross)


def _step(stage: Stage, pair: _Pair, moments: tuple[float, float]) -> _Pair | None:
    """The pair after ``stage``, from the pair before it and its ``moments`` (``(E[g^2], E[g(u1) g(u2)])``, both
    finite, the first positive); ``None`` where the theory does not cover the stage."""
    shift, scale = stage.shift, stage.fwd_scale
    if stage.name == "linear":
        factors = weight_factors(stage)
        if factors is None:
            return None
        m2, cross = moments
        q = factors[0] * m2
        if not (q > 0.0 and math.isfinite(q)):
            return None
        c = max(-1.0, min(1.0, cross / m2))
        return _Pair(q, c, (_Part(1.0, lambda u: (u - shift) * scale, (scale, -shift * scale)),))
    layer = stage.layer
    r = math.sqrt(pair.q)
    parts: list[_Part] = []
    if stage.name == "dropout":
        # kept (probability p, for both inputs at once: one mask) and scaled by k, or dropped to 0; then shifted
        # and scaled by NormProp
        p, k = layer.values["p"], layer.scale
        for part in pair.parts:
            affine = None if part.affine is None else (part.affine[0] * k * scale,
                                                       (part.affine[1] * k - shift) * scale)
            parts.append(part.then(part.weight * p, lambda v: (k * v - shift) * scale, affine, (), r))
        if p < 1.0:
            dropped = sum(part.weight for part in pair.parts) * (1.0 - p)
            parts.append(_Part(dropped, lambda u: np.full_like(u, -shift * scale), (0.0, -shift * scale)))
        return _Pair(pair.q, pair.c, tuple(parts))
    if stage.name in _FEATURE_NORMS:
        # over the features of one input: at infinite width its mean and variance are the population's, the same
        # for both inputs, so the layer is an affine map of the pair (eps moves the scale, not the cosine)
        m2 = moments[0]
        mean = sum(part.weight * part.mean(pair.q) for part in pair.parts) if stage.name == "layernorm" else 0.0
        var = m2 - mean * mean
        if not var > 0.0:
            return None
        a = scale / math.sqrt(var + layer.values["eps"])
        return _Pair(pair.q, pair.c, tuple(part.scaled(a, -mean * a - shift * scale) for part in pair.parts))
    if not isinstance(layer, Elementwise):
        return None
    breakpoints = tuple(float(b) for b in layer.breakpoints)
    for part in pair.parts:
        if part.affine is not None and part.affine[0] == 0.0:  # a constant stays one
            value = float((layer.f(np.array([part.affine[1]]))[0] - shift) * scale)
            parts.append(_Part(part.weight, lambda u, v=value: np.full_like(u, v), (0.0, value)))
        else:
            parts.append(part.then(part.weight, lambda v: (layer.f(v) - shift) * scale, None, breakpoints, r))
    return _Pair(pair.q, pair.c, tuple(parts))


#: Normalizations over the features of one input that the map covers.
_FEATURE_NORMS = ("layernorm", "rmsnorm")

#: Where the crossings of a non-affine ``g`` with a kink are looked for: ``|u| <= Z_MAX sqrt(q)`` (the square
#: the two-dimensional rule integrates), on this many intervals.
_SCAN = 4000


def _crossings(g: Fn, level: float, r: float) -> list[float]:
    """The ``u`` in ``[-Z_MAX r, Z_MAX r]`` where ``g(u)`` crosses ``level`` (sign changes on a grid, each refined
    by Brent's method): where an activation with a kink at ``level`` has it, behind a non-affine ``g`` (relu
    behind tanh: at ``u = 0``). A touch without a crossing, or a crossing between two grid points that
    cancel, is missed; the two-dimensional rule then does not converge and says so (no reference)."""
    if r <= 0.0:
        return []
    u = np.linspace(-Z_MAX * r, Z_MAX * r, _SCAN + 1)
    with np.errstate(all="ignore"):
        d = g(u) - level
    out = [float(x) for x, v in zip(u, d) if v == 0.0]
    for i in np.flatnonzero(np.sign(d[:-1]) * np.sign(d[1:]) < 0):
        out.append(float(optimize.brentq(lambda t: float(g(np.array([t]))[0]) - level, u[i], u[i + 1],
                                         xtol=1e-15, rtol=1e-15)))
    return out
