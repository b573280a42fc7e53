"""Normalization layers: batch norm, layer norm, RMS norm and group norm, in training mode with affine weight 1
and bias 0, forward and backward as PyTorch computes them.

Each layer splits a draw into *groups* of ``n`` values and normalizes every group on its own: batch norm a
channel over the batch and its positions (``n = B P``), layer norm and RMS norm a draw's ``D`` features
(``n = D``), group norm ``C / G`` channels times their positions (``n = C P / G``).

Forward (centred: batch, layer and group norm). ``mu = mean(x)``, ``v = mean((x - mu)^2)`` (the *biased*
variance, as PyTorch normalizes in training), ``s = sqrt(v + eps)``, ``y = (x - mu) / s``. RMS norm does not
centre: ``v = mean(x^2)``, ``y = x / s``.

Backward. ``ds / dx_j = (x_j - mu) / (n s) = y_j / n`` (``sum_i (x_i - mu) = 0`` kills the mean's part), so
``dy_i / dx_j = (delta_ij - 1/n - y_i y_j / n) / s``: a symmetric Jacobian ``J = (I - 11^T/n - y y^T/n) / s``
and ``dx = J dy = (dy - mean(dy) - y mean(y dy)) / s``. Without centring the ``1/n`` term goes:
``dx = (dy - y mean(y dy)) / s``.

Conditional sampler. With ``c = mean(y^2) = v / (v + eps)``, ``A = 11^T/n`` and ``B = y y^T / n`` satisfy
``A^2 = A``, ``AB = 0`` (centred ``y`` sums to 0) and ``B^2 = c B``, so
``J^T J = (I - A - (2 - c) B) / s^2`` and ``g_i = (1 - 1/n - (2 - c) y_i^2 / n) / s^2`` (no ``1/n`` term for
RMS norm): one pass, exact.

References. A group's ``n`` values are i.i.d. N(0, 1); every group has the same law, so the pooled statistics
are one group's. ``x -> -x`` maps ``y`` to ``-y``, so fp mean is 0; the pooled second moment is
``E mean(y^2) = E c``; bp mean is 0 (``dy`` has mean 0) and the pooled bp variance is
``E trace(J^T J) / n = E[(n - 1 - (2 - c) c) / (n s^2)]`` (centred; ``n - (2 - c) c`` for RMS norm). All of
it depends on the group only through ``n v = S``: for a centred group ``S = sum (x_i - mu)^2 ~ chi^2_{n-1}``,
for RMS norm ``S = sum x_i^2 ~ chi^2_n``; write ``k`` for the degrees of freedom.

* ``eps = 0``: ``c = 1``, so fp std is exactly 1, and ``bp var = E[(n - 2) / S]`` (centred) or
  ``E[(n - 1) / S]`` (RMS). ``E[1 / chi^2_k] = 1 / (k - 2)`` for ``k > 2`` and infinite for ``k <= 2`` (the
  chi-square density ``~ S^{k/2 - 1}`` near 0 makes ``int S^{k/2 - 2} dS`` diverge). Centred:
  ``bp std = sqrt((n - 2) / (n - 3))`` for ``n >= 4``, infinite at ``n = 3``, 0 at ``n = 2`` (``J = 0``: two
  values normalized to ``+-1`` whatever they are). RMS: ``sqrt((n - 1) / (n - 2))`` for ``n >= 3``, infinite at
  ``n = 2``, 0 at ``n = 1`` (``y = sign(x)``). A small batch thus has a bp std above 1: the gradient is a
  projection of ``dy`` (rank ``n - 2``, which alone would give ``sqrt((n - 2) / n)``) scaled by ``1 / s``, and
  ``E[1 / s^2] = n / (k - 2)`` exceeds ``1 / E[s^2] = n / k``, by Jensen, the more so the smaller the group.
  A group of one value with ``eps = 0`` is ``0 / 0`` and is refused.
* ``eps > 0``: the same expectations as one-dimensional integrals over the chi-square law of ``S``
  (:func:`normstats.exact.quadrature.chi2_expectation`), finite for every ``n``.

The estimate's own standard error needs a finite fourth moment: ``E[1 / S^2] < inf``, i.e. ``k > 4`` at
``eps = 0`` (a batch norm of 3 to 5 values has a finite bp std whose se is not to be trusted).

``--sampler chi-square`` (:class:`ChiSquareGroup`). The engine keeps of a draw only its row mean ``a`` and row
mean square ``q`` (and, for the conditional estimator, the row mean of ``g``), and all of them are functions
of a few scalars, so one group a draw is drawn from those scalars instead of from ``n`` normals. Write
``D = S + n eps = n s^2``, so ``c = S / D`` and ``1 - c = n eps / D``.

* Centred: ``a = 0``, ``q = c`` and the row mean of ``g`` is ``(n - 2 + (1 - c)^2) / D`` (the reference's
  integrand, rewritten). Backward: ``J`` has eigenvalue 0 on the ones vector, ``(1 - c) / s`` on ``y``
  (``J y = (y - y c) / s``) and ``1 / s`` on the ``n - 2`` directions orthogonal to both, and ``dy`` is
  rotation invariant and independent of ``x``; so ``mean(dx) = 1^T J dy / n = 0`` and
  ``mean(dx^2) = |J dy|^2 / n = ((1 - c)^2 z1^2 + W) / D`` with ``z1 ~ N(0, 1)`` and ``W ~ chi^2_{n-2}``
  independent of each other and of ``S``. (A group of one value, ``eps > 0``: ``y = 0``, ``J = 0``.)
* RMS norm: ``t = sqrt(n) mean(x) ~ N(0, 1)`` and ``R = sum (x - mean(x))^2 ~ chi^2_{n-1}`` are independent
  and ``S = t^2 + R``; ``a = mean(y) = t / sqrt(D)``, ``q - a^2 = R / D`` and the row mean of ``g`` is
  ``(n - 1 + (1 - c)^2) / D`` (``(1 - c)^2 / D`` at ``n = 1``). Backward: ``J = (I - y y^T / n) / s`` has
  eigenvalue ``(1 - c) / s`` on ``y`` and ``1 / s`` on its complement. The ones vector is
  ``alpha yhat + beta e`` with ``e`` a unit vector orthogonal to ``y``, ``alpha = sqrt(n) t / sqrt(S)`` and
  ``beta = sqrt(n R / S)``; with ``z1 = <yhat, dy>``, ``z2 = <e, dy>`` and ``W`` the squared rest of ``dy``
  (``chi^2_{n-2}``), all independent of each other and of ``x``,
  ``mean(dx) = (t (1 - c) z1 + sqrt(R) z2) / sqrt(S D)`` and ``mean(dx^2) = ((1 - c)^2 z1^2 + z2^2 + W) / D``
  (no ``z2`` and no ``W`` at ``n = 1``).

So a draw is ``S`` (or ``t`` and ``R``) for the forward statistics and the conditional estimator, plus two or
three normals for the sampled one: the per-draw ``(a, q)`` of a layer of one group has exactly the layer's
joint law; with several groups a draw (batch norm's channels, group norm's groups) the layer averages them,
which keeps the expected statistics and shrinks both the layer's se per draw and its draws per second.

The edges of the uniform. ``D`` is about ``S``, and ``S`` is small where its uniform is: near ``u = 0``,
``S ~ u^(2/k)``, so ``g ~ u^(-2/k)`` (and ``1 - c = n eps / D`` likewise); near ``u = 1`` the quantile's
derivative is unbounded. Under qmc the few points nearest those edges then decide each replicate's error, the
16 replicates' errors are far from normal, and their t interval is too short: batch norm of 8 (``k = 7``),
plain quantile, 2^14 draws, 256 seeds: 216 intervals of 256 covered the bp std (the sample mean of
``1 / chi^2_7`` itself behaves the same: 16% of intervals missed at 2^14 draws). So the stand-in draws ``R`` at
the quantile ``phi(V)`` of its uniform ``V`` and weights the draw by ``phi'(V)``, with the smoothstep of degree
7, ``phi(v) = v^4 (35 - 84 v + 70 v^2 - 20 v^3)``, ``phi'(v) = 140 v^3 (1 - v)^3`` (a change of variables:
``E[phi'(V) h(R(phi(V)))] = E h(chi^2_k)`` for every ``h``). The weighted integrand vanishes smoothly at both
edges; the 16 replicates' errors are then close to normal (``1 / chi^2_7``: z sd 1.00-1.07 at 2^10 to 2^14
points a replicate, against 1.5-1.7 plain), and the se at a given size is far smaller. ``phi(1 - v) = 1 -
phi(v)``, so the upper tail is taken as ``phi(1 - V)`` without cancellation. A weighted draw passes the
gradient's ``sqrt(w) a`` and ``w q`` (``E[sqrt(w) a] = 0 = E a`` since ``a`` is odd in ``(z1, z2)``, which the
weight does not touch; and ``(sqrt(w) a)^2 <= w q``), and the conditional ``w g``. The outputs weight only
``c``'s distance from 1: row mean square ``1 - w (1 - c)`` and row mean ``a`` unweighted, which keeps the
expectations (``E w = 1``) and makes the fp std's error that of ``w n eps / D``, about ``eps`` times the weight's
spread instead of all of it (:meth:`ChiSquareGroup.forward_outputs`). With the weight, a draw no longer has the
layer's law; ``smoothing=none`` gives the plain stand-in, which the tests check draw by draw against the layer.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from normstats.errors import ParameterError
from normstats.layers.base import ConditionalSampler, Layer, Passes
from normstats.lazy import special
from normstats.params import Param
from normstats.registry import register_layer

#: PyTorch's default eps of ``BatchNorm*d``, ``LayerNorm`` and ``GroupNorm`` (torch.nn docs).
TORCH_EPS = 1e-5
#: ``torch.nn.RMSNorm(eps=None)`` uses ``torch.finfo(x.dtype).eps``; we take float32's (2^-23), the dtype a
#: model runs in by default.
FLOAT32_EPS = 2.0**-23
#: Most values one draw may hold (32 MB of float64), as for a convolution.
MAX_DRAW = 1 << 22
#: How ``--sampler chi-square`` maps its uniform to the chi-square quantile (:func:`chi_square_smoothed`).
SMOOTHINGS = ("heptic", "none")


def _group_sum(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """``sum(a, axis=-1)``, or ``sum(a * b, axis=-1)`` (no array of the products), in any memory layout."""
    return np.einsum("...i->...", a) if b is None else np.einsum("...i,...i->...", a, b)


def eps_param(default: float, help_text: str) -> Param:
    return Param("eps", float, default, help_text, low=0.0, high=1.0)


class Normalization(Layer):
    """The shared machinery: a subclass says how a draw splits into groups (:meth:`to_groups`), whether the
    groups are centred, and the group size ``n``."""

    centred: ClassVar[bool] = True
    shortcuts = ("chi-square",)

    def _shortcut(self, sampler: str) -> Layer:
        """``chi-square``: :class:`ChiSquareGroup`, one group a draw, exact for every setting."""
        return ChiSquareGroup(n=self.group_size, eps=self.values["eps"], centring="mean" if self.centred else "none")

    def resolve(self, values: dict[str, Any]) -> dict[str, Any]:
        self.values = values
        if self.in_dim > MAX_DRAW:
            raise ParameterError(
                f"layer '{self.name}' must keep a draw within {MAX_DRAW:,} values; got {self.in_dim:,} "
                f"({self.describe()})"
            )
        if self.centred and self.group_size == 1 and values["eps"] == 0.0:
            raise ParameterError(
                f"parameter --eps of layer '{self.name}' must be > 0 when a group holds one value "
                f"(centring it leaves 0 / 0); got 0 ({self.describe()})"
            )
        del self.values
        return values

    @property
    def group_size(self) -> int:
        raise NotImplementedError

    @property
    def out_dim(self) -> int:
        return self.in_dim

    def to_groups(self, x: np.ndarray) -> np.ndarray:
        """``(draws, in_dim) -> (draws, groups, n)``."""
        return x.reshape(len(x), -1, self.group_size)

    def from_groups(self, z: np.ndarray) -> np.ndarray:
        return z.reshape(len(z), -1)

    # -- the passes ------------------------------------------------------------------------------------------
    def normalize(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(y, 1/s)`` in group form. The group means and sums of squares are dot products along the group
        (``einsum``: no array of the products) and every step after the first writes in place: about half the
        time of ``mean``, ``d * d`` and ``d / s`` as new arrays, the same numbers up to rounding."""
        z = self.to_groups(x)
        n = z.shape[-1]
        if self.centred:
            d = z - _group_sum(z)[..., None] / n
        else:
            d = z.copy()
        inv = _group_sum(d, d)
        inv /= n
        inv += self.values["eps"]
        np.sqrt(inv, out=inv)
        np.divide(1.0, inv, out=inv)
        inv = inv[..., None]
        d *= inv
        return d, inv

    def grad(self, y: np.ndarray, inv: np.ndarray, dy: np.ndarray) -> np.ndarray:
        """``dx = (dy - mean(dy) - y mean(y dy)) / s`` in group form (no ``mean(dy)`` without centring); the
        means as dot products along the group, in place on one new array (as :meth:`normalize`)."""
        g = self.to_groups(dy)
        n = g.shape[-1]
        out = y * (_group_sum(y, g) / n)[..., None]
        np.subtract(g, out, out=out)
        if self.centred:
            out -= (_group_sum(g) / n)[..., None]
        out *= inv
        return out

    def forward_backward(self, x: np.ndarray, dy: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        y, inv = self.normalize(x)
        return self.from_groups(y), self.from_groups(self.grad(y, inv, dy))

    def passes(self, rng: np.random.Generator) -> Passes:
        return _NormPasses(self)

    def conditional_sampler(self, rng: np.random.Generator) -> ConditionalSampler:
        return _NormConditional(self)

    # -- references ------------------------------------------------------------------------------------------
    @property
    def dof(self) -> int:
        """Degrees of freedom ``k`` of ``S = n v``: ``n - 1`` centred, ``n`` for RMS norm."""
        return self.group_size - 1 if self.centred else self.group_size

    def exact_statistics(self) -> dict[str, float]:
        """Centred (no affine shift: weight 1, bias 0): every group's outputs sum to 0, so fp mean is 0 in every
        draw, and ``J 1 = -y sum(y) / (n s) = 0`` with ``J`` symmetric, so every draw's gradient sums to 0 (bp
        mean 0 under either estimator). At ``eps = 0`` every group also has ``mean(y^2) = 1``, so fp std is 1 in
        every draw, and where ``J`` has rank 0 (two values centred, one value in RMS norm: ``y = +-1`` whatever
        ``x``) the gradient is 0; a centred group of one value (``eps > 0``) has ``y = 0`` and ``J = 0``. RMS
        norm does not centre: its fp mean ``t / sqrt(D)`` varies from draw to draw."""
        n, eps = self.group_size, self.values["eps"]
        if self.centred and n == 1:
            return {"fp_mean": 0.0, "fp_std": 0.0, "bp_mean": 0.0, "bp_std": 0.0}
        out = {"fp_mean": 0.0, "bp_mean": 0.0} if self.centred else {}
        if eps == 0.0:
            if self.centred:
                out["fp_std"] = 1.0
            if n == (2 if self.centred else 1):
                out.update(bp_mean=0.0, bp_std=0.0)
        return out

    def formula(self) -> dict[str, float]:
        out = {"fp_mean": 0.0, "bp_mean": 0.0}
        if self.dof == 0:  # a centred group of one value (eps > 0): y = 0 and J = 0 whatever x
            out.update(fp_std=0.0, bp_std=0.0)
        elif self.values["eps"] == 0.0:
            n, k = self.group_size, self.dof
            rank = n - 2 if self.centred else n - 1  # E[rank / S]: see the module docstring
            out["fp_std"] = 1.0
            out["bp_std"] = 0.0 if rank == 0 else math.sqrt(rank / (k - 2)) if k > 2 else math.inf
        return out

    def quadrature(self) -> dict[str, float]:
        from normstats.exact.quadrature import chi2_expectation

        n, k, eps = self.group_size, self.dof, self.values["eps"]
        if k == 0:  # no chi-square law to integrate over: the formula has it
            return {}
        lost = 1.0 if self.centred else 0.0
        out = {"fp_std": math.sqrt(chi2_expectation(lambda s: s / (s + n * eps), k))}
        if eps > 0.0 or k > 2:

            def bp(s: np.ndarray) -> np.ndarray:
                c = s / (s + n * eps)
                return (n - lost - (2.0 - c) * c) / (s + n * eps)  # (...) / (n (v + eps)) with v = s / n

            out["bp_std"] = math.sqrt(chi2_expectation(bp, k))
        return out


class _NormPasses(Passes):
    """The forward pass keeps ``y`` and ``1/s`` (group form) for the backward pass."""

    def __init__(self, layer: Normalization) -> None:
        self.layer = layer

    def forward(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, Any]:
        y, inv = self.layer.normalize(x)
        return self.layer.from_groups(y), (y, inv)

    def backward(self, state: Any, dy: np.ndarray) -> np.ndarray:
        y, inv = state
        return self.layer.from_groups(self.layer.grad(y, inv, dy))


class _NormConditional:
    """``g_i = (1 - 1/n - (2 - c) y_i^2 / n) / s^2`` (module docstring; no ``1/n`` without centring)."""

    def __init__(self, layer: Normalization) -> None:
        self.layer = layer

    def __call__(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        layer = self.layer
        y, inv = layer.normalize(x)
        n = layer.group_size
        y2 = y * y
        c = np.mean(y2, axis=-1, keepdims=True)
        g = ((1.0 - 1.0 / n if layer.centred else 1.0) - (2.0 - c) * y2 / n) * (inv * inv)
        return layer.from_groups(y), layer.from_groups(g)


@register_layer("batchnorm", aliases=("bn", "batch_norm"))
class BatchNorm(Normalization):
    """Batch norm in training mode: a draw is one batch of ``B`` inputs of ``C`` channels with ``P`` positions
    each, laid out ``(B, C, P)`` row-major; each channel is normalized over its ``B P`` values with the batch
    mean and the biased batch variance, and the backward pass goes through both (module docstring)."""

    summary = "batch norm (training): each channel over the batch and positions, gradient through mean and var"
    params = (
        Param("batch", int, 32, "inputs per batch B (one draw is one batch)", low=2, high=65536),
        Param("features", int, 1, "channels C", low=1, high=65536),
        Param("positions", int, 1, "positions per channel P (H*W of a map)", low=1, high=1 << 22),
        eps_param(TORCH_EPS, "added to the batch variance (PyTorch's default 1e-5)"),
    )
    spans_batch = True

    @property
    def in_dim(self) -> int:
        v = self.values
        return v["batch"] * v["features"] * v["positions"]

    @property
    def group_size(self) -> int:
        return self.values["batch"] * self.values["positions"]

    def to_groups(self, x: np.ndarray) -> np.ndarray:
        v = self.values
        z = x.reshape(len(x), v["batch"], v["features"], v["positions"]).transpose(0, 2, 1, 3)
        return z.reshape(len(x), v["features"], -1)

    def from_groups(self, z: np.ndarray) -> np.ndarray:
        v = self.values
        z = z.reshape(len(z), v["features"], v["batch"], v["positions"]).transpose(0, 2, 1, 3)
        return z.reshape(len(z), -1)


class _FeatureNormalization(Normalization):
    """A normalization of each input's ``features`` values as one group (layer norm, RMS norm)."""

    @property
    def in_dim(self) -> int:
        return self.values["features"]

    @property
    def group_size(self) -> int:
        return self.values["features"]


@register_layer("layernorm", aliases=("ln", "layer_norm"))
class LayerNorm(_FeatureNormalization):
    """Layer norm: each input's ``D`` features centred and scaled by their biased variance."""

    summary = "layer norm: an input's D features centred and scaled by their (biased) std"
    params = (
        Param("features", int, 64, "features D normalized together", low=1, high=1 << 22),
        eps_param(TORCH_EPS, "added to the variance (PyTorch's default 1e-5)"),
    )


@register_layer("rmsnorm", aliases=("rms_norm",))
class RMSNorm(_FeatureNormalization):
    """RMS norm (Zhang and Sennrich 2019): ``y = x / sqrt(mean(x^2) + eps)``, no centring. PyTorch's
    ``nn.RMSNorm`` defaults to ``eps=None``, meaning ``torch.finfo(dtype).eps``; ours is float32's, 2^-23."""

    summary = "RMS norm: an input's D features scaled by their root mean square (no centring)"
    centred = False
    params = (
        Param("features", int, 64, "features D normalized together", low=1, high=1 << 22),
        eps_param(FLOAT32_EPS, "added to the mean square (PyTorch's eps=None: float32 eps 2^-23 = 1.1920929e-07)"),
    )


@register_layer("groupnorm", aliases=("gn", "group_norm"))
class GroupNorm(Normalization):
    """Group norm (Wu and He 2018): an input's ``C`` channels of ``P`` positions, laid out ``(C, P)``, split into
    ``G`` groups of ``C / G`` consecutive channels, each group normalized over its ``C P / G`` values."""

    summary = "group norm: G groups of C/G channels x P positions, each centred and scaled by its std"
    params = (
        Param("groups", int, 4, "groups G (must divide the channels)", low=1, high=65536),
        Param("channels", int, 16, "channels C", low=1, high=65536),
        Param("positions", int, 16, "positions per channel P (H*W of a map)", low=1, high=1 << 22),
        eps_param(TORCH_EPS, "added to each group's variance (PyTorch's default 1e-5)"),
    )

    def resolve(self, values: dict[str, Any]) -> dict[str, Any]:
        if values["channels"] % values["groups"]:
            raise ParameterError(
                f"parameter --groups of layer 'groupnorm' must divide --channels; got groups "
                f"{values['groups']} and channels {values['channels']}"
            )
        return super().resolve(values)

    @property
    def in_dim(self) -> int:
        return self.values["channels"] * self.values["positions"]

    @property
    def group_size(self) -> int:
        v = self.values
        return v["channels"] // v["groups"] * v["positions"]


# -- --sampler chi-square --------------------------------------------------------------------------------------
def _cell_midpoint(u: np.ndarray) -> np.ndarray:
    """The midpoint of ``u``'s cell on the grid of 2^-52: exact in float64, never 0 or 1, and ``1 - V`` is
    exact too (as in :func:`normstats.layers.pooling.max_of_normals_quantile`)."""
    v = np.floor(np.asarray(u, dtype=np.float64) * 2.0**52)
    v += 0.5
    v *= 2.0**-52
    return v


def _chi_square_from_tails(k: int, tail: np.ndarray, lower: np.ndarray) -> np.ndarray:
    """The ``chi^2_k`` value whose lower-tail probability is ``tail`` where ``lower``, and whose upper-tail
    probability is ``tail`` elsewhere: ``S = 2 P^-1(k/2, p)`` or ``2 Q^-1(k/2, q)`` (regularized incomplete
    gamma), so neither tail loses digits to ``1 - p``. ``k = 0`` gives 0."""
    out = np.zeros_like(tail)
    if k == 0:
        return out
    out[lower] = special.gammaincinv(0.5 * k, tail[lower])
    upper = ~lower
    out[upper] = special.gammainccinv(0.5 * k, tail[upper])
    out *= 2.0
    return out


def chi_square_quantile(u: np.ndarray, k: int) -> np.ndarray:
    """``chi^2_k`` drawn from one uniform ``u`` in [0, 1) (numpy's or a Sobol point's): the quantile at the
    midpoint ``V`` of ``u``'s cell on the grid of 2^-52, through the lower tail for ``V < 1/2`` and the upper
    tail (``1 - V``, exact) above. ``V`` is never 0, so ``S > 0`` for ``k >= 1``; what is cut is half a cell,
    2^-53 of probability, at each end."""
    v = _cell_midpoint(u)
    lower = v < 0.5
    return _chi_square_from_tails(k, np.where(lower, v, 1.0 - v), lower)


def smoothstep7(v: np.ndarray) -> np.ndarray:
    """The smoothstep of degree 7, ``v^4 (35 - 84 v + 70 v^2 - 20 v^3)``: 0 at 0, 1 at 1, its first three
    derivatives 0 at both ends, and ``smoothstep7(1 - v) = 1 - smoothstep7(v)``."""
    return v**4 * (35.0 - 84.0 * v + 70.0 * v * v - 20.0 * v**3)


def chi_square_smoothed(u: np.ndarray, k: int, smoothing: str = "heptic") -> tuple[np.ndarray, np.ndarray]:
    """``chi^2_k`` at the quantile ``phi(V)`` of one uniform (``V`` the midpoint of ``u``'s cell, as in
    :func:`chi_square_quantile`) and the weight ``phi'(V) = 140 V^3 (1 - V)^3``, the density of
    ``phi(V)``'s law against the uniform's: ``E[weight h(S)] = E[h(chi^2_k)]`` for every ``h``. The lower tail
    is ``phi(V)`` for ``V < 1/2`` and the upper tail ``phi(1 - V)`` above, both without cancellation.
    ``smoothing="none"`` is :func:`chi_square_quantile` with weight 1."""
    if smoothing == "none":
        s = chi_square_quantile(u, k)
        return s, np.ones_like(s)
    v = _cell_midpoint(u)
    lower = v < 0.5
    s = _chi_square_from_tails(k, smoothstep7(np.where(lower, v, 1.0 - v)), lower)
    return s, 140.0 * (v * (1.0 - v)) ** 3


def chi_square_of_normal(z: np.ndarray, k: int) -> np.ndarray:
    """``chi^2_k`` drawn from one standard normal ``z`` (an upstream-gradient coordinate) through
    ``Phi(z)``, taken as ``Phi(z)`` in the lower tail and ``Phi(-z)`` in the upper one, both without
    cancellation."""
    z = np.asarray(z, dtype=np.float64)
    lower = z < 0.0
    return _chi_square_from_tails(k, special.ndtr(-np.abs(z)), lower)


class ChiSquareGroup(Layer):
    """``--sampler chi-square`` for the normalization layers: one group of ``n`` values a draw, drawn from
    the chi-square law of its sum of squares instead of from ``n`` normals (module docstring).

    Centred (``centring=mean``): ``S ~ chi^2_{n-1}`` from one uniform; the output is ``(sqrt c, -sqrt c)``,
    whose row mean 0 and row mean square ``c`` are the group's. RMS norm (``centring=none``): ``t`` is the one
    input (a normal) and ``R ~ chi^2_{n-1}`` comes from one uniform; the output ``a + d sqrt(3/2) (1, -1, 0)``
    with ``d = sqrt(R / D)`` has row mean ``a`` and row mean square ``a^2 + R / D = c``. The input gradient is
    ``a_bp +- sqrt(q_bp - a_bp^2)`` with ``(a_bp, q_bp)`` the group's ``(mean(dx), mean(dx^2))``, from the
    upstream-gradient normals: ``z1`` and ``W ~ chi^2_{n-2}`` (through :func:`chi_square_of_normal`) when
    centred, ``z1``, ``z2`` and ``W`` for RMS norm, so the conditional estimator draws only ``S`` (or ``t``
    and ``R``). Not registered: it is what :meth:`Normalization.shortcut` returns."""

    name = "normalization"
    summary = "one group of a normalization layer through the chi-square law of its sum of squares"
    params = (
        Param("n", int, 64, "values per group", low=1, high=MAX_DRAW),
        eps_param(TORCH_EPS, "added to the (mean-square or) variance"),
        Param("centring", str, "mean", "mean: batch, layer and group norm; none: RMS norm",
              choices=("mean", "none")),
        Param("smoothing", str, "heptic", "heptic: the chi-square value at the quantile phi(V) of its uniform V "
              "(the smoothstep of degree 7), with weight phi'(V); none: at V", choices=SMOOTHINGS),
    )

    def resolve(self, values: dict[str, Any]) -> dict[str, Any]:
        if values["centring"] == "mean" and values["n"] == 1 and values["eps"] == 0.0:
            raise ParameterError(
                "parameter --eps of a centred normalization group must be > 0 when it holds one value; got 0"
            )
        return values

    @property
    def centred(self) -> bool:
        return bool(self.values["centring"] == "mean")

    @property
    def in_dim(self) -> int:
        return 0 if self.centred else 1

    @property
    def out_dim(self) -> int:
        return 2 if self.centred else 3

    @property
    def bp_width(self) -> int:
        return 2

    @property
    def n_uniform(self) -> int:
        return 1

    # -- the group's scalars ---------------------------------------------------------------------------------
    def weighted_scalars(
        self, x: np.ndarray, u: np.ndarray
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, np.ndarray]:
        """``(t, R, S, weight)`` of each draw: ``t`` is ``None`` and ``R = S ~ chi^2_{n-1}`` when centred; ``R``
        drawn at the smoothed quantile with its weight (:func:`chi_square_smoothed`)."""
        n = self.values["n"]
        r, weight = chi_square_smoothed(u[:, 0], n - 1, self.values["smoothing"])
        if self.centred:
            return None, r, r, weight
        t = x[:, 0]
        return t, r, t * t + r, weight

    def forward_moments(self, t: np.ndarray | None, r: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, ...]:
        """``(a, q - a^2, g, D)``: the group's row mean and spread of ``y``, the row mean of ``g = E[dx^2 | x]``
        and ``D = S + n eps``."""
        n, eps = self.values["n"], self.values["eps"]
        d = s + n * eps
        one_minus_c = (n * eps) / d
        if self.centred:
            a = np.zeros_like(s)
            rank = n - 2 + one_minus_c * one_minus_c if n >= 2 else np.zeros_like(s)
        else:
            a = t / np.sqrt(d)
            rank = (n - 1) + one_minus_c * one_minus_c
        return a, r / d, rank / d, d

    def backward_moments(
        self, t: np.ndarray | None, r: np.ndarray, s: np.ndarray, d: np.ndarray,
        z1: np.ndarray, z2: np.ndarray | None, w: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(mean(dx), mean(dx^2))`` of the group (module docstring) from ``z1 = <yhat, dy>``, ``z2 = <e, dy>``
        (RMS norm; ``None`` when centred) and ``W``, the squared rest of ``dy``."""
        n, eps = self.values["n"], self.values["eps"]
        one_minus_c = (n * eps) / d
        along_y = one_minus_c * z1
        if self.centred:
            if n == 1:  # y = 0 and J = 0
                zero = np.zeros_like(s)
                return zero, zero
            return np.zeros_like(s), (along_y * along_y + w) / d
        if n == 1:  # y spans everything: no e, no W
            return t * along_y / np.sqrt(s * d), along_y * along_y / d
        a = (t * along_y + np.sqrt(r) * z2) / np.sqrt(s * d)
        return a, (along_y * along_y + z2 * z2 + w) / d

    def gradient_normals(self, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """``(z1, z2, W)`` from the upstream-gradient normals: ``z1 = dy[:, 0]``, then ``W ~ chi^2_{n-2}``
        from ``dy[:, 1]`` (centred) or ``z2 = dy[:, 1]`` and ``W`` from ``dy[:, 2]`` (RMS norm), through
        :func:`chi_square_of_normal`."""
        n = self.values["n"]
        last = dy[:, 1] if self.centred else dy[:, 2]
        w = chi_square_of_normal(last, max(n - 2, 0))
        return dy[:, 0], None if self.centred else dy[:, 1], w

    # -- samplers --------------------------------------------------------------------------------------------
    def outputs(self, a: np.ndarray, spread: np.ndarray) -> np.ndarray:
        """``out_dim`` columns with row mean ``a`` and row mean square ``a^2 + spread``."""
        if self.centred:
            root = np.sqrt(spread)
            return np.stack([root, -root], axis=1)
        root = np.sqrt(1.5 * spread)
        return np.stack([a + root, a - root, a], axis=1)

    def forward_backward(self, x, dy, u):  # type: ignore[no-untyped-def]
        t, r, s, weight = self.weighted_scalars(x, u)
        _, _, _, d = self.forward_moments(t, r, s)
        a_bp, q_bp = self.backward_moments(t, r, s, d, *self.gradient_normals(dy))
        root = np.sqrt(np.maximum(q_bp - a_bp * a_bp, 0.0) * weight)
        a_bp = a_bp * np.sqrt(weight)
        return self.forward_outputs((t, r, s), weight), np.stack([a_bp + root, a_bp - root], axis=1)

    def forward_outputs(
        self, scalars: tuple[np.ndarray | None, np.ndarray, np.ndarray], weight: np.ndarray
    ) -> np.ndarray:
        """The outputs of draws with scalars ``(t, R, S)`` and weight ``weight`` (:meth:`weighted_scalars`).

        Unweighted (``smoothing=none``, or ``eps = 0``, where ``q = c = 1`` in every draw): row mean ``a`` and row
        mean square ``q = c``. Weighted, the weight goes on ``c``'s distance from 1 only: ``q' = 1 - w (1 - c) =
        1 - w n eps / D``, whose expectation is ``E c`` since ``E w = 1``, with the row mean ``a`` unweighted
        (``E a = 0`` either way: ``a`` is odd in ``t``). Weighting all of ``q`` (``w c``) would make the weight's
        spread over [0, 2.19] the fp std's whole error (layer norm of 768, 2^14 qmc draws: fp std se 1.8e-6,
        against 3e-10 for 10^6 plain draws), and the plain quantile unweighted has the edge problem of the module
        docstring (batch norm of 8: 216 intervals of 256 covered the fp std). ``q' - a^2 = (R + (1 - w) n eps) / D``
        must not be negative: :attr:`deviation_form` checks that it cannot be for these settings; where it could
        (a large eps in a small group) the outputs carry ``sqrt(w) a`` and ``w q`` instead."""
        t, r, s = scalars
        a, spread, _, d = self.forward_moments(t, r, s)
        if self.values["smoothing"] == "none" or self.values["eps"] == 0.0:
            return self.outputs(a, spread)
        if self.deviation_form:
            n, eps = self.values["n"], self.values["eps"]
            return self.outputs(a, np.maximum(r + (1.0 - weight) * (n * eps), 0.0) / d)
        return self.outputs(a * np.sqrt(weight), spread * weight)

    @property
    def deviation_form(self) -> bool:
        """Whether ``R >= (w - 1) n eps`` holds in every draw, so that :meth:`forward_outputs` may weight ``1 - c``
        alone. ``w = 140 V^3 (1 - V)^3`` exceeds 1 only for ``V`` in ``(v1, 1 - v1)``, ``v1 (1 - v1) = 140^(-1/3)``,
        where ``R``, increasing in ``V``, is at least its value at ``phi(v1)`` and ``w - 1`` at most
        ``140 / 64 - 1``."""
        n, eps = self.values["n"], self.values["eps"]
        if n == 1:  # R = 0
            return False
        v1 = 0.5 * (1.0 - math.sqrt(1.0 - 4.0 * 140.0 ** (-1.0 / 3.0)))
        r_min = 2.0 * float(special.gammaincinv(0.5 * (n - 1), float(smoothstep7(np.float64(v1)))))
        return r_min >= (140.0 / 64.0 - 1.0) * n * eps

    def conditional_sampler(self, rng: np.random.Generator) -> ConditionalSampler:
        return _ChiSquareConditional(self)

    def formula(self) -> dict[str, float]:
        return _reference_layer(self).formula()

    def quadrature(self) -> dict[str, float]:
        return _reference_layer(self).quadrature()


def _reference_layer(group: ChiSquareGroup) -> Normalization:
    """A layer of one group of ``n`` values with ``group``'s law (for its references)."""
    cls = LayerNorm if group.centred else RMSNorm
    return cls(features=group.values["n"], eps=group.values["eps"])


class _ChiSquareConditional:
    """The conditional sampler of :class:`ChiSquareGroup`: the outputs and, as one column (the tally reads only
    row means), the row mean of ``g``, ``E[mean(dx^2) | S] = (rank + (1 - c)^2) / D``: the expectation of
    :meth:`ChiSquareGroup.backward_moments` over the upstream gradient, and the layer's own ``g`` row mean."""

    def __init__(self, group: ChiSquareGroup) -> None:
        self.group = group

    def __call__(self, x: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        group = self.group
        t, r, s, weight = group.weighted_scalars(x, u)
        _, _, g, _ = group.forward_moments(t, r, s)
        return group.forward_outputs((t, r, s), weight), (g * weight)[:, None]
