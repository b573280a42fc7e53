"""Rich tables for ``normstats meanfield``: the fixed point with its slopes and depth scales, the edge of chaos
(or, in words, why there is none and where the fixed point is analysed instead), and the per-layer trajectory
with the finite-width check beside it."""

from __future__ import annotations

import math

from rich.console import Group
from rich.table import Table as RichTable
from rich.text import Text

from normstats.output.results import numbers as fmt
from normstats.output.results.meanfield import MeanFieldResult


def value(x: float | None) -> str:
    """A mean-field number to 10 significant digits; ``inf`` said as such, ``—`` where undefined."""
    if x is None or math.isnan(x):
        return "—"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return fmt.ref(x)


def depth(x: float | None) -> str:
    if x is not None and math.isinf(x):
        return "inf (edge of chaos)"
    return value(x)


def meanfield(result: MeanFieldResult) -> Group:
    fp = result.fixed_point
    title = (f"{result.label} · σw² = {value(result.sigma_w2)} · σb² = {value(result.sigma_b2)} · "
             f"mean field (infinite width) · {fp.phase}" + ("" if fp.stable is not False else " (unstable q*)"))
    t = RichTable(title=title, title_justify="left", header_style="bold")
    t.add_column("quantity")
    t.add_column("value", justify="right")
    t.add_column("what it is")
    edge = result.edge
    if edge is not None:
        searched = f"σw² in [{edge.searched[0]:g}, {edge.searched[1]:g}]"
        if edge.found:
            t.add_row("σw² at the edge", value(edge.sigma_w2),
                      f"chi_1 = 1 at σb² = {edge.sigma_b2:g} (searched {searched})")
        else:
            t.add_row("edge of chaos", "none", f"no edge of chaos for {searched} at σb² = {edge.sigma_b2:g}, "
                      f"q0 = {result.q0:g}: {edge.reason}")
            t.add_row("σw² analysed", value(result.sigma_w2), f"in its stead: {edge.analysed_at}")
        for jump in edge.jumps:
            t.add_row("jump (no edge)", value(jump.sigma_w2),
                      f"q* {value(jump.q_below)} -> {value(jump.q_above)}, chi_1 {value(jump.chi_below)} -> "
                      f"{value(jump.chi_above)}: leaps over 1")
    stability = "" if fp.stable is None else (" (stable)" if fp.stable else " (UNSTABLE)")
    t.add_row("q*", value(fp.q_star), f"fixed point of the q-map reached from q0 = {result.q0:g}{stability}")
    if len(fp.fixed_points) > 1:
        listed = ", ".join(f"{value(p.q)} ({'stable' if p.stable else 'unstable'})" for p in fp.fixed_points)
        t.add_row("fixed points", str(len(fp.fixed_points)), f"of the q-map: {listed}")
    t.add_row("c*", value(fp.c_star), "fixed point of the C-map from c0 = 0 (attracts all of [0, 1))")
    if result.c0 is not None:
        t.add_row("c* from c0", value(fp.c_star_from_c0), f"where the C-map from c0 = {result.c0:g} ends")
    t.add_row("chi_1", value(fp.chi_1), Text("σw² E[f'(√q* z)²]: slope of the C-map at c = 1"))
    t.add_row("chi_c", value(fp.chi_c), "slope of the C-map at c*")
    t.add_row("chi_q", value(fp.chi_q), "slope of the q-map at q*")
    t.add_row("xi_q", depth(fp.xi_q), "-1/log|chi_q|: layers for q to settle by 1/e")
    t.add_row("xi_c", depth(fp.xi_c), "-1/log chi_c: layers for c to settle by 1/e")
    parts: list[RichTable | Text] = [t]
    if fp.note:
        parts.append(Text(f"note: {fp.note}", style="yellow"))
    parts.append(trajectory(result))
    return Group(*parts)


def trajectory(result: MeanFieldResult) -> RichTable:
    c0 = 0.0 if result.c0 is None else result.c0
    title = f"Trajectory from q0 = {result.q0:g}, c0 = {c0:g}"
    t = RichTable(title=title, title_justify="left", header_style="bold")
    t.add_column("layer", justify="right")
    t.add_column("q (mean field)", justify="right")
    t.add_column("c (mean field)", justify="right")
    check = result.width is not None
    if check:
        t.add_column(f"q ± se (width {result.width}, {result.networks} nets)", justify="right")
        t.add_column(f"c ± se (width {result.width}, {result.networks} nets)", justify="right")
    for p in result.trajectory:
        cells = [str(p.layer), value(p.q), value(p.c)]
        if check and p.finite is not None:
            cells += [fmt.pm(p.finite.q, p.finite.q_se), fmt.pm(p.finite.c, p.finite.c_se)]
        t.add_row(*cells)
    if check:
        t.caption = ("finite-width check: means over random networks; they differ from the infinite-width limit "
                     "by O(1/width), so no z is computed against it")
    return t
