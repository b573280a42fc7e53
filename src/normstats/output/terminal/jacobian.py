"""The rich table of ``normstats jacobian``: per depth, the spectrum's statistics with their se beside the
free-probability (infinite-width) prediction and the difference from it."""

from __future__ import annotations

import math
from typing import Any

from normstats.output.results import numbers as fmt
from normstats.output.results.jacobian import FLOAT_MAX, FLOAT_TINY, JacobianResult

LABELS = {"mean": "mean λ", "variance": "var λ", "largest": "max λ", "log10_condition": "log10 cond"}


def title(result: JacobianResult) -> str:
    weights = f"init {result.init}" + ("" if result.sigma_w2 is None else f" · σw² = {result.sigma_w2:g}")
    nets = "a network per draw" if result.inits == result.draws else \
        f"{result.inits} network{'s' if result.inits > 1 else ''}"
    return (f"jacobian {result.spec} · input {result.input} · {weights} · normprop {result.normprop} · "
            f"{result.draws:,} draws · {nets} · seed {result.seed}")


#: From this size on an estimate and its se are written in scientific notation (λ reaches 1e300), not with
#: every integer digit.
LARGE = 1e12


def _pm(est: float, se: float) -> str:
    """``estimate ± se``; where the se is rounding (below 1e-12 of the value: an exact isometry) the estimate to 10
    digits and the se to one; a large one in scientific notation, the estimate to the se's second digit."""
    if math.isfinite(se) and 0.0 < se < 1e-12 * abs(est):
        return f"{est:.10g} ± {se:.1g}"
    if math.isfinite(se) and math.isfinite(est) and max(abs(est), se) >= LARGE:
        if se == 0.0:
            return f"{est:.9e} ± 0"
        digits = min(10, max(1, math.floor(math.log10(max(abs(est), se))) - math.floor(math.log10(se)) + 1))
        return f"{est:.{digits}e} ± {se:.1e}"
    return fmt.pm(est, se)


def _diff(est: float, ref: float | None) -> str:
    if ref is None or not math.isfinite(ref):
        return "—"
    return f"{est - ref:+.3g}"


def jacobian_table(result: JacobianResult, width: int | None = None) -> Any:
    """The table, its notes and legend; where the table is wider than ``width`` columns (a terminal's; None: any
    width), a stacked list instead, a line per figure, whose values wrap rather than being cut."""
    from rich.console import Group
    from rich.text import Text

    from normstats.output.terminal.layers import min_width

    table = _table(result)
    if width is not None and min_width(table) > width:
        table = _stacked(result)
    notes = [f"depth {d.depth}: condition number {d.condition_note}" for d in result.depths if d.condition_note]
    notes += [f"depth {d.depth}: {d.range_note}" for d in result.depths if d.range_note]
    legend = Text(
        "λ: squared singular values of J (per draw: their mean, variance over the N values, largest, log10 of "
        "s_max/s_min), averaged over draws. free prob.: the infinite-width limit (Pennington, Schoenholz and "
        "Ganguli 2017, 2018), a limit and not a test (Δ = estimate - limit); — where none is computed.",
        style="dim",
    )
    return Group(table, *(Text(n, style="yellow") for n in notes), legend)


def _figures(d: Any) -> list[tuple[str, str, str, str]]:
    """``(statistic, shown, limit, Δ)`` per line of depth ``d``."""
    out = []
    for name, label in LABELS.items():
        if name not in d.stats:
            missing = "inf (singular J)" if d.singular_draws else "— (J overflowed)"
            out.append((label, missing, _ref(d, name), "—"))
            continue
        s = d.stats[name]
        out.append((label, _shown(d, s), _ref(d, name), _diff(s.estimate, s.reference)))
    if d.prediction is not None:
        rel = _rel(d)
        out.append(("var/mean²", "—" if rel is None else _pm(*rel), fmt.ref(d.prediction.relative_variance), ""))
    return out


def _table(result: JacobianResult) -> Any:
    from rich.table import Table as RichTable

    t = RichTable(title=title(result), title_justify="left", header_style="bold", pad_edge=False)
    for i, col in enumerate(("depth", "layer", "λ = s²", "estimate ± se", "free prob. (∞ width)", "Δ")):
        t.add_column(col, justify="left" if i < 3 else "right", no_wrap=True)
    for d in result.depths:
        for i, figure in enumerate(_figures(d)):
            head = (str(d.depth), f"{d.label} {d.layer}") if i == 0 else ("", "")
            t.add_row(*head, *figure)
        t.add_section()
    return t


def _stacked(result: JacobianResult) -> Any:
    """Per depth its layer, then per statistic the estimate with the limit and Δ indented under it."""
    from rich import box
    from rich.table import Table as RichTable
    from rich.text import Text

    t = RichTable(title=title(result), title_justify="left", header_style="bold", box=box.SIMPLE_HEAD,
                  padding=(0, 1, 0, 0), pad_edge=False, show_edge=False)
    t.add_column("λ = s²", overflow="fold")
    t.add_column("value", overflow="fold")
    for d in result.depths:
        t.add_row(Text(f"depth {d.depth}", style="bold"), f"{d.label} {d.layer}", end_section=True)
        figures = _figures(d)
        for i, (label, shown, limit, diff) in enumerate(figures):
            t.add_row(label, shown)
            t.add_row("  free prob.", limit)
            t.add_row("  Δ", diff or "—", end_section=i == len(figures) - 1)
    return t


def _shown(d: Any, s: Any) -> str:
    """``estimate ± se``, or in words where float64 could not hold it: overflow (J's values beyond its largest
    number) or underflow (every draw's λ below its smallest normal number, so the estimate is 0 or subnormal)."""
    if s.status != "finite":  # λ's moments are finite: inf is float64's overflow (of J, or of λ² in var λ)
        return f"overflow (> {FLOAT_MAX:.3g})" if s.estimate == math.inf else s.status
    if d.underflow_draws and abs(s.estimate) < FLOAT_TINY or s is d.stats["variance"] and _variance_lost(d):
        return f"underflow (< {FLOAT_TINY:.3g})"
    return _pm(s.estimate, s.se)


def _variance_lost(d: Any) -> bool:
    """Whether var λ, a mean of squares of λ's, lies below float64's smallest normal number: where the largest λ
    is below its square root (1.5e-154), every square is, and the variance has no digits left."""
    largest = d.stats["largest"]
    return largest.status == "finite" and largest.estimate < math.sqrt(FLOAT_TINY)


def _ref(d: Any, name: str) -> str:
    if d.prediction is None:
        return "—"
    if d.limit_beyond is not None and name != "log10_condition":
        return d.limit_beyond  # the limit's float value is an artefact; the note gives its power of ten
    value = d.prediction.reference(name)
    return "overflow" if value == math.inf else fmt.ref(value)


def _rel(d: Any) -> tuple[float, float] | None:
    """The measured relative variance ``var / mean^2`` (delta method on the two estimates; their se combined as
    if independent, a rough guide); None where the mean is 0 or either is not finite."""
    m, v = d.stats["mean"], d.stats["variance"]
    if not (m.status == v.status == "finite") or not m.estimate**2 >= FLOAT_TINY:
        return None  # mean^2 beyond float64 (and var with it): no ratio of theirs is worth a digit
    r = v.estimate / m.estimate**2
    se = abs(r) * math.sqrt((v.se / v.estimate) ** 2 + (2 * m.se / m.estimate) ** 2) if v.estimate else 0.0
    return r, se
