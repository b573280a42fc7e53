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
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from normstats.errors import ParameterError
from normstats.layers.base import ConditionalSampler, Layer, Passes
from normstats.params import Param
from normstats.registry import register_layer

#: PyTorch's default eps of ``BatchNorm*d``, ``LayerNorm`` and ``GroupNorm`` (torch.nn docs).
TORCH_EPS = 1e-5
#: ``torch.nn.RMSNorm(eps=None)`` uses ``torch.finfo(x.dtype).eps``; we take float32's (2^-23), the dtype a
#: model runs in by default.
FLOAT32_EPS = 2.0**-23
#: Most values one draw may hold (32 MB of float64), as for a convolution.
MAX_DRAW = 1 << 22


def eps_param(default: float, help_text: str) -> Param:
    return Param("eps", float, default, help_text, low=0.0, high=1.0)


class Normalization(Layer):
    """The shared machinery: a subclass says how a draw splits into groups (:meth:`to_groups`), whether the
    groups are centred, and the group size ``n``."""

    centred: ClassVar[bool] = True

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
        """``(y, 1/s)`` in group form."""
        z = self.to_groups(x)
        d = z - z.mean(axis=-1, keepdims=True) if self.centred else z
        inv = 1.0 / np.sqrt(np.mean(d * d, axis=-1, keepdims=True) + self.values["eps"])
        return d * inv, inv

    def grad(self, y: np.ndarray, inv: np.ndarray, dy: np.ndarray) -> np.ndarray:
        """``dx = (dy - mean(dy) - y mean(y dy)) / s`` in group form (no ``mean(dy)`` without centring)."""
        g = self.to_groups(dy)
        out = g - y * np.mean(y * g, axis=-1, keepdims=True)
        if self.centred:
            out -= g.mean(axis=-1, keepdims=True)
        return out * inv

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

    def formula(self) -> dict[str, float]:
        out = {"fp_mean": 0.0, "bp_mean": 0.0}
        if self.values["eps"] == 0.0:
            n, k = self.group_size, self.dof
            rank = n - 2 if self.centred else n - 1  # E[rank / S]: see the module docstring
            out["fp_std"] = 1.0
            out["bp_std"] = 0.0 if rank == 0 else math.sqrt(rank / (k - 2)) if k > 2 else math.inf
        return out

    def quadrature(self) -> dict[str, float]:
        from normstats.exact.quadrature import chi2_expectation

        n, k, eps = self.group_size, self.dof, self.values["eps"]
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
