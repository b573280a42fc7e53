"""The rich table of ``normstats jacobian``: per depth, the spectrum's statistics with their se beside the
free-probability (infinite-width) prediction and the difference from it."""

from __future__ import annotations

import math
from typing import Any

from normstats.output.results import numbers as fmt
from normstats.output.results.jacobian import JacobianResult

LABELS = {"mean": "mean λ", "variance": "var λ", "largest": "max λ", "log10_condition": "log10 cond"}


def title(result: JacobianResult) -> str:
    weights = f"init {result.init}" + ("" if result.sigma_w2 is None else f" · σw² = {result.sigma_w2:g}")
    nets = "a network per draw" if result.inits == result.draws else \
        f"{result.inits} network{'s' if result.inits > 1 else ''}"
    return (f"jacobian {result.spec} · input {result.input} · {weights} · normprop {result.normprop} · "
            f"{result.draws:,} draws · {nets} · seed {result.seed}")


def _pm(est: float, se: float) -> str:
    """``estimate ± se``; where the se is rounding (below 1e-12 of the value: an exact isometry) the estimate to 10
    digits and the se to one."""
    if math.isfinite(se) and 0.0 < se < 1e-12 * max(1.0, abs(est)):
        return f"{est:.10g} ± {se:.1g}"
    return fmt.pm(est, se)


def _diff(est: float, ref: float | None) -> str:
    if ref is None or not math.isfinite(ref):
        return "—"
    return f"{est - ref:+.3g}"


def jacobian_table(result: JacobianResult) -> Any:
    from rich.console import Group
    from rich.table import Table as RichTable
    from rich.text import Text

    t = RichTable(title=title(result), title_justify="left", header_style="bold", pad_edge=False)
    for i, col in enumerate(("depth", "layer", "λ = s²", "estimate ± se", "free prob. (∞ width)", "Δ")):
        t.add_column(col, justify="left" if i < 3 else "right", no_wrap=True)
    for d in result.depths:
        first = True
        for name, label in LABELS.items():
            head = (str(d.depth), f"{d.label} {d.layer}") if first else ("", "")
            first = False
            if name not in d.stats:
                t.add_row(*head, label, "inf (singular J)", _ref(d, name), "—")
                continue
            s = d.stats[name]
            shown = _pm(s.estimate, s.se) if s.status == "finite" else s.status
            t.add_row(*head, label, shown, fmt.ref(s.reference), _diff(s.estimate, s.reference))
        if d.prediction is not None:
            t.add_row("", "", "var/mean²", _pm(*_rel(d)), fmt.ref(d.prediction.relative_variance), "")
        t.add_section()
    notes = [f"depth {d.depth}: condition number {d.condition_note}" for d in result.depths if d.condition_note]
    legend = Text(
        "λ: squared singular values of J (per draw: their mean, variance over the N values, largest, log10 of "
        "s_max/s_min), averaged over draws. free prob.: the infinite-width limit (Pennington, Schoenholz and "
        "Ganguli 2017, 2018), a limit and not a test (Δ = estimate - limit); — where none is computed.",
        style="dim",
    )
    return Group(t, *(Text(n, style="yellow") for n in notes), legend)


def _ref(d: Any, name: str) -> str:
    return "—" if d.prediction is None else fmt.ref(d.prediction.reference(name))


def _rel(d: Any) -> tuple[float, float]:
    """The measured relative variance ``var / mean^2`` (delta method on the two estimates; their se combined as
    if independent, a rough guide)."""
    m, v = d.stats["mean"], d.stats["variance"]
    r = v.estimate / m.estimate**2
    se = abs(r) * math.sqrt((v.se / v.estimate) ** 2 + (2 * m.se / m.estimate) ** 2) if v.estimate else 0.0
    return r, se
