"""Result types of a width sweep (``normstats network SPEC --width 64,128,256``, :func:`normstats.width_sweep`): the
network run at every width (:class:`~normstats.output.results.network.NetworkResult`), and per layer the slope of
the log of each scale statistic against log width (:class:`Slope`, fitted by
:func:`normstats.networks.width_sweep.fit_slope`), and their dict form (the JSON document).

A slope of 0 says the layer's scale does not depend on width (muP's coordinate check at initialisation, Yang et al.
2022, "Tensor Programs V"); -1/2 that it falls as ``1/sqrt(width)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from normstats.output.results.network import BAND, NetworkResult
from normstats.output.results.numbers import pm
from normstats.output.results.table import _num

#: The statistics whose log is fitted against log width: scales (positive in every draw), not means, cosines or
#: entropies, whose log means nothing. ``branch_var`` and the channel figures are variances: their slope is twice
#: that of the corresponding std.
SLOPE_STATS = ("fp_std", "bp_std", "branch_var", "channel_mean_sq", "channel_var", "attention_logit_std")
#: Most widths of one sweep (each is a whole network run).
MAX_WIDTHS = 8
#: How the slope and its se are computed, as the documents say it.
SLOPE_METHOD = (
    "weighted least squares of log(estimate) on log(width), each point weighted by 1/s^2 with s = se/estimate "
    "(the delta-method se of the log); the slope's se is 1/sqrt(sum w (x - xbar_w)^2), which takes the widths' "
    "errors as independent; chi2 = sum w (log estimate - fit)^2 on widths - 2 degrees of freedom"
)


@dataclass(frozen=True)
class Slope:
    """``d log(statistic) / d log(width)`` with its se (None, with ``note``, where no log can be taken); ``chi2``
    and ``dof`` of the fit (a chi2 far above dof: log std is not a line in log width over these widths). ``exact``:
    every point is exact in every draw (se 0) and they lie on a line, so the slope is exact too."""

    estimate: float | None
    se: float | None
    chi2: float | None
    dof: int
    exact: bool = False
    note: str | None = None

    @property
    def z(self) -> float | None:
        """The slope over its se (how many se from "does not depend on width"); None without a usable se."""
        if self.estimate is None or not self.se:
            return None
        return self.estimate / self.se

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"slope": _num(self.estimate), "se": _num(self.se), "chi2": _num(self.chi2),
                               "dof": self.dof, "exact": self.exact}
        if self.note is not None:
            out["note"] = self.note
        return out


@dataclass(frozen=True)
class LayerSlopes:
    """One layer (or residual block), by its position in the spec, and the slope of each of its scale
    statistics."""

    index: str
    layer: str
    slopes: dict[str, Slope]

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "layer": self.layer,
                "slopes": {name: slope.to_dict() for name, slope in self.slopes.items()}}


@dataclass(frozen=True)
class WidthSweepResult:
    """The runs of one spec at each width (same seed, same input shape) and every layer's slopes. After an
    interrupted run, ``runs`` holds the widths run so far (the last partial) and the slopes are over those."""

    widths: tuple[int, ...]
    runs: tuple[NetworkResult, ...]
    layers: tuple[LayerSlopes, ...]

    @property
    def first(self) -> NetworkResult:
        return self.runs[0]

    @property
    def spec(self) -> str:
        return self.first.spec

    @property
    def partial(self) -> bool:
        return len(self.runs) < len(self.widths) or any(r.partial for r in self.runs)

    @property
    def run_widths(self) -> tuple[int, ...]:
        """The widths that were run (all of :attr:`widths` unless interrupted)."""
        return self.widths[: len(self.runs)]

    def stat(self, position: int, name: str) -> list[Any]:
        """The statistic ``name`` of the layer at ``position`` (in spec order) at every width run (None where the
        layer has none)."""
        return [run.layers[position].stats.get(name) for run in self.runs]

    def to_dict(self, band: tuple[float, float] = BAND) -> dict[str, Any]:
        first = self.first
        return {
            "normstats": first.version,
            "seed": first.seed,
            "network": first.spec,
            "input": list(first.input),
            "widths": list(self.widths),
            "normprop": first.normprop,
            "partial": self.partial,
            "slope_method": SLOPE_METHOD,
            "slopes": [layer.to_dict() for layer in self.layers],
            "runs": [run.to_dict(band) for run in self.runs],
        }


def slope_text(slope: Slope | None) -> str:
    """``-0.498 ± 0.012`` (the se to two significant digits), ``0 (exact)``, the slope alone where it has no se,
    or ``—`` where there is none."""
    if slope is None or slope.estimate is None:
        return "—"
    if slope.exact:
        return f"{slope.estimate:.6g} (exact)"
    if slope.se is None or not math.isfinite(slope.se):
        return f"{slope.estimate:.4g} (no se)"
    return pm(slope.estimate, slope.se)


#: How the tables name each statistic.
STAT_LABELS = {"fp_std": "fp std", "bp_std": "bp std", "branch_var": "branch var",
               "channel_mean_sq": "avg sq channel mean", "channel_var": "avg channel var",
               "attention_logit_std": "logit std"}


def title_text(result: WidthSweepResult) -> str:
    """The sweep's title: spec, input, widths, NormProp mode, draws per width, networks and seed."""
    first = result.first
    rho = f" · input correlation {first.input_correlation:g}" if first.input_correlation else ""
    networks = f"{first.inits} networks" if first.inits > 1 else "one network"
    draws = {r.draws for r in result.runs}
    drawn = f"{first.draws:,}" if len(draws) == 1 else ", ".join(f"{r.draws:,}" for r in result.runs)
    return (f"width sweep {first.spec} · input {'x'.join(map(str, first.input))}{rho} · widths "
            f"{','.join(map(str, result.widths))} · normprop {first.normprop} · {drawn} draws a width over "
            f"{networks} (seed {first.seed})")


def sweep_lines(result: WidthSweepResult) -> list[str]:
    """The closing lines: what the slope is and how it was fitted, and what ``± se`` describes."""
    first = result.first
    lines = [
        "slope: d log(statistic) / d log(width) over the widths (0: the scale does not depend on width; -0.5: it "
        "falls as 1/sqrt(width)); a variance's slope is twice its std's",
        f"fit: {SLOPE_METHOD}",
        f"every width runs seed {first.seed} (the same input draws); "
        + ("each se includes the init-to-init spread of its width's networks" if first.inits > 1
           else "one network a width: its se leaves out the init-to-init spread, so a slope compares those "
                "networks, not the architecture (--inits K)"),
    ]
    if result.partial:
        lines.append(f"interrupted: widths {','.join(map(str, result.run_widths))} run, the last partially; the "
                     "slopes are over those")
    return lines
