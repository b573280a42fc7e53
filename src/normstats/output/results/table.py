"""Result types: :class:`Stat` (one statistic), :class:`Row` (one layer), :class:`Table` (a run of rows),
:class:`LayerInfo` (a registered layer as ``normstats list`` shows it), and their dict form, which is the JSON
document described in the README."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from normstats.engine.blocks import DEFAULT_ESTIMATOR, QMC_T95
from normstats.engine.exactness import agrees
from normstats.engine.moments import Z95, Tally
from normstats.exact.references import Reference
from normstats.layers.base import DEFAULT_SAMPLER
from normstats.params import Param
from normstats.published.conventions import CONVENTIONS, constants
from normstats.published.figures import Figure
from normstats.stats import STATS

#: Reference kinds that are limits (infinite width), not exact values at the settings run: shown beside the
#: estimate with their difference, never z-tested.
LIMIT_KINDS = ("mean_field", "free_probability")


@dataclass(frozen=True)
class Stat:
    """An estimate with its standard error, 95% interval, reference, published figure and z-score."""

    estimate: float
    se: float
    reference: float | None = None
    reference_kind: str | None = None
    figure: Figure | None = field(default=None, compare=False)
    #: The 97.5% quantile the interval is built with: the normal's for Monte Carlo; Student's t with 15
    #: degrees of freedom for qmc, whose se comes from 16 replicates (:data:`~normstats.engine.blocks.QMC_T95`).
    quantile: float = field(default=Z95, compare=False)
    #: Exact in every draw (:mod:`normstats.engine.exactness`): ``estimate`` is the exact value, ``se`` is 0, and
    #: the statistic is never z-tested.
    exact: bool = False
    #: How ``exact`` is known: ``declared`` by the layer (its algebra), or ``rounding``: found the same in every
    #: draw to float rounding (a PyTorch model's statistic, :func:`normstats.models.run.rounding_exact`).
    exact_by: str = field(default="declared", compare=False)

    @property
    def ci95(self) -> tuple[float, float]:
        return (self.estimate - self.quantile * self.se, self.estimate + self.quantile * self.se)

    @property
    def published(self) -> float | None:
        return None if self.figure is None else self.figure.value

    @property
    def published_agrees(self) -> bool | None:
        """Whether the published figure matches the reference to its printed precision (None: nothing to
        compare)."""
        if self.figure is None or self.reference is None:
            return None
        return self.figure.agrees(self.reference)

    @property
    def status(self) -> str:
        """``finite``, or ``infinite`` / ``undefined`` where the reference is infinite / not a number (the
        moment diverges, or has no value) or the estimate is not finite (overflow): then the estimate, its se
        and z mean nothing and are never shown as numbers."""
        for value in (self.reference, self.estimate):
            if value is not None and not math.isfinite(value):
                return "undefined" if math.isnan(value) else "infinite" if value > 0 else "-infinite"
        return "finite"

    @property
    def reason(self) -> str | None:
        """Why :attr:`status` is not ``finite``, in words (None when it is)."""
        if self.status == "finite":
            return None
        if self.reference is not None and not math.isfinite(self.reference):
            what = "diverges" if math.isinf(self.reference) else "has no value (its integral does not converge)"
            return f"the exact moment {what}, so a sample estimate of it means nothing"
        return "the estimate is not finite (the layer's values overflow)"

    @property
    def z(self) -> float | None:
        """``(estimate - reference) / se``; None without a reference or a usable standard error, and for a
        statistic exact in every draw (no noise to test)."""
        if (self.exact or self.reference is None or not math.isfinite(self.se) or self.status != "finite"
                or self.reference_kind in LIMIT_KINDS):
            return None
        diff = self.estimate - self.reference
        if abs(diff) <= 1e-12 * max(1.0, abs(self.reference)):
            # Rounding, not sampling: a statistic that is the same in every draw but not declared exact (a linear
            # layer's conditional bp std) has an se made of rounding errors, and their ratio means nothing.
            return 0.0
        if self.se == 0.0:
            return None
        return diff / self.se

    @property
    def difference(self) -> float | None:
        """``estimate - reference`` (what a limit reference is shown with instead of a z)."""
        return None if self.reference is None else self.estimate - self.reference

    @property
    def best(self) -> float:
        """The reference where there is one, the estimate otherwise."""
        return self.estimate if self.reference is None else self.reference

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "estimate": _num(self.estimate),
            "se": _num(self.se),
            "ci95": [_num(c) for c in self.ci95],
            "reference": _num(self.reference),
            "reference_kind": self.reference_kind,
            "published": _num(self.published),
            "published_text": None if self.figure is None else self.figure.text,
            "published_agrees": self.published_agrees,
            "z": _num(self.z),
        }
        if self.exact:
            out["exact"] = True
        if self.status != "finite":  # the numbers are null; these two say why
            out.update(estimate=None, se=None, ci95=[None, None], z=None, status=self.status, reason=self.reason)
        return out


@dataclass(frozen=True)
class Row:
    """The four statistics of one layer with its parameters."""

    layer: str
    params: dict[str, Any]
    samples: int
    fp_mean: Stat
    fp_std: Stat
    bp_mean: Stat
    bp_std: Stat
    method: str = "mc"
    estimator: str = DEFAULT_ESTIMATOR  # how the bp statistics were estimated (see normstats.engine.blocks)
    stop: str = "samples"  # what ended the run: samples, target-se, max-time or interrupted
    sampler: str = DEFAULT_SAMPLER  # the layer's own passes, or an exact shortcut (normstats.layers.base)

    @property
    def partial(self) -> bool:
        """Whether the run was interrupted (the estimates and their se are valid for the draws taken)."""
        return self.stop == "interrupted"

    def stats(self) -> dict[str, Stat]:
        return {name: getattr(self, name) for name in STATS}

    def describe_params(self) -> str:
        return ";".join(f"{k}={v}" for k, v in self.params.items())

    def constants(self) -> dict[str, float | None]:
        """NormProp's normalizing constants: ``(y - fp_shift) * fp_scale`` has mean 0 and std 1, and
        ``dx * bp_scale`` has std 1. From the references where they exist, the estimates otherwise. Every
        convention's constants: :func:`normstats.published.conventions.constants`."""
        values = constants(self)
        return {key: values[key] for key in CONVENTIONS["normprop"]}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"layer": self.layer, "params": dict(self.params), "samples": self.samples}
        out.update({name: stat.to_dict() for name, stat in self.stats().items()})
        out.update(
            {"method": self.method, "estimator": self.estimator, "sampler": self.sampler, "stop": self.stop,
             "partial": self.partial}
        )
        return out


