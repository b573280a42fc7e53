"""Self-normalizing solutions: the output scale (and optionally one shape parameter) that make an activation
map ``X ~ N(0, 1)`` to mean 0 and variance 1, the fixed point behind SELU (Klambauer et al. 2017).

With a free parameter ``p`` the two conditions separate: the mean of ``scale * f_p(X)`` is 0 exactly when
``E f_p(X) = 0``, which does not involve the scale; so ``p`` is the root of ``E f_p(X)`` (``brentq`` on the
exact references), and then ``scale = 1/sqrt(E f_p(X)^2)``. For elu this recovers SELU's alpha and lambda.

Without a free parameter the mean cannot be moved by a scale, so only the scale is solved, for one of two
targets: ``second-moment`` (default) makes ``E (scale f)^2 = 1``, which is what a following layer with
zero-mean weights propagates (the variance-preserving gain); ``std`` makes the standard deviation 1 (the
NFNet gamma). The reported ``fp_mean`` then says how far from zero the mean stays.

The scale in terms of an initialization (:attr:`Solution.kaiming_gain`): multiplying f by ``scale`` and then
applying weights of variance ``1 / fan_in`` gives the next layer the same pre-activation, in distribution, as
applying weights of variance ``scale^2 / fan_in`` to the unscaled f. normstats' He init ``linear(init=kaiming)``
draws N(0, 2 / fan_in) (``layers/weights.py``), and with ``normalize=none`` its ``gain=G`` multiplies the draw:
variance ``2 G^2 / fan_in``. So ``G = scale / sqrt(2)``: for ReLU (scale sqrt 2) G = 1, plain He init. In
PyTorch's convention (``kaiming_normal_``: std ``gain / sqrt(fan_in)``, ``calculate_gain``) the gain is the
scale itself. The next linear layer's output then has second moment ``E (scale f)^2`` averaged over the weights
(1 for the second-moment target and with ``--free``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from normstats.errors import NormstatsError, ParameterError
from normstats.exact.references import reference_moments
from normstats.lazy import optimize
from normstats.registry import get_layer, make_layer

TARGETS = ("second-moment", "std")
#: normstats' He init is N(0, KAIMING_NUMERATOR / fan_in): ``init_variance("kaiming", ...)`` in layers/weights.py
#: (which this module may not import; tests/test_band_and_solve.py checks that the two agree).
KAIMING_NUMERATOR = 2.0


@dataclass(frozen=True)
class Solution:
    """The solved scale and parameters, and the mean and std of ``scale * f(X)``."""

    layer: str
    scale: float
    params: dict[str, Any]
    fp_mean: float
    fp_std: float
    free: str | None
    target: str

    @property
    def kaiming_gain(self) -> float:
        """The ``gain`` G of ``linear(init=kaiming,normalize=none,gain=G)`` after the unscaled activation that
        does what ``scale`` does: ``scale / sqrt(2)`` (see the module doc)."""
        return self.scale / math.sqrt(KAIMING_NUMERATOR)

    @property
    def second_moment(self) -> float:
        """``E (scale f(X))^2``: what the next linear layer's output has, averaged over its weights."""
        return self.fp_mean * self.fp_mean + self.fp_std * self.fp_std

    def to_dict(self) -> dict[str, Any]:
        return {
            "layer": self.layer,
            "scale": self.scale,
            "kaiming_gain": self.kaiming_gain,
            "params": dict(self.params),
            "fp_mean": self.fp_mean,
            "fp_std": self.fp_std,
        }


def _moments(name: str, params: dict[str, Any]) -> tuple[float, float]:
    refs = reference_moments(make_layer(name, **params))
    if refs["fp_mean"] is None or refs["fp_std"] is None:
        raise NormstatsError(f"layer '{name}' has no exact fp mean and std to solve with")
    return refs["fp_mean"].value, refs["fp_std"].value


def solve(
    layer: str, *, free: str | None = None, target: str = "second-moment", **params: Any
) -> Solution:
    """Solve for the output scale of ``layer`` (and its parameter ``free``, if given); see the module doc."""
    if target not in TARGETS:
        raise NormstatsError(f"--target must be one of: {', '.join(TARGETS)}; got {target!r}")
    cls = get_layer(layer)
    values = dict(make_layer(layer, **params).values)
    if free is not None:
        declared = {p.name: p for p in cls.params if p.type is float}
        key = free.replace("-", "_")
        if key not in declared:
            have = ", ".join(declared) or "none"
            raise ParameterError(
                f"--free must name a numeric parameter of layer '{cls.name}' (one of: {have}); got {free!r}"
            )
        if key in params:
            raise ParameterError(f"--free {free} cannot also be given a value (--{free} {params[key]})")
        values[key] = _root_of_mean(cls.name, values, declared[key])
    mean, std = _moments(cls.name, values)
    scale = 1.0 / (math.sqrt(mean * mean + std * std) if target == "second-moment" else std)
    return Solution(cls.name, scale, values, scale * mean, scale * std, free, target)


def _root_of_mean(name: str, values: dict[str, Any], param: Any) -> float:
    """The value of ``param`` where the fp mean crosses 0, nearest the default among sign changes found on a
    geometric scan (0.001 to 1000 times the default, both signs where allowed)."""
    base = abs(param.default) or 1.0
    steps = base * 2.0 ** np.arange(-10, 11)
    candidates = sorted(v for v in {*steps, *(-steps), 0.0} if param._in_range(float(v)))

    def mean_at(v: float) -> float:
        return _moments(name, {**values, param.name: float(v)})[0]

    means = [mean_at(v) for v in candidates]
    brackets = [
        (a, b) for (a, ma), (b, mb) in zip(zip(candidates, means), zip(candidates[1:], means[1:]))
        if np.sign(ma) * np.sign(mb) <= 0
    ]
    if not brackets:
        lo, hi = min(means), max(means)
        raise NormstatsError(
            f"no value of --{param.name.replace('_', '-')} ({param.allowed()})"
            f" makes the mean of '{name}' zero (between {candidates[0]:g} and {candidates[-1]:g} it ranges "
            f"over [{lo:.6g}, {hi:.6g}])"
        )
    a, b = min(brackets, key=lambda ab: abs(0.5 * (ab[0] + ab[1]) - param.default))
    return float(optimize.brentq(mean_at, a, b, xtol=1e-15, rtol=4 * np.finfo(float).eps))
