"""Width sweeps, a coordinate check at initialisation: one spec run at several widths (``--width 64,128,256``; the
width is the ``--width`` of each run, so the hidden layers change width while the input shape stays, as muP's
coordinate check does), and per layer the slope of the log of each scale statistic against log width.

The fit (:func:`fit_slope`) is weighted least squares of ``y_i = log(estimate_i)`` on ``x_i = log(width_i)``:
by the delta method the se of ``y_i`` is ``s_i = se_i / estimate_i`` (valid while ``se_i`` is small beside the
estimate), the weights are ``w_i = 1 / s_i^2``, and with ``xbar = sum w x / sum w`` the slope is
``sum w (x - xbar)(y - ybar) / Sxx`` with ``Sxx = sum w (x - xbar)^2`` and its se ``1 / sqrt(Sxx)``: the se of a
fit with known variances. ``chi2 = sum w (y - fit)^2`` on ``n - 2`` degrees of freedom says whether log std is a
line over these widths. The se takes the widths' errors as independent, though the runs share the seed (the
same input draws, as a coordinate check compares them). Measured over 40 seeds of ``4*(linear relu)`` at widths
64, 128, 256 (200 draws over 8 inits a width), ``slope / se`` of the hidden layers had sd 0.93 (fp std) and 1.14
(bp std) about their means (0.22 each: finite-width bias). A t on 7 degrees of freedom, the spread an se from 8
inits gives, has sd 1.18, so the se is about right.

Layers line up across widths by their position in the spec (the same spec gives the same labels at every
width). A statistic exact in every draw (se 0 at every width, such as a layer norm's fp std) gets the ordinary
least-squares slope, marked exact when the points lie on a line.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from normstats.errors import NormstatsError
from normstats.networks.build import MAX_WIDTH, Network
from normstats.output.results.network import NetworkResult
from normstats.output.results.width_sweep import MAX_WIDTHS, SLOPE_STATS, LayerSlopes, Slope, WidthSweepResult

#: What a width sweep cannot be combined with, and why (the CLI's ``--width`` help says it).
NOT_WITH_SWEEP = {
    "max_time": "--max-time (a time budget is the sweep's or each width's: give --samples or --target-se)",
}


def parse_widths(value: Any) -> tuple[int, ...]:
    """``--width``: one width (``128``, ``"128"``) or a comma list (``"64,128,256"``, ``[64, 128, 256]``) of
    distinct positive integers, at most :data:`MAX_WIDTHS` of them. The order is kept (the slope does not
    depend on it)."""
    if isinstance(value, (list, tuple)):
        parts: list[Any] = list(value)
        shown = ",".join(str(v) for v in value)
    else:
        shown = str(value)
        parts = shown.split(",") if isinstance(value, str) else [value]
    widths = []
    for part in parts:
        if isinstance(part, bool) or isinstance(part, float):
            width = None
        elif isinstance(part, int):
            width = part
        else:
            text = str(part).strip()
            width = int(text) if text.lstrip("+-").isdigit() else None
        if width is None:
            raise NormstatsError(f"--width must be a positive integer or a comma list of them (64,128,256); got "
                                 f"{shown!r}")
        if not 1 <= width <= MAX_WIDTH:
            where = f" in {shown!r}" if len(parts) > 1 else ""
            raise NormstatsError(f"--width must be an integer in [1, {MAX_WIDTH}]; got {width}{where}")
        widths.append(width)
    if len(set(widths)) < len(widths):
        repeated = next(w for w in widths if widths.count(w) > 1)
        raise NormstatsError(f"--width lists {repeated} twice in {shown!r}: every width of a sweep once")
    if len(widths) > MAX_WIDTHS:
        raise NormstatsError(f"--width takes at most {MAX_WIDTHS} widths (each is a whole run); got {len(widths)} "
                             f"in {shown!r}")
    return tuple(widths)


def check_sweep(nets: Sequence[Network], widths: Sequence[int]) -> None:
    """A sweep's networks must differ: a spec where every linear (conv) names its own width, or that has none,
    would run the same network at every width."""
    def shapes(net: Network) -> list[Any]:
        return [getattr(item, "out_shape", None) or item.shape for item in net.walk()]

    if len({tuple(map(tuple, shapes(net))) for net in nets}) == 1:
        raise NormstatsError(f"--width {','.join(map(str, widths))}: no layer of '{nets[0].spec}' takes its width "
                             "from --width (a linear or conv that names no fan_out / out_channels), so every width "
                             "would run the same network")


def fit_slope(widths: Sequence[float], estimates: Sequence[float], ses: Sequence[float]) -> Slope:
    """The slope of ``log(estimate)`` against ``log(width)`` and its se (module docstring)."""
    n = len(widths)
    dof = n - 2
    est = np.asarray(estimates, dtype=float)
    se = np.asarray(ses, dtype=float)
    if n < 2:
        return Slope(None, None, None, max(dof, 0), note="one width: no slope")
    bad = [w for w, e, s in zip(widths, est, se) if not (math.isfinite(e) and e > 0 and math.isfinite(s))]
    if bad:
        return Slope(None, None, None, dof, note=f"the estimate is 0, negative or not finite at width {bad[0]}: "
                                                 "it has no log")
    x = np.log(np.asarray(widths, dtype=float))
    y = np.log(est)
    rel = se / est
    if not (rel > 0).any():  # exact in every draw at every width
        xc = x - x.mean()
        slope = float(xc @ (y - y.mean()) / (xc @ xc))
        residual = y - y.mean() - slope * xc
        on_line = bool(np.abs(residual).max() <= 1e-9)
        return Slope(slope, 0.0 if on_line else None, None, dof, exact=on_line,
                     note=None if on_line else "exact at every width but not a power law: no se")
    # an exact point among sampled ones: no better known than the best sampled one (never infinitely well)
    rel = np.where(rel > 0, rel, rel[rel > 0].min())
    w = 1.0 / rel**2
    xbar, ybar = (w @ x) / w.sum(), (w @ y) / w.sum()
    sxx = float(w @ (x - xbar) ** 2)
    slope = float(w @ ((x - xbar) * (y - ybar)) / sxx)
    residual = y - ybar - slope * (x - xbar)
    return Slope(slope, 1.0 / math.sqrt(sxx), float(w @ residual**2), dof)


def sweep_result(widths: Sequence[int], runs: Sequence[NetworkResult]) -> WidthSweepResult:
    """The sweep's result: every layer's slopes over the widths run (``runs[i]`` at ``widths[i]``)."""
    run_widths = list(widths)[: len(runs)]
    layers = []
    for position, row in enumerate(runs[0].layers):
        slopes = {}
        for name in SLOPE_STATS:
            stats = [run.layers[position].stats.get(name) for run in runs]
            if any(s is None for s in stats):
                continue
            slopes[name] = fit_slope(run_widths, [s.estimate for s in stats], [s.se for s in stats])
        layers.append(LayerSlopes(row.index, row.layer, slopes))
    return WidthSweepResult(tuple(widths), tuple(runs), tuple(layers))
