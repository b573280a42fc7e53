"""Result types of ``normstats jacobian`` (:func:`normstats.jacobian`): the spectrum of a network's input-output
Jacobian at each requested depth, measured over draws, beside its free-probability (infinite-width) prediction,
and the dict form (the JSON document ``jacobian_document`` of ``schema.json``).

``lambda`` is a squared singular value of ``J`` (an eigenvalue of ``J J^T``). Per draw the Jacobian's ``N``
values give their mean, their variance (over the ``N`` values: the spread of the spectrum), the largest, and
``log10`` of the condition number ``s_max / s_min``; each is then averaged over draws with its standard error.
Every Jacobian is square (``N x N``): the mean and variance per input dimension, isometry and the condition
number are those of a square ``J``, and a depth whose output has another size is refused.
The condition number itself is not averaged: for a square Gaussian matrix ``P(kappa > N t) ~ 2 / t`` (Edelman
1988, "Eigenvalues and condition numbers of random matrices"), so its mean is infinite, while its logarithm has
finite moments. Where some draw's ``J`` is singular to float64 precision (``s_min <= N eps s_max``: a ReLU's zero
derivatives make ``J`` singular in every draw; a deep Gaussian chain's smallest singular values fall below what
float64 resolves) the condition number is infinite, and said so.

The prediction is the infinite-width limit (reference kind ``free_probability``): shown beside the estimate
with their difference, never z-tested (at width ``N`` the spectrum's moments differ from it by ``O(L / N)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from normstats.output.results.meanfield import num
from normstats.output.results.table import Stat

#: What the predictions are, as the JSON document says it.
KIND = "free_probability"
STATISTICS = ("mean", "variance", "largest", "log10_condition")
#: float64's largest number and smallest normal number: λ beyond them is said in words.
FLOAT_MAX = float(np.finfo(float).max)
FLOAT_TINY = float(np.finfo(float).tiny)


@dataclass(frozen=True)
class Factor:
    """One free factor of ``J J^T``: a linear layer's ``W W^T`` (``gaussian_weights`` or ``orthogonal_weights``)
    or a run of pointwise layers' ``D^2`` (``derivatives``, at pre-activation variance ``q``), with its mean and
    relative variance ``Var / mean^2``."""

    label: str
    kind: str
    mean: float
    relative_variance: float
    q: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "kind": self.kind, "mean": num(self.mean),
                "relative_variance": num(self.relative_variance), "q": num(self.q)}


@dataclass(frozen=True)
class SpectrumPrediction:
    """The infinite-width spectrum of ``J J^T`` (:mod:`normstats.theory.free_probability`): its mean, variance and
    relative variance, the end of its support (None where not known) and ``log10`` of the condition number (0
    for an isometry up to scale; None where the limit has no finite value), and the factors behind it."""

    mean: float
    variance: float
    relative_variance: float
    largest: float | None
    log10_condition: float | None
    factors: tuple[Factor, ...]

    def reference(self, stat: str) -> float | None:
        return getattr(self, stat)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": num(self.mean), "variance": num(self.variance),
                "relative_variance": num(self.relative_variance), "largest": num(self.largest),
                "log10_condition": num(self.log10_condition), "factors": [f.to_dict() for f in self.factors]}


@dataclass(frozen=True, eq=False)
class DepthSpectrum:
    """The Jacobian of the first ``depth`` top-level items (ending at ``label``, a ``layer``)."""

    depth: int
    label: str
    layer: str
    shape: tuple[int, int]  # (outputs, inputs)
    stats: dict[str, Stat]  # mean, variance, largest; log10_condition unless singular
    singular_draws: int
    prediction: SpectrumPrediction | None
    eigenvalues: np.ndarray = field(repr=False)  # every draw's squared singular values, pooled (for the plot)
    overflow_draws: int = 0  # draws whose network, J or λ overflowed float64
    underflow_draws: int = 0  # draws whose largest λ is below float64's smallest normal number (J = 0 included)
    limit_beyond: str | None = None  # "overflow" / "underflow": the limit's mean λ lies beyond float64

    @property
    def condition_note(self) -> str | None:
        if self.singular_draws:
            return (f"infinite: J is singular to float64 precision (s_min <= N eps s_max) in {self.singular_draws} "
                    "of the draws")
        if self.overflow_draws:
            return f"not computed: J overflowed float64 in {self.overflow_draws} of the draws"
        return None

    @property
    def range_note(self) -> str | None:
        """Where ``J`` or its limit leaves float64's range, in words (None where everything is in range)."""
        notes = []
        if self.overflow_draws:
            notes.append(f"J overflowed float64 (the network's values, J's entries or a squared singular value "
                         f"beyond {FLOAT_MAX:.3g}) in "
                         f"{self.overflow_draws} of the draws: λ is not finite there, so are its statistics")
        if self.underflow_draws:
            notes.append(f"the largest λ is below float64's smallest normal number {FLOAT_TINY:.3g} in "
                         f"{self.underflow_draws} of the draws (J underflowed, or is exactly 0): λ there is 0 or a "
                         "subnormal number, with few digits or none")
        if self.limit_beyond is not None and self.prediction is not None:
            log10 = math.fsum(math.log10(f.mean) for f in self.prediction.factors)
            notes.append(f"the limit's mean λ is 10^{log10:.6g}, {self.limit_beyond} in float64: not shown")
        return "; ".join(notes) or None

    def to_dict(self) -> dict[str, Any]:
        stats = {name: (self.stats[name].to_dict() if name in self.stats else None) for name in STATISTICS}
        return {
            "depth": self.depth,
            "label": self.label,
            "layer": self.layer,
            "shape": list(self.shape),
            "statistics": stats,
            "singular_draws": self.singular_draws,
            "condition_note": self.condition_note,
            "overflow_draws": self.overflow_draws,
            "underflow_draws": self.underflow_draws,
            "range_note": self.range_note,
            "prediction": None if self.prediction is None else self.prediction.to_dict(),
        }


