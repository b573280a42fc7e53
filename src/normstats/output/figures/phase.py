"""The phase-diagram figure of ``normstats meanfield --plot``: over ``(sigma_w^2, sigma_b^2)``, the ordered phase
(``chi_1 < 1``) and the chaotic phase (``chi_1 > 1``) coloured, the edge of chaos (``chi_1 = 1``) as a thick
line, the depth scale ``xi_c`` as labelled contours on log-spaced levels, the region without a fixed point
(``q*`` unbounded) grey, and the chosen ``(sigma_w^2, sigma_b^2)`` marked (with ``--critical``, the edge found,
or where none was found the point analysed instead, labelled so); the layout of Schoenholz et al. 2017,
Fig. 1, and of neural-tangents' phase-diagram notebook."""

from __future__ import annotations

import numpy as np

from normstats.errors import NormstatsError
from normstats.output.results.meanfield import MeanFieldResult
from normstats.output.figures.backend import pyplot, save

#: The phases' colours (RGB), which the tests look for in the PNG.
ORDERED = (0.60, 0.76, 0.93)
CHAOTIC = (0.96, 0.68, 0.56)
UNBOUNDED = (0.80, 0.80, 0.80)
EDGE = (0.10, 0.10, 0.10)
POINT = (0.85, 0.10, 0.45)
#: Contour levels of xi_c (layers). xi_c diverges at the edge of chaos: it is contoured as log10 of
#: min(xi_c, _CAP), which is continuous across the edge, so the grid's cells there draw no artefacts.
LEVELS = (0.5, 1, 2, 5, 10, 20, 50)
_CAP = 1e3


def plot_phase_diagram(result: MeanFieldResult, path: str) -> None:
    grid = result.phase_diagram
    if grid is None:
        raise NormstatsError("plot_phase_diagram needs a result computed with phase_diagram=True")
    plt = pyplot()
    ws, bs = grid.sigma_w2, grid.sigma_b2
    fig, ax = plt.subplots(figsize=(7.2, 5.0))
    chi = np.where(np.isfinite(grid.chi_1), grid.chi_1, np.nan)
    top = max(2.0, float(np.nanmax(chi)) * 1.01) if np.any(np.isfinite(chi)) else 2.0
    if np.any(np.isfinite(chi)):  # the phases, split along the same interpolated chi_1 = 1 as the edge line
        ax.contourf(ws, bs, chi, levels=[-1.0, 1.0, top], colors=[ORDERED, CHAOTIC])
    if grid.unbounded.any():
        from matplotlib.colors import ListedColormap

        mask = np.where(grid.unbounded, 1.0, np.nan)
        ax.pcolormesh(ws, bs, mask, cmap=ListedColormap([UNBOUNDED]), shading="nearest")
    with np.errstate(all="ignore"):
        xi = np.log10(np.minimum(np.where(np.isnan(grid.xi_c), np.nan, grid.xi_c), _CAP))
    finite = xi[np.isfinite(xi)]
    levels = [np.log10(v) for v in LEVELS if finite.size and finite.min() < np.log10(v) < finite.max()]
    if levels:
        lines = ax.contour(ws, bs, xi, levels=levels, colors=[(0.25, 0.25, 0.25)], linewidths=0.8)
        ax.clabel(lines, fmt=lambda v: f"ξc={10 ** v:.3g}", fontsize=7)
    if np.any(np.isfinite(chi)) and np.nanmin(chi) < 1.0 < np.nanmax(chi):
        ax.contour(ws, bs, chi, levels=[1.0], colors=[EDGE], linewidths=2.2)
    edge = result.edge
    if edge is not None and edge.sigma_w2 is not None and np.isfinite(edge.sigma_w2):
        ax.plot([edge.sigma_w2], [edge.sigma_b2], "o", color=EDGE, ms=6, label="edge of chaos")
    where = "" if edge is None or edge.found else " (no edge of chaos: " + (
        "at the jump of q*)" if edge.jumps else "the range's end nearest it)")
    unstable = " (unstable q*)" if result.fixed_point.stable is False else ""
    ax.plot([result.sigma_w2], [result.sigma_b2], "*", color=POINT, ms=13,
            label=f"σw²={result.sigma_w2:g}, σb²={result.sigma_b2:g}: {result.fixed_point.phase}{unstable}{where}")
    from matplotlib.patches import Patch

    handles, _ = ax.get_legend_handles_labels()
    handles = [Patch(color=ORDERED, label="ordered (χ1 < 1)"), Patch(color=CHAOTIC, label="chaotic (χ1 > 1)"),
               *([Patch(color=UNBOUNDED, label="no fixed point (q* → ∞)")] if grid.unbounded.any() else []),
               plt.Line2D([], [], color=EDGE, lw=2.2, label="edge of chaos (χ1 = 1)"), *handles]
    ax.legend(handles=handles, loc="upper left", fontsize=8, framealpha=0.9)
    ax.set_xlabel("σw² (weight variance × fan-in)")
    ax.set_ylabel("σb² (bias variance)")
    ax.set_title(f"{result.label}: mean-field phase diagram (infinite width), contours: depth scale ξc")
    ax.title.set_fontsize(10)
    fig.tight_layout()
    save(fig, path)
