"""The normalizing constants of a layer in each community's convention, computed in one place.

For a layer output ``y`` with mean ``m`` and standard deviation ``s``, and input gradient ``dx`` with standard
deviation ``s_bp`` (all under ``x, dy ~ N(0, I)``):

* **NormProp** (Arpit et al. 2016): ``(y - shift) * fp_scale`` has mean 0 and std 1, with ``shift = m`` and
  ``fp_scale = 1/s``; ``dx * bp_scale`` has std 1, with ``bp_scale = 1/s_bp``.
* **NFNet gamma** (Brock et al. 2021): ``gamma * y`` has std 1, so ``gamma = 1/s``; the mean is left alone.
  Numerically it is NormProp's fp scale.
* **Variance-preserving gain** (the He et al. 2015 derivation): a following linear layer with zero-mean
  weights of variance ``gain^2 / fan_in`` keeps unit variance when ``gain = 1/sqrt(E y^2) = 1/sqrt(s^2 + m^2)``
  (the second moment, not the variance, is what propagates through zero-mean weights). For relu this is
  ``sqrt(2)``. PyTorch's ``calculate_gain`` means the same thing but some of its values are heuristics
  (see ``normstats audit``).
"""

from __future__ import annotations

import math
from typing import Any

#: Convention names, and the constants each one shows.
CONVENTIONS: dict[str, tuple[str, ...]] = {
    "normprop": ("fp_shift", "fp_scale", "bp_scale"),
    "nfnet": ("nfnet_gamma",),
    "gain": ("gain",),
}
CONVENTION_CHOICES: tuple[str, ...] = ("all", *CONVENTIONS)
#: Column headings of the constants.
LABELS = {
    "fp_shift": "fp shift",
    "fp_scale": "fp scale",
    "bp_scale": "bp scale",
    "nfnet_gamma": "NFNet γ",
    "gain": "gain",
}

#: The statistics each constant is computed from.
INPUTS: dict[str, tuple[str, ...]] = {
    "fp_shift": ("fp_mean",),
    "fp_scale": ("fp_std",),
    "bp_scale": ("bp_std",),
    "nfnet_gamma": ("fp_std",),
    "gain": ("fp_mean", "fp_std"),
}


def from_moments(fp_mean: float, fp_std: float, bp_std: float | None = None) -> dict[str, float | None]:
    """Every convention's constants from the output mean and std and the input-gradient std."""
    second = fp_std * fp_std + fp_mean * fp_mean
    return {
        "fp_shift": fp_mean,
        "fp_scale": _inverse(fp_std),
        "bp_scale": None if bp_std is None else _inverse(bp_std),
        "nfnet_gamma": _inverse(fp_std),
        "gain": _inverse(math.sqrt(second)),
    }


def constants(row: Any) -> dict[str, float | None]:
    """The constants of ``row`` in every convention (keys as in :data:`LABELS`), from the references where
    they exist and the estimates otherwise. ``row`` is a :class:`~normstats.output.results.Row` or anything
    with its ``fp_mean``, ``fp_std`` and ``bp_std`` statistics (this package sits below ``normstats.output``
    and does not import it)."""
    return from_moments(row.fp_mean.best, row.fp_std.best, row.bp_std.best)


def sources(row: Any) -> dict[str, str]:
    """Where each constant of ``row`` comes from: ``closed_form`` when all its inputs have closed forms,
    ``quadrature`` when some input needed quadrature, ``estimate`` when some input has no reference."""
    out = {}
    for name, stats in INPUTS.items():
        kinds = {getattr(row, s).reference_kind for s in stats}
        out[name] = "estimate" if None in kinds else "quadrature" if "quadrature" in kinds else "closed_form"
    return out


def columns(convention: str = "all") -> tuple[str, ...]:
    """The constants shown for ``convention`` (one of :data:`CONVENTION_CHOICES`)."""
    if convention == "all":
        return tuple(k for keys in CONVENTIONS.values() for k in keys)
    return CONVENTIONS[convention]


def _inverse(x: float) -> float | None:
    return 1.0 / x if x and math.isfinite(x) else None