@dataclass(frozen=True, eq=False)
class JacobianResult:
    """Everything ``normstats jacobian`` reports; ``to_dict`` is its JSON document."""

    version: str
    spec: str
    network: str  # the canonical spec of the network built (the weights as set)
    input: int
    init: str
    sigma_w2: float | None
    normprop: str
    draws: int
    inits: int
    seed: int
    depths: tuple[DepthSpectrum, ...]
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "normstats": self.version,
            "command": "jacobian",
            "limit": "infinite_width",
            "inputs": {"spec": self.spec, "network": self.network, "input": self.input, "init": self.init,
                       "sigma_w2": self.sigma_w2, "normprop": self.normprop, "draws": self.draws,
                       "inits": self.inits, "seed": self.seed},
            "metadata": dict(self.metadata),
            "depths": [d.to_dict() for d in self.depths],
        }


def stat(values: np.ndarray, reference: float | None, per_network: int) -> Stat:
    """The mean of per-draw ``values`` with its standard error: over draws when every draw has its own network
    (or there is one network: iid given it), else over the networks' means (``per_network`` draws each)."""
    v = np.asarray(values, dtype=float)
    if per_network > 1 and len(v) > per_network:
        v = v[: len(v) // per_network * per_network].reshape(-1, per_network).mean(axis=1)
    est = float(v.mean())
    # the spread of values scaled to 1 first: the squares of values near 1e-300 (or 1e300) underflow to 0 (or
    # overflow), and would give an se of 0 (or inf) to values that are all in range
    scale = float(np.max(np.abs(v))) if len(v) else 0.0
    if not (0.0 < scale < math.inf):
        scale = 1.0
    se = float((v / scale).std(ddof=1) * scale / math.sqrt(len(v))) if len(v) > 1 else math.nan
    return Stat(est, se, reference, None if reference is None else KIND)
