"""Rich tables for the terminal: the statistics of one or more rows, their constants, and the layer list."""

from __future__ import annotations

from typing import Iterable

from rich.console import Group
from rich.table import Table as RichTable
from rich.text import Text

from normstats import formatting as fmt
from normstats.api import LayerInfo
from normstats.published import NORMPROP
from normstats.results import Row

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
                fmt.pm(stat.estimate, stat.se),
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


def constants_table(rows: Iterable[Row]) -> RichTable:
    t = RichTable(
        title="Normalizing constants: (y - fp shift) * fp scale and dx * bp scale have unit std",
        title_justify="left",
        header_style="bold",
    )
    for col in ("layer", "params", "fp shift", "fp scale", "bp scale"):
        t.add_column(col, justify="left" if col in ("layer", "params") else "right")
    for row in rows:
        c = row.constants()
        t.add_row(row.layer, row.describe_params(), *(fmt.constant(c[k]) for k in ("fp_shift", "fp_scale", "bp_scale")))
    return t


def legend() -> Text:
    return Text(
        f"z = (estimate - reference) / se; |z| > {Z_FLAG:g} is shown in red. "
        "published: ✓ agrees with the reference to its printed precision, ✗ does not. "
        f"Published figures: {NORMPROP}. Constants use the reference where there is one.",
        style="dim",
    )


def results(rows: list[Row], title: str) -> Group:
    return Group(stats_table(rows, title), constants_table(rows), legend())


def layer_list(infos: Iterable[LayerInfo]) -> RichTable:
    t = RichTable(header_style="bold", show_lines=True)
    for col in ("layer", "parameters (default; allowed)", "reference", "what it computes"):
        t.add_column(col)
    for info in infos:
        params = "\n".join(f"{p.option} {p.default_display()}; {p.allowed()}" for p in info.params) or "—"
        name = info.name + (f"\n(alias {', '.join(info.aliases)})" if info.aliases else "")
        t.add_row(name, params, info.reference_summary, info.summary)
    return t