@dataclass(frozen=True)
class Table:
    """Rows computed with one seed; ``to_dict`` is the JSON document.

    ``metadata`` records what is needed to reproduce the numbers (library versions, generator, method, seed,
    samples) and nothing that changes from run to run, such as a timestamp: the same inputs give the same
    bytes.
    """

    version: str
    seed: int
    rows: tuple[Row, ...]
    metadata: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False  # Ctrl-C came between rows: the rows after the last one are missing

    @property
    def partial(self) -> bool:
        return self.interrupted or any(r.partial for r in self.rows)

    def to_dict(self) -> dict[str, Any]:
        return {
            "normstats": self.version,
            "seed": self.seed,
            "metadata": dict(self.metadata),
            "rows": [r.to_dict() for r in self.rows],
            "partial": self.partial,
        }


def make_stats(
    fp: Tally,
    bp: Tally,
    references: dict[str, Reference | None],
    figures: dict[str, Figure],
) -> dict[str, Stat]:
    """The four :class:`Stat` of a layer from its tallies, references and published figures."""
    estimates = {
        "fp_mean": (fp.mean, fp.se_mean()),
        "fp_std": (fp.std, fp.se_std()),
        "bp_mean": (bp.mean, bp.se_mean()),
        "bp_std": (bp.std, bp.se_std()),
    }
    return stats_from_estimates(estimates, references, figures)


def stats_from_estimates(
    estimates: dict[str, tuple[float, float]],
    references: dict[str, Reference | None],
    figures: dict[str, Figure],
    method: str = "mc",
    exact: dict[str, float] | None = None,
) -> dict[str, Stat]:
    """The four :class:`Stat` of a layer from ``{statistic: (estimate, se)}`` (``method``: how the se was
    estimated, which sets the interval's quantile). ``exact``: ``{statistic: value}`` of the statistics exact
    in every draw (:func:`normstats.engine.exactness.exact_statistics`); one whose estimate is that value up to
    rounding is reported as the value with se 0 and ``exact=True``, one that is not keeps its estimate, se and z
    (a declaration the run contradicts is shown, not hidden)."""
    exact = exact or {}
    out = {}
    for name, (estimate, se) in estimates.items():
        ref = references.get(name)
        is_exact = name in exact and agrees(estimate, exact[name])
        out[name] = Stat(
            exact[name] if is_exact else estimate,
            0.0 if is_exact else se,
            None if ref is None else ref.value,
            None if ref is None else ref.kind,
            figures.get(name),
            quantile=interval_quantile(method),
            exact=is_exact,
        )
    return out


def interval_quantile(method: str) -> float:
    """The 97.5% quantile of a 95% interval: the normal's, or for ``qmc`` Student's t on REPLICATES - 1
    degrees of freedom (the se is the spread of the replicates)."""
    return QMC_T95 if method == "qmc" else Z95


def _num(x: float | None) -> float | None:
    """JSON has no NaN or infinity: those become null."""
    if x is None or not math.isfinite(x):
        return None
    return float(x)


@dataclass(frozen=True)
class LayerInfo:
    """What ``normstats list`` shows of a registered layer."""

    name: str
    summary: str
    aliases: tuple[str, ...]
    params: tuple[Param, ...]
    reference_kinds: dict[str, str | None]  # per statistic, at the default parameters

    def to_dict(self) -> dict[str, Any]:
        """The JSON form printed by ``normstats list --format json``."""
        return {
            "layer": self.name,
            "aliases": list(self.aliases),
            "summary": self.summary,
            "params": [
                {"name": p.name, "option": p.option, "type": p.type.__name__, "default": p.default,
                 "allowed": p.allowed(), "help": p.help}
                for p in self.params
            ],
            "reference_kind": dict(self.reference_kinds),
        }

    @property
    def reference_summary(self) -> str:
        kinds = [k for k in dict.fromkeys(self.reference_kinds.values()) if k]
        missing = [s for s, k in self.reference_kinds.items() if k is None]
        text = " + ".join(k.replace("_", " ") for k in kinds) or "none"
        return text + (f" (none for {', '.join(missing)})" if missing and kinds else "")
