"""Rich tables for the terminal: the statistics of one or more rows, their constants, and the layer list."""

from __future__ import annotations

from typing import Iterable

from rich.console import Group
from rich.table import Table as RichTable
from rich.text import Text

from normstats.exact.selfnorm import Solution
from normstats.output import formatting as fmt
from normstats.output.results import LayerInfo, Row
from normstats.published import conventions
from normstats.published.constants import AuditEntry
from normstats.published.figures import NORMPROP

#: |z| above this is flagged: the estimate sits that many standard errors from its reference.
Z_FLAG = 4.0


def stats_table(rows: Iterable[Row], title: str | None = None) -> RichTable:
    t = RichTable(title=title, title_justify="left", header_style="bold")
    for col in ("layer", "statistic", "estimate ± se", "reference", "kind", "z", "published"):
        t.add_column(col, justify="right" if col in ("estimate ± se", "reference", "z") else "left")
    for row in rows:
        stats = list(row.stats().items())
        labels = _layer_cells(row, len(stats))
        for i, (name, stat) in enumerate(stats):
            z_text = Text(fmt.z(stat.z))
            if stat.z is not None and abs(stat.z) > Z_FLAG:
                z_text.stylize("bold red")
            pub = Text(fmt.published(stat))
            if stat.published_agrees is False:
                pub.stylize("bold red")
            t.add_row(
                labels[i],
                fmt.stat_label(name),
                fmt.estimate(stat),
                fmt.ref(stat.reference),
                (stat.reference_kind or "—").replace("_", " "),
                z_text,
                pub,
                end_section=i == len(stats) - 1,
            )
    return t


def _layer_cells(row: Row, lines: int) -> list[str]:
    """The layer column of a row's lines: its name, then one parameter per line (the rest on the last)."""
    params = [f"{k}={v}" for k, v in row.params.items()]
    cells = [row.layer] + params[: lines - 2] + [" ".join(params[lines - 2 :])]
    return (cells + [""] * lines)[:lines]


def constants_table(rows: Iterable[Row], convention: str = "all") -> RichTable:
    """Each row's normalizing constants in ``convention`` (see :mod:`normstats.published.conventions`)."""
    keys = conventions.columns(convention)
    t = RichTable(title="Normalizing constants", title_justify="left", header_style="bold")
    for col in ("layer", "params", *(conventions.LABELS[k] for k in keys)):
        t.add_column(col, justify="left" if col in ("layer", "params") else "right")
    for row in rows:
        c = conventions.constants(row)
        t.add_row(row.layer, row.describe_params(), *(fmt.constant(c[k]) for k in keys))
    return t


def legend() -> Text:
    return Text(
        f"z = (estimate - reference) / se; |z| > {Z_FLAG:g} is shown in red. "
        "published: ✓ agrees with the reference to its printed precision, ✗ does not. "
        f"Published figures: {NORMPROP}. Constants use the reference where there is one: NormProp makes "
        "(y - fp shift) * fp scale and dx * bp scale unit-std; NFNet γ * y has unit std; "
        "gain = 1/sqrt(E y²) (He init).",
        style="dim",
    )


def results(rows: list[Row], title: str, convention: str = "all") -> Group:
    return Group(stats_table(rows, title), constants_table(rows, convention), legend())


def layer_list(infos: Iterable[LayerInfo]) -> RichTable:
    t = RichTable(header_style="bold", show_lines=True)
    for col in ("layer", "parameters (default; allowed)", "reference", "what it computes"):
        t.add_column(col)
    for info in infos:
        params = "\n".join(f"{p.option} {p.default_display()}; {p.allowed()}" for p in info.params) or "—"
        name = info.name + (f"\n(alias {', '.join(info.aliases)})" if info.aliases else "")
        t.add_row(name, params, info.reference_summary, info.summary)
    return t


def audit_table(entries: Iterable[AuditEntry]) -> Group:
    """Published constants against their references; ✗ marks a deviation beyond the printed precision."""
    t = RichTable(title="Published constants against exact references", title_justify="left",
                  header_style="bold")
    for col in ("convention", "activation", "published", "reference", "rel. deviation", "digits", "in precision"):
        t.add_column(col, justify="left" if col in ("convention", "activation", "in precision") else "right")
    sources: dict[str, int] = {}
    notes: list[str] = []
    for e in entries:
        c = e.constant
        mark = sources.setdefault(c.figure.source, len(sources) + 1)
        if e.note:
            notes.append(f"* {c.label()}: {e.note}")
        ok = {True: Text("✗ no", style="bold red"), False: Text("✓ yes"), None: Text("—")}[e.exceeds_precision]
        t.add_row(
            "NFNet γ" if c.convention == "nfnet_gamma" else "gain",
            f"{c.label()} [{mark}]" + (" *" if e.note else ""),
            c.figure.text,
            fmt.ref(e.reference),
            "—" if e.deviation is None else f"{e.deviation:+.2e}",
            "—" if e.digits is None else f"{e.digits:.1f}",
            ok,
        )
    legend_text = Text(
        "NFNet γ is compared with 1/std f(X), a PyTorch gain with 1/sqrt(E f(X)²), X ~ N(0, 1). digits = "
        "-log10 |rel. deviation|; in precision: within half a unit of the last printed digit (exact "
        "expressions: float rounding). PyTorch's tanh, sigmoid and selu gains are heuristics aimed at other "
        "goals, so their deviations are expected.\n"
        + "\n".join(f"[{i}] {src}" for src, i in sources.items()) + "\n" + "\n".join(notes),
        style="dim",
    )
    return Group(t, legend_text)


def solution_table(sol: Solution) -> RichTable:
    t = RichTable(title=f"Self-normalizing {sol.layer}: scale * f(X), X ~ N(0,1)", title_justify="left",
                  header_style="bold")
    t.add_column("quantity")
    t.add_column("value", justify="right")
    t.add_row("scale", fmt.constant(sol.scale))
    for k, v in sol.params.items():
        t.add_row(f"{k}{' (solved)' if sol.free and k == sol.free.replace('-', '_') else ''}", str(v))
    t.add_row("fp mean", f"{sol.fp_mean:.3g}")
    t.add_row("fp std", fmt.constant(sol.fp_std))
    t.caption = (
        "mean 0 solved by the free parameter, then E (scale f)² = 1" if sol.free else
        f"scale only ({sol.target}): a scale cannot move the mean, so fp mean stays where it is"
    )
    return t
